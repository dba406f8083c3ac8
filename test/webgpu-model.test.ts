/**
 * The model on the webgpu backend against the CPU (native where built, else portable): the same
 * ImageGPT code, run over GPU tensors. A tiny model's first 20 training steps (generative and
 * class losses, Adam) give the same losses and weights within float32 tolerance, and cached
 * decoding gives the full forward's logits. Small shapes: SwiftShader is slow.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TokenDataset } from '../src/data/tokens.js';
import type { DeviceArray, Kernels } from '../src/kernels/kernels.js';
import { makeConfig } from '../src/model/config.js';
import { KvDecoder } from '../src/model/decode.js';
import { ImageGPT, type Batch } from '../src/model/model.js';
import { initParameters, ParameterTensors, parametersOn } from '../src/model/parameters.js';
import { sampleAutoregressive, sampleBert } from '../src/sample/sampler.js';
import { headClassifier } from '../src/eval/classify.js';
import { tokenFeatures } from '../src/eval/features.js';
import { finetune, type FinetuneOptions } from '../src/eval/finetune.js';
import { Adam } from '../src/train/adam.js';
import { loadLatestCheckpoint } from '../src/train/checkpoint.js';
import { pretrain, type RunState } from '../src/train/pretrain.js';
import type { PretrainOptions, StepReport } from '../src/train/trainer.js';
import { Rng } from '../src/util/rng.js';
import { availableBackends } from './backends.js';
import { acquireTestWebGpu } from './webgpu-backend.js';
import { relativeError } from './relative-error.js';

process.env.IGPT_QUIET = '1';
const acquired = await acquireTestWebGpu();
const gpu = 'kernels' in acquired ? acquired.kernels : null;
const skip = 'skip' in acquired ? acquired.skip : false;
after(() => gpu?.gpu.dispose());
const cpu = availableBackends().at(-1)!; // native where built

// 16 colors + SOS, 4×4 images, 3 classes; d 32, 4 heads of 8, 2 layers.
const cfg = makeConfig({ nEmbd: 32, nLayer: 2, nHead: 4 }, 16, 16, 3);
const V = 16, T = 16, B = 4;

function parameters(seed: number): ParameterTensors {
  const p = new ParameterTensors(cfg);
  initParameters(p, seed);
  // The paper's init zeroes the heads, which would hide a wrong head product: perturb everything.
  const rng = new Rng(seed + 1);
  for (let i = 0; i < p.data.length; i++) p.data[i] += rng.normal() * 0.05;
  return p;
}

/** An AR batch of random images with labels (the fine-tuning loss: class head and generative). */
function batchOf(rng: Rng): Batch {
  const pixels = Int32Array.from({ length: B * T }, () => rng.int(V));
  const inputs = Int32Array.from({ length: B * T }, (_, i) => (i % T === 0 ? V : pixels[i - 1]));
  const labels = Int32Array.from({ length: B }, () => rng.int(cfg.numLabels));
  return { B, T, inputs, targets: pixels, labels, causal: true, genWeight: 0.5 };
}

/**
 * Every tensor within float32 rounding, but for the attention's key bias: its gradient is zero in
 * exact arithmetic (softmax does not change when every key's score moves alike), so Adam turns
 * each backend's rounding noise into steps of about ±lr; it is held to `keyBiasBound`, the sum of
 * the learning rates over the steps that differed. `tolerance`: relative, per tensor.
 */
function assertWeightsClose(got: Float32Array, ref: Float32Array, keyBiasBound: number, tolerance = 1e-5): void {
  const d = cfg.nEmbd;
  const gotP = new ParameterTensors(cfg, got), refP = new ParameterTensors(cfg, ref);
  let worst = 0;
  for (const { name } of refP.layout) {
    const a = gotP.tensor(name)!, b = refP.tensor(name)!;
    if (name.endsWith('attn.c_attn.bias')) {
      for (const part of [0, 2]) {
        const err = relativeError(a.subarray(part * d, (part + 1) * d), b.subarray(part * d, (part + 1) * d));
        assert.ok(err < tolerance, `${name} (${part === 0 ? 'query' : 'value'} part) differs by ${err.toExponential(2)}`);
      }
      for (let i = d; i < 2 * d; i++) assert.ok(Math.abs(a[i] - b[i]) <= 2 * keyBiasBound, `${name} key part [${i - d}]: ${a[i]} vs ${b[i]}`);
      continue;
    }
    const err = relativeError(a, b);
    worst = Math.max(worst, err);
    assert.ok(err < tolerance, `${name} differs by ${err.toExponential(2)} (relative to its largest)`);
  }
  console.log(`# webgpu vs ${cpu.name}: weights within ${worst.toExponential(1)} relative (key biases aside)`);
}

