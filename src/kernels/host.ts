/**
 * What the two CPU backends (native, portable) share: their handles are Float32Arrays in host
 * memory, so allocation, views, uploads and reads are plain typed-array operations (views are
 * `subarray`s, `fromHost` and `read` hand back the same memory: no copies), and the memory-bound
 * embedding and pooling loops run in TypeScript for both.
 */
import type { Kernels } from './kernels.js';

/** The part of `Kernels<Float32Array>` that is the same for every CPU backend. */
export type HostOperations = Pick<Kernels, 'alloc' | 'view' | 'fromHost' | 'upload' | 'read' | 'copy' | 'zero' | 'sumOfSquares' |
  'attentionStateLength' | 'embeddingForward' | 'embeddingBackward' | 'meanPoolForward' | 'meanPoolBackward'>;

export const hostOperations: HostOperations = {
  alloc: (length) => new Float32Array(length),
  view: (t, offset, length) => t.subarray(offset, offset + length),
  fromHost: (src) => src,
  upload: (dst, src) => { if (dst !== src) dst.set(src); },
  read: (t) => Promise.resolve(t),
  copy: (dst, src) => dst.set(src),
  zero: (t) => t.fill(0),
  sumOfSquares(out, x) {
    let sum = 0; // float64
    for (let i = 0; i < x.length; i++) sum += x[i] * x[i];
    out[0] = sum;
  },
  // att [B, H, T, T]: the softmax probabilities, which the backward reads.
  attentionStateLength: (B, T, H) => B * H * T * T,

  embeddingForward(out, tokens, wte, wpe, B, T, d) {
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const row = (b * T + t) * d;
        const token = tokens[b * T + t];
        const pos = t * d;
        if (token < 0) {
          for (let i = 0; i < d; i++) out[row + i] = wpe[pos + i];
        } else {
          const tok = token * d;
          for (let i = 0; i < d; i++) out[row + i] = wte[tok + i] + wpe[pos + i];
        }
      }
    }
  },

  embeddingBackward(dwte, dwpe, dout, tokens, B, T, d) {
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const row = (b * T + t) * d;
        const token = tokens[b * T + t];
        const pos = t * d;
        for (let i = 0; i < d; i++) dwpe[pos + i] += dout[row + i];
        if (token >= 0) {
          const tok = token * d;
          for (let i = 0; i < d; i++) dwte[tok + i] += dout[row + i];
        }
      }
    }
  },

  meanPoolForward(pooled, x, B, T, d) {
    pooled.fill(0, 0, B * d);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const row = (b * T + t) * d;
        for (let i = 0; i < d; i++) pooled[b * d + i] += x[row + i];
      }
      for (let i = 0; i < d; i++) pooled[b * d + i] /= T;
    }
  },

  meanPoolBackward(dx, dpooled, B, T, d) {
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const row = (b * T + t) * d;
        for (let i = 0; i < d; i++) dx[row + i] += dpooled[b * d + i] / T;
      }
    }
  },
};

/**
 * Softmax cross-entropy on a CPU backend, returning the sum of the losses (see
 * Kernels.crossEntropy; the sum as float32, as the backend writes it).
 */
export function crossEntropySum(kernels: Kernels, losses: Float32Array, dlogits: Float32Array | null, logits: Float32Array,
                                targets: Int32Array, rows: number, V: number, gradScale: number): number {
  const total = new Float32Array(1);
  kernels.crossEntropy(losses, dlogits, logits, targets, rows, V, gradScale, total);
  return total[0]!;
}
