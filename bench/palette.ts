/**
 * Palette benchmark: fit 16 gray clusters on 1M Fashion-MNIST training pixels, then quantize all
 * 70,000 images (54.9M pixels), against scikit-learn's KMeans(n_clusters=16, k-means++, n_init=1)
 * fit + predict on the same kind of sample and the same pixels (bench/sklearn_kmeans.py).
 * Reports times, ratios (> 1: we are faster) and quantization error of both palettes.
 *
 * RGB part: a 512-color palette on 1M pixels of tinted Fashion-MNIST (each image gets a random
 * foreground and background color, so there are hundreds of thousands of distinct colors), then
 * quantizing all its pixels, against scikit-learn's MiniBatchKMeans (bench/sklearn_minibatch_kmeans.py)
 * on the very same sampled pixels.
 *
 *   node --import tsx bench/palette.ts [--quick]
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { writeNpy } from '../src/io/npy.js';
import { Rng } from '../src/util/rng.js';
import { DEFAULT_FASHION_MNIST_DIR, loadFashionMnist } from '../src/data/datasets.js';
import type { ImageSet } from '../src/data/images.js';
import { fitPalette } from '../src/palette/kmeans.js';
import type { Palette } from '../src/palette/palette.js';
import { Quantizer } from '../src/palette/quantize.js';
import type { BenchResult } from './types.js';
import { isError, python, runJson } from './util.js';

interface SklearnJson { fitSeconds: number; predictSeconds: number; mse: number; iterations: number; centers: number[] }

const K = 16;
const SEED = 0;

/** Mean squared error (in [-1, 1] units) of the pixels against their quantized values. */
function quantizationMse(palette: Palette, sets: ImageSet[], ids: Uint8Array[]): number {
  let sse = 0;
  let n = 0;
  sets.forEach((set, s) => {
    for (let i = 0; i < set.pixels.length; i++) {
      const d = set.pixels[i] / 127.5 - 1 - palette.centers[ids[s][i]];
      sse += d * d;
    }
    n += set.pixels.length;
  });
  return sse / n;
}

export async function run(opts: { quick: boolean }): Promise<BenchResult[]> {
  if (!existsSync(DEFAULT_FASHION_MNIST_DIR)) {
    return [{ name: 'palette: skipped', value: 0, unit: '', note: 'Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)' }];
  }
  const samples = opts.quick ? 200_000 : 1_000_000;
  const fm = loadFashionMnist();
  const sets = [fm.train, fm.test!];
  const pixels = sets.reduce((n, s) => n + s.pixels.length, 0);

  const t0 = performance.now();
  const palette = fitPalette(fm.train, { k: K, samplePixels: samples, seed: SEED });
  const t1 = performance.now();
  const quantizer = new Quantizer(palette);
  const ids = sets.map((s) => quantizer.quantize(s.pixels) as Uint8Array);
  const t2 = performance.now();
  const fitS = (t1 - t0) / 1000;
  const quantS = (t2 - t1) / 1000;
  const mse = quantizationMse(palette, sets, ids);

  const peer = runJson<SklearnJson>(python, ['bench/sklearn_kmeans.py', DEFAULT_FASHION_MNIST_DIR, '--samples', String(samples), '--k', String(K), '--seed', String(SEED), '--n-init', '1']);
  const results: BenchResult[] = [];
  const peerName = 'scikit-learn KMeans (k-means++, n_init=1)';
  if (isError(peer)) {
    results.push({ name: `palette fit (${K} gray, ${samples / 1e6}M px)`, value: fitS, unit: 's', note: `peer failed: ${peer.error}` });
    results.push({ name: 'quantize 70,000 images', value: quantS, unit: 's' });
    return [...results, ...rgbBench(fm.train, opts.quick)];
  }
  // Our quantizer applied to sklearn's centers: checks both MSE figures measure the same thing.
  const skPalette: Palette = { k: K, channels: 1, centers: Float32Array.from(peer.centers) };
  const skIds = sets.map((s) => new Quantizer(skPalette).quantize(s.pixels) as Uint8Array);
  const skMseOurs = quantizationMse(skPalette, sets, skIds);
  results.push(
    { name: `palette fit (${K} gray clusters, ${samples / 1e6}M Fashion-MNIST pixels)`, value: fitS, unit: 's', peer: peerName, peerValue: peer.fitSeconds, ratio: peer.fitSeconds / fitS, note: 'ratio > 1: faster than the peer; ours includes pixel sampling; algorithmic, not the same work faster: ours clusters a 256-bin histogram of the pixels, scikit-learn the million points' },
    { name: `quantize all 70,000 images (${(pixels / 1e6).toFixed(1)}M pixels)`, value: quantS, unit: 's', peer: 'scikit-learn KMeans.predict', peerValue: peer.predictSeconds, ratio: peer.predictSeconds / quantS, note: 'ratio > 1: faster' },
    { name: 'palette fit + quantize', value: fitS + quantS, unit: 's', peer: 'scikit-learn fit + predict', peerValue: peer.fitSeconds + peer.predictSeconds, ratio: (peer.fitSeconds + peer.predictSeconds) / (fitS + quantS) },
    { name: 'quantization MSE over all pixels ([-1, 1] units)', value: mse, unit: 'mse', peer: peerName, peerValue: peer.mse, ratio: peer.mse / mse, note: `ratio > 1: our palette fits better (sklearn centers through our quantizer: ${skMseOurs.toExponential(4)}, ${peer.iterations} Lloyd iterations)` },
  );
  results.push(...rgbBench(fm.train, opts.quick));
  return results;
}

