/**
 * Portable-kernel benchmark (single-threaded, browser-safe code): GEMM GFLOP/s at 1024³ and at the
 * reference model's shapes (batch 8 × 784+1 positions = 6272 rows, d 256), and causal attention
 * forward + backward at B=8 T=785 H=8 hs=32. Peers, measured in the same run: TensorFlow.js's WebAssembly
 * backend (XNNPACK, SIMD, one thread in Node: the like-for-like browser peer) for GEMM, and
 * single-threaded PyTorch (bench/torch_matmul.py with threads 1, native AVX code) for GEMM and attention.
 * Ratios > 1 mean the portable kernels are faster.
 *
 *   node --import tsx bench/portable.ts [--quick]
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createPortableKernels } from '../src/kernels/portable.js';
import { Rng } from '../src/util/rng.js';
import type { BenchResult } from './types.js';
import { bestMs, hasTorch, isError, python, repoRoot, runJson } from './util.js';

interface GemmShape { label: string; transA: boolean; transB: boolean; m: number; n: number; k: number }

interface TorchJson { gemm: number[]; attention: { forwardMs: number; backwardMs: number } }

function gemmShapes(quick: boolean): GemmShape[] {
  const rows = quick ? 1568 : 6272; // batch · positions
  return [
    { label: '1024³', transA: false, transB: false, m: 1024, n: 1024, k: 1024 },
    { label: `c_attn forward ${rows}×256·256×768`, transA: false, transB: false, m: rows, n: 768, k: 256 },
    { label: `c_fc forward ${rows}×256·256×1024`, transA: false, transB: false, m: rows, n: 1024, k: 256 },
    { label: `mlp c_proj forward ${rows}×1024·1024×256`, transA: false, transB: false, m: rows, n: 256, k: 1024 },
    { label: `c_attn backward dx ${rows}×768·(256×768)ᵀ`, transA: false, transB: true, m: rows, n: 256, k: 768 },
    { label: `c_attn backward dw (${rows}×256)ᵀ·${rows}×768`, transA: true, transB: false, m: 256, n: 768, k: rows },
  ];
}

/** Minimal view of @tensorflow/tfjs-core used here (a devDependency, imported only when present). */
interface Tfjs {
  setBackend(name: string): Promise<boolean>;
  ready(): Promise<void>;
  randomNormal(shape: number[]): TfTensor;
  matMul(a: TfTensor, b: TfTensor, transposeA: boolean, transposeB: boolean): TfTensor;
}
interface TfTensor { dataSync(): unknown; dispose(): void }

/** GFLOP/s of tfjs-wasm's matMul for each shape, or why it could not run. */
async function tfjsGemm(shapes: GemmShape[], reps: number): Promise<number[] | { error: string }> {
  let tf: Tfjs;
  try {
    tf = (await import('@tensorflow/tfjs-core')) as unknown as Tfjs;
    await import('@tensorflow/tfjs-backend-wasm');
    if (!(await tf.setBackend('wasm'))) return { error: 'tfjs wasm backend did not initialize' };
    await tf.ready();
  } catch (e) {
    return { error: `tfjs-wasm unavailable (${(e as Error).message.split('\n')[0]})` };
  }
  return shapes.map((s) => {
    const a = tf.randomNormal(s.transA ? [s.k, s.m] : [s.m, s.k]);
    const b = tf.randomNormal(s.transB ? [s.n, s.k] : [s.k, s.n]);
    const ms = bestMs(reps, () => {
      const c = tf.matMul(a, b, s.transA, s.transB);
      c.dataSync();
      c.dispose();
    });
    a.dispose();
    b.dispose();
    return (2 * s.m * s.n * s.k) / ms / 1e6;
  });
}


