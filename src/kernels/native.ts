/**
 * The native kernel backend: the Node-API addon built from `native/` (OpenBLAS GEMM plus threaded
 * fused loops, and bf16 products through oneDNN where it was built with them). Every call works in
 * place on the caller's typed-array memory.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Bf16Products, Kernels } from './kernels.js';
import { hostOperations } from './host.js';

/** What the compiled addon exports: the kernel methods plus a few controls. */
interface NativeAddon extends Pick<Kernels, 'sgemm' | 'biasForward' | 'biasBackward' | 'normForward' | 'normBackward' |
  'geluForward' | 'geluBackward' | 'attentionForward' | 'attentionDecode'> {
  /** Kernels.adamUpdate without the gate, which the wrapper reads. */
  adamUpdate(params: Float32Array, grads: Float32Array, m: Float32Array, v: Float32Array,
             n: number, lr: number, beta1: number, beta2: number, eps: number, t: number): void;
  attentionBackward(dqkv: Float32Array, dout: Float32Array, qkv: Float32Array, att: Float32Array,
                    B: number, T: number, H: number, hs: number, causal: boolean): void;
  /** Returns the sum of the losses (accumulated in float64). */
  crossEntropy(losses: Float32Array, dlogits: Float32Array | null, logits: Float32Array, targets: Int32Array,
               rows: number, V: number, gradScale: number): number;
  threads(): number;
  halfFloats(): boolean;
  /** Whether gemmBf16 runs here: built with oneDNN, on a CPU with AVX512-BF16 or AMX. */
  bf16(): boolean;
  /** The largest CPU cache the system reports, in bytes; 0 where it reports none. */
  cacheBytes(): number;
  gemmBf16: Bf16Products['gemm'];
  toBf16: Bf16Products['toBf16'];
  attentionDecodeHalf: NonNullable<Kernels['attentionDecodeHalf']>;
  packMatrix(b: Float32Array, k: number, n: number, half: boolean): Float32Array | Uint16Array;
  sgemmPacked(m: number, n: number, k: number, a: Float32Array, packed: Float32Array | Uint16Array, c: Float32Array,
              accumulate: boolean): void;
  gemmThreading(mode?: GemmThreading): GemmThreading;
}

/**
 * How a large GEMM uses the cores: split over the addon's own thread pool with OpenBLAS
 * single-threaded ('pool', the default), or OpenBLAS's own threads ('blas').
 */
export type GemmThreading = 'pool' | 'blas';

const ADDON = 'native/build/Release/igpt_native.node';

/**
 * Where the addon may be: IGPT_NATIVE_ADDON if set (a custom build), else the package root, two
 * levels up from src/kernels or three from dist/src/kernels.
 */
function addonCandidates(): string[] {
  const override = process.env.IGPT_NATIVE_ADDON;
  if (override) return [override];
  return ['../../', '../../../'].map((up) => fileURLToPath(new URL(up + ADDON, import.meta.url)));
}

let cached: NativeAddon | undefined;

function loadAddon(): NativeAddon {
  if (cached) return cached;
  const path = addonCandidates().find((p) => existsSync(p));
  if (!path) {
    throw new Error(`igpt: the native kernels are not built (${addonCandidates()[0]} is missing). ` +
      'Install OpenBLAS and rebuild: apt-get install -y libopenblas-dev && npm rebuild igpt');
  }
  // oneDNN (the bf16 products) runs on OpenMP threads, which by default spin after each product
  // and so take the cores from the addon's own pool running the next fused loop (measured: bias,
  // norm and attention ran up to 2× slower between bf16 products). libgomp reads this when the
  // addon loads it; passive waiting puts its threads to sleep at once.
  process.env.OMP_WAIT_POLICY ??= 'passive';
  const require = createRequire(import.meta.url);
  try {
    cached = require(path) as NativeAddon;
  } catch (e) {
    throw new Error(`igpt: could not load the native kernels from ${path}: ${(e as Error).message}`);
  }
  return cached;
}

