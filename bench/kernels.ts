/**
 * Kernel benchmark: sgemm GFLOP/s at 1024³ and at the reference model's shapes (batch 8 × 784
 * positions = 6272 rows, d 256, MLP 1024; forward and the transposed backward forms), for the
 * native and portable backends, each next to PyTorch's same matmul on 2 threads timed in the same
 * run (bench/torch_matmul.py); then the fused causal attention (B=8, T=785, H=8, hs=32) forward +
 * backward per layer against PyTorch's attention written the usual way. Ratios > 1: we are faster.
 *
 *   node --import tsx bench/kernels.ts [--quick]
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Kernels } from '../src/kernels/kernels.js';
import { createNativeKernels, nativeAvailable } from '../src/kernels/native.js';
import { createPortableKernels } from '../src/kernels/portable.js';
import { Rng } from '../src/util/rng.js';
import type { BenchResult } from './types.js';
import { bestMs, hasTorch, isError, python, repoRoot, runJson } from './util.js';

interface GemmShape { label: string; transA: boolean; transB: boolean; m: number; n: number; k: number }
interface TorchJson { gemm: number[]; threads: number; attention?: { forwardMs: number; backwardMs: number } }

const ROWS = 8 * 784;
const D = 256;

/** The GEMMs of one training step of the reference config (linear layers, HF Conv1D layout). */
function gemmShapes(): GemmShape[] {
  const fwd = (label: string, nIn: number, nOut: number): GemmShape =>
    ({ label: `${label} forward ${ROWS}×${nIn}·${nIn}×${nOut}`, transA: false, transB: false, m: ROWS, n: nOut, k: nIn });
  const dx = (label: string, nIn: number, nOut: number): GemmShape =>
    ({ label: `${label} backward dx ${ROWS}×${nOut}·(${nIn}×${nOut})ᵀ`, transA: false, transB: true, m: ROWS, n: nIn, k: nOut });
  const dw = (label: string, nIn: number, nOut: number): GemmShape =>
    ({ label: `${label} backward dw (${ROWS}×${nIn})ᵀ·${ROWS}×${nOut}`, transA: true, transB: false, m: nIn, n: nOut, k: ROWS });
  return [
    { label: '1024³', transA: false, transB: false, m: 1024, n: 1024, k: 1024 },
    fwd('c_attn', D, 3 * D), fwd('c_fc', D, 4 * D), fwd('mlp c_proj', 4 * D, D),
    dx('c_attn', D, 3 * D), dw('c_attn', D, 3 * D),
    dx('c_fc', D, 4 * D), dw('c_fc', D, 4 * D),
    dx('mlp c_proj', 4 * D, D), dw('mlp c_proj', 4 * D, D),
  ];
}


function randomArray(rng: Rng, n: number): Float32Array {
  const a = new Float32Array(n);
  rng.fillNormal(a, 1);
  return a;
}

function gemmGflops(k: Kernels, s: GemmShape, a: Float32Array, b: Float32Array, c: Float32Array, reps: number): number {
  const lda = s.transA ? s.m : s.k;
  const ldb = s.transB ? s.k : s.n;
  const ms = bestMs(reps, () => k.sgemm(s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, b, ldb, 0, c, s.n));
  return (2 * s.m * s.n * s.k) / ms / 1e6;
}

/** FLOPs of causal attention's matmuls over the lower triangle: 2 forward, 4 backward. */
function causalAttentionFlops(B: number, T: number, H: number, hs: number): { forward: number; backward: number } {
  const onePass = 2 * B * H * hs * (T * (T + 1)) / 2;
  return { forward: 2 * onePass, backward: 4 * onePass };
}

