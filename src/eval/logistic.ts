/**
 * Multinomial logistic regression on frozen features, trained full-batch with L-BFGS, L2 on the
 * weights (not the bias), features standardized with the training set's mean and std.
 *
 * Objective (the mean convention; scikit-learn's C equals 1 / (l2 · N)):
 *   L(W, b) = mean_n -log softmax(x_n·W + b)[y_n] + (l2 / 2)·‖W‖².
 */
import type { Kernels } from '../kernels/kernels.js';
import { crossEntropySum } from '../kernels/host.js';
import { minimizeLbfgs, type LbfgsStop } from './lbfgs.js';

/** n rows of `dim` features each (row-major) with their class labels. */
export interface LabeledFeatures {
  features: Float32Array;
  labels: Int32Array;
}

export interface TrainOptions {
  /** L2 strength on the weights (mean-loss convention). */
  l2: number;
  /** L-BFGS iterations. Default 500. */
  maxIter?: number;
  /** Gradient max-norm tolerance. Default 1e-4 (scikit-learn's `tol`). */
  tol?: number;
  /** The loss and gradient (sgemm, bias, softmax cross-entropy) run on these kernels when given; plain loops otherwise. */
  kernels?: Kernels;
  /** Starting weights/bias (same dim/classes, e.g. the solution for a neighbouring l2). */
  init?: LogisticModel;
  /** Fit a bias (default true); without one it stays 0. */
  bias?: boolean;
}

export interface LogisticModel {
  dim: number;
  numClasses: number;
  /** Weights [dim, numClasses] acting on standardized features. */
  weights: Float32Array;
  bias: Float32Array;
  /** Standardization from the training features: z = (x - mean) · invStd. */
  mean: Float32Array;
  invStd: Float32Array;
  l2: number;
  /** Final training objective and how the optimizer stopped. */
  loss: number;
  iterations: number;
  stop: LbfgsStop;
}

/** Per-feature mean and 1/std over n rows; constant features get invStd 1 (as scikit-learn). */
export function featureStats(features: Float32Array, n: number, dim: number): { mean: Float32Array; invStd: Float32Array } {
  checkShape('featureStats', features, n, dim);
  const sum = new Float64Array(dim);
  for (let r = 0; r < n; r++) {
    const off = r * dim;
    for (let d = 0; d < dim; d++) sum[d] += features[off + d];
  }
  const mean = new Float64Array(dim);
  for (let d = 0; d < dim; d++) mean[d] = sum[d] / n;
  // Two-pass variance: features can have large offsets.
  const sq = new Float64Array(dim);
  for (let r = 0; r < n; r++) {
    const off = r * dim;
    for (let d = 0; d < dim; d++) { const c = features[off + d] - mean[d]; sq[d] += c * c; }
  }
  const invStd = new Float32Array(dim);
  for (let d = 0; d < dim; d++) {
    const std = Math.sqrt(sq[d] / n);
    invStd[d] = std > 1e-12 * Math.max(1, Math.abs(mean[d])) ? 1 / std : 1;
  }
  return { mean: Float32Array.from(mean), invStd };
}

/** Returns (x - mean) · invStd as a new buffer. */
export function standardize(features: Float32Array, n: number, dim: number,
                            mean: Float32Array, invStd: Float32Array): Float32Array {
  checkShape('standardize', features, n, dim);
  const out = new Float32Array(n * dim);
  for (let r = 0; r < n; r++) {
    const off = r * dim;
    for (let d = 0; d < dim; d++) out[off + d] = (features[off + d] - mean[d]) * invStd[d];
  }
  return out;
}

/**
 * Fits multinomial logistic regression on n rows of `dim` features (standardized internally
 * with their own mean/std).
 */
export function trainLogisticRegression(features: Float32Array, labels: Int32Array, n: number, dim: number,
                                        numClasses: number, options: TrainOptions): LogisticModel {
  checkShape('trainLogisticRegression', features, n, dim);
  checkLabels('trainLogisticRegression', labels, n, numClasses);
  const { mean, invStd } = featureStats(features, n, dim);
  const z = standardize(features, n, dim, mean, invStd);
  return fitStandardized(z, labels, n, dim, numClasses, mean, invStd, options);
}

