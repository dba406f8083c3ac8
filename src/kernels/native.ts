/**
 * The native kernel backend: the Node-API addon built from `native/` (OpenBLAS GEMM plus threaded
 * fused loops). Every call works in place on the caller's Float32Array memory.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Kernels } from './kernels.js';

/** What the compiled addon exports: the kernel methods plus a few controls. */
interface NativeAddon extends Omit<Kernels, 'name' | 'threads' | 'kvLayout' | 'decodeGroup' | 'packMatrix' | 'sgemmPacked' | 'attentionDecodeHalf'> {
  threads(): number;
  halfFloats(): boolean;
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

/** The native backend; throws an Error saying how to build it when the addon is missing. */
export function createNativeKernels(): Kernels {
  const a = loadAddon();
  return {
    name: 'native',
    threads: a.threads(),
    kvLayout: 'channels',
    // Decoding 8 images at a time keeps their caches and the weights in the last-level cache for
    // the reference model (~64 MB in f16, where 16 images need ~115 MB); BENCHMARKS.md times it
    // against all images at once.
    decodeGroup: 8,
    sgemm: a.sgemm,
    packMatrix: (b, k, n, half = false) => ({ k, n, data: a.packMatrix(b, k, n, half) }),
    sgemmPacked: (m, x, b, c, accumulate) => a.sgemmPacked(m, b.n, b.k, x, b.data, c, accumulate),
    biasForward: a.biasForward,
    biasBackward: a.biasBackward,
    normForward: a.normForward,
    normBackward: a.normBackward,
    geluForward: a.geluForward,
    geluBackward: a.geluBackward,
    attentionForward: a.attentionForward,
    attentionBackward: a.attentionBackward,
    attentionDecode: a.attentionDecode,
    ...(a.halfFloats() ? { attentionDecodeHalf: a.attentionDecodeHalf } : {}),
    crossEntropy: a.crossEntropy,
    adamUpdate: a.adamUpdate,
  };
}
