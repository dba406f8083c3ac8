import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { minimizeLbfgs } from '../src/eval/lbfgs.js';
import { lowDataProbe, pixelFeatures, sampleLabelsPerClass, selectRows } from '../src/eval/lowdata.js';
import {
  accuracy, featureStats, predict, softmaxObjective, standardize, trainLogisticRegression, type LabeledFeatures,
} from '../src/eval/logistic.js';
import { concatColumns, probeFeatures, probeLayers, selectL2 } from '../src/eval/probe.js';
import { Rng } from '../src/util/rng.js';
import { availableBackends } from './backends.js';

const backends = availableBackends();

/** Gaussian blobs: class c centred at `spread`·e_c (plus noise dims), n rows per class. */
function blobs(rng: Rng, perClass: number, numClasses: number, dim: number, spread: number, noise = 1): LabeledFeatures {
  const n = perClass * numClasses;
  const features = new Float32Array(n * dim);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % numClasses;
    labels[i] = c;
    for (let d = 0; d < dim; d++) features[i * dim + d] = noise * rng.normal() + (d === c ? spread : 0) + 3;
  }
  return { features, labels };
}

/** The regularized softmax loss in float64, straight from the definition. */
function referenceLoss(z: Float32Array, labels: Int32Array, n: number, dim: number, C: number,
                       params: Float64Array, l2: number): number {
  let nll = 0;
  for (let r = 0; r < n; r++) {
    const logits = new Float64Array(C);
    for (let c = 0; c < C; c++) {
      let s = params[dim * C + c];
      for (let d = 0; d < dim; d++) s += z[r * dim + d] * params[d * C + c];
      logits[c] = s;
    }
    const max = Math.max(...logits);
    let sum = 0;
    for (const v of logits) sum += Math.exp(v - max);
    nll += Math.log(sum) + max - logits[labels[r]];
  }
  let penalty = 0;
  for (let i = 0; i < dim * C; i++) penalty += params[i] * params[i];
  return nll / n + 0.5 * l2 * penalty;
}

describe('L-BFGS', () => {
  it('minimizes a convex quadratic to its exact solution', () => {
    // f(x) = ½ xᵀAx - bᵀx with A = MᵀM + I (SPD, moderately conditioned); minimum at A⁻¹b.
    const n = 20;
    const rng = new Rng(1);
    const M = Array.from({ length: n * n }, () => rng.normal());
    const A = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
      let s = i === j ? 1 : 0;
      for (let k = 0; k < n; k++) s += M[k * n + i] * M[k * n + j];
      A[i * n + j] = s;
    }
    const xTrue = Float64Array.from({ length: n }, () => rng.normal());
    const b = new Float64Array(n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) b[i] += A[i * n + j] * xTrue[j];
    const x = new Float64Array(n);
    const result = minimizeLbfgs((p: Float64Array, g: Float64Array) => {
      let f = 0;
      for (let i = 0; i < n; i++) {
        let ax = 0;
        for (let j = 0; j < n; j++) ax += A[i * n + j] * p[j];
        g[i] = ax - b[i];
        f += 0.5 * p[i] * ax - b[i] * p[i];
      }
      return f;
    }, x, { maxIter: 500, gradTol: 1e-6, relTol: 0 });
    assert.equal(result.stop, 'gradient');
    for (let i = 0; i < n; i++) assert.ok(Math.abs(x[i] - xTrue[i]) < 1e-5, `x[${i}] = ${x[i]}, want ${xTrue[i]}`);
  });

  it('minimizes the Rosenbrock function (float64 and float32 parameters)', () => {
    const rosen = (p: Float64Array | Float32Array, g: Float64Array | Float32Array): number => {
      let f = 0;
      g.fill(0);
      for (let i = 0; i + 1 < p.length; i++) {
        const a = 1 - p[i];
        const c = p[i + 1] - p[i] * p[i];
        f += a * a + 100 * c * c;
        g[i] += -2 * a - 400 * p[i] * c;
        g[i + 1] += 200 * c;
      }
      return f;
    };
    const x = Float64Array.from([-1.2, 1, -1.2, 1, -1.2, 1]);
    const r = minimizeLbfgs(rosen, x, { maxIter: 1000, gradTol: 1e-8 });
    assert.ok(r.converged, `stopped by ${r.stop}`);
    for (const v of x) assert.ok(Math.abs(v - 1) < 1e-4, `x = ${Array.from(x)}`);
    assert.ok(r.loss < 1e-8);

    const x32 = Float32Array.from([-1.2, 1]);
    const r32 = minimizeLbfgs(rosen, x32, { maxIter: 1000, gradTol: 1e-4 });
    assert.ok(r32.converged, `stopped by ${r32.stop}`);
    for (const v of x32) assert.ok(Math.abs(v - 1) < 1e-2, `x32 = ${Array.from(x32)}`);
  });

  it('respects maxIter and stops at once when already at a minimum', () => {
    const quad = (p: Float64Array, g: Float64Array) => { g[0] = 2 * (p[0] - 3); return (p[0] - 3) ** 2; };
    const atMin = minimizeLbfgs(quad, Float64Array.from([3]));
    assert.equal(atMin.iterations, 0);
    assert.equal(atMin.stop, 'gradient');
    const rosen2 = (p: Float64Array, g: Float64Array) => {
      const a = 1 - p[0], c = p[1] - p[0] * p[0];
      g[0] = -2 * a - 400 * p[0] * c; g[1] = 200 * c;
      return a * a + 100 * c * c;
    };
    const capped = minimizeLbfgs(rosen2, Float64Array.from([-1.2, 1]), { maxIter: 3 });
    assert.equal(capped.iterations, 3);
    assert.equal(capped.stop, 'max-iterations');
  });
});