/** The fit itself, on already standardized features z (lets an L2 sweep standardize once). */
export function fitStandardized(z: Float32Array, labels: Int32Array, n: number, dim: number, numClasses: number,
                         mean: Float32Array, invStd: Float32Array, options: TrainOptions): LogisticModel {
  if (!(options.l2 >= 0)) throw new Error(`trainLogisticRegression: l2 must be >= 0, got ${options.l2}`);
  const withBias = softmaxObjective(z, labels, n, dim, numClasses, options.l2, options.kernels);
  // A zero gradient keeps L-BFGS's bias at its starting 0: every step direction is built from gradients.
  const objective = options.bias === false
    ? (params: Float32Array, grad: Float32Array): number => { const loss = withBias(params, grad); grad.fill(0, dim * numClasses); return loss; }
    : withBias;
  const params = new Float32Array(dim * numClasses + numClasses);
  const init = options.init;
  if (init !== undefined && init.dim === dim && init.numClasses === numClasses) {
    params.set(init.weights, 0);
    params.set(init.bias, dim * numClasses);
  }
  const result = minimizeLbfgs(objective, params, { maxIter: options.maxIter ?? 500, gradTol: options.tol ?? 1e-4 });
  return {
    dim, numClasses,
    weights: params.slice(0, dim * numClasses),
    bias: params.slice(dim * numClasses),
    mean, invStd, l2: options.l2,
    loss: result.loss, iterations: result.iterations, stop: result.stop,
  };
}

/**
 * The regularized softmax loss over standardized features z as an L-BFGS objective over
 * params = [W (dim×C, row-major), b (C)]. Each evaluation is two [n×dim]·[dim×C]-sized products.
 */
export function softmaxObjective(z: Float32Array, labels: Int32Array, n: number, dim: number, numClasses: number,
                                 l2: number, kernels?: Kernels): (params: Float32Array, grad: Float32Array) => number {
  const C = numClasses;
  const logits = new Float32Array(n * C);
  if (kernels) {
    // Everything through the kernels: two sgemms, bias, fused softmax cross-entropy.
    const dlogits = new Float32Array(n * C);
    const losses = new Float32Array(n);
    return (params, grad) => {
      const W = params.subarray(0, dim * C);
      const b = params.subarray(dim * C);
      const gW = grad.subarray(0, dim * C);
      const gb = grad.subarray(dim * C);
      kernels.sgemm(false, false, n, C, dim, 1, z, dim, W, C, 0, logits, C);
      kernels.biasForward(logits, b, n, C);
      const nll = crossEntropySum(kernels, losses, dlogits, logits, labels, n, C, 1 / n);
      kernels.sgemm(true, false, dim, C, n, 1, z, dim, dlogits, C, 0, gW, C);
      gb.fill(0);
      kernels.biasBackward(gb, dlogits, n, C);
      return nll / n + addL2(W, gW, l2);
    };
  }
  const weightsT = new Float32Array(C * dim);
  const gradT = new Float64Array(C * dim);
  return (params, grad) => {
    const W = params.subarray(0, dim * C);
    const b = params.subarray(dim * C);
    const gW = grad.subarray(0, dim * C);
    const gb = grad.subarray(dim * C);
    logitsLoops(logits, z, W, weightsT, n, dim, C);
    // Softmax cross-entropy in float64; logits become dlogits = (p - onehot) / n in place.
    let nll = 0;
    const gBias = new Float64Array(C);
    for (let r = 0; r < n; r++) {
      const off = r * C;
      let max = -Infinity;
      for (let c = 0; c < C; c++) { const v = logits[off + c] + b[c]; logits[off + c] = v; if (v > max) max = v; }
      const y = labels[r];
      nll += max - logits[off + y];
      let sum = 0;
      for (let c = 0; c < C; c++) { const e = Math.exp(logits[off + c] - max); logits[off + c] = e; sum += e; }
      nll += Math.log(sum);
      const scale = 1 / (sum * n);
      for (let c = 0; c < C; c++) {
        const d = logits[off + c] * scale - (c === y ? 1 / n : 0);
        logits[off + c] = d;
        gBias[c] += d;
      }
    }
    weightGradientLoops(gW, gradT, z, logits, n, dim, C);
    for (let c = 0; c < C; c++) gb[c] = gBias[c];
    return nll / n + addL2(W, gW, l2);
  };
}

/** gW += l2·W; returns the penalty (l2/2)·‖W‖². */
function addL2(W: Float32Array, gW: Float32Array, l2: number): number {
  let sq = 0;
  for (let i = 0; i < W.length; i++) { const w = W[i]; sq += w * w; gW[i] += l2 * w; }
  return 0.5 * l2 * sq;
}

/**
 * logits[n, C] = z[n, dim]·W[dim, C], without kernels. Works on W transposed and blocks of 4 rows
 * so each weight load feeds 4 multiply-adds (about 3× faster than the naive triple loop in V8).
 */
function logitsLoops(logits: Float32Array, z: Float32Array, W: Float32Array, Wt: Float32Array,
                     n: number, dim: number, C: number): void {
  for (let d = 0; d < dim; d++) for (let c = 0; c < C; c++) Wt[c * dim + d] = W[d * C + c];
  let r = 0;
  for (; r + 4 <= n; r += 4) {
    const x0 = r * dim, x1 = x0 + dim, x2 = x1 + dim, x3 = x2 + dim;
    for (let c = 0; c < C; c++) {
      const w0 = c * dim;
      let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      for (let d = 0; d < dim; d++) {
        const w = Wt[w0 + d];
        a0 += z[x0 + d] * w; a1 += z[x1 + d] * w; a2 += z[x2 + d] * w; a3 += z[x3 + d] * w;
      }
      logits[r * C + c] = a0; logits[(r + 1) * C + c] = a1;
      logits[(r + 2) * C + c] = a2; logits[(r + 3) * C + c] = a3;
    }
  }
  for (; r < n; r++) {
    const x0 = r * dim;
    for (let c = 0; c < C; c++) {
      const w0 = c * dim;
      let a = 0;
      for (let d = 0; d < dim; d++) a += z[x0 + d] * Wt[w0 + d];
      logits[r * C + c] = a;
    }
  }
}

