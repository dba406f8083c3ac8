/**
 * Low-data classification (the paper's Table 4): a linear probe trained on only N labels per
 * class, repeated on S random subsets of the training set, reported as mean ± std of test
 * accuracy. The features are whatever the caller gives: transformer features, or raw pixels
 * (`pixelFeatures`) for the baseline.
 */
import type { TokenSplit } from '../data/tokens.js';
import type { Kernels } from '../kernels/kernels.js';
import type { Palette } from '../palette/palette.js';
import { dequantize } from '../palette/quantize.js';
import { Rng } from '../util/rng.js';
import { accuracy, featureDim, trainLogisticRegression, type LabeledFeatures } from './logistic.js';
import { selectL2 } from './probe.js';

/** Pixel bytes [count, valuesPerImage] → features in [0, 1] (the raw-pixel baseline). */
export function pixelFeatures(pixels: Uint8Array, count: number, valuesPerImage: number): Float32Array {
  if (pixels.length < count * valuesPerImage) {
    throw new Error(`pixelFeatures: ${pixels.length} bytes, need ${count}·${valuesPerImage}`);
  }
  const out = new Float32Array(count * valuesPerImage);
  for (let i = 0; i < out.length; i++) out[i] = pixels[i] / 255;
  return out;
}

/** The first `count` images of a token split through the palette, as [0, 1] features (the raw-pixel baseline). */
export function paletteImageFeatures(split: TokenSplit, palette: Palette, pixels: number, count = split.count): Float32Array {
  const bytes = dequantize(palette, split.tokens.subarray(0, count * pixels));
  return pixelFeatures(bytes, count, pixels * palette.channels);
}

/**
 * Indices of `perClass` rows of every class, drawn without replacement (sorted ascending).
 * Throws when a class has fewer rows than asked for.
 */
export function sampleLabelsPerClass(labels: Int32Array, numClasses: number, perClass: number, rng: Rng): Int32Array {
  if (!Number.isInteger(perClass) || perClass <= 0) throw new Error(`low-data: labels per class must be a positive integer, got ${perClass}`);
  const byClass: number[][] = Array.from({ length: numClasses }, () => []);
  labels.forEach((y, i) => {
    if (y >= 0 && y < numClasses) byClass[y].push(i);
  });
  const picked: number[] = [];
  byClass.forEach((rows, c) => {
    if (rows.length < perClass) {
      throw new Error(`low-data: class ${c} has ${rows.length} training rows, fewer than the ${perClass} asked for`);
    }
    // Partial Fisher-Yates: the first perClass entries become a uniform sample.
    for (let i = 0; i < perClass; i++) {
      const j = i + rng.int(rows.length - i);
      const t = rows[i]; rows[i] = rows[j]; rows[j] = t;
      picked.push(rows[i]);
    }
  });
  return Int32Array.from(picked.sort((a, b) => a - b));
}

/** The rows at `indices` of a labeled feature set (copied). */
export function selectRows(set: LabeledFeatures, indices: Int32Array): LabeledFeatures {
  const dim = featureDim('selectRows', set);
  const features = new Float32Array(indices.length * dim);
  const labels = new Int32Array(indices.length);
  indices.forEach((row, i) => {
    features.set(set.features.subarray(row * dim, (row + 1) * dim), i * dim);
    labels[i] = set.labels[row];
  });
  return { features, labels };
}

export interface LowDataOptions {
  numClasses: number;
  /** N: labels per class in each subset. */
  labelsPerClass: number;
  /** S: number of random subsets (default 5, as in the paper). */
  subsets?: number;
  /** Seed for the subset draws (default 0). Same seed, same subsets. */
  seed?: number;
  /**
   * L2 strength: one value, or a grid chosen per subset on `val` (the full validation set:
   * note this uses more labels than N per class, as model selection usually does).
   */
  l2: number | readonly number[];
  val?: LabeledFeatures;
  maxIter?: number;
  tol?: number;
  kernels?: Kernels;
  log?: (message: string) => void;
}

export interface LowDataResult {
  labelsPerClass: number;
  /** Test accuracy of each subset (0..1). */
  accuracies: number[];
  /** L2 used for each subset. */
  l2s: number[];
  mean: number;
  /** Population standard deviation over subsets. */
  std: number;
}

/** Trains a probe on S subsets of N labels per class and scores each on the full test set. */
export function lowDataProbe(train: LabeledFeatures, test: LabeledFeatures, options: LowDataOptions): LowDataResult {
  const subsets = options.subsets ?? 5;
  if (!Number.isInteger(subsets) || subsets <= 0) throw new Error(`low-data: subsets must be a positive integer, got ${subsets}`);
  const dim = featureDim('low-data (train)', train);
  if (featureDim('low-data (test)', test) !== dim) throw new Error(`low-data: test features have dim ${test.features.length / test.labels.length}, train has ${dim}`);
  const grid = typeof options.l2 === 'number' ? [options.l2] : options.l2;
  if (grid.length === 0) throw new Error('low-data: the L2 grid is empty');
  if (grid.length > 1 && options.val === undefined) throw new Error('low-data: an L2 grid needs a validation set (val)');

  const rng = new Rng(options.seed ?? 0);
  const accuracies: number[] = [];
  const l2s: number[] = [];
  for (let s = 0; s < subsets; s++) {
    const subset = selectRows(train, sampleLabelsPerClass(train.labels, options.numClasses, options.labelsPerClass, rng));
    const common = { maxIter: options.maxIter, tol: options.tol, kernels: options.kernels };
    const model = grid.length === 1
      ? trainLogisticRegression(subset.features, subset.labels, subset.labels.length, dim, options.numClasses, { l2: grid[0], ...common })
      : selectL2(subset, options.val as LabeledFeatures, { numClasses: options.numClasses, l2Grid: grid, ...common }).model;
    const acc = accuracy(model, test.features, test.labels, options.kernels);
    options.log?.(`subset ${s + 1}/${subsets} (${options.labelsPerClass}/class, l2 ${model.l2}): test accuracy ${(100 * acc).toFixed(2)}%`);
    accuracies.push(acc);
    l2s.push(model.l2);
  }
  const mean = accuracies.reduce((a, b) => a + b, 0) / subsets;
  const std = Math.sqrt(accuracies.reduce((a, b) => a + (b - mean) * (b - mean), 0) / subsets);
  return { labelsPerClass: options.labelsPerClass, accuracies, l2s, mean, std };
}
