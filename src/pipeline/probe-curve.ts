/**
 * Linear-probe accuracy against pretraining time, from the checkpoints a run kept
 * (`igpt pretrain --keep-every`). Every checkpoint is probed at every layer on the same small
 * subsets, so the points are comparable with each other (not with a full probe); the raw pixels
 * through the palette, probed on the same subsets, are the baseline. Resumable: curve.json keeps the
 * points already measured.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TokenDataset, TokenSplit } from '../data/tokens.js';
import { extractFeatures } from '../eval/features.js';
import { paletteImageFeatures } from '../eval/lowdata.js';
import { probeFeatures, probeLayers } from '../eval/probe.js';
import type { DeviceArray, Kernels } from '../kernels/kernels.js';
import { hostKernelsBeside } from '../kernels/select.js';
import { listCheckpoints } from '../train/checkpoint.js';
import { writeRunFile } from '../util/fs.js';
import { plotLines } from '../util/plot.js';
import { createProgress } from '../util/progress.js';
import { checkModelMatchesData, openModel } from './open.js';

/** Images of each split every checkpoint is probed on. */
export interface CurveSizes { train: number; val: number; test: number }

/**
 * The default sizes. With 1000 training images (100 a class) the probe measures the low-data
 * regime, where features trail pixels, and 500 validation images cannot tell layers apart (the
 * first cpu-m study).
 */
export const DEFAULT_CURVE_SIZES: CurveSizes = { train: 3000, val: 1000, test: 2000 };

/** At most `atMost` images of each split: a small dataset (a folder of a few thousand images) is probed whole. */
export function curveSizes(atMost: CurveSizes, data: TokenDataset, dataDir: string): CurveSizes {
  const sizes = { train: Math.min(atMost.train, data.train.count), val: Math.min(atMost.val, data.val.count), test: Math.min(atMost.test, data.test.count) };
  for (const split of ['train', 'val', 'test'] as const) {
    if (sizes[split] < 10) throw new Error(`${dataDir}: the ${split} split has ${data[split].count} images; a probe needs at least 10`);
  }
  return sizes;
}

export interface CurvePoint {
  step: number;
  /** Pretraining time up to this checkpoint (the run's own clock). */
  minutes: number;
  /** Generative loss on the test subset (nats/pixel). */
  testNll: number;
  bestLayer: number;
  /** Test accuracy of the best layer (chosen on validation), and of every layer. */
  testAccuracy: number;
  layers: number[];
}

export interface ProbeCurve {
  sizes: CurveSizes;
  pixels: { testAccuracy: number };
  points: CurvePoint[];
}

/**
 * Probes every kept checkpoint of `runDir` not yet in outDir/curve.json; writes curve.json,
 * curve.md, curve.png. `data` was read from `dataDir`.
 */