interface TrainingTrace { genLosses: number[]; clfLosses: number[]; params: Float32Array }

/** Adam steps of the fine-tuning loss on one backend, from the same weights, on one batch (which it learns). */
async function train<T extends DeviceArray>(kernels: Kernels<T>, steps: number): Promise<TrainingTrace> {
  const model = new ImageGPT(kernels, cfg, parametersOn(kernels, parameters(3)));
  const adam = new Adam(kernels, model.params.count);
  const gradSquares = kernels.alloc(1);
  const batch = batchOf(new Rng(5));
  const trace: TrainingTrace = { genLosses: [], clfLosses: [], params: new Float32Array(0) };
  for (let s = 0; s < steps; s++) {
    model.zeroGrad();
    model.forward(batch, true);
    const r = await model.readResult();
    trace.genLosses.push(r.genLoss);
    trace.clfLosses.push(r.clfLoss);
    model.backward();
    kernels.sumOfSquares(gradSquares, model.grads.data);
    adam.update(model.params.data, model.grads.data, gradSquares, 3e-3);
  }
  trace.params = (await kernels.read(model.params.data)).slice();
  return trace;
}

describe('the model on webgpu', { skip }, () => {
  test(`20 training steps match the ${cpu.name} backend's losses and weights`, async () => {
    const steps = 20;
    const ref = await train(cpu.kernels, steps);
    const got = await train(gpu!, steps);
    for (let s = 0; s < steps; s++) {
      for (const [what, a, b] of [['generative', got.genLosses[s], ref.genLosses[s]], ['class', got.clfLosses[s], ref.clfLosses[s]]] as const) {
        assert.ok(Math.abs(a - b) <= 1e-5 * Math.abs(b), `step ${s + 1}: ${what} loss ${a} on webgpu, ${b} on ${cpu.name}`);
      }
    }
    // The losses moved: the steps learned the batch.
    assert.ok(ref.genLosses[steps - 1] < ref.genLosses[0] - 0.05, `loss ${ref.genLosses[0]} → ${ref.genLosses[steps - 1]}`);
    assertWeightsClose(got.params, ref.params, 3e-3 * steps);
  });

  test('cached decoding gives the full forward pass\'s logits', async () => {
    const kernels = gpu!;
    const params = parametersOn(kernels, parameters(7));
    const rng = new Rng(9);
    const decodeB = 2;
    const tokens = Int32Array.from({ length: decodeB * T }, (_, i) => (i % T === 0 ? V : rng.int(V)));
    const model = new ImageGPT(kernels, cfg, params);
    model.forward({ B: decodeB, T, inputs: tokens, causal: true }, false);
    const full = (await kernels.read(model.activations.logits)).slice();
    const decoder = new KvDecoder(kernels, params, decodeB, T);
    const step = new Int32Array(decodeB);
    for (let t = 0; t < T; t++) {
      for (let b = 0; b < decodeB; b++) step[b] = tokens[b * T + t];
      const logits = await kernels.read(decoder.feed(step));
      for (let b = 0; b < decodeB; b++) {
        const ref = full.subarray((b * T + t) * V, (b * T + t + 1) * V);
        const err = relativeError(logits.subarray(b * V, (b + 1) * V), ref);
        assert.ok(err < 1e-5, `position ${t}, image ${b}: cached logits differ by ${err.toExponential(2)}`);
      }
    }
  });

  test('prefill fills the caches as feeding one position at a time does (the full forward\'s logits after it)', async () => {
    const kernels = gpu!;
    const params = parametersOn(kernels, parameters(8));
    const rng = new Rng(10);
    const B = 2, P = 7;
    const tokens = Int32Array.from({ length: B * T }, (_, i) => (i % T === 0 ? V : rng.int(V)));
    const model = new ImageGPT(kernels, cfg, params);
    model.forward({ B, T, inputs: tokens, causal: true }, false);
    const full = (await kernels.read(model.activations.logits)).slice();
    const column = (t: number): Int32Array => Int32Array.from({ length: B }, (_, b) => tokens[b * T + t]);
    const positionMajor = new Int32Array(P * B);
    for (let t = 0; t < P; t++) positionMajor.set(column(t), t * B);
    const decoder = new KvDecoder(kernels, params, B, T);
    for (let t = P - 1; t < T; t++) {
      const logits = await kernels.read(t === P - 1 ? decoder.prefill(positionMajor, P) : decoder.feed(column(t)));
      for (let b = 0; b < B; b++) {
        const err = relativeError(logits.subarray(b * V, (b + 1) * V), full.subarray((b * T + t) * V, (b * T + t + 1) * V));
        assert.ok(err < 1e-5, `position ${t}, image ${b}: logits after the prefill differ by ${err.toExponential(2)}`);
      }
    }
  });

  test(`sampling on webgpu draws the same ids as on ${cpu.name} for a seed (greedy, temperature 1, top-k; AR and BERT)`, async () => {
    const host = parameters(11);
    const onGpu = parametersOn(gpu!, host);
    const count = 3, known = 5;
    const rng = new Rng(4);
    const prefix = Int32Array.from({ length: count * T }, () => rng.int(V));
    for (const o of [
      { temperature: 0, topK: 0, topP: 1, seed: 1 },
      { temperature: 1, topK: 0, topP: 1, seed: 2 },
      { temperature: 1.5, topK: 5, topP: 0.9, seed: 3 },
    ]) {
      for (const knownPixels of [0, known]) {
        const req = { count, prefix, knownPixels };
        const ref = await sampleAutoregressive(cpu.kernels, host, req, o);
        assert.deepEqual(await sampleAutoregressive(gpu!, onGpu, req, o), ref, `AR ${JSON.stringify(o)}, ${knownPixels} known pixels`);
      }
    }
    // The draws depend on the logits: other weights, other ids (a sampler ignoring them fails here).
    const o1 = { temperature: 1, topK: 0, topP: 1, seed: 2 };
    assert.notDeepEqual(await sampleAutoregressive(gpu!, parametersOn(gpu!, parameters(12)), { count, knownPixels: 0 }, o1),
                        await sampleAutoregressive(gpu!, onGpu, { count, knownPixels: 0 }, o1));
    const knownMask = Uint8Array.from({ length: count * T }, (_, i) => (i % T < known ? 1 : 0));
    const bert = { temperature: 1, topK: 0, topP: 1, seed: 5, passes: 3, order: 'confident' as const };
    assert.deepEqual(await sampleBert(gpu!, onGpu, prefix, knownMask, count, bert), await sampleBert(cpu.kernels, host, prefix, knownMask, count, bert), 'BERT');
  });

  test(`features and the class head on webgpu (igpt features, classify) match ${cpu.name}`, async () => {
    const host = parameters(13);
    const onCpu = new ImageGPT(cpu.kernels, cfg, host);
    const onGpu = new ImageGPT(gpu!, cfg, parametersOn(gpu!, host));
    const rng = new Rng(14);
    const count = 5;
    const tokens = Uint8Array.from({ length: count * T }, () => rng.int(V));
    const layers = [0, 1, cfg.nLayer];
    for (const pooling of ['mean', '2x2'] as const) {
      const o = { batch: 2, objective: 'ar' as const, pooling };
      const [want, got] = [await tokenFeatures(onCpu, tokens, count, layers, o), await tokenFeatures(onGpu, tokens, count, layers, o)];
      assert.ok(relativeError(got, want) < 1e-5, `${pooling} features differ by ${relativeError(got, want).toExponential(2)}`);
    }
    const lnF = await tokenFeatures(onCpu, tokens, count, [cfg.nLayer], { batch: 2, objective: 'ar' });
    const [headCpu, headGpu] = [await headClassifier(onCpu, null, 'cpu'), await headClassifier(onGpu, null, 'gpu')];
    assert.deepEqual(headGpu.logits(lnF, count), headCpu.logits(lnF, count)); // the same weights, scored on the host
    assert.notDeepEqual(headGpu.logits(lnF, count), new Float32Array(count * cfg.numLabels));
  });

  test(`fine-tuning on webgpu (probe head, joint loss, validation, the best step kept) matches ${cpu.name}`, async () => {
    const data = { ...stripes(), test: stripes().val };
    const o: FinetuneOptions = {
      objective: 'ar', lr: 3e-4, batch: 4, steps: 6, warmup: 2, cosine: false, genWeight: 0.5, headLrScale: 3, evalEvery: 2,
      patience: 5, evalImages: 0, augment: false, seed: 1, maskProb: 0.15, evalMasks: 1, valMasks: 1, probeHeadImages: 8,
    };
    const run = async <T extends DeviceArray>(kernels: Kernels<T>) => {
      const model = new ImageGPT(kernels, cfg, parametersOn(kernels, parameters(13)));
      const steps: StepReport[] = [];
      const result = await finetune(model, data, o, { onStep: (r) => steps.push(r) });
      return { steps, result, params: (await kernels.read(model.params.data)).slice() };
    };
    const ref = await run(cpu.kernels);
    const got = await run(gpu!);
    assert.equal(got.steps.length, o.steps);
    got.steps.forEach((r, s) => {
      for (const [what, a, b] of [['generative', r.loss, ref.steps[s].loss], ['class', r.clfLoss!, ref.steps[s].clfLoss!]] as const) {
        assert.ok(Math.abs(a - b) <= 1e-5 * Math.abs(b), `step ${s + 1}: ${what} loss ${a} on webgpu, ${b} on ${cpu.name}`);
      }
    });
    // Validation at steps 0, 2, 4 and 6 on both; the weights returned are the best step's (the restore reads and uploads them).
    assert.deepEqual(got.result.history.map((h) => h.step), [0, 2, 4, 6]);
    assert.deepEqual(got.result.history, ref.result.history);
    assert.equal(got.result.bestStep, ref.result.bestStep);
    assert.equal(got.result.probeHead!.l2, ref.result.probeHead!.l2);
    assert.equal(got.result.testAccuracy, ref.result.testAccuracy);
    assertWeightsClose(got.params, ref.params, 3e-3 * o.steps);
  });

  test(`a run pretrained on webgpu resumes on ${cpu.name} as if it had run there throughout`, async () => {
    const data = stripes();
    const shape = { nEmbd: 32, nLayer: 2, nHead: 4 };
    const o: PretrainOptions = {
      objective: 'ar', batch: 4, lr: 3e-3, steps: 6, warmup: 2, cosine: true, seed: 1, maskProb: 0.15,
      evalEvery: 0, evalImages: 4, checkpointEvery: 3,
    };
    const whole = await pretrain(cpu.kernels, data, 'stripes', mkdtempSync(join(tmpdir(), 'igpt-cpu-')), shape, o, false);
    const dir = mkdtempSync(join(tmpdir(), 'igpt-gpu-'));
    await pretrain(gpu!, data, 'stripes', dir, shape, { ...o, steps: 3 }, false);
    assert.equal(loadLatestCheckpoint<RunState>(dir)!.state.step, 3);
    const resumed = await pretrain(cpu.kernels, data, 'stripes', dir, shape, o, true);
    const losses = (s: RunState): number[] => s.history.filter((h) => h.loss !== undefined).map((h) => h.loss!);
    const [a, b] = [losses(resumed.state), losses(whole.state)];
    assert.equal(a.length, 6);
    a.forEach((loss, i) => assert.ok(Math.abs(loss - b[i]) <= 1e-5 * b[i], `step ${i + 1}: loss ${loss} resumed, ${b[i]} throughout`));
    // From the paper's init the heads are zero, so the first steps' gradients in the body are tiny
    // and Adam, which normalizes them, carries their rounding further: 1e-4 rather than 1e-5.
    assertWeightsClose(resumed.model.params.data, whole.model.params.data, 3 * o.lr, 1e-4);
  });
});

/** 12 training and 4 validation images of 4×4 diagonal stripes, 16 gray levels (a learnable pattern). */
function stripes(): TokenDataset {
  const split = (count: number, first: number) => ({
    count,
    tokens: Uint8Array.from({ length: count * T }, (_, i) => ((i % T) % 4 + Math.floor((i % T) / 4) + 3 * Math.floor(i / T) + first) % V),
    labels: Int32Array.from({ length: count }, (_, i) => i % 3),
  });
  return {
    meta: { source: 'test', side: 4, pixels: T, channels: 1, numClasses: 3, classNames: ['a', 'b', 'c'], splitSeed: 1 },
    palette: { k: V, channels: 1, centers: Float32Array.from({ length: V }, (_, i) => -1 + (2 * i) / (V - 1)) },
    train: split(12, 0), val: split(4, 5), test: split(0, 0),
  };
}