export async function run(opts: { quick: boolean }): Promise<BenchResult[]> {
  const reps = opts.quick ? 2 : 4;
  const kernels = createPortableKernels();
  const rng = new Rng(0);
  const shapes = gemmShapes(opts.quick);
  const attention = { B: opts.quick ? 2 : 8, T: 785, H: 8, hs: 32 };

  let peer: TorchJson | { error: string } = { error: 'PyTorch not installed' };
  if (hasTorch()) {
    const spec = { gemm: shapes.map((s) => [s.transA, s.transB, s.m, s.n, s.k]),
                   attention: [attention.B, attention.T, attention.H, attention.hs], reps, threads: 1 };
    peer = runJson<TorchJson>(python, [join(repoRoot, 'bench', 'torch_matmul.py'), JSON.stringify(spec)]);
  }
  const peerName = 'PyTorch 1 thread';
  const withPeer = (r: BenchResult, peerValue: number | undefined, higherIsBetter: boolean): BenchResult => {
    if (peerValue === undefined) return { ...r, note: isError(peer) ? `peer: ${peer.error}` : r.note };
    return { ...r, peer: peerName, peerValue, ratio: higherIsBetter ? r.value / peerValue : peerValue / r.value };
  };

  const tfjs = await tfjsGemm(shapes, reps);
  const results: BenchResult[] = [];
  shapes.forEach((s, i) => {
    const a = new Float32Array(s.m * s.k);
    const b = new Float32Array(s.k * s.n);
    const c = new Float32Array(s.m * s.n);
    rng.fillNormal(a, 1);
    rng.fillNormal(b, 1);
    const lda = s.transA ? s.m : s.k;
    const ldb = s.transB ? s.k : s.n;
    const ms = bestMs(reps, () => kernels.sgemm(s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, b, ldb, 0, c, s.n));
    const gflops = (2 * s.m * s.n * s.k) / ms / 1e6;
    const r: BenchResult = { name: `portable sgemm ${s.label}`, value: gflops, unit: 'GFLOP/s' };
    if (!isError(tfjs)) Object.assign(r, { peer: 'tfjs-wasm 4.22 (1 thread)', peerValue: tfjs[i], ratio: gflops / tfjs[i] });
    const torchNote = isError(peer) ? `PyTorch: ${peer.error}`
      : `PyTorch 1 thread ${peer.gemm[i].toFixed(1)} GFLOP/s (ratio ${(gflops / peer.gemm[i]).toFixed(2)})`;
    r.note = isError(tfjs) ? `${tfjs.error}; ${torchNote}` : torchNote;
    results.push(r);
  });

  const { B, T, H, hs } = attention;
  const C = H * hs;
  const qkv = new Float32Array(B * T * 3 * C);
  const dout = new Float32Array(B * T * C);
  rng.fillNormal(qkv, 1);
  rng.fillNormal(dout, 1);
  const out = new Float32Array(B * T * C);
  const att = new Float32Array(B * H * T * T);
  const dqkv = new Float32Array(qkv.length);
  const forwardMs = bestMs(reps, () => kernels.attentionForward(out, att, qkv, B, T, H, hs, true));
  const backwardMs = bestMs(reps, () => kernels.attentionBackward(dqkv, dout, qkv, out, att, B, T, H, hs, true));
  // Useful FLOP of causal attention: each T×T·hs product counts only its lower triangle.
  const productFlop = B * H * T * (T + 1) * hs;
  const shape = `B=${B} T=${T} H=${H} hs=${hs} causal`;
  results.push(withPeer({ name: `portable attention forward ${shape}`, value: forwardMs, unit: 'ms',
                          note: `${((2 * productFlop) / forwardMs / 1e6).toFixed(1)} GFLOP/s (useful FLOP)` },
                        isError(peer) ? undefined : peer.attention.forwardMs, false));
  results.push(withPeer({ name: `portable attention backward ${shape}`, value: backwardMs, unit: 'ms',
                          note: `${((4 * productFlop) / backwardMs / 1e6).toFixed(1)} GFLOP/s (useful FLOP)` },
                        isError(peer) ? undefined : peer.attention.backwardMs, false));
  return results;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const results = await run({ quick: process.argv.includes('--quick') });
  for (const r of results) {
    const peerPart = r.peer ? `  | ${r.peer}: ${r.peerValue!.toFixed(1)} ${r.unit}, ratio ${r.ratio!.toFixed(2)}` : '';
    console.log(`${r.name}: ${r.value.toFixed(1)} ${r.unit}${peerPart}${r.note ? `  (${r.note})` : ''}`);
  }
}
