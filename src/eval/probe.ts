/**
 * Linear probes, the paper's protocol on top of the logistic regression (logistic.ts): pick L2 on
 * validation, refit on train + validation, score on test; and the per-layer sweep (best layer,
 * accuracy against depth, concatenation of the layers around the best).
 */
import {
  accuracy, checkLabels, featureDim, featureStats, fitStandardized, standardize, trainLogisticRegression,
  type LabeledFeatures, type LogisticModel,
} from './logistic.js';
import type { Kernels } from '../kernels/kernels.js';

/** The L2 grid used when none is given: 1e-1 … 1e-6, a decade apart. */
export const DEFAULT_L2_GRID: readonly number[] = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6];

export interface ProbeOptions {
  numClasses: number;
  /** Candidate L2 strengths (default DEFAULT_L2_GRID). */
  l2Grid?: readonly number[];
  /**
   * Stop the sweep (strong → weak L2) after this many consecutive grid points below the best
   * validation accuracy so far (default 2; Infinity fits the whole grid). Weak L2 fits are the
   * slowest, and validation accuracy is usually unimodal in L2.
   */
  patience?: number;
  maxIter?: number;
  tol?: number;
  kernels?: Kernels;
  /** Progress messages (one per fit). */
  log?: (message: string) => void;
  /**
   * Fit on the raw features without a bias (default: standardized, with a bias): the form of a
   * class head that reads the features directly and has no bias, like HF ImageGPT's `score`.
   */
  rawLinear?: boolean;
}

export interface L2Selection {
  l2: number;
  valAccuracy: number;
  /** Validation accuracy of every grid point fitted (strong to weak L2). */
  sweep: { l2: number; valAccuracy: number }[];
  /** The model fitted on train with the chosen l2. */
  model: LogisticModel;
}

/**
 * Fits on train for the l2 values of the grid and keeps the one with the best validation accuracy
 * (ties: the stronger regularization). Fits go from strong to weak L2, each warm-started from the
 * previous solution, and stop early per `patience`.
 */
export function selectL2(train: LabeledFeatures, val: LabeledFeatures, options: ProbeOptions): L2Selection {
  const grid = options.l2Grid ?? DEFAULT_L2_GRID;
  if (grid.length === 0) throw new Error('selectL2: the L2 grid is empty');
  const n = train.labels.length;
  const dim = featureDim('selectL2 (train)', train);
  if (featureDim('selectL2 (val)', val) !== dim) throw new Error(`selectL2: validation features have dim ${val.features.length / val.labels.length}, train has ${dim}`);
  checkLabels('selectL2 (train)', train.labels, n, options.numClasses);
  checkLabels('selectL2 (val)', val.labels, val.labels.length, options.numClasses);
  // Raw features are the standardized ones for mean 0 and std 1.
  const { mean, invStd } = options.rawLinear
    ? { mean: new Float32Array(dim), invStd: new Float32Array(dim).fill(1) }
    : featureStats(train.features, n, dim);
  const z = standardize(train.features, n, dim, mean, invStd);
  const patience = options.patience ?? 2;
  const order = [...grid].sort((a, b) => b - a);
  const sweep: { l2: number; valAccuracy: number }[] = [];
  let best: { l2: number; valAccuracy: number; model: LogisticModel } | null = null;
  let previous: LogisticModel | undefined;
  let worse = 0;
  for (const l2 of order) {
    const model = fitStandardized(z, train.labels, n, dim, options.numClasses, mean, invStd, {
      l2, maxIter: options.maxIter, tol: options.tol, kernels: options.kernels, init: previous, bias: !options.rawLinear,
    });
    previous = model;
    const valAccuracy = accuracy(model, val.features, val.labels, options.kernels);
    options.log?.(`l2 ${l2}: val accuracy ${(100 * valAccuracy).toFixed(2)}% (${model.iterations} iterations, ${model.stop})`);
    sweep.push({ l2, valAccuracy });
    if (best === null || valAccuracy > best.valAccuracy) { best = { l2, valAccuracy, model }; worse = 0; }
    else if (++worse >= patience) break;
  }
  const chosen = best as { l2: number; valAccuracy: number; model: LogisticModel };
  return { l2: chosen.l2, valAccuracy: chosen.valAccuracy, sweep, model: chosen.model };
}

export interface ProbeResult {
  l2: number;
  valAccuracy: number;
  testAccuracy: number;
  sweep: { l2: number; valAccuracy: number }[];
  /** The final model, fitted on train + val. */
  model: LogisticModel;
}

/** The paper's protocol: choose L2 on validation, refit on train + val, score on test. */
export function probeFeatures(train: LabeledFeatures, val: LabeledFeatures, test: LabeledFeatures,
                              options: ProbeOptions): ProbeResult {
  const selection = selectL2(train, val, options);
  const dim = featureDim('probeFeatures (train)', train);
  if (featureDim('probeFeatures (test)', test) !== dim) throw new Error(`probeFeatures: test features have dim ${test.features.length / test.labels.length}, train has ${dim}`);
  const all = concatRows(train, val);
  const model = trainLogisticRegression(all.features, all.labels, all.labels.length, dim, options.numClasses, {
    l2: selection.l2, maxIter: options.maxIter, tol: options.tol, kernels: options.kernels, init: selection.model,
  });
  const testAccuracy = accuracy(model, test.features, test.labels, options.kernels);
  options.log?.(`refit on train+val with l2 ${selection.l2}: test accuracy ${(100 * testAccuracy).toFixed(2)}%`);
  return { l2: selection.l2, valAccuracy: selection.valAccuracy, testAccuracy, sweep: selection.sweep, model };
}

