/**
 * WebGPU benchmark on whatever adapter Node finds: the system's GPU, else SwiftShader (Vulkan on the
 * CPU, from Debian's chromium), where the figures say nothing about GPU speed and each row says so.
 *  - GEMM GFLOP/s of the tiled WGSL GEMM at 256³ and 1024³ in the model's three layouts (NN, NT,
 *    TN) and, on a GPU, 4096³; every product first checked against the portable kernels (max
 *    relative error). WebGPU does not tell the GPU's float32 peak: give it in TFLOP/s as
 *    IGPT_GPU_PEAK_TFLOPS (H100/H200 SXM: 67) and the rows report the utilization.
 *  - One training step on webgpu against the CPU kernels (native where built), both losses at the
 *    last step: the reference config (d 256, 8 layers, 784 pixels, batch 8) on a GPU, a small one
 *    (d 32, 2 layers, 64 pixels, batch 2) on SwiftShader. On a GPU also against the PyTorch peer
 *    on the same GPU (bench/torch_igpt.py --device cuda), where PyTorch has CUDA.
 *  - iGPT-S (d 512, 24 layers, 1024 positions, 513 tokens; the small config on SwiftShader): a
 *    training step, and sampling through the KV cache: images per second, and the time to sample
 *    a batch against one forward pass over it (the target: at most 3×); the prefill of a
 *    completion's given half. Dispatches and submits per pixel: the host's share, on any adapter.
 *
 *   node --import tsx bench/webgpu.ts [--quick]        IGPT_WEBGPU_ADAPTER=default|swiftshader|auto
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { DeviceArray, Kernels } from '../src/kernels/kernels.js';
import { createPortableKernels } from '../src/kernels/portable.js';
import { loadKernels } from '../src/kernels/select.js';
import { createWebGpuBackend } from '../src/kernels/webgpu/backend.js';
import { makeConfig, type ModelConfig } from '../src/model/config.js';
import { KvDecoder } from '../src/model/decode.js';
import { ImageGPT } from '../src/model/model.js';
import { initParameters, ParameterTensors, parametersOn } from '../src/model/parameters.js';
import { Trainer } from '../src/train/trainer.js';
import { python, randomTokenDataset, repoRoot, runJson, timingOptions } from './util.js';
import { defaultSampling, sampleAutoregressive } from '../src/sample/sampler.js';
import { WebGpuKernels } from '../src/kernels/webgpu/kernels.js';
import { acquireNodeDevice, type NodeAdapterChoice } from '../src/kernels/webgpu/node-gpu.js';
import { GpuRuntime, type GpuTensor } from '../src/kernels/webgpu/runtime.js';
import { Rng } from '../src/util/rng.js';
import type { BenchResult } from './types.js';

interface Shape { label: string; transA: boolean; transB: boolean; size: number }

const SHAPES: Shape[] = [
  { label: 'NN 256³', transA: false, transB: false, size: 256 },
  { label: 'NT 256³', transA: false, transB: true, size: 256 },
  { label: 'TN 256³', transA: true, transB: false, size: 256 },
  { label: 'NN 1024³', transA: false, transB: false, size: 1024 },
  { label: 'NT 1024³', transA: false, transB: true, size: 1024 },
  { label: 'TN 1024³', transA: true, transB: false, size: 1024 },
  { label: 'NN 4096³', transA: false, transB: false, size: 4096 },
];

/** The GPU's float32 peak in GFLOP/s, when the user gives it (WebGPU cannot tell). */
const PEAK_GFLOPS = Number(process.env.IGPT_GPU_PEAK_TFLOPS ?? NaN) * 1000;
const SOFTWARE_NOTE = 'SwiftShader (CPU): correctness only, not GPU speed; ';

