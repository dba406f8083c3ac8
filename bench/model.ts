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
import { hasTorch, isError, python, repoRoot, runJson } from './util.js';

interface StepJson { median_s: number; min_s: number; peak_rss_mib: number; backend?: string; precision?: string; forward_median_s?: number; torch?: string; omp_wait_policy?: string; ort?: string }

const T = 784, D = 256, L = 8, K = 16;
/**
 * FLOPs of the reference config: the linear layers, the LM head and attention's two products;
 * training is 3 × forward. `useful` counts causal attention's lower triangle only (query t sees
 * t + 1 keys: T(T+1)/2 scores per head), which is all the work the model needs; nominal counts
 * the full T×T square, as the design first did, and overstates utilization.
 */
export function modelFlops(B: number, training: boolean, count: 'useful' | 'nominal' = 'useful'): number {
  const scores = count === 'useful' ? (T * (T + 1)) / 2 : T * T;
  const forward = B * T * (24 * L * D * D + 2 * D * K) + B * L * 4 * scores * D;
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
  runJson<StepJson>(python, [join(repoRoot, 'bench', 'torch_igpt.py'), '--mode', mode, '--batch', String(batch), '--steps', String(steps), ...extra]);

interface Bf16Json { f32_median_s: number; bf16_median_s: number; speedup: number }
/** bf16 against float32, alternating in one process; `skipped` says why where there are no bf16 products. */
export const bf16Step = (mode: 'train' | 'infer', batch: number, steps: number): Bf16Json | { skipped: string } | { error: string } =>
  runJson<Bf16Json | { skipped: string }>(process.execPath, ['--import', 'tsx', join(repoRoot, 'bench', 'bf16_step.ts'),
    '--mode', mode, '--batch', String(batch), '--steps', String(steps)], { env: { IGPT_QUIET: '1' } });

/** The PyTorch peer as the table names it: its version, and that it ran eagerly (bench/torch_igpt.py). */
const torchLabel = (r: StepJson): string => `PyTorch ${r.torch ?? ''} eager, OMP_WAIT_POLICY=${r.omp_wait_policy ?? 'unset'} (bench/torch_igpt.py)`;

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
  const flops = modelFlops(8, true);
  out.push({
    name: `train step, batch 8 (${train.backend})`, value: train.median_s, unit: 's',
    ...(isError(ptTrain) ? { note: ptTrain.error } : { peer: torchLabel(ptTrain), peerValue: ptTrain.median_s, ratio: +(ptTrain.median_s / train.median_s).toFixed(2), note: 'ratio = PyTorch time / ours; target ≥ 2' }),
  });
  out.push({ name: 'train step FLOP utilization (useful FLOPs)', value: +(100 * flops / train.median_s / 1e9 / peak).toFixed(1), unit: '% of sgemm peak',
    note: `${(flops / 1e9).toFixed(0)} GFLOP of useful work per step (causal attention's lower triangle only; ${(100 * modelFlops(8, true, 'nominal') / train.median_s / 1e9 / peak).toFixed(1)}% counting the full T×T square); target ≥ 50%` });
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
    ...(isError(ptInfer) ? { note: ptInfer.error } : { peer: torchLabel(ptInfer), peerValue: ptInfer.median_s, ratio: +(ptInfer.median_s / infer.median_s).toFixed(2), note: 'ratio = PyTorch time / ours' }),
  });
  const ort = ortForward(steps, torchOk);
  if (ort) {
    out.push({ name: 'forward, batch 32 vs onnxruntime', value: infer.median_s, unit: 's', peer: 'onnxruntime-node',
      ...(isError(ort) ? { note: ort.error } : { peer: `onnxruntime-node ${ort.ort ?? ''} (bench/ort_forward.ts)`, peerValue: ort.median_s, ratio: +(ort.median_s / infer.median_s).toFixed(2), note: 'ratio = onnxruntime time / ours; target ≥ 1' }) });
  }
  out.push({ name: 'forward FLOP utilization (useful FLOPs)', value: +(100 * modelFlops(32, false) / infer.median_s / 1e9 / peak).toFixed(1), unit: '% of sgemm peak',
    note: `${(100 * modelFlops(32, false, 'nominal') / infer.median_s / 1e9 / peak).toFixed(1)}% counting the full T×T square` });

  // bf16 products against float32, alternating in one process (bench/bf16_step.ts).
  for (const [mode, batch, what] of [['train', 8, 'train step, batch 8'], ['infer', 32, 'forward, batch 32']] as const) {
    const r = bf16Step(mode, batch, steps);
    if (isError(r)) out.push({ name: `${what}, bf16 products`, value: NaN, unit: '', note: r.error });
    else if ('skipped' in r) out.push({ name: `${what}, bf16 products`, value: NaN, unit: '', note: `skipped: ${r.skipped}` });
    else {
      out.push({ name: `${what}, bf16 products (oneDNN)`, value: r.bf16_median_s, unit: 's', peer: 'ours, float32 (same process, alternating)', peerValue: r.f32_median_s,
        ratio: r.speedup, note: 'ratio = float32 time / bf16 time, median of the pairs; target ≥ 1.6' });
    }
  }

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
  const sampleF16By8 = ours('sample', 16, steps, 'auto', ['--precision', 'f16', '--decode-group', '8']);
  if (!isError(sampleF16By8) && sampleF16By8.precision === 'f16') {
    out.push({ name: 'the same, in groups of 8 images (the former fixed group)', value: sampleF16By8.median_s, unit: 's',
      ...vsForward(sampleF16By8), note: 'against the row above, what choosing the group from the reported cache size buys' });
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
    const r = runJson<{ exported: string }>(python, [join(repoRoot, 'bench', 'torch_igpt.py'), '--mode', 'export', '--out', onnx]);
    if (isError(r)) return r;
  }
  try {
    // onnxruntime-node is an optional devDependency.
    import.meta.resolve('onnxruntime-node');
  } catch {
    return { error: 'onnxruntime-node is not installed (ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node)' };
  }
  return runJson<StepJson>(process.execPath, ['--import', 'tsx', join(repoRoot, 'bench', 'ort_forward.ts'), onnx, '32', String(steps), '2'], { env: {} });
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(JSON.stringify(await run({ quick: process.argv.includes('--quick') }), null, 1));
}
