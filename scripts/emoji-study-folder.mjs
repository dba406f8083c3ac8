// The color study's image folder: Twitter's and Google's drawings of the same emoji (both openly
// licensed), split by emoji rather than by file, so no drawing of a test emoji is trained on.
//   node scripts/emoji-study-folder.mjs OUT [CACHE]
// OUT/test/<category>/ holds both vendors' drawings of 10% of each category's emoji (those whose
// code has the smallest SHA-256: fixed, no seed); OUT/train/<category>/ holds every other drawing.
// The vendors' folders come from `igpt emoji-folder --install` (into CACHE, default igpt's).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [out, cache] = process.argv.slice(2);
if (!out) throw new Error('usage: node scripts/emoji-study-folder.mjs OUT [CACHE]');
const VENDORS = ['twitter', 'google'];
const TEST_SHARE = 0.1;

const tmp = mkdtempSync(join(tmpdir(), 'igpt-emoji-'));
try {
  for (const vendor of VENDORS) {
    execFileSync('npx', ['igpt', 'emoji-folder', '--install', '--vendor', vendor, '--copy',
      '--out', join(tmp, vendor), ...(cache ? ['--cache', cache] : [])], { stdio: 'inherit' });
  }
  rmSync(out, { recursive: true, force: true });
  const counts = { train: 0, test: 0 };
  const digest = (code) => createHash('sha256').update(code).digest('hex');
  for (const entry of readdirSync(join(tmp, VENDORS[0]), { withFileTypes: true })) {
    if (!entry.isDirectory()) continue; // the folder's own notes file
    const category = entry.name;
    const codes = readdirSync(join(tmp, VENDORS[0], category)).map((f) => f.replace(/\.png$/, ''));
    const held = new Set(codes.sort((a, b) => (digest(a) < digest(b) ? -1 : 1))
      .slice(0, Math.round(codes.length * TEST_SHARE)));
    for (const split of ['train', 'test']) mkdirSync(join(out, split, category), { recursive: true });
    for (const vendor of VENDORS) {
      for (const file of readdirSync(join(tmp, vendor, category))) {
        const split = held.has(file.replace(/\.png$/, '')) ? 'test' : 'train';
        copyFileSync(join(tmp, vendor, category, file), join(out, split, category, `${vendor}-${file}`));
        counts[split]++;
      }
    }
  }
  console.log(`${out}: ${counts.train} training and ${counts.test} test drawings (${VENDORS.join(' + ')})`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
