/**
 * The layers of iGPT, each a forward and a backward function over flat arrays (llm.c style),
 * written once over the backend's array handle `T` (Float32Arrays on the CPU, tensors on a GPU).
 * The arithmetic goes through `Kernels`; what is left here is which product reads what.
 * Embeddings and mean pooling are kernels (Kernels.embeddingForward, meanPoolForward).
 * `rows` is batch·time. Backward functions accumulate parameter gradients (`+=`).
 */
import type { DeviceArray, Kernels, PackedMatrix } from '../kernels/kernels.js';
import type { BlockParameters } from './parameters.js';

/**
 * A linear layer's weight matrix, and its bf16 copy when the model multiplies in bf16
 * (`Kernels.bf16`): then all three products of the layer (forward, dx, dw) take bf16 operands.
 */
export interface Weight<T extends DeviceArray = Float32Array> {
  readonly f32: T;
  readonly bf16: Uint16Array | null;
}

/** C = op(A)·op(W) + beta·C for the layer's weight W (stored with row stride ldw). */
function timesWeight<T extends DeviceArray>(kernels: Kernels<T>, w: Weight<T>, transW: boolean, m: number, n: number, inner: number,
                                            a: T, lda: number, ldw: number, beta: number, c: T, ldc: number): void {
  if (w.bf16 && kernels.bf16) kernels.bf16.gemm(false, transW, m, n, inner, 1, a, lda, w.bf16, ldw, beta, c, ldc);
  else kernels.sgemm(false, transW, m, n, inner, 1, a, lda, w.f32, ldw, beta, c, ldc);
}

/**
 * out[r, :] = x[r, :] · w + b, w is [nIn, nOut] (HF's Conv1D layout). With `accumulate`, adds to
 * what `out` holds (used to fold the residual connection into the projection).
 */
export function linearForward<T extends DeviceArray>(kernels: Kernels<T>, out: T, x: T, w: Weight<T>,
                                                     b: T | null, rows: number, nIn: number, nOut: number,
                                                     accumulate = false): void {
  timesWeight(kernels, w, false, rows, nOut, nIn, x, nIn, nOut, accumulate ? 1 : 0, out, nOut);
  if (b) kernels.biasForward(out, b, rows, nOut);
}

/** linearForward with the weight packed by `kernels.packMatrix` (decoding: a few rows at a time). */
export function packedLinearForward<T extends DeviceArray>(kernels: Kernels<T>, out: T, x: T, w: PackedMatrix<T>,
                                                           b: T | null, rows: number, accumulate = false): void {
  kernels.sgemmPacked(rows, x, w, out, accumulate, b);
}

/**
 * Writes dx (when given), accumulates dw and db. Needs only the forward input x. In bf16 the
 * weight gradient's product rounds x and dout to bf16 too; dw accumulates in float32.
 */
export function linearBackward<T extends DeviceArray>(kernels: Kernels<T>, dx: T | null, dw: T,
                                                      db: T | null, dout: T, x: T,
                                                      w: Weight<T>, rows: number, nIn: number, nOut: number): void {
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
export function headForward<T extends DeviceArray>(kernels: Kernels<T>, logits: T, x: T, head: T,
                                                   rows: number, nIn: number, nOut: number): void {
  kernels.sgemm(false, true, rows, nOut, nIn, 1, x, nIn, head, nIn, 0, logits, nOut);
}

/** Accumulates dx (+=) and dhead. */
export function headBackward<T extends DeviceArray>(kernels: Kernels<T>, dx: T, dhead: T,
                                                    dlogits: T, x: T, head: T,
                                                    rows: number, nIn: number, nOut: number): void {
  kernels.sgemm(false, false, rows, nIn, nOut, 1, dlogits, nOut, head, nIn, 1, dx, nIn);
  kernels.sgemm(true, false, nOut, nIn, rows, 1, dlogits, nOut, x, nIn, 1, dhead, nIn);
}

/** What a block's forward writes: the norms' outputs and rstd, qkv, the attention output, the residual after attention, the MLP's hidden layer before and after GELU. */
export interface BlockActivations<T extends DeviceArray = Float32Array> {
  ln1: T; ln1Rstd: T;   // [rows, d], [rows]
  qkv: T;               // [rows, 3d]
  atty: T;              // [rows, d]   attention output before c_proj
  res2: T;              // [rows, d]   x + attn(...)
  ln2: T; ln2Rstd: T;
  fch: T; fchGelu: T;   // [rows, 4d]
}

/** A block's four products, with their input and output widths in multiples of d. */
export const BLOCK_PRODUCTS = { attn: [1, 3], attnProj: [1, 1], fc: [1, 4], mlpProj: [4, 1] } as const;

/** out = x·W + b (or out += x·W + b with `accumulate`) for one of a block's products, over the block's rows. */
export type BlockProduct<T extends DeviceArray = Float32Array> = (which: keyof typeof BLOCK_PRODUCTS, out: T, x: T, accumulate: boolean) => void;

/**
 * One block, the same for training, inference and cached decoding:
 *   a = x + attn(norm1(x)); out = a + mlp(norm2(a)),
 * keeping what backward needs in `a`. `product` runs the linear layers (plain or packed weights),
 * `attend` fills a.atty from a.qkv (full attention, or one position against the caches). `a.res2`
 * may be `x` and `out` may be `a.res2`: the residual stream updated in place. With `out` null
 * (recomputation in backward) the last product, which backward does not need, is skipped.
 */
export function blockForward<T extends DeviceArray>(kernels: Kernels<T>, w: BlockParameters<T>, a: BlockActivations<T>, x: T, out: T | null,
                                                    rows: number, d: number, eps: number, product: BlockProduct<T>, attend: () => void): void {
  kernels.normForward(a.ln1, a.ln1Rstd, x, w.ln1, rows, d, eps);
  product('attn', a.qkv, a.ln1, false);
  attend();
  if (a.res2 !== x) kernels.copy(a.res2, x);
  product('attnProj', a.res2, a.atty, true);
  kernels.normForward(a.ln2, a.ln2Rstd, a.res2, w.ln2, rows, d, eps);
  product('fc', a.fch, a.ln2, false);
  kernels.geluForward(a.fchGelu, a.fch, rows * 4 * d);
  if (!out) return;
  if (out !== a.res2) kernels.copy(out, a.res2);
  product('mlpProj', out, a.fchGelu, true);
}
