/** Runs the `igpt` command line as a user would: a child process, so tests never import a command module. */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const MAIN = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));

/** Runs `igpt ...args`; resolves with its stdout, rejects with its stderr when it fails. */
export function runCli(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', MAIN, ...args], (err, stdout, stderr) => {
      if (err) reject(new Error(`igpt ${args.join(' ')}: ${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}