describe('softmax objective', () => {
  const rng = new Rng(7);
  const n = 13, dim = 6, C = 4, l2 = 0.03;
  const z = new Float32Array(n * dim);
  rng.fillNormal(z, 1);
  const labels = Int32Array.from({ length: n }, (_, i) => (i * 3) % C);
  const params32 = new Float32Array(dim * C + C);
  rng.fillNormal(params32, 0.5);
  const params64 = Float64Array.from(params32);

  for (const { name: label, kernels } of [{ name: 'no kernels', kernels: undefined }, ...backends]) {
    it(`loss and gradient match a float64 reference with finite differences (${label})`, () => {
      const objective = softmaxObjective(z, labels, n, dim, C, l2, kernels);
      const grad = new Float32Array(params32.length);
      const loss = objective(params32, grad);
      const ref = referenceLoss(z, labels, n, dim, C, params64, l2);
      assert.ok(Math.abs(loss - ref) < 1e-5 * Math.max(1, ref), `loss ${loss} vs reference ${ref}`);
      const h = 1e-6;
      for (let i = 0; i < params64.length; i++) {
        const plus = Float64Array.from(params64); plus[i] += h;
        const minus = Float64Array.from(params64); minus[i] -= h;
        const fd = (referenceLoss(z, labels, n, dim, C, plus, l2) - referenceLoss(z, labels, n, dim, C, minus, l2)) / (2 * h);
        assert.ok(Math.abs(grad[i] - fd) < 1e-5 + 1e-4 * Math.abs(fd), `grad[${i}] = ${grad[i]}, finite difference ${fd}`);
      }
    });
  }

  it('does not regularize the bias', () => {
    const objective = softmaxObjective(z, labels, n, dim, C, 10, undefined);
    const zeroW = new Float32Array(dim * C + C);
    zeroW.set([5, -5, 1, 0], dim * C);
    const grad = new Float32Array(zeroW.length);
    const loss = objective(zeroW, grad);
    const ref = referenceLoss(z, labels, n, dim, C, Float64Array.from(zeroW), 0);
    assert.ok(Math.abs(loss - ref) < 1e-6, 'a bias-only model pays no L2 penalty');
  });
});

