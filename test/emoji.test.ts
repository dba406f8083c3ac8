/**
 * `igpt emoji-folder` on a fake emoji-datasource-apple package of a handful of generated PNGs:
 * categories become class folders, Component and undrawn emoji are dropped, skin tones on request,
 * the result reads as an image folder; npm installs a local package folder (no network).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { EMOJI_FOLDER_MARKER, emojiPackageDir, installEmojiPackage, layoutEmojiFolder, readEmojiIndex } from '../src/data/emoji.js';
import { readImageFolder } from '../src/data/folder.js';
import { runCli } from './cli.js';

const tmp = mkdtempSync(join(tmpdir(), 'igpt-emoji-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

/** The fields of a real emoji.json entry that matter here (emoji-datasource 16.0.0). */
const ENTRIES = [
  { image: '1f600.png', category: 'Smileys & Emotion', has_img_apple: true, has_img_twitter: true },
  { image: '1f602.png', category: 'Smileys & Emotion', has_img_apple: true, has_img_twitter: true },
  {
    image: '1f44b.png', category: 'People & Body', has_img_apple: true, has_img_twitter: true,
    skin_variations: {
      '1F3FB': { image: '1f44b-1f3fb.png', has_img_apple: true, has_img_twitter: true },
      '1F3FF': { image: '1f44b-1f3ff.png', has_img_apple: true, has_img_twitter: false },
    },
  },
  { image: '1f1eb-1f1f7.png', category: 'Flags', has_img_apple: true, has_img_twitter: true },
  { image: '1f3fb.png', category: 'Component', has_img_apple: true, has_img_twitter: true },
  { image: '1fae8.png', category: 'Smileys & Emotion', has_img_apple: false, has_img_twitter: true },
];

/** A fake package: emoji.json and a distinct 64×64 RGBA PNG per listed file, all but `withhold`. */
async function writeFakePackage(dir: string, withhold: string[] = []): Promise<void> {
  const imageDir = join(dir, 'img', 'apple', '64');
  mkdirSync(imageDir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'emoji-datasource-apple', version: '16.0.0' }));
  writeFileSync(join(dir, 'emoji.json'), JSON.stringify(ENTRIES));
  const files = ENTRIES.flatMap((e) => [e.image, ...Object.values(e.skin_variations ?? {}).map((v) => v.image)]);
  for (const [i, name] of files.entries()) {
    if (withhold.includes(name)) continue;
    const rgba = Buffer.alloc(64 * 64 * 4);
    for (let p = 0; p < 64 * 64; p++) rgba.set([20 * i, 255 - 20 * i, 100, p % 64 < 32 ? 255 : 0], 4 * p);
    await sharp(rgba, { raw: { width: 64, height: 64, channels: 4 } }).png().toFile(join(imageDir, name));
  }
}

test('emoji index: drops Component and undrawn emoji; skin tones the vendor draws on request', () => {
  const dir = join(tmp, 'index-pkg');
  mkdirSync(dir);
  writeFileSync(join(dir, 'emoji.json'), JSON.stringify(ENTRIES));
  const names = (xs: { category: string; image: string }[]): string[] => xs.map((x) => `${x.category}/${x.image}`);
  assert.deepEqual(names(readEmojiIndex(dir, 'apple', false)),
                   ['Smileys & Emotion/1f600.png', 'Smileys & Emotion/1f602.png', 'People & Body/1f44b.png', 'Flags/1f1eb-1f1f7.png']);
  const withTones = names(readEmojiIndex(dir, 'apple', true));
  assert.deepEqual(withTones.filter((n) => n.startsWith('People')), ['People & Body/1f44b.png', 'People & Body/1f44b-1f3fb.png', 'People & Body/1f44b-1f3ff.png']);
  const twitter = names(readEmojiIndex(dir, 'twitter', true));
  assert.ok(twitter.includes('Smileys & Emotion/1fae8.png') && !twitter.includes('People & Body/1f44b-1f3ff.png'));
  writeFileSync(join(dir, 'emoji.json'), JSON.stringify([{ image: 'x.png' }]));
  assert.throws(() => readEmojiIndex(dir, 'apple', false), (e: Error) => e.message.includes(join(dir, 'emoji.json')) && /entry 0/.test(e.message));
  writeFileSync(join(dir, 'emoji.json'), '{');
  assert.throws(() => readEmojiIndex(dir, 'apple', false), /not valid JSON/);
});

