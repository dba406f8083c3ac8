/**
 * Our side of the peer comparison: the reference config (784 pixels, vocab 16 + SOS, d 256,
 * 8 heads, 8 layers) timed in its own process, so that peak memory is the step's alone.
 * Mirrors bench/torch_igpt.py (the PyTorch peer):
 *   node --import tsx bench/igpt_step.ts --mode train|infer|sample [--batch 8] [--steps 3] [--backend native|portable] [--recompute]
 *                                        [--precision f32|f16] [--decode-group n]
 *                                        [--matmul f32|bf16] [--preset cpu-m] (another size: to plan a run's steps for a time budget)
 * Prints one JSON line: {"mode", "median_s", "min_s", "steps", "peak_rss_mib", "backend", ...}.
 * With --mode sample, every sampling run is preceded by a forward pass over the same batch, timed
 * too (forward_median_s): the ratio of the two comes from interleaved runs, so that the load of a
 * shared machine, which drifts over minutes, weighs on both alike.
 */
import { parseArgs } from 'node:util';
import { loadKernels } from '../src/kernels/select.js';
import { makeConfig, presetShape } from '../src/model/config.js';
import { ImageGPT } from '../src/model/model.js';
import { initParameters, ParameterTensors } from '../src/model/parameters.js';
import { sampleAutoregressive } from '../src/sample/sampler.js';
import { Adam } from '../src/train/adam.js';
import { Rng } from '../src/util/rng.js';

const { values: a } = parseArgs({ options: {
  mode: { type: 'string', default: 'train' }, batch: { type: 'string', default: '8' },
  steps: { type: 'string', default: '3' }, backend: { type: 'string', default: 'auto' },
  pixels: { type: 'string', default: '784' }, recompute: { type: 'boolean', default: false },
  precision: { type: 'string', default: 'f32' }, 'decode-group': { type: 'string' },
  matmul: { type: 'string', default: 'f32' }, preset: { type: 'string', default: 'cpu-m' },
} });
// --precision is sampling's (f16 caches and weights); --matmul the linear layers' products.
const kernels = loadKernels(a.backend as 'auto' | 'native' | 'portable', a.matmul as 'f32' | 'bf16');
if (a.matmul === 'bf16' && !kernels.bf16) throw new Error('--matmul bf16: this machine has no bf16 products');
const B = Number(a.batch), steps = Number(a.steps), T = Number(a.pixels);
const cfg = makeConfig(presetShape(a.preset), 16, T, 0);
const params = new ParameterTensors(cfg);
initParameters(params, 0);
const rng = new Rng(1);
params.lmHead.forEach((_, i) => { params.lmHead[i] = rng.normal() * 0.02; });
const model = new ImageGPT(kernels, cfg, params);
model.recompute = a.recompute;
const inputs = Int32Array.from({ length: B * T }, (_, i) => (i % T === 0 ? 16 : rng.int(16)));
const targets = Int32Array.from({ length: B * T }, () => rng.int(16));
const adam = new Adam(kernels, params.count);
const gradSquares = kernels.alloc(1);
const times: number[] = [];
const forwardTimes: number[] = [];
const runs = a.mode === 'sample' ? steps : steps + 1; // one warm-up step, as the peer does
for (let s = 0; s < runs; s++) {
  if (a.mode === 'sample') {
    if (s === 0) model.forward({ B, T, inputs, causal: true }, false); // warm-up
    const f0 = performance.now();
    model.forward({ B, T, inputs, causal: true }, false);
    forwardTimes.push((performance.now() - f0) / 1000);
  }
  const t0 = performance.now();
  if (a.mode === 'train') {
    model.zeroGrad();
    model.forward({ B, T, inputs, targets, causal: true }, true);
    model.backward();
    kernels.sumOfSquares(gradSquares, model.grads.data); // as the trainer does: the norm, and the gate of Adam
    adam.update(params.data, model.grads.data, gradSquares, 1e-3);
    model.weightsChanged();
  } else if (a.mode === 'infer') {
    model.forward({ B, T, inputs, causal: true }, false);
  } else {
    // --decode-group overrides the group the backend picks from its cache size (to measure what grouping buys).
    const k = a['decode-group'] ? { ...kernels, decodeGroup: () => Number(a['decode-group']) } : kernels;
    await sampleAutoregressive(k, params, { count: B, knownPixels: 0 },
                         { temperature: 1, topK: 0, topP: 1, seed: s, precision: a.precision === 'f16' ? 'f16' : 'f32' });
  }
  const dt = (performance.now() - t0) / 1000;
  if (a.mode === 'sample' || s > 0) times.push(dt);
}
times.sort((x, y) => x - y);
forwardTimes.sort((x, y) => x - y);
console.log(JSON.stringify({
  ...(forwardTimes.length > 0 ? { forward_median_s: +forwardTimes[forwardTimes.length >> 1].toFixed(4) } : {}),
  peer: 'igpt', backend: kernels.name, matmul: model.precision, mode: a.mode, recompute: a.recompute, precision: a.precision, batch: B, threads: kernels.threads,
  median_s: +times[times.length >> 1].toFixed(4), min_s: +times[0].toFixed(4), steps: times.length,
  peak_rss_mib: Math.round(process.resourceUsage().maxRSS / 1024), params: params.count,
}));
