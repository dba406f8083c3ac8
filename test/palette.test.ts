import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { kmeans, fitPalette, samplePixelColors, type WeightedPoints } from '../src/palette/kmeans.js';
import { Quantizer, quantize, dequantize, nearestCenter } from '../src/palette/quantize.js';
import { savePalette, loadPalette } from '../src/io/palette-files.js';
import { readOpenAiClusters } from '../src/io/openai.js';
import { parseNpy, encodeNpy, readNpy, writeNpy } from '../src/io/npy.js';
import type { Palette } from '../src/palette/palette.js';
import type { ImageSet } from '../src/data/images.js';
import { Rng } from '../src/util/rng.js';

const tmp = mkdtempSync(join(tmpdir(), 'igpt-palette-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

/** Points scattered (±spread) around the given centers, equal weights. */
function blobs(truth: number[][], perBlob: number, spread: number, rng: Rng): WeightedPoints {
  const dims = truth[0].length;
  const points = new Float32Array(truth.length * perBlob * dims);
  let at = 0;
  for (const c of truth) for (let i = 0; i < perBlob; i++) for (let t = 0; t < dims; t++) points[at++] = c[t] + (rng.next() * 2 - 1) * spread;
  return { dims, points, weights: new Float64Array(truth.length * perBlob).fill(1) };
}

function assertRecovers(centers: Float32Array, truth: number[][], tolerance: number): void {
  const dims = truth[0].length;
  for (const c of truth) {
    let best = Infinity;
    for (let j = 0; j < centers.length / dims; j++) {
      let d = 0;
      for (let t = 0; t < dims; t++) d += (centers[j * dims + t] - c[t]) ** 2;
      best = Math.min(best, Math.sqrt(d));
    }
    assert.ok(best < tolerance, `no center within ${tolerance} of [${c.join(', ')}] (closest ${best.toFixed(4)})`);
  }
}

const truthRgb = [[-0.8, -0.8, -0.8], [0.8, 0.8, 0.8], [0.8, -0.8, 0], [-0.8, 0.6, 0.6], [0, 0, 0.9], [0.1, -0.7, -0.7]];

test('k-means recovers well separated clusters (Lloyd path)', () => {
  const data = blobs(truthRgb, 300, 0.05, new Rng(1));
  const r = kmeans(data, { k: truthRgb.length, seed: 3 });
  assertRecovers(r.centers, truthRgb, 0.02);
  assert.ok(r.meanSquaredError < 0.05 ** 2, `mse ${r.meanSquaredError}`);
});

test('k-means recovers well separated clusters (mini-batch path, dead centers reseeded)', () => {
  const data = blobs(truthRgb, 2000, 0.05, new Rng(2));
  // A tiny budget forces mini-batches; too few steps after a bad start would leave dead centers.
  const r = kmeans(data, { k: truthRgb.length, seed: 4, lloydBudget: 0, batchSize: 256, miniBatchSteps: 200, lloydPasses: 2 });
  assertRecovers(r.centers, truthRgb, 0.03);
  // Deterministic from the seed.
  const again = kmeans(data, { k: truthRgb.length, seed: 4, lloydBudget: 0, batchSize: 256, miniBatchSteps: 200, lloydPasses: 2 });
  assert.deepEqual([...again.centers], [...r.centers]);
});

test('k-means with more centers than distinct points, and reseeding keeps every center alive', () => {
  const few: WeightedPoints = { dims: 1, points: Float32Array.from([-1, 1]), weights: Float64Array.from([5, 1]) };
  const r = kmeans(few, { k: 4, seed: 0 });
  assert.deepEqual([...r.centers], [-1, 1, 1, 1]);
  // 16 clusters, k = 16: every center should own a cluster (no dead center left behind).
  const truth = Array.from({ length: 16 }, (_, i) => [i / 7.5 - 1]);
  const data = blobs(truth, 200, 0.01, new Rng(7));
  const fit = kmeans(data, { k: 16, seed: 9, lloydBudget: 0, batchSize: 128, miniBatchSteps: 300, lloydPasses: 5 });
  assertRecovers(fit.centers, truth, 0.02);
});

test('fitPalette on gray images finds the gray levels; samples collapse to distinct colors', () => {
  const levels = [0, 85, 170, 255];
  const rng = new Rng(3);
  const set: ImageSet = { count: 50, height: 4, width: 4, channels: 1, pixels: Uint8Array.from({ length: 800 }, () => levels[rng.int(4)]), labels: new Int32Array(50) };
  const sample = samplePixelColors(set, 10_000, new Rng(1));
  assert.equal(sample.weights.length, 4);
  assert.equal(sample.weights.reduce((a, b) => a + b, 0), 800);
  const p = fitPalette(set, { k: 4, seed: 1 });
  assert.equal(p.k, 4);
  assert.equal(p.channels, 1);
  assert.deepEqual([...p.centers].map((c) => Math.round((c + 1) * 127.5)), levels);
  assert.deepEqual([...quantize(p, Uint8Array.from([0, 90, 169, 250]))], [0, 1, 2, 3]);
});

test('fitPalette defaults: k = 16 gray, 512 RGB', () => {
  const rng = new Rng(5);
  const rgb: ImageSet = { count: 20, height: 16, width: 16, channels: 3, pixels: Uint8Array.from({ length: 20 * 256 * 3 }, () => rng.int(256)), labels: new Int32Array(20) };
  const p = fitPalette(rgb, { samplePixels: 4000, seed: 2 });
  assert.equal(p.k, 512);
  assert.equal(p.centers.length, 512 * 3);
  assert.ok([...p.centers].every((c) => c >= -1 && c <= 1));
});

function bruteForce(palette: Palette, pixels: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < pixels.length; i += palette.channels) out.push(nearestCenter(palette, pixels.subarray(i, i + palette.channels)));
  return out;
}

test('quantize equals brute-force nearest center (gray and RGB, ties → lowest id)', () => {
  const rng = new Rng(11);
  const gray: Palette = { k: 16, channels: 1, centers: Float32Array.from({ length: 16 }, () => rng.next() * 2 - 1) };
  const grayPixels = Uint8Array.from({ length: 256 }, (_, i) => i);
  assert.deepEqual([...quantize(gray, grayPixels)], bruteForce(gray, grayPixels));
  const rgb: Palette = { k: 512, channels: 3, centers: Float32Array.from({ length: 512 * 3 }, () => rng.next() * 2 - 1) };
  const rgbPixels = Uint8Array.from({ length: 3 * 20000 }, () => rng.int(256));
  const q = new Quantizer(rgb);
  const ids = q.quantize(rgbPixels);
  assert.ok(ids instanceof Uint16Array);
  assert.deepEqual([...ids], bruteForce(rgb, rgbPixels));
  // Second pass hits the cache and must agree.
  assert.deepEqual([...q.quantize(rgbPixels)], [...ids]);
  // Duplicate centers: the lower id wins, as in brute force.
  const dup: Palette = { k: 4, channels: 3, centers: Float32Array.from([0.5, 0.5, 0.5, -0.5, -0.5, -0.5, 0.5, 0.5, 0.5, -0.5, -0.5, -0.5]) };
  const dupPixels = Uint8Array.from({ length: 3 * 2000 }, () => rng.int(256));
  const dupIds = quantize(dup, dupPixels);
  assert.deepEqual([...dupIds], bruteForce(dup, dupPixels));
  assert.ok([...dupIds].every((id) => id <= 1));
});

test('dequantize maps ids to center bytes; quantize ∘ dequantize is the identity', () => {
  const p: Palette = { k: 3, channels: 3, centers: Float32Array.from([-1, -1, -1, 1, 1, 1, 1, -1, 0.0039215686]) };
  assert.deepEqual([...dequantize(p, [0, 1, 2])], [0, 0, 0, 255, 255, 255, 255, 0, 128]);
  const ids = Uint16Array.from([2, 0, 1, 1, 2]);
  assert.deepEqual([...quantize(p, dequantize(p, ids))], [...ids]);
  assert.throws(() => dequantize(p, [3]), /id 3/);
});

test('palette JSON: save/load round trip, errors name the file', () => {
  const p: Palette = { k: 2, channels: 3, centers: Float32Array.from([-1, 0, 1, 0.25, 0.5, -0.75]) };
  const path = join(tmp, 'palette.json');
  savePalette(path, p);
  assert.deepEqual(JSON.parse(readFileSync(path, 'utf8')), { k: 2, channels: 3, centers: [[-1, 0, 1], [0.25, 0.5, -0.75]] });
  const back = loadPalette(path);
  assert.equal(back.k, 2);
  assert.equal(back.channels, 3);
  assert.deepEqual([...back.centers], [...p.centers]);
  const bad = join(tmp, 'bad.json');
  writeFileSync(bad, JSON.stringify({ k: 2, channels: 3, centers: [[0, 0], [1, 1]] }));
  assert.throws(() => loadPalette(bad), (e: Error) => e.message.includes(bad) && /center 0 must be 3 numbers/.test(e.message));
  writeFileSync(bad, '{ nope');
  assert.throws(() => loadPalette(bad), (e: Error) => e.message.includes(bad) && /JSON/.test(e.message));
  writeFileSync(bad, JSON.stringify({ k: 3, channels: 1, centers: [[0], [1]] }));
  assert.throws(() => loadPalette(bad), (e: Error) => e.message.includes(bad) && /"k" is 3/.test(e.message));
});

const python = '/usr/bin/python3';
const hasNumpy = ((): boolean => {
  try { execFileSync(python, ['-c', 'import numpy'], { stdio: 'ignore' }); return true; } catch { return false; }
})();

test('npy: reads a float32 [512, 3] file written by numpy (v1 and v2)', { skip: !hasNumpy }, () => {
  const v1 = join(tmp, 'kmeans_centers.npy');
  const v2 = join(tmp, 'centers_v2.npy');
  execFileSync(python, ['-c', [
    'import numpy as np, sys',
    'c = (np.arange(1536, dtype=np.float32).reshape(512, 3) / 767.5 - 1).astype(np.float32)',
    'np.save(sys.argv[1], c)',
    'from numpy.lib import format as f',
    'fh = open(sys.argv[2], "wb"); f.write_array(fh, c, version=(2, 0)); fh.close()',
  ].join('\n'), v1, v2]);
  for (const path of [v1, v2]) {
    const p = readOpenAiClusters(path);
    assert.equal(p.k, 512);
    assert.equal(p.channels, 3);
    assert.equal(p.centers[0], -1);
    assert.equal(p.centers[1535], Math.fround(1535 / 767.5 - 1));
  }
  assert.equal(loadPalette(v1).k, 512);
  // And numpy reads what we write.
  const ours = join(tmp, 'ours.npy');
  writeNpy(ours, Int16Array.from([1, -2, 3, -4, 5, -6]), [2, 3]);
  const seen = execFileSync(python, ['-c', 'import numpy as np, sys; a = np.load(sys.argv[1]); print(a.dtype, a.shape, a.sum())', ours], { encoding: 'utf8' });
  assert.equal(seen.trim(), 'int16 (2, 3) -3');
});

test('npy: crafted bytes; bad magic, dtype, shape, size are clear errors', () => {
  const good = encodeNpy(Float32Array.from([0.5, -0.5, 1, -1, 0, 0.25]), [2, 3]);
  const arr = parseNpy(good, 'good.npy');
  assert.equal(arr.dtype, '<f4');
  assert.deepEqual(arr.shape, [2, 3]);
  assert.deepEqual([...arr.data], [0.5, -0.5, 1, -1, 0, 0.25]);
  assert.equal((good.length) % 64, (6 * 4) % 64);
  const badMagic = Uint8Array.from(good); badMagic[1] = 0x58;
  assert.throws(() => parseNpy(badMagic, 'm.npy'), /m\.npy: not a \.npy file \(bad magic\)/);
  const header = (descr: string, shape: string, fortran = 'False'): Uint8Array => {
    const text = `{'descr': '${descr}', 'fortran_order': ${fortran}, 'shape': ${shape}, }`.padEnd(117, ' ') + '\n';
    const out = new Uint8Array(10 + text.length + 24);
    out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
    new DataView(out.buffer).setUint16(8, text.length, true);
    for (let i = 0; i < text.length; i++) out[10 + i] = text.charCodeAt(i);
    return out;
  };
  assert.throws(() => parseNpy(header('>f4', '(2, 3)'), 'be.npy'), /be\.npy: unsupported \.npy dtype '>f4'/);
  assert.throws(() => parseNpy(header('<c8', '(2, 3)'), 'c.npy'), /unsupported \.npy dtype '<c8'/);
  assert.throws(() => parseNpy(header('<f4', '(2, 4)'), 's.npy'), /s\.npy: \.npy data is 24 bytes, shape \[2, 4\]/);
  assert.throws(() => parseNpy(header('<f4', '(2, 3)', 'True'), 'f.npy'), /Fortran/);
  assert.throws(() => parseNpy(good.subarray(0, 40), 't.npy'), /t\.npy: truncated/);
  const path = join(tmp, 'bad-shape.npy');
  writeFileSync(path, encodeNpy(new Float32Array(8), [2, 4]));
  assert.throws(() => readOpenAiClusters(path), (e: Error) => e.message.includes(path) && /shape \[k, 3\]/.test(e.message));
  writeFileSync(path, encodeNpy(new Uint8Array(6), [2, 3]));
  assert.throws(() => readOpenAiClusters(path), (e: Error) => e.message.includes(path) && /float32/.test(e.message));
  assert.throws(() => readNpy(join(tmp, 'missing.npy')), /missing\.npy: cannot read/);
  assert.ok(!existsSync(`${path}.tmp-${process.pid}`));
});

test('mini-batch k-means reseeds dead centers: every center ends up owning points', () => {
  // 90% of the pixels in one blob, the rest in 31 small ones: centers starve and must be moved.
  const rng = new Rng(1);
  const n = 20000;
  const points = new Float32Array(n * 3);
  for (let i = 0; i < n; i++) {
    const b = rng.next() < 0.9 ? 0 : 1 + rng.int(31);
    for (let t = 0; t < 3; t++) points[i * 3 + t] = (b === 0 ? 0 : ((b * (t + 3) * 17) % 31) / 15.5 - 1) + (rng.next() - 0.5) * 0.02;
  }
  const data: WeightedPoints = { dims: 3, points, weights: new Float64Array(n).fill(1) };
  const r = kmeans(data, { k: 64, seed: 1, lloydBudget: 0, batchSize: 256, miniBatchSteps: 300, lloydPasses: 3 });
  assert.ok(r.reseeded > 0, 'some centers were reseeded');
  const owned = new Set<number>();
  const palette: Palette = { k: 64, channels: 3, centers: r.centers };
  for (let i = 0; i < n; i++) {
    let best = Infinity, id = 0;
    for (let j = 0; j < 64; j++) {
      let d = 0;
      for (let t = 0; t < 3; t++) d += (points[i * 3 + t] - palette.centers[j * 3 + t]) ** 2;
      if (d < best) { best = d; id = j; }
    }
    owned.add(id);
  }
  assert.equal(owned.size, 64);
});

test('k-means assignment via the color grid gives the same palette as the axis search', () => {
  const rng = new Rng(21);
  const pixels = new Uint8Array(64 * 64 * 3);
  for (let p = 0; p < 64 * 64; p++) {
    const base = rng.int(6) * 40;
    for (let c = 0; c < 3; c++) pixels[3 * p + c] = base + rng.int(40) + c * 5;
  }
  const set: ImageSet = { count: 4, height: 32, width: 32, channels: 3, pixels, labels: new Int32Array(4) };
  const withBytes = samplePixelColors(set, 5000, new Rng(2));
  assert.ok(withBytes.colorBytes !== undefined);
  const withoutBytes: WeightedPoints = { dims: 3, points: withBytes.points, weights: withBytes.weights };
  const opts = { k: 64, seed: 5, lloydBudget: 0, batchSize: 256, miniBatchSteps: 20, lloydPasses: 4 };
  const a = kmeans(withBytes, opts);
  const b = kmeans(withoutBytes, opts);
  assert.deepEqual([...a.centers], [...b.centers]);
  assert.equal(a.meanSquaredError, b.meanSquaredError);
});