describe('logistic regression probe', () => {
  it('standardizes with the training mean and std; constant features keep scale 1', () => {
    const x = Float32Array.from([1, 5, 3, 5, 5, 5]); // 3 rows × 2 dims, dim 1 constant
    const { mean, invStd } = featureStats(x, 3, 2);
    assert.deepEqual(Array.from(mean), [3, 5]);
    assert.ok(Math.abs(invStd[0] - 1 / Math.sqrt(8 / 3)) < 1e-6);
    assert.equal(invStd[1], 1);
    const z = standardize(x, 3, 2, mean, invStd);
    assert.ok(Math.abs(z[0] + Math.sqrt(3 / 2)) < 1e-6);
    assert.equal(z[1], 0);
  });

  it('separates linearly separable classes (≈100%) with loops and with kernels', () => {
    const rng = new Rng(3);
    const train = blobs(rng, 60, 4, 8, 8, 0.7);
    const test = blobs(rng, 50, 4, 8, 8, 0.7);
    for (const kernels of [undefined, ...backends.map((b) => b.kernels)]) {
      const model = trainLogisticRegression(train.features, train.labels, train.labels.length, 8, 4, { l2: 1e-4, kernels });
      assert.ok(model.stop === 'gradient' || model.stop === 'relative-decrease', `stopped by ${model.stop}`);
      assert.equal(accuracy(model, train.features, train.labels, kernels), 1);
      assert.ok(accuracy(model, test.features, test.labels, kernels) >= 0.99);
      const pred = predict(model, test.features, test.labels.length, kernels);
      assert.equal(pred.length, test.labels.length);
    }
  });

  it('stronger L2 shrinks the weights', () => {
    const rng = new Rng(4);
    const train = blobs(rng, 30, 3, 5, 2);
    const norm = (l2: number) => {
      const m = trainLogisticRegression(train.features, train.labels, 90, 5, 3, { l2 });
      return Math.sqrt(m.weights.reduce((a, w) => a + w * w, 0));
    };
    assert.ok(norm(1) < norm(0.01));
  });

  it('rejects bad shapes and labels with clear errors', () => {
    assert.throws(() => trainLogisticRegression(new Float32Array(5), new Int32Array(2), 2, 3, 2, { l2: 0 }), /expected n·dim/);
    assert.throws(() => trainLogisticRegression(new Float32Array(6), Int32Array.from([0, 2]), 2, 3, 2, { l2: 0 }), /label 2 at row 1/);
  });

  it('selectL2 picks by validation accuracy; probeFeatures refits and scores test', () => {
    const rng = new Rng(5);
    // Few, noisy training rows in many dims: heavy regularization should win on validation.
    const train = blobs(rng, 6, 3, 40, 1.5, 1);
    const val = blobs(rng, 100, 3, 40, 1.5, 1);
    const test = blobs(rng, 100, 3, 40, 1.5, 1);
    const grid = [1, 1e-1, 1e-2, 1e-4];
    const selection = selectL2(train, val, { numClasses: 3, l2Grid: [1e-2, 1, 1e-4, 1e-1], patience: Infinity });
    assert.deepEqual(selection.sweep.map((s) => s.l2), grid, 'the whole grid, strong to weak');
    const bestVal = Math.max(...selection.sweep.map((s) => s.valAccuracy));
    assert.equal(selection.valAccuracy, bestVal);
    assert.ok(grid.includes(selection.l2));
    const result = probeFeatures(train, val, test, { numClasses: 3, l2Grid: grid, patience: Infinity });
    assert.equal(result.l2, selection.l2);
    // With patience 1 the sweep stops at the first grid point that does worse than the best.
    const early = selectL2(train, val, { numClasses: 3, l2Grid: grid, patience: 1 });
    const firstWorse = early.sweep.findIndex((s, i) => i > 0 && s.valAccuracy <= Math.max(...early.sweep.slice(0, i).map((t) => t.valAccuracy)));
    assert.ok(firstWorse === -1 ? early.sweep.length === grid.length : early.sweep.length === firstWorse + 1);
    assert.ok(result.testAccuracy > 0.6, `test accuracy ${result.testAccuracy}`);
    assert.equal(result.model.dim, 40);
  });

  it('rawLinear fits raw features without a bias: the weights alone give the predictions', () => {
    const rng = new Rng(7);
    const train = blobs(rng, 40, 3, 6, 3);
    const val = blobs(rng, 40, 3, 6, 3);
    const fit = selectL2(train, val, { numClasses: 3, l2Grid: [1e-2, 1e-3], rawLinear: true });
    const m = fit.model;
    assert.deepEqual([...m.bias], [0, 0, 0], 'the bias stays at 0');
    assert.deepEqual([...m.mean], new Array(6).fill(0));
    assert.deepEqual([...m.invStd], new Array(6).fill(1));
    // argmax of x·W, computed here in float64, is what predict() says and is mostly right.
    const n = val.labels.length;
    const pred = predict(m, val.features, n);
    let correct = 0;
    for (let r = 0; r < n; r++) {
      const scores = [0, 1, 2].map((c) => { let s = 0; for (let j = 0; j < 6; j++) s += val.features[r * 6 + j] * m.weights[j * 3 + c]; return s; });
      const best = scores.indexOf(Math.max(...scores));
      assert.equal(pred[r], best, `row ${r}`);
      if (best === val.labels[r]) correct++;
    }
    assert.equal(fit.valAccuracy, correct / n);
    assert.ok(fit.valAccuracy > 0.8, `validation accuracy ${fit.valAccuracy}`);
  });

  it('probeLayers finds the informative layer and concatenates layers around it', () => {
    const rng = new Rng(6);
    const perClass = { train: 40, val: 30, test: 30 };
    const base = { train: blobs(rng, perClass.train, 3, 4, 3), val: blobs(rng, perClass.val, 3, 4, 3), test: blobs(rng, perClass.test, 3, 4, 3) };
    const noise = (n: number) => { const f = new Float32Array(n * 4); rng.fillNormal(f, 1); return f; };
    const layers = [0, 1, 2, 3].map((l) => l === 2
      ? { train: base.train.features, val: base.val.features, test: base.test.features }
      : { train: noise(120), val: noise(90), test: noise(90) });
    const { report, bestModel } = probeLayers(layers, { train: base.train.labels, val: base.val.labels, test: base.test.labels },
      { numClasses: 3, l2Grid: [1e-2, 1e-3], concatLayers: 3 });
    assert.equal(report.layers.length, 4);
    assert.equal(report.bestLayer, 2);
    assert.ok(report.best.testAccuracy > 0.8);
    for (const l of [0, 1, 3]) assert.ok(report.layers[l].valAccuracy < 0.6, `noise layer ${l}: ${report.layers[l].valAccuracy}`);
    assert.deepEqual(report.concat?.layers, [1, 2, 3]);
    assert.ok((report.concat?.testAccuracy ?? 0) > 0.7);
    // The best layer's probe comes back to classify with: it scores that layer's test accuracy.
    assert.equal(accuracy(bestModel, base.test.features, base.test.labels), report.best.testAccuracy);
  });

  it('concatColumns joins rows', () => {
    const out = concatColumns([Float32Array.from([1, 2, 3, 4]), Float32Array.from([9, 8])], 2);
    assert.deepEqual(Array.from(out), [1, 2, 9, 3, 4, 8]);
  });
});

