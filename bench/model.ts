/**
 * The model's hot paths against their peers, in one run: a training step (forward, backward,
 * Adam) vs PyTorch, the forward pass vs PyTorch and onnxruntime-node, sampling vs one forward
 * pass, and FLOP utilization against the sgemm peak measured here.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { loadKernels } from '../src/kernels/select.js';
import type { BenchResult } from './types.js';
import { hasTorch, isError, python, repoRoot, runJson, sharedBench } from './util.js';

interface StepJson { median_s: number; min_s: number; peak_rss_mib: number; backend?: string; precision?: string; forward_median_s?: number }

const T = 784, D = 256, L = 8, K = 16;
/** The design's nominal FLOP count: 3 × forward, attention counted over the full T×T square. */
export function nominalFlops(B: number, training: boolean): number {
  const forward = B * T * (24 * L * D * D + 2 * D * K) + B * L * 4 * T * T * D;
  return training ? 3 * forward : forward;
}

/** sgemm GFLOP/s of the default backend at 1024³ (the utilization denominator). */
export function gemmPeakGflops(): number {
  const k = loadKernels();
  const n = 1024;
  const a = new Float32Array(n * n).fill(0.5), b = new Float32Array(n * n).fill(0.25), c = new Float32Array(n * n);
  const times: number[] = [];
  for (let i = 0; i < 12; i++) { // the best of 11 (after a warm-up): the machine is shared
    const t0 = performance.now();
    k.sgemm(false, false, n, n, n, 1, a, n, b, n, 0, c, n);
    times.push((performance.now() - t0) / 1000);
  }
  return (2 * n * n * n) / Math.min(...times.slice(1)) / 1e9;
}

const ours = (mode: string, batch: number, steps: number, backend = 'auto', extra: string[] = []): StepJson | { error: string } =>
  runJson<StepJson>(process.execPath, ['--import', 'tsx', join(repoRoot, 'bench', 'igpt_step.ts'),
    '--mode', mode, '--batch', String(batch), '--steps', String(steps), '--backend', backend, ...extra], { env: { IGPT_QUIET: '1' } });
const torch = (mode: string, batch: number, steps: number, extra: string[] = []): StepJson | { error: string } =>
  runJson<StepJson>(python, [join(sharedBench, 'pytorch_igpt.py'), '--mode', mode, '--batch', String(batch), '--steps', String(steps), ...extra]);

/** Only the training step of the reference config: `npm run bench -- --step-json`. */
export function trainStepSeconds(steps = 3): number {
  const r = ours('train', 8, steps);
  if (isError(r)) throw new Error(r.error);
  return r.median_s;
}