/** Features of one layer for the three splits (rows in the same order as the labels). */
export interface LayerFeatures {
  train: Float32Array;
  val: Float32Array;
  test: Float32Array;
}

export interface LayerProbeOptions extends ProbeOptions {
  /** Also probe the concatenation of this many layers centred on the best one (0/1: off). */
  concatLayers?: number;
}

/** probeLayers' report and the best layer's probe (refitted on train + val), to classify with. */
export interface LayerProbeResult {
  report: LayerProbeReport;
  bestModel: LogisticModel;
}

export interface LayerProbeReport {
  /** One entry per layer, in order: the accuracy-vs-depth curve. */
  layers: { layer: number; l2: number; valAccuracy: number; testAccuracy: number; sweep: { l2: number; valAccuracy: number }[] }[];
  /** Index of the layer with the best validation accuracy. */
  bestLayer: number;
  best: { l2: number; valAccuracy: number; testAccuracy: number };
  /** Probe on the concatenated features of `layers` (when concatLayers > 1). */
  concat?: { layers: number[]; l2: number; valAccuracy: number; testAccuracy: number };
}

/**
 * Probes every layer (the paper's Figure 2), picks the best by validation accuracy, and optionally
 * probes the concatenation of `concatLayers` layers around it.
 */
export function probeLayers(featuresPerLayer: LayerFeatures[],
                            labels: { train: Int32Array; val: Int32Array; test: Int32Array },
                            options: LayerProbeOptions): LayerProbeResult {
  if (featuresPerLayer.length === 0) throw new Error('probeLayers: no layers given');
  const splits = (f: LayerFeatures) => ({
    train: { features: f.train, labels: labels.train },
    val: { features: f.val, labels: labels.val },
    test: { features: f.test, labels: labels.test },
  });
  const layers: LayerProbeReport['layers'] = [];
  const models: LogisticModel[] = [];
  featuresPerLayer.forEach((f, layer) => {
    const s = splits(f);
    const log = options.log;
    const r = probeFeatures(s.train, s.val, s.test, { ...options, log: log && ((m) => log(`layer ${layer}: ${m}`)) });
    options.log?.(`layer ${layer}: l2 ${r.l2}, val ${(100 * r.valAccuracy).toFixed(2)}%, test ${(100 * r.testAccuracy).toFixed(2)}%`);
    layers.push({ layer, l2: r.l2, valAccuracy: r.valAccuracy, testAccuracy: r.testAccuracy, sweep: r.sweep });
    models.push(r.model);
  });
  let bestLayer = 0;
  for (const l of layers) if (l.valAccuracy > layers[bestLayer].valAccuracy) bestLayer = l.layer;
  const top = layers[bestLayer];
  const report: LayerProbeReport = {
    layers, bestLayer, best: { l2: top.l2, valAccuracy: top.valAccuracy, testAccuracy: top.testAccuracy },
  };

  const concatCount = Math.min(options.concatLayers ?? 0, featuresPerLayer.length);
  if (concatCount > 1) {
    const first = Math.max(0, Math.min(bestLayer - Math.floor((concatCount - 1) / 2), featuresPerLayer.length - concatCount));
    const chosen = Array.from({ length: concatCount }, (_, i) => first + i);
    const parts = chosen.map((l) => featuresPerLayer[l]);
    const concat: LayerFeatures = {
      train: concatColumns(parts.map((p) => p.train), labels.train.length),
      val: concatColumns(parts.map((p) => p.val), labels.val.length),
      test: concatColumns(parts.map((p) => p.test), labels.test.length),
    };
    const s = splits(concat);
    const log = options.log;
    const r = probeFeatures(s.train, s.val, s.test, { ...options, log: log && ((m) => log(`layers ${chosen.join('+')}: ${m}`)) });
    options.log?.(`layers ${chosen.join('+')}: l2 ${r.l2}, val ${(100 * r.valAccuracy).toFixed(2)}%, test ${(100 * r.testAccuracy).toFixed(2)}%`);
    report.concat = { layers: chosen, l2: r.l2, valAccuracy: r.valAccuracy, testAccuracy: r.testAccuracy };
  }
  return { report, bestModel: models[bestLayer] };
}

/** Row-wise concatenation of feature blocks [n, d_i] into [n, Σ d_i]. */
export function concatColumns(blocks: Float32Array[], n: number): Float32Array {
  const dims = blocks.map((b) => {
    if (n === 0 || b.length % n !== 0) throw new Error(`concatColumns: block of ${b.length} values is not ${n} rows`);
    return b.length / n;
  });
  const total = dims.reduce((a, b) => a + b, 0);
  const out = new Float32Array(n * total);
  for (let r = 0; r < n; r++) {
    let col = 0;
    blocks.forEach((b, i) => {
      out.set(b.subarray(r * dims[i], (r + 1) * dims[i]), r * total + col);
      col += dims[i];
    });
  }
  return out;
}

/** Stacks two labeled sets (same dim) row-wise. */
export function concatRows(a: LabeledFeatures, b: LabeledFeatures): LabeledFeatures {
  const features = new Float32Array(a.features.length + b.features.length);
  features.set(a.features, 0);
  features.set(b.features, a.features.length);
  const labels = new Int32Array(a.labels.length + b.labels.length);
  labels.set(a.labels, 0);
  labels.set(b.labels, a.labels.length);
  return { features, labels };
}