export async function run(opts: { quick: boolean }): Promise<BenchResult[]> {
  const choice = (process.env.IGPT_WEBGPU_ADAPTER ?? 'auto') as NodeAdapterChoice | 'auto';
  const ctx = await acquireNodeDevice(choice, { timeoutMs: 20_000 });
  const k = new WebGpuKernels(new GpuRuntime(ctx));
  const rt = k.runtime;
  const software = ctx.adapter.software;
  // SwiftShader runs a 1024³ product in seconds to tens of seconds: time it once, and only NN.
  const reps = (s: Shape): number => (software ? (s.size > 256 ? 1 : 2) : opts.quick ? 3 : 10);
  const rows: BenchResult[] = [];
  const rng = new Rng(4);
  const portable = createPortableKernels();
  try {
    for (const s of SHAPES) {
      if (software && s.size > 256 && s.label !== 'NN 1024³') continue;
      if (s.size > 1024 && (software || opts.quick)) continue;
      const n = s.size;
      const a = new Float32Array(n * n), b = new Float32Array(n * n);
      rng.fillNormal(a, 1);
      rng.fillNormal(b, 1);
      const A = rt.upload(a), B = rt.upload(b), C = rt.tensor(n * n);
      const product = (): void => k.sgemm(s.transA, s.transB, n, n, n, 1, A, 0, n, B, 0, n, 0, C, 0, n);
      product();
      const got = await rt.readFloats(C);
      const ref = new Float32Array(n * n);
      portable.sgemm(s.transA, s.transB, n, n, n, 1, a, n, b, n, 0, ref, n);
      let maxDiff = 0, maxRef = 0;
      for (let i = 0; i < ref.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(got[i] - ref[i]));
        maxRef = Math.max(maxRef, Math.abs(ref[i]));
      }
      // Timed: `reps` products recorded back to back, then one wait for all of them.
      const t0 = performance.now();
      for (let i = 0; i < reps(s); i++) product();
      await rt.sync();
      const seconds = (performance.now() - t0) / 1000 / reps(s);
      const gflops = (2 * n ** 3) / seconds / 1e9;
      const peak = !software && Number.isFinite(PEAK_GFLOPS) ? { peer: 'the GPU\'s float32 peak (IGPT_GPU_PEAK_TFLOPS)', peerValue: PEAK_GFLOPS, ratio: gflops / PEAK_GFLOPS } : {};
      rows.push({
        name: `webgpu sgemm ${s.label}`, value: gflops, unit: 'GFLOP/s', ...peak,
        note: `${software ? SOFTWARE_NOTE : ''}` +
          `max rel. error vs portable ${(maxDiff / maxRef).toExponential(1)}; ${ctx.describe()}`,
      });
      [A, B, C].forEach((t) => rt.destroy(t));
    }
    const gpu = createWebGpuBackend(k);
    rows.push(...await trainingStepRows(gpu, software, opts.quick, ctx.describe()));
    rows.push(...await igptSmallRows(gpu, rt, software, opts.quick, ctx.describe()));
  } finally {
    k.dispose();
  }
  return rows;
}

/** The model with seed-1 initial weights, on `kernels`. */
function freshModel<T extends DeviceArray>(kernels: Kernels<T>, cfg: ModelConfig): ImageGPT<T> {
  const host = new ParameterTensors(cfg);
  initParameters(host, 1);
  return new ImageGPT(kernels, cfg, parametersOn(kernels, host));
}

/**
 * Seconds per training step of the real Trainer (after one warm-up step, the steps in flight
 * included) and the last step's loss, on one backend, on random images.
 */
async function timeSteps<T extends DeviceArray>(kernels: Kernels<T>, cfg: ModelConfig, B: number, steps: number): Promise<{ seconds: number; loss: number }> {
  const data = randomTokenDataset(Math.sqrt(cfg.nPositions), cfg.vocabSize - 1, 2 * B, 2);
  const trainer = new Trainer(freshModel(kernels, cfg), data, timingOptions(B, steps + 1, 1e-3));
  let loss = NaN;
  trainer.onReport = (r) => { loss = r.loss; };
  await trainer.step();
  await trainer.settle();
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) await trainer.step();
  await trainer.settle();
  return { seconds: (performance.now() - t0) / 1000 / steps, loss };
}

/**
 * The training step on webgpu against the CPU kernels' and, on a GPU, against the PyTorch peer
 * (bench/torch_igpt.py, eager, float32 without TF32) on the same GPU through CUDA, where PyTorch
 * has CUDA (the row says why not otherwise).
 */
async function trainingStepRows(gpu: Kernels<DeviceArray>, software: boolean, quick: boolean, adapter: string): Promise<BenchResult[]> {
  const [cfg, B, shape] = software
    ? [makeConfig({ nEmbd: 32, nLayer: 2, nHead: 4 }, 16, 64, 0), 2, 'd 32, 2 layers, 64 pixels, batch 2']
    : [makeConfig({ nEmbd: 256, nLayer: 8, nHead: 8 }, 16, 784, 0), 8, 'reference config, batch 8'];
  const steps = software ? 1 : quick ? 2 : 5;
  const cpuKernels = loadKernels('auto');
  const onGpu = await timeSteps(gpu, cfg, B, steps);
  const onCpu = await timeSteps(cpuKernels, cfg, B, steps);
  const rows: BenchResult[] = [{
    name: `webgpu training step (${shape})`, value: onGpu.seconds, unit: 's', peer: `${cpuKernels.name} CPU kernels`,
    peerValue: onCpu.seconds, ratio: onCpu.seconds / onGpu.seconds,
    note: `${software ? SOFTWARE_NOTE : ''}` +
      `loss after ${steps + 1} steps ${onGpu.loss.toFixed(6)} vs ${onCpu.loss.toFixed(6)} on the CPU; ${adapter}`,
  }];
  if (software) return rows;
  const peer = runJson<{ median_s: number; torch: string }>(python, [join(repoRoot, 'bench', 'torch_igpt.py'), '--mode', 'train',
    '--batch', String(B), '--steps', String(steps), '--device', 'cuda']);
  rows.push('error' in peer
    ? { name: `webgpu training step (${shape}) vs PyTorch on CUDA`, value: onGpu.seconds, unit: 's', note: `no peer: ${peer.error}` }
    : { name: `webgpu training step (${shape}) vs PyTorch on CUDA`, value: onGpu.seconds, unit: 's',
        peer: `PyTorch ${peer.torch} eager on the same GPU (CUDA, float32, TF32 off)`, peerValue: peer.median_s,
        ratio: peer.median_s / onGpu.seconds, note: `ratio = PyTorch time / ours; target ≥ 0.5 (within 2×); ${adapter}` });
  return rows;
}