test('emoji folder: one class folder per category, links or copies, read back as a color image folder', async () => {
  const pkg = join(tmp, 'pkg');
  await writeFakePackage(pkg, ['1f602.png']);
  const out = join(tmp, 'emoji');
  const summary = layoutEmojiFolder({ packageDir: pkg, vendor: 'apple', out, skinTones: true });
  assert.deepEqual([...summary.counts], [['Flags', 1], ['People & Body', 3], ['Smileys & Emotion', 1]]);
  assert.equal(summary.total, 5);
  assert.deepEqual(summary.missing, [join(pkg, 'img', 'apple', '64', '1f602.png')]);
  assert.deepEqual(readdirSync(join(out, 'People & Body')).sort(), ['1f44b-1f3fb.png', '1f44b-1f3ff.png', '1f44b.png']);
  assert.ok(lstatSync(join(out, 'Flags', '1f1eb-1f1f7.png')).isSymbolicLink());
  assert.ok(!existsSync(join(out, 'Component')));
  const set = await readImageFolder(out);
  assert.deepEqual(set.classNames, ['Flags', 'People & Body', 'Smileys & Emotion']);
  assert.deepEqual([...set.labels], [0, 1, 1, 1, 2]);
  assert.equal(set.channels, 3);
  assert.equal(set.width, 64);
  // The right half of every fake emoji is transparent: white, not its hidden color.
  assert.deepEqual([...set.pixels.subarray(3 * 40, 3 * 41)], [255, 255, 255]);

  // Run again, copying, without skin tones: the folder it made is replaced.
  const again = layoutEmojiFolder({ packageDir: pkg, vendor: 'apple', out, copy: true });
  assert.equal(again.total, 3);
  assert.ok(lstatSync(join(out, 'Flags', '1f1eb-1f1f7.png')).isFile());
  assert.deepEqual(JSON.parse(readFileSync(join(out, EMOJI_FOLDER_MARKER), 'utf8')).counts, { 'Smileys & Emotion': 1, 'People & Body': 1, Flags: 1 });
  // A folder it did not make is left alone.
  const foreign = join(tmp, 'photos');
  mkdirSync(foreign);
  writeFileSync(join(foreign, 'keep.png'), 'x');
  assert.throws(() => layoutEmojiFolder({ packageDir: pkg, vendor: 'apple', out: foreign }), /not made by emoji-folder/);
  assert.ok(existsSync(join(foreign, 'keep.png')));
  assert.throws(() => layoutEmojiFolder({ packageDir: pkg, vendor: 'twitter', out: join(tmp, 'tw') }), /img\/twitter\/64: not found/);
});

test('igpt emoji-folder: --install runs npm install --prefix <cache>; without it a missing package says how', { timeout: 120_000 }, async (t) => {
  if (spawnSync('npm', ['--version']).status !== 0) {
    t.skip('npm is not on PATH');
    return;
  }
  const pkg = join(tmp, 'local-pkg');
  await writeFakePackage(pkg);
  const cache = join(tmp, 'cache');
  // A local folder as the spec, npm told to stay offline: no network.
  process.env.npm_config_offline = 'true';
  let installed: string;
  try {
    installed = installEmojiPackage(cache, 'apple', pkg);
  } finally {
    delete process.env.npm_config_offline;
  }
  assert.equal(installed, emojiPackageDir(cache, 'apple'));
  assert.ok(existsSync(join(installed, 'img', 'apple', '64', '1f600.png')));
  assert.equal(JSON.parse(readFileSync(join(cache, 'package.json'), 'utf8')).dependencies['emoji-datasource-apple'] !== undefined, true);

  const run = (args: string[]): Promise<string> => runCli(['emoji-folder', ...args]);
  const out = join(tmp, 'cli-emoji');
  const printed = await run(['--cache', cache, '--out', out]);
  assert.match(printed, /4 apple emoji in 3 categories \(Flags 1, People & Body 1, Smileys & Emotion 2\), linked from/);
  assert.match(printed, /not licensed for commercial use/);
  assert.equal((await readImageFolder(out)).count, 4);
  await assert.rejects(run(['--cache', join(tmp, 'empty-cache'), '--out', out]), /not found; add --install/);
  await assert.rejects(run(['--vendor', 'samsung', '--out', out]), /--vendor must be one of apple, twitter, facebook, google/);
});