/** gW[dim, C] = zᵀ·dlogits without kernels, accumulated transposed in float64, 4 rows at a time. */
function weightGradientLoops(gW: Float32Array, gT: Float64Array, z: Float32Array, dlogits: Float32Array,
                             n: number, dim: number, C: number): void {
  gT.fill(0);
  let r = 0;
  for (; r + 4 <= n; r += 4) {
    const x0 = r * dim, x1 = x0 + dim, x2 = x1 + dim, x3 = x2 + dim;
    for (let c = 0; c < C; c++) {
      const g0 = c * dim;
      const d0 = dlogits[r * C + c], d1 = dlogits[(r + 1) * C + c];
      const d2 = dlogits[(r + 2) * C + c], d3 = dlogits[(r + 3) * C + c];
      for (let d = 0; d < dim; d++) gT[g0 + d] += z[x0 + d] * d0 + z[x1 + d] * d1 + z[x2 + d] * d2 + z[x3 + d] * d3;
    }
  }
  for (; r < n; r++) {
    const x0 = r * dim;
    for (let c = 0; c < C; c++) {
      const g0 = c * dim;
      const dl = dlogits[r * C + c];
      for (let d = 0; d < dim; d++) gT[g0 + d] += z[x0 + d] * dl;
    }
  }
  for (let d = 0; d < dim; d++) for (let c = 0; c < C; c++) gW[d * C + c] = gT[c * dim + d];
}

/** Class scores [n, C] for raw (unstandardized) features. */
export function predictLogits(model: LogisticModel, features: Float32Array, n: number, kernels?: Kernels): Float32Array {
  const { dim, numClasses: C } = model;
  const z = standardize(features, n, dim, model.mean, model.invStd);
  const logits = new Float32Array(n * C);
  if (kernels) kernels.sgemm(false, false, n, C, dim, 1, z, dim, model.weights, C, 0, logits, C);
  else logitsLoops(logits, z, model.weights, new Float32Array(C * dim), n, dim, C);
  for (let r = 0; r < n; r++) for (let c = 0; c < C; c++) logits[r * C + c] += model.bias[c];
  return logits;
}

/** Predicted class per row. */
export function predict(model: LogisticModel, features: Float32Array, n: number, kernels?: Kernels): Int32Array {
  const C = model.numClasses;
  const logits = predictLogits(model, features, n, kernels);
  const out = new Int32Array(n);
  for (let r = 0; r < n; r++) {
    let best = 0;
    for (let c = 1; c < C; c++) if (logits[r * C + c] > logits[r * C + best]) best = c;
    out[r] = best;
  }
  return out;
}

/** Fraction of rows whose prediction equals the label (0..1). */
export function accuracy(model: LogisticModel, features: Float32Array, labels: Int32Array, kernels?: Kernels): number {
  const n = labels.length;
  if (n === 0) return NaN;
  const pred = predict(model, features, n, kernels);
  let correct = 0;
  for (let r = 0; r < n; r++) if (pred[r] === labels[r]) correct++;
  return correct / n;
}

/** Feature dimension of a labeled set (features.length / rows), checked. */
export function featureDim(what: string, set: LabeledFeatures): number {
  const n = set.labels.length;
  if (n === 0) throw new Error(`${what}: no rows`);
  if (set.features.length % n !== 0) {
    throw new Error(`${what}: ${set.features.length} feature values do not split into ${n} rows`);
  }
  return set.features.length / n;
}

function checkShape(what: string, features: Float32Array, n: number, dim: number): void {
  if (!Number.isInteger(n) || !Number.isInteger(dim) || n <= 0 || dim <= 0) {
    throw new Error(`${what}: need positive integer rows and dim, got n=${n}, dim=${dim}`);
  }
  if (features.length !== n * dim) {
    throw new Error(`${what}: features hold ${features.length} values, expected n·dim = ${n}·${dim} = ${n * dim}`);
  }
}

export function checkLabels(what: string, labels: Int32Array, n: number, numClasses: number): void {
  if (labels.length !== n) throw new Error(`${what}: ${labels.length} labels for ${n} rows`);
  for (let r = 0; r < n; r++) {
    const y = labels[r];
    if (!(y >= 0 && y < numClasses)) throw new Error(`${what}: label ${y} at row ${r} is outside 0..${numClasses - 1}`);
  }
}