describe('low-data probe', () => {
  const rng = new Rng(8);
  const train = blobs(rng, 50, 3, 6, 3);
  const test = blobs(rng, 40, 3, 6, 3);

  it('samples exactly N distinct rows of every class, reproducibly', () => {
    const a = sampleLabelsPerClass(train.labels, 3, 7, new Rng(42));
    const b = sampleLabelsPerClass(train.labels, 3, 7, new Rng(42));
    const c = sampleLabelsPerClass(train.labels, 3, 7, new Rng(43));
    assert.equal(a.length, 21);
    assert.equal(new Set(a).size, 21);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
    const counts = [0, 0, 0];
    for (const i of a) counts[train.labels[i]]++;
    assert.deepEqual(counts, [7, 7, 7]);
    const rows = selectRows(train, a);
    assert.equal(rows.features.length, 21 * 6);
    assert.deepEqual(Array.from(rows.features.subarray(6, 12)), Array.from(train.features.subarray(a[1] * 6, a[1] * 6 + 6)));
    assert.throws(() => sampleLabelsPerClass(train.labels, 3, 51, new Rng(1)), /class 0 has 50 training rows/);
  });

  it('reports S accuracies with mean ± std, deterministic for a seed', () => {
    const opts = { numClasses: 3, labelsPerClass: 4, subsets: 3, seed: 11, l2: 1e-2 };
    const r1 = lowDataProbe(train, test, opts);
    const r2 = lowDataProbe(train, test, opts);
    assert.equal(r1.accuracies.length, 3);
    assert.deepEqual(r1.accuracies, r2.accuracies);
    const mean = r1.accuracies.reduce((a, b) => a + b, 0) / 3;
    assert.ok(Math.abs(r1.mean - mean) < 1e-12);
    const std = Math.sqrt(r1.accuracies.reduce((a, b) => a + (b - mean) ** 2, 0) / 3);
    assert.ok(Math.abs(r1.std - std) < 1e-12);
    assert.ok(r1.mean > 0.7, `mean accuracy ${r1.mean}`);
    assert.deepEqual(r1.l2s, [1e-2, 1e-2, 1e-2]);
  });

  it('chooses L2 on a validation set when given a grid', () => {
    const val = blobs(rng, 20, 3, 6, 3);
    const r = lowDataProbe(train, test, { numClasses: 3, labelsPerClass: 5, subsets: 2, seed: 1, l2: [1, 1e-3], val });
    assert.equal(r.accuracies.length, 2);
    for (const l2 of r.l2s) assert.ok(l2 === 1 || l2 === 1e-3);
    assert.throws(() => lowDataProbe(train, test, { numClasses: 3, labelsPerClass: 5, l2: [1, 1e-3] }), /needs a validation set/);
  });

  it('pixelFeatures scales bytes to [0, 1]', () => {
    assert.deepEqual(Array.from(pixelFeatures(Uint8Array.from([0, 255, 51, 102]), 2, 2)), [0, 1, 0.2, 0.4].map((v) => Math.fround(v)));
  });
});
