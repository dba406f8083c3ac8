#!/usr/bin/env node
/** The `igpt` command line: one file per command under src/cli/, each exporting `register`. */
import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import type { CommandModule } from './command.js';

const commands: CommandModule[] = [
  // Each command module adds itself here, in the order `igpt --help` lists them.
];

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
const program = new Command('igpt')
  .description('Image-GPT in TypeScript: palettes, pixel tokens, pretraining, probes, fine-tuning, sampling')
  .version(pkg.version)
  .showHelpAfterError();
for (const c of commands) c.register(program);
program.parseAsync(process.argv).catch((err: unknown) => {
  // Errors we raise carry a message meant for people; a stack trace is only for unexpected ones.
  const message = err instanceof Error ? err.message : String(err);
  console.error(`igpt: ${message}`);
  if (process.env.IGPT_DEBUG && err instanceof Error) console.error(err.stack);
  process.exit(1);
});
