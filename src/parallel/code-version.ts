/**
 * Which code runs: igpt's version and a digest of the source files of this installation (src/ under
 * tsx, dist/src/ when built), so ranks started from different checkouts or builds are told apart.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

export function codeVersion(): string {
  if (cached) return cached;
  const sourceRoot = dirname(dirname(fileURLToPath(import.meta.url)));
  const hash = createHash('sha256');
  let files = 0;
  for (const path of sourceFiles(sourceRoot)) {
    hash.update(path.slice(sourceRoot.length)).update(readFileSync(path));
    files++;
  }
  let packageRoot = dirname(sourceRoot);
  while (!existsSync(join(packageRoot, 'package.json')) && dirname(packageRoot) !== packageRoot) packageRoot = dirname(packageRoot);
  const pkg = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string };
  return (cached = `igpt ${pkg.version}, ${files} source files, digest ${hash.digest('hex').slice(0, 12)}`);
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(path));
    else if (/\.(ts|js)$/.test(e.name) && !e.name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}
