/**
 * The layers of iGPT, each a forward and a backward function over flat Float32Arrays
 * (llm.c style). Heavy arithmetic goes through `Kernels`; what is left here is indexing.
 * `rows` is batch·time. Backward functions accumulate parameter gradients (`+=`).
 */
import type { Kernels, PackedMatrix } from '../kernels/kernels.js';
import type { BlockParameters } from './parameters.js';

/**
 * h0[b, t, :] = wte[token] + wpe[t]. A token of -1 is masked (BERT): its content embedding is
 * left out and only the position embedding remains.
 */
export function embeddingForward(out: Float32Array, tokens: Int32Array, wte: Float32Array,
                                 wpe: Float32Array, B: number, T: number, d: number): void {
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
}

export function embeddingBackward(dwte: Float32Array, dwpe: Float32Array, dout: Float32Array,
                                  tokens: Int32Array, B: number, T: number, d: number): void {
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
}

/**
 * A linear layer's weight matrix, and its bf16 copy when the model multiplies in bf16
 * (`Kernels.bf16`): then all three products of the layer (forward, dx, dw) take bf16 operands.
 */
export interface Weight {
  readonly f32: Float32Array;
  readonly bf16: Uint16Array | null;
}

/** C = op(A)·op(W) + beta·C for the layer's weight W (stored with row stride ldw). */
function timesWeight(kernels: Kernels, w: Weight, transW: boolean, m: number, n: number, inner: number,
                     a: Float32Array, lda: number, ldw: number, beta: number, c: Float32Array, ldc: number): void {
  if (w.bf16 && kernels.bf16) kernels.bf16.gemm(false, transW, m, n, inner, 1, a, lda, w.bf16, ldw, beta, c, ldc);
  else kernels.sgemm(false, transW, m, n, inner, 1, a, lda, w.f32, ldw, beta, c, ldc);
}

/**
 * out[r, :] = x[r, :] · w + b, w is [nIn, nOut] (HF's Conv1D layout). With `accumulate`, adds to
 * what `out` holds (used to fold the residual connection into the projection).
 */
export function linearForward(kernels: Kernels, out: Float32Array, x: Float32Array, w: Weight,
                              b: Float32Array | null, rows: number, nIn: number, nOut: number,
                              accumulate = false): void {
  timesWeight(kernels, w, false, rows, nOut, nIn, x, nIn, nOut, accumulate ? 1 : 0, out, nOut);
  if (b) kernels.biasForward(out, b, rows, nOut);
}

/** linearForward with the weight packed by `kernels.packMatrix` (decoding: a few rows at a time). */
export function packedLinearForward(kernels: Kernels, out: Float32Array, x: Float32Array, w: PackedMatrix,
                                    b: Float32Array | null, rows: number, accumulate = false): void {
  kernels.sgemmPacked(rows, x, w, out, accumulate);
  if (b) kernels.biasForward(out, b, rows, w.n);
}

/**
 * Writes dx (when given), accumulates dw and db. Needs only the forward input x. In bf16 the
 * weight gradient's product rounds x and dout to bf16 too; dw accumulates in float32.
 */
export function linearBackward(kernels: Kernels, dx: Float32Array | null, dw: Float32Array,
                               db: Float32Array | null, dout: Float32Array, x: Float32Array,
                               w: Weight, rows: number, nIn: number, nOut: number): void {
  if (dx) timesWeight(kernels, w, true, rows, nIn, nOut, dout, nOut, nOut, 0, dx, nIn);
  if (w.bf16 && kernels.bf16) kernels.bf16.gemm(true, false, nIn, nOut, rows, 1, x, nIn, dout, nOut, 1, dw, nOut);
  else kernels.sgemm(true, false, nIn, nOut, rows, 1, x, nIn, dout, nOut, 1, dw, nOut);
  if (db) kernels.biasBackward(db, dout, rows, nOut);
}

/**
 * logits[r, :] = x[r, :] · headᵀ, head is [nOut, nIn] (nn.Linear layout, no bias). The heads stay
 * float32 in bf16 models: their products are narrow (16 or 512 palette colors, a few classes) and
 * feed the losses directly.
 */