interface SklearnRgbJson { fitSeconds: number; predictSeconds: number; mse: number; iterations: number }

/** Each gray image blended between a random background and foreground color. */
function tintedImages(gray: ImageSet, count: number): ImageSet {
  const rng = new Rng(1);
  const size = gray.height * gray.width;
  const pixels = new Uint8Array(count * size * 3);
  for (let i = 0; i < count; i++) {
    const fg = [rng.int(256), rng.int(256), rng.int(256)];
    const bg = [rng.int(256), rng.int(256), rng.int(256)];
    for (let p = 0; p < size; p++) {
      const v = gray.pixels[i * size + p] / 255;
      for (let c = 0; c < 3; c++) pixels[(i * size + p) * 3 + c] = Math.round(v * fg[c] + (1 - v) * bg[c]);
    }
  }
  return { count, height: gray.height, width: gray.width, channels: 3, pixels, labels: new Int32Array(count) };
}

function rgbBench(gray: ImageSet, quick: boolean): BenchResult[] {
  const images = tintedImages(gray, quick ? 5000 : 20000);
  const samples = quick ? 200_000 : 1_000_000;
  const k = 512;
  const t0 = performance.now();
  const palette = fitPalette(images, { k, samplePixels: samples, seed: SEED });
  const t1 = performance.now();
  const ids = new Quantizer(palette).quantize(images.pixels);
  const t2 = performance.now();
  const fitS = (t1 - t0) / 1000;
  const quantS = (t2 - t1) / 1000;
  let sse = 0;
  for (let i = 0; i < ids.length; i++) {
    for (let c = 0; c < 3; c++) { const d = images.pixels[3 * i + c] / 127.5 - 1 - palette.centers[3 * ids[i] + c]; sse += d * d; }
  }
  const mse = sse / ids.length;
  // The same pixels fitPalette sampled (same Rng, same draws), for the peer.
  const total = images.count * images.height * images.width;
  const sample = new Uint8Array(samples * 3);
  const dir = mkdtempSync(join(tmpdir(), 'igpt-bench-palette-'));
  try {
    const rng = new Rng(SEED);
    for (let i = 0; i < samples; i++) { const p = rng.int(total); sample.set(images.pixels.subarray(3 * p, 3 * p + 3), 3 * i); }
    writeNpy(join(dir, 'sample.npy'), sample, [samples, 3]);
    writeNpy(join(dir, 'all.npy'), images.pixels, [total, 3]);
    const peer = runJson<SklearnRgbJson>(python, ['bench/sklearn_minibatch_kmeans.py', join(dir, 'sample.npy'), join(dir, 'all.npy'), '--k', String(k), '--seed', String(SEED)]);
    const peerName = 'scikit-learn MiniBatchKMeans (k-means++, n_init=1, batch 4096)';
    const name = `RGB palette fit (512 colors, ${samples / 1e6}M tinted Fashion-MNIST pixels)`;
    if (isError(peer)) return [{ name, value: fitS, unit: 's', note: `peer failed: ${peer.error}` }];
    return [
      { name, value: fitS, unit: 's', peer: peerName, peerValue: peer.fitSeconds, ratio: peer.fitSeconds / fitS, note: 'ratio > 1: faster' },
      { name: `RGB quantize ${images.count} images (${(total / 1e6).toFixed(1)}M pixels, k = 512)`, value: quantS, unit: 's', peer: 'scikit-learn MiniBatchKMeans.predict', peerValue: peer.predictSeconds, ratio: peer.predictSeconds / quantS, note: 'ratio > 1: faster' },
      { name: 'RGB quantization MSE over all pixels ([-1, 1] units, summed over channels)', value: mse, unit: 'mse', peer: peerName, peerValue: peer.mse, ratio: peer.mse / mse, note: `ratio > 1: our palette fits better (peer ran ${peer.iterations} epochs)` },
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const results = await run({ quick: process.argv.includes('--quick') });
  for (const r of results) {
    const peer = r.peerValue === undefined ? '' : `  | ${r.peer}: ${r.peerValue.toPrecision(4)}  ratio ${r.ratio?.toFixed(2)}`;
    console.log(`${r.name}: ${r.value.toPrecision(4)} ${r.unit}${peer}${r.note ? `  (${r.note})` : ''}`);
  }
}
