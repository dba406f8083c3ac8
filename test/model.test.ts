import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPortableKernels } from '../src/kernels/portable.js';
import type { Kernels } from '../src/kernels/kernels.js';
import { makeConfig, type ModelConfig } from '../src/model/config.js';
import { ImageGPT, type Batch } from '../src/model/model.js';
import { initParameters, ParameterTensors } from '../src/model/parameters.js';
import { Rng } from '../src/util/rng.js';
import { referenceForward, type ReferenceInputs } from './reference-model.js';
import { availableBackends } from './backends.js';

const cfg: ModelConfig = makeConfig({ nEmbd: 8, nLayer: 2, nHead: 2 }, 4, 6, 3);

/** Random parameters everywhere (the paper's init zeroes the heads, which would hide bugs). */
function randomParameters(config: ModelConfig, seed: number): ParameterTensors {
  const p = new ParameterTensors(config);
  initParameters(p, seed);
  const rng = new Rng(seed + 1);
  for (let i = 0; i < p.data.length; i++) p.data[i] += rng.normal() * 0.3;
  return p;
}

function randomBatch(rng: Rng, B: number, T: number, objective: 'ar' | 'bert', withLabels: boolean): Batch {
  const k = cfg.vocabSize - 1;
  const pixels = Int32Array.from({ length: B * T }, () => rng.int(k));
  const inputs = new Int32Array(B * T);
  const targets = new Int32Array(B * T).fill(-1);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const i = b * T + t;
      if (objective === 'ar') {
        inputs[i] = t === 0 ? k : pixels[i - 1];
        targets[i] = pixels[i];
      } else {
        const masked = rng.next() < 0.4 || t === b; // at least one masked position per image
        inputs[i] = masked ? -1 : pixels[i];
        if (masked) targets[i] = pixels[i];
      }
    }
  }
  const labels = withLabels ? Int32Array.from({ length: B }, () => rng.int(cfg.numLabels)) : undefined;
  return { B, T, inputs, targets, labels, causal: objective === 'ar', genWeight: 0.7 };
}

const toReference = (b: Batch): ReferenceInputs => ({ ...b });

for (const { name, kernels } of availableBackends()) {
  test(`${name}: logits and probe features match the float64 reference`, () => {
    const params = randomParameters(cfg, 1);
    const batch = randomBatch(new Rng(2), 3, cfg.nPositions, 'ar', false);
    const model = new ImageGPT(kernels, cfg, params);
    const features = new Float32Array((cfg.nLayer + 1) * 3 * cfg.nEmbd);
    model.forward(batch, false, features);
    const ref = referenceForward(cfg, Float64Array.from(params.data), toReference(batch));
    assertClose(model.activations.logits, ref.logits, 1e-5, 'logits');
    assertClose(features, ref.features, 1e-5, 'features');
  });

  for (const objective of ['ar', 'bert'] as const) {
    test(`${name}: ${objective} gradients of every tensor match float64 finite differences`, () => {
      gradientCheck(kernels, objective);
    });
  }

  test(`${name}: AR is causal (a future pixel never changes an earlier logit)`, () => {
    const params = randomParameters(cfg, 3);
    const model = new ImageGPT(kernels, cfg, params);
    const T = cfg.nPositions;
    const batch = randomBatch(new Rng(4), 1, T, 'ar', false);
    model.forward(batch, false);
    const before = model.activations.logits.slice();
    const cut = 3;
    batch.inputs[cut] = (batch.inputs[cut] + 1) % (cfg.vocabSize - 1);
    model.forward(batch, false);
    const after = model.activations.logits;
    const k = cfg.vocabSize - 1;
    for (let i = 0; i < cut * k; i++) assert.equal(after[i], before[i], `logit ${i} changed`);
    let changed = false;
    for (let i = cut * k; i < T * k; i++) if (after[i] !== before[i]) changed = true;
    assert.ok(changed, 'a later logit should depend on the changed pixel');
  });
}

test('training and inference forward agree, and backward needs a training forward', () => {
  const kernels = createPortableKernels();
  const params = randomParameters(cfg, 5);
  const model = new ImageGPT(kernels, cfg, params);
  const batch = randomBatch(new Rng(6), 2, cfg.nPositions, 'bert', true);
  const a = model.forwardOnHost(batch, true);
  const logits = model.activations.logits.slice();
  const b = model.forwardOnHost(batch, false);
  assertClose(model.activations.logits, Float64Array.from(logits), 1e-6, 'logits');
  assert.ok(Math.abs(a.genLoss - b.genLoss) < 1e-6 && Math.abs(a.clfLoss - b.clfLoss) < 1e-6);
  assert.throws(() => model.backward(), /training forward/);
});