export async function run(opts: { quick: boolean }): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  const steps = opts.quick ? 2 : 3;
  const peak = gemmPeakGflops();
  out.push({ name: 'sgemm 1024³ (utilization denominator)', value: +peak.toFixed(1), unit: 'GFLOP/s' });
  const torchOk = hasTorch();

  // Training step.
  const train = ours('train', 8, steps);
  const ptTrain = torchOk ? torch('train', 8, steps) : { error: 'python3-torch missing' };
  if (isError(train)) throw new Error(train.error);
  const flops = nominalFlops(8, true);
  out.push({
    name: `train step, batch 8 (${train.backend})`, value: train.median_s, unit: 's',
    ...(isError(ptTrain) ? { note: ptTrain.error } : { peer: 'PyTorch', peerValue: ptTrain.median_s, ratio: +(ptTrain.median_s / train.median_s).toFixed(2), note: 'ratio = PyTorch time / ours; target ≥ 2' }),
  });
  out.push({ name: 'train step FLOP utilization', value: +(100 * flops / train.median_s / 1e9 / peak).toFixed(1), unit: '% of sgemm peak', note: `${(flops / 1e9).toFixed(0)} GFLOP nominal per step; target ≥ 50%` });
  out.push({
    name: 'train step peak memory', value: train.peak_rss_mib, unit: 'MiB',
    ...(isError(ptTrain) ? {} : { peer: 'PyTorch', peerValue: ptTrain.peak_rss_mib, ratio: +(ptTrain.peak_rss_mib / train.peak_rss_mib).toFixed(2), note: 'ratio = PyTorch / ours; target ≥ 1' }),
  });
  const recompute = ours('train', 8, steps, 'auto', ['--recompute']);
  if (!isError(recompute)) {
    out.push({ name: 'train step with --recompute (activation checkpointing)', value: recompute.median_s, unit: 's', peer: 'ours, activations kept', peerValue: train.median_s,
      ratio: +(recompute.median_s / train.median_s).toFixed(2), note: `time ratio (cost); peak memory ${recompute.peak_rss_mib} MiB vs ${train.peak_rss_mib} MiB` });
  }
  if (!opts.quick) {
    const portable = ours('train', 8, 1, 'portable');
    if (!isError(portable)) {
      out.push({ name: 'train step, batch 8 (portable)', value: portable.median_s, unit: 's', peer: 'ours, native', peerValue: train.median_s, ratio: +(train.median_s / portable.median_s).toFixed(3), note: 'one step; the browser\'s cost' });
    }
  }

  // Forward pass, batch 32.
  const infer = ours('infer', 32, steps);
  if (isError(infer)) throw new Error(infer.error);
  const ptInfer = torchOk ? torch('infer', 32, steps) : { error: 'python3-torch missing' };
  out.push({
    name: 'forward, batch 32', value: infer.median_s, unit: 's',
    ...(isError(ptInfer) ? { note: ptInfer.error } : { peer: 'PyTorch', peerValue: ptInfer.median_s, ratio: +(ptInfer.median_s / infer.median_s).toFixed(2), note: 'ratio = PyTorch time / ours' }),
  });
  const ort = ortForward(steps, torchOk);
  if (ort) {
    out.push({ name: 'forward, batch 32 vs onnxruntime', value: infer.median_s, unit: 's', peer: 'onnxruntime-node',
      ...(isError(ort) ? { note: ort.error } : { peerValue: ort.median_s, ratio: +(ort.median_s / infer.median_s).toFixed(2), note: 'ratio = onnxruntime time / ours; target ≥ 1' }) });
  }
  out.push({ name: 'forward FLOP utilization', value: +(100 * nominalFlops(32, false) / infer.median_s / 1e9 / peak).toFixed(1), unit: '% of sgemm peak' });

  // Sampling 16 images with the KV cache vs one forward pass over the same batch.
  // Decoding reads every cached key/value and weight once per pixel, so it is bound by memory
  // traffic: the f16 rows hold caches and weights in half floats (igpt sample's default). Each
  // sampling run is paired with a forward pass in the same process (see igpt_step.ts).
  const sampleF16 = ours('sample', 16, steps, 'auto', ['--precision', 'f16']);
  const sample = ours('sample', 16, steps, 'auto', ['--precision', 'f32']);
  const vsForward = (r: StepJson) => ({ peer: 'one forward pass, batch 16 (same process)', peerValue: r.forward_median_s!,
                                        ratio: +(r.median_s / r.forward_median_s!).toFixed(2) });
  if (!isError(sampleF16) && sampleF16.precision === 'f16') {
    out.push({ name: 'sample 16 images × 784 pixels (KV cache, f16 caches and weights)', value: sampleF16.median_s, unit: 's',
      ...vsForward(sampleF16), note: 'ratio = sampling / forward (same arithmetic); target ≤ 3' });
  }
  const sampleF16All = ours('sample', 16, steps, 'auto', ['--precision', 'f16', '--decode-group', '16']);
  if (!isError(sampleF16All) && sampleF16All.precision === 'f16') {
    out.push({ name: 'the same, all 16 images decoded together (not in groups of 8)', value: sampleF16All.median_s, unit: 's',
      ...vsForward(sampleF16All), note: 'what decoding in groups buys: their caches and the weights stay in the last-level cache' });
  }
  if (!isError(sample)) {
    out.push({ name: 'sample 16 images × 784 pixels (KV cache, f32: exact)', value: sample.median_s, unit: 's',
      ...vsForward(sample), note: 'ratio = sampling / forward; logits equal to the full forward\'s' });
    if (!opts.quick) {
      const pSample = ours('sample', 16, 1, 'portable');
      if (!isError(pSample)) {
        out.push({ name: 'sample 16 images × 784 pixels, portable kernels', value: pSample.median_s, unit: 's',
          ...vsForward(pSample), note: 'ratio = sampling / forward; the browser\'s path' });
      }
    }
    if (torchOk && !opts.quick) {
      // The no-cache peer re-runs the whole prefix per pixel; time a 64-pixel image and scale by
      // the sum of prefix lengths (its cost grows with the prefix), saying so.
      const short = torch('sample', 16, 1, ['--pixels', '64']);
      if (!isError(short)) {
        const scale = (T * (T + 1)) / (64 * 65);
        out.push({ name: 'sample 16 images, no-cache PyTorch peer (extrapolated)', value: sample.median_s, unit: 's', peer: 'PyTorch, no cache', peerValue: +(short.median_s * scale).toFixed(1),
          ratio: +((short.median_s * scale) / sample.median_s).toFixed(1), note: 'peer timed on 64 pixels, scaled by Σ prefix length (lower bound: attention grows faster)' });
      }
    }
  }
  return out;
}

function ortForward(steps: number, torchOk: boolean): StepJson | { error: string } | null {
  if (!torchOk) return null;
  const dir = join(repoRoot, 'bench', 'out');
  mkdirSync(dir, { recursive: true });
  const onnx = join(dir, 'igpt_forward.onnx');
  if (!existsSync(onnx)) {
    const r = runJson<{ exported: string }>(python, [join(sharedBench, 'pytorch_igpt.py'), '--mode', 'export', '--out', onnx]);
    if (isError(r)) return r;
  }
  try {
    // onnxruntime-node is an optional devDependency.
    import.meta.resolve('onnxruntime-node');
  } catch {
    return { error: 'onnxruntime-node is not installed (ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node)' };
  }
  return runJson<StepJson>(process.execPath, [join(sharedBench, 'ort_forward.mjs'), onnx, '32', String(steps), '2'], { env: {} });
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(JSON.stringify(await run({ quick: process.argv.includes('--quick') }), null, 1));
}