export async function run(opts: { quick: boolean }): Promise<BenchResult[]> {
  const reps = opts.quick ? 2 : 4;
  const rng = new Rng(1);
  const shapes = gemmShapes();
  const attention = { B: 8, T: 785, H: 8, hs: 32 };
  const results: BenchResult[] = [];

  let peer: TorchJson | { error: string } = { error: 'PyTorch is not installed' };
  if (hasTorch()) {
    const spec = { gemm: shapes.map((s) => [s.transA, s.transB, s.m, s.n, s.k]),
                   attention: [attention.B, attention.T, attention.H, attention.hs], reps, threads: 2 };
    peer = runJson<TorchJson>(python, [join(repoRoot, 'bench', 'torch_matmul.py'), JSON.stringify(spec)]);
  }
  const peerName = isError(peer) ? undefined : `PyTorch ${peer.threads} threads`;
  const withPeer = (r: BenchResult, peerValue: number | undefined, higherIsBetter: boolean): BenchResult => {
    if (peerValue === undefined || peerName === undefined) {
      return { ...r, note: [r.note, isError(peer) ? `no peer: ${peer.error}` : undefined].filter(Boolean).join('; ') || undefined };
    }
    return { ...r, peer: peerName, peerValue, ratio: higherIsBetter ? r.value / peerValue : peerValue / r.value };
  };

  const backends: Kernels[] = [];
  if (nativeAvailable()) backends.push(createNativeKernels());
  else results.push({ name: 'native kernels', value: NaN, unit: '', note: 'addon not built: native rows skipped' });
  backends.push(createPortableKernels());

  for (const k of backends) {
    shapes.forEach((s, i) => {
      const a = randomArray(rng, s.m * s.k), b = randomArray(rng, s.k * s.n), c = new Float32Array(s.m * s.n);
      // The portable kernels are 5–10× slower: fewer repetitions keep the run short.
      const gflops = gemmGflops(k, s, a, b, c, k.name === 'native' ? reps : 1);
      results.push(withPeer({ name: `${k.name} sgemm ${s.label}`, value: gflops, unit: 'GFLOP/s',
                              note: `${k.threads} thread${k.threads === 1 ? '' : 's'}` },
                            isError(peer) ? undefined : peer.gemm[i], true));
    });
  }

  const native = backends.find((k) => k.name === 'native');
  if (native) {
    const { B, T, H, hs } = attention;
    const C = H * hs;
    const qkv = randomArray(rng, B * T * 3 * C), dout = randomArray(rng, B * T * C);
    const out = new Float32Array(B * T * C), att = new Float32Array(B * H * T * T), dqkv = new Float32Array(B * T * 3 * C);
    const forwardMs = bestMs(reps, () => native.attentionForward(out, att, qkv, B, T, H, hs, true));
    const backwardMs = bestMs(reps, () => native.attentionBackward(dqkv, dout, qkv, out, att, B, T, H, hs, true));
    const flops = causalAttentionFlops(B, T, H, hs);
    const torchAttention = isError(peer) ? undefined : peer.attention;
    const shape = `B=${B} T=${T} H=${H} hs=${hs} causal`;
    results.push(withPeer({ name: `native attention forward+backward, one layer, ${shape}`, value: forwardMs + backwardMs, unit: 'ms' },
                          torchAttention && torchAttention.forwardMs + torchAttention.backwardMs, false));
    results.push(withPeer({ name: `native attention forward, ${shape}`, value: forwardMs, unit: 'ms' },
                          torchAttention?.forwardMs, false));
    results.push(withPeer({ name: `native attention backward, ${shape}`, value: backwardMs, unit: 'ms' },
                          torchAttention?.backwardMs, false));
    results.push({ name: `native attention forward+backward FLOP rate (lower triangle only)`,
                   value: (flops.forward + flops.backward) / (forwardMs + backwardMs) / 1e6, unit: 'GFLOP/s',
                   note: `forward ${(flops.forward / forwardMs / 1e6).toFixed(1)}, backward ${(flops.backward / backwardMs / 1e6).toFixed(1)} GFLOP/s` });
  }
  return results;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const quick = process.argv.includes('--quick');
  const t0 = performance.now();
  for (const r of await run({ quick })) {
    const peer = r.peer ? `  | ${r.peer}: ${r.peerValue!.toFixed(1)} ${r.unit}, ratio ${r.ratio!.toFixed(2)}` : '';
    console.log(`${r.name}: ${r.value.toFixed(1)} ${r.unit}${peer}${r.note ? `  (${r.note})` : ''}`);
  }
  console.error(`kernels bench: ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}