/** True when the addon is built and loads in this process. */
export function nativeAvailable(): boolean {
  try {
    loadAddon();
    return true;
  } catch {
    return false;
  }
}

/** Reads, or with `mode` sets, how large GEMMs are threaded (process-wide). */
export function nativeGemmThreading(mode?: GemmThreading): GemmThreading {
  return mode === undefined ? loadAddon().gemmThreading() : loadAddon().gemmThreading(mode);
}

/**
 * Images decoded together: as many as fit their caches beside the weights in `cacheBytes` (at
 * least one). Where the system reports no cache size, 8: the best group measured on a 2-core
 * Intel Xeon for the reference config (f16 caches and weights, ~64 MB); on the 2-core Zen 4 that
 * reports a 508 MiB cache, all 16 images at once beat groups of 8 (BENCHMARK-ANALYSIS.md).
 */
function decodeGroup(cacheBytes: number, imageBytes: number, sharedBytes: number): number {
  if (!(cacheBytes > 0)) return 8;
  return Math.max(1, Math.floor((cacheBytes - sharedBytes) / Math.max(imageBytes, 1)));
}

/** The largest CPU cache the system reports, in bytes (0 where it reports none). */
export function nativeCacheBytes(): number {
  return loadAddon().cacheBytes();
}

/** Whether the native kernels can run bf16 products here (addon built with oneDNN, CPU with AVX512-BF16 or AMX). */
export function nativeBf16Available(): boolean {
  return nativeAvailable() && loadAddon().bf16();
}

/** The precision of the linear layers' matrix products (everything else is float32). */
export type Precision = 'f32' | 'bf16';

/**
 * The native backend; throws an Error saying how to build it when the addon is missing, or, for
 * `bf16`, why bf16 products are not available here.
 */
export function createNativeKernels(precision: Precision = 'f32'): Kernels {
  const a = loadAddon();
  if (precision === 'bf16' && !a.bf16()) {
    throw new Error('igpt: the native kernels have no bf16 products here: they need a CPU with AVX512-BF16 or AMX ' +
      'and an addon built with oneDNN (apt-get install -y libdnnl-dev && npm rebuild igpt)');
  }
  return {
    ...hostOperations,
    name: 'native',
    threads: a.threads(),
    kvLayout: 'channels',
    decodeGroup: (imageBytes, sharedBytes) => decodeGroup(a.cacheBytes(), imageBytes, sharedBytes),
    sgemm: a.sgemm,
    ...(precision === 'bf16' ? { bf16: { gemm: a.gemmBf16, toBf16: a.toBf16 } } : {}),
    packMatrix: (b, k, n, half = false) => ({ k, n, data: a.packMatrix(b, k, n, half) }),
    sgemmPacked: (m, x, b, c, accumulate, bias) => {
      a.sgemmPacked(m, b.n, b.k, x, b.data, c, accumulate);
      if (bias) a.biasForward(c, bias, m, b.n);
    },
    biasForward: a.biasForward,
    biasBackward: a.biasBackward,
    normForward: a.normForward,
    normBackward: a.normBackward,
    geluForward: a.geluForward,
    geluBackward: a.geluBackward,
    attentionForward: a.attentionForward,
    attentionBackward: (dqkv, dout, qkv, _out, att, B, T, H, hs, causal) => a.attentionBackward(dqkv, dout, qkv, att, B, T, H, hs, causal),
    attentionDecode: a.attentionDecode,
    ...(a.halfFloats() ? { attentionDecodeHalf: a.attentionDecodeHalf } : {}),
    crossEntropy: (losses, dlogits, logits, targets, rows, V, gradScale, total) => {
      total[0] = a.crossEntropy(losses, dlogits, logits, targets, rows, V, gradScale);
    },
    adamUpdate: (params, grads, m, v, n, lr, beta1, beta2, eps, t, gate) => {
      if (Number.isFinite(gate[0])) a.adamUpdate(params, grads, m, v, n, lr, beta1, beta2, eps, t);
    },
  };
}
