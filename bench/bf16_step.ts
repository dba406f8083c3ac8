/**
 * bf16 against float32 on the reference config (784 pixels, vocab 16 + SOS, d 256, 8 heads,
 * 8 layers), in one process: the same training step (forward, backward, Adam, the weights' bf16
 * copy refreshed) or forward pass, alternating between a float32 model and a bf16 one, so that the
 * load of a shared machine weighs on both alike; the ratio is the median of the pairs' ratios.
 *   node --import tsx bench/bf16_step.ts --mode train|infer [--batch 8] [--steps 3]
 * Prints one JSON line: {"mode", "f32_median_s", "bf16_median_s", "speedup", ...}, or
 * {"skipped": reason} where the native kernels have no bf16 products.
 */
import { parseArgs } from 'node:util';
import { cpus } from 'node:os';
import type { Kernels } from '../src/kernels/kernels.js';
import { createNativeKernels, nativeBf16Available } from '../src/kernels/native.js';
import { makeConfig, presetShape } from '../src/model/config.js';
import { ImageGPT } from '../src/model/model.js';
import { initParameters, ParameterTensors } from '../src/model/parameters.js';
import { Adam } from '../src/train/adam.js';
import { Rng } from '../src/util/rng.js';

const { values: a } = parseArgs({ options: {
  mode: { type: 'string', default: 'train' }, batch: { type: 'string', default: '8' },
  steps: { type: 'string', default: '3' },
} });

if (!nativeBf16Available()) {
  console.log(JSON.stringify({ skipped: `no bf16 products on this machine (${cpus()[0]?.model ?? 'CPU'}): they need AVX512-BF16 or AMX and the addon built with oneDNN (libdnnl-dev)` }));
  process.exit(0);
}

const B = Number(a.batch), steps = Number(a.steps), T = 784;
const training = a.mode === 'train';
const cfg = makeConfig(presetShape('cpu-m'), 16, T, 0);
const rng = new Rng(1);
const inputs = Int32Array.from({ length: B * T }, (_, i) => (i % T === 0 ? 16 : rng.int(16)));
const targets = Int32Array.from({ length: B * T }, () => rng.int(16));

function setup(kernels: Kernels): () => number {
  const params = new ParameterTensors(cfg);
  initParameters(params, 0);
  const r = new Rng(2);
  params.lmHead.forEach((_, i) => { params.lmHead[i] = r.normal() * 0.02; });
  const model = new ImageGPT(kernels, cfg, params);
  const adam = new Adam(kernels, params.count);
  const gradSquares = kernels.alloc(1);
  return () => {
    const t0 = performance.now();
    if (training) {
      model.zeroGrad();
      model.forward({ B, T, inputs, targets, causal: true }, true);
      model.backward();
      kernels.sumOfSquares(gradSquares, model.grads.data); // as the trainer does: the norm, and the gate of Adam
      adam.update(params.data, model.grads.data, gradSquares, 1e-3);
      model.weightsChanged();
    } else {
      model.forward({ B, T, inputs, causal: true }, false);
    }
    return (performance.now() - t0) / 1000;
  };
}

const f32 = setup(createNativeKernels('f32'));
const bf16 = setup(createNativeKernels('bf16'));
f32(); bf16(); // warm-up: buffers, oneDNN primitives
const f32Times: number[] = [], bf16Times: number[] = [], ratios: number[] = [];
for (let s = 0; s < steps; s++) {
  const tf = f32(), tb = bf16();
  f32Times.push(tf);
  bf16Times.push(tb);
  ratios.push(tf / tb);
}
const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[xs.length >> 1];
console.log(JSON.stringify({
  mode: a.mode, batch: B, steps,
  f32_median_s: +median(f32Times).toFixed(4), bf16_median_s: +median(bf16Times).toFixed(4),
  f32_min_s: +Math.min(...f32Times).toFixed(4), bf16_min_s: +Math.min(...bf16Times).toFixed(4),
  speedup: +median(ratios).toFixed(3),
}));