export function headForward(kernels: Kernels, logits: Float32Array, x: Float32Array, head: Float32Array,
                            rows: number, nIn: number, nOut: number): void {
  kernels.sgemm(false, true, rows, nOut, nIn, 1, x, nIn, head, nIn, 0, logits, nOut);
}

/** Accumulates dx (+=) and dhead. */
export function headBackward(kernels: Kernels, dx: Float32Array, dhead: Float32Array,
                             dlogits: Float32Array, x: Float32Array, head: Float32Array,
                             rows: number, nIn: number, nOut: number): void {
  kernels.sgemm(false, false, rows, nIn, nOut, 1, dlogits, nOut, head, nIn, 1, dx, nIn);
  kernels.sgemm(true, false, nOut, nIn, rows, 1, dlogits, nOut, x, nIn, 1, dhead, nIn);
}

/** pooled[b, :] = mean over t of x[b, t, :]. */
export function meanPoolForward(pooled: Float32Array, x: Float32Array, B: number, T: number,
                                d: number): void {
  pooled.fill(0, 0, B * d);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const row = (b * T + t) * d;
      for (let i = 0; i < d; i++) pooled[b * d + i] += x[row + i];
    }
    for (let i = 0; i < d; i++) pooled[b * d + i] /= T;
  }
}

/** Accumulates dx[b, t, :] += dpooled[b, :] / T. */
export function meanPoolBackward(dx: Float32Array, dpooled: Float32Array, B: number, T: number,
                                 d: number): void {
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const row = (b * T + t) * d;
      for (let i = 0; i < d; i++) dx[row + i] += dpooled[b * d + i] / T;
    }
  }
}

/** What a block's forward writes: the norms' outputs and rstd, qkv, the attention output, the residual after attention, the MLP's hidden layer before and after GELU. */
export interface BlockActivations {
  ln1: Float32Array; ln1Rstd: Float32Array;   // [rows, d], [rows]
  qkv: Float32Array;                          // [rows, 3d]
  atty: Float32Array;                         // [rows, d]   attention output before c_proj
  res2: Float32Array;                         // [rows, d]   x + attn(...)
  ln2: Float32Array; ln2Rstd: Float32Array;
  fch: Float32Array; fchGelu: Float32Array;   // [rows, 4d]
}

/** A block's four products, with their input and output widths in multiples of d. */
export const BLOCK_PRODUCTS = { attn: [1, 3], attnProj: [1, 1], fc: [1, 4], mlpProj: [4, 1] } as const;

/** out = x·W + b (or out += x·W + b with `accumulate`) for one of a block's products, over the block's rows. */
export type BlockProduct = (which: keyof typeof BLOCK_PRODUCTS, out: Float32Array, x: Float32Array, accumulate: boolean) => void;

/**
 * One block, the same for training, inference and cached decoding:
 *   a = x + attn(norm1(x)); out = a + mlp(norm2(a)),
 * keeping what backward needs in `a`. `product` runs the linear layers (plain or packed weights),
 * `attend` fills a.atty from a.qkv (full attention, or one position against the caches). `a.res2`
 * may be `x` and `out` may be `a.res2`: the residual stream updated in place. With `out` null
 * (recomputation in backward) the last product, which backward does not need, is skipped.
 */
export function blockForward(kernels: Kernels, w: BlockParameters, a: BlockActivations, x: Float32Array, out: Float32Array | null,
                             rows: number, d: number, eps: number, product: BlockProduct, attend: () => void): void {
  kernels.normForward(a.ln1, a.ln1Rstd, x, w.ln1, rows, d, eps);
  product('attn', a.qkv, a.ln1, false);
  attend();
  if (a.res2 !== x) a.res2.set(x);
  product('attnProj', a.res2, a.atty, true);
  kernels.normForward(a.ln2, a.ln2Rstd, a.res2, w.ln2, rows, d, eps);
  product('fc', a.fch, a.ln2, false);
  kernels.geluForward(a.fchGelu, a.fch, rows * 4 * d);
  if (!out) return;
  if (out !== a.res2) out.set(a.res2);
  product('mlpProj', out, a.fchGelu, true);
}