export async function probeCurve(modelKernels: Kernels<DeviceArray>, data: TokenDataset, dataDir: string,
                                 runDir: string, outDir: string, sizes: CurveSizes): Promise<ProbeCurve> {
  const kernels = hostKernelsBeside(modelKernels); // the probes' regressions, on host arrays
  if (listCheckpoints(runDir).length === 0) throw new Error(`${runDir}: no checkpoints (is it a pretraining run folder?)`);
  const path = join(outDir, 'curve.json');
  const previous = existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) as ProbeCurve : null;
  const sameSizes = previous && JSON.stringify(previous.sizes) === JSON.stringify(sizes);
  const labels = {
    train: data.train.labels.subarray(0, sizes.train),
    val: data.val.labels.subarray(0, sizes.val),
    test: data.test.labels.subarray(0, sizes.test),
  };
  const curve: ProbeCurve = sameSizes ? previous : { sizes, pixels: { testAccuracy: pixelBaseline(kernels, data, sizes, labels) }, points: [] };
  const C = data.meta.numClasses;
  for (const { step, dir } of listCheckpoints(runDir)) {
    if (curve.points.some((p) => p.step === step)) continue;
    const m = openModel(dir, modelKernels);
    checkModelMatchesData(m, data, dataDir);
    const { seconds } = JSON.parse(readFileSync(join(dir, 'trainer_state.json'), 'utf8')) as { seconds: number };
    const bar = createProgress(`curve: step ${step}`, sizes.train + sizes.val + sizes.test, 'images');
    let done = 0;
    const features = async (split: TokenSplit, count: number) => {
      const r = await extractFeatures(m.model, split, {
        batch: 32, objective: m.objective, maxImages: count, onBatch: (n) => bar.update(done + n),
      });
      done += count;
      return r;
    };
    const train = await features(data.train, sizes.train), val = await features(data.val, sizes.val);
    const test = await features(data.test, sizes.test);
    bar.stop();
    const { report } = probeLayers(train.layers.map((t, l) => ({ train: t, val: val.layers[l], test: test.layers[l] })), labels,
                               { numClasses: C, kernels });
    curve.points.push({
      step, minutes: seconds / 60, testNll: test.natsPerPixel, bestLayer: report.bestLayer,
      testAccuracy: report.best.testAccuracy, layers: report.layers.map((l) => l.testAccuracy),
    });
    curve.points.sort((a, b) => a.step - b.step);
    writeRunFile(outDir, 'curve.json', JSON.stringify(curve, null, 1));
    process.stderr.write(`curve: step ${step} (${(seconds / 60).toFixed(1)} min): best layer ${report.bestLayer}, ` +
                         `test ${(100 * report.best.testAccuracy).toFixed(2)}%, NLL ${test.natsPerPixel.toFixed(4)}\n`);
  }
  writeRunFile(outDir, 'curve.json', JSON.stringify(curve, null, 1));
  writeRunFile(outDir, 'curve.md', curveMarkdown(curve));
  const minutes = curve.points.map((p) => p.minutes);
  // The mean over the blocks' layers (1..L) is steadier than any one layer on small subsets.
  const meanOfBlocks = (p: CurvePoint): number => p.layers.slice(1).reduce((a, b) => a + b, 0) / Math.max(1, p.layers.length - 1);
  await plotLines(join(outDir, 'curve.png'), {
    title: 'Linear probe accuracy vs pretraining time', xLabel: 'pretraining minutes', yLabel: 'test accuracy (%)',
    markers: true,
    series: [
      { name: 'best layer (chosen on validation)', x: minutes, y: curve.points.map((p) => 100 * p.testAccuracy) },
      { name: 'mean of layers 1..L', x: minutes, y: curve.points.map((p) => 100 * meanOfBlocks(p)) },
      { name: 'raw pixels', x: [0, Math.max(1, ...minutes)], y: [100 * curve.pixels.testAccuracy, 100 * curve.pixels.testAccuracy] },
    ],
  });
  return curve;
}

/** The raw-pixel probe on the same subsets. */
function pixelBaseline(kernels: Kernels, data: TokenDataset, sizes: CurveSizes,
                       labels: { train: Int32Array; val: Int32Array; test: Int32Array }): number {
  const px = data.meta.pixels;
  const set = (split: TokenSplit, count: number, l: Int32Array) => ({ features: paletteImageFeatures(split, data.palette, px, count), labels: l });
  return probeFeatures(set(data.train, sizes.train, labels.train), set(data.val, sizes.val, labels.val),
                       set(data.test, sizes.test, labels.test), { numClasses: data.meta.numClasses, kernels }).testAccuracy;
}

export function curveMarkdown(c: ProbeCurve): string {
  const pct = (x: number): string => (100 * x).toFixed(2);
  const layers = c.points[0]?.layers.length ?? 0;
  const rows = c.points.map((p) => `| ${p.step} | ${p.minutes.toFixed(1)} | ${p.testNll.toFixed(4)} | ${p.bestLayer} | ${pct(p.testAccuracy)} | ` +
                                   `${p.layers.map(pct).join(' | ')} |`);
  return [
    `Probed on ${c.sizes.train} training, ${c.sizes.val} validation and ${c.sizes.test} test images; raw pixels on the same: ${pct(c.pixels.testAccuracy)}%.`,
    '',
    `| step | pretraining minutes | test NLL (nats/pixel) | best layer | its test accuracy (%) | ${Array.from({ length: layers }, (_, l) => `layer ${l}`).join(' | ')} |`,
    `|---|---|---|---|---|${'---|'.repeat(layers)}`,
    ...rows,
  ].join('\n') + '\n';
}