/**
 * iGPT-S on a GPU: seconds per training step, then sampling B images through the KV cache against
 * one forward pass over B whole images (on SwiftShader the sampling only, of the small config).
 */
async function igptSmallRows(gpu: Kernels<GpuTensor>, rt: GpuRuntime, software: boolean, quick: boolean, adapter: string): Promise<BenchResult[]> {
  const [cfg, B, shape] = software
    ? [makeConfig({ nEmbd: 32, nLayer: 2, nHead: 4 }, 16, 64, 0), 2, 'd 32, 2 layers, 64 pixels, batch 2']
    : [makeConfig({ nEmbd: 512, nLayer: 24, nHead: 8 }, 512, 1024, 0), 8, 'iGPT-S: d 512, 24 layers, 1024 positions, 513 tokens, batch 8'];
  const note = `${software ? SOFTWARE_NOTE : ''}${adapter}`;
  // On SwiftShader the training step row above is already this config's.
  const step = software ? null : await timeSteps(gpu, cfg, B, quick ? 2 : 3);
  const model = freshModel(gpu, cfg);
  const T = cfg.nPositions;
  const rng = new Rng(3);
  const inputs = Int32Array.from({ length: B * T }, () => rng.int(cfg.vocabSize));
  const forward = async (): Promise<number> => {
    const t0 = performance.now();
    model.forward({ B, T, inputs, causal: true }, false);
    await gpu.read(gpu.view(model.activations.logits, 0, 1)); // waits for the whole pass
    return (performance.now() - t0) / 1000;
  };
  await forward(); // warm-up: pipelines compiled, activations allocated
  const forwardSeconds = Math.min(await forward(), await forward());
  // Host overhead, which no adapter changes: dispatches and submits per unit of work.
  const counted = async <R>(work: () => Promise<R>): Promise<{ result: R; seconds: number; dispatches: number; submits: number }> => {
    const [d0, s0, t0] = [rt.dispatches, rt.submissions, performance.now()];
    const result = await work();
    return { result, seconds: (performance.now() - t0) / 1000, dispatches: rt.dispatches - d0, submits: rt.submissions - s0 };
  };
  // Warm-up: the last two pixels of each image compile every decoding pipeline (prefill, steps, draws).
  await sampleAutoregressive(gpu, model.params, { count: B, prefix: inputs, knownPixels: T - 2 }, { ...defaultSampling, seed: 1 });
  const sampled = await counted(() => sampleAutoregressive(gpu, model.params, { count: B, knownPixels: 0 }, { ...defaultSampling, seed: 1 }));
  const ids = sampled.result, sampleSeconds = sampled.seconds;
  const valid = ids.every((id) => id >= 0 && id < cfg.vocabSize - 1);
  // A completion's given pixels (the top half) through the KV cache at once: KvDecoder.prefill.
  const given = T / 2;
  const decoder = new KvDecoder(gpu, model.params, B, T);
  const prefill = await counted(() => gpu.read(decoder.prefill(inputs.subarray(0, given * B), given)));
  return [
    ...(step ? [{ name: `webgpu training step (${shape})`, value: step.seconds, unit: 's', note: `${(B * T / step.seconds).toFixed(0)} pixels/s; loss ${step.loss.toFixed(4)}; ${note}` }] : []),
    {
      name: `webgpu sampling ${B} images (${shape})`, value: sampleSeconds, unit: 's', peer: 'one forward pass over the batch',
      peerValue: forwardSeconds, ratio: forwardSeconds / sampleSeconds,
      note: `${(B / sampleSeconds).toFixed(2)} images/s; ${(sampleSeconds / forwardSeconds).toFixed(1)}× a forward pass (target ≤ 3×); ` +
        `${valid ? 'every id a palette color' : 'IDS OUT OF RANGE'}; a pixel: ${(sampled.dispatches / T).toFixed(0)} dispatches, ` +
        `${(sampled.submits / T).toFixed(1)} submits; ${note}`,
    },
    {
      name: `webgpu prefill of ${given} given pixels (${shape})`, value: prefill.seconds, unit: 's', peer: 'one forward pass over the batch',
      peerValue: forwardSeconds, ratio: forwardSeconds / prefill.seconds,
      note: `the forward pass covers all ${T} positions, the prefill half of them (par is about 2×); ` +
        `${prefill.dispatches} dispatches (${(prefill.dispatches / given).toFixed(1)} a position, one of them the position's embedding), ` +
        `${prefill.submits} submits; ${note}`,
    },
  ];
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const quick = process.argv.includes('--quick');
  for (const r of await run({ quick })) console.log(`${r.name}: ${r.value.toFixed(2)} ${r.unit} (${r.note})`);
}