test('recomputing block activations in backward gives the same gradients with less memory', () => {
  for (const { kernels } of availableBackends()) {
    const params = randomParameters(cfg, 11);
    const batch = randomBatch(new Rng(12), 2, cfg.nPositions, 'ar', true);
    const grads = (recompute: boolean): Float32Array => {
      const model = new ImageGPT(kernels, cfg, params);
      model.recompute = recompute;
      model.zeroGrad();
      model.forward(batch, true);
      model.backward();
      return model.grads.data;
    };
    assert.deepEqual(grads(true), grads(false));
  }
  // The memory a training forward really allocates (activations and gradient scratch), by mode,
  // against the estimate the memory check uses: recomputation keeps one block's activations, not L.
  const deep = makeConfig({ nEmbd: 16, nLayer: 6, nHead: 2 }, 4, 6, 3);
  const batch = randomBatch(new Rng(13), 4, deep.nPositions, 'ar', true);
  const allocated = (recompute: boolean): number => {
    const model = new ImageGPT(createPortableKernels(), deep, randomParameters(deep, 14));
    model.recompute = recompute;
    model.forward(batch, true);
    return typedArrayBytes(model.activations, Reflect.get(model, 'scratch'));
  };
  const train = allocated(false), recompute = allocated(true);
  assert.equal(train, ImageGPT.activationBytes(deep, 4, deep.nPositions, 'train'), 'the estimate for training');
  assert.equal(recompute, ImageGPT.activationBytes(deep, 4, deep.nPositions, 'recompute'), 'the estimate for recomputation');
  assert.ok(recompute < 0.5 * train, `recomputation allocates ${recompute} bytes, training ${train}`);
});

/** Bytes of the distinct buffers behind the typed arrays reachable from `roots` (through arrays and plain objects). */
function typedArrayBytes(...roots: unknown[]): number {
  const buffers = new Set<ArrayBufferLike>();
  const visit = (v: unknown): void => {
    if (ArrayBuffer.isView(v)) buffers.add(v.buffer);
    else if (Array.isArray(v)) v.forEach(visit);
    else if (v !== null && typeof v === 'object') Object.values(v).forEach(visit);
  };
  roots.forEach(visit);
  return [...buffers].reduce((sum, b) => sum + b.byteLength, 0);
}

function gradientCheck(kernels: Kernels, objective: 'ar' | 'bert'): void {
  const params = randomParameters(cfg, 7);
  const batch = randomBatch(new Rng(8), 2, cfg.nPositions, objective, true);
  const model = new ImageGPT(kernels, cfg, params);
  model.zeroGrad();
  const r = model.forwardOnHost(batch, true);
  model.backward();
  const ref = referenceForward(cfg, Float64Array.from(params.data), toReference(batch));
  const loss = 0.7 * r.genLoss + r.clfLoss;
  assert.ok(Math.abs(loss - ref.loss) < 1e-5 * Math.abs(ref.loss), `loss ${loss} vs reference ${ref.loss}`);

  const flat = Float64Array.from(params.data);
  const rng = new Rng(9);
  const h = 1e-5;
  for (const t of params.layout) {
    // Up to 6 coordinates per tensor: enough to catch a wrong formula, cheap in float64.
    let worst = 0;
    for (let j = 0; j < Math.min(6, t.size); j++) {
      const i = t.offset + rng.int(t.size);
      const saved = flat[i];
      flat[i] = saved + h;
      const up = referenceForward(cfg, flat, toReference(batch)).loss;
      flat[i] = saved - h;
      const down = referenceForward(cfg, flat, toReference(batch)).loss;
      flat[i] = saved;
      const numeric = (up - down) / (2 * h);
      const analytic = model.grads.data[i];
      worst = Math.max(worst, Math.abs(numeric - analytic) / Math.max(1e-3, Math.abs(numeric)));
    }
    assert.ok(worst < 2e-3, `${objective}: gradient of ${t.name} off by ${worst.toExponential(2)} (relative)`);
  }
}

/** max |actual − expected| ≤ tol · max |expected|. */
function assertClose(actual: Float32Array, expected: Float64Array, tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let maxDiff = 0, maxRef = 0;
  for (let i = 0; i < actual.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(actual[i] - expected[i]));
    maxRef = Math.max(maxRef, Math.abs(expected[i]));
  }
  assert.ok(maxDiff <= tol * Math.max(maxRef, 1e-30), `${what}: max |diff| ${maxDiff} vs max |ref| ${maxRef} (tolerance ${tol} relative)`);
}
