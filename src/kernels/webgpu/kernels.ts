/**
 * The WebGPU kernels: every operation of the `Kernels` interface (plus the model's embeddings and
 * mean pooling), over tensors that live on the device. Calls only record work; results reach the
 * host through `runtime.read`. backend.ts wraps them as the `Kernels<GpuTensor>` the model runs
 * on; every tensor argument may be a view (`GpuRuntime.view`).
 *
 * Differences from the CPU interface, on purpose:
 * - attention keeps lse [B, H, T] (log-sum-exp per query) instead of att [B, H, T, T], and its
 *   backward reads the forward's output: the T×T probabilities are never stored.
 * - crossEntropy writes its total into a one-element tensor instead of returning it, so a training
 *   step never waits for the GPU; the host reads the loss when it prints it.
 * - the KV caches are laid out [B, H, maxT, hs] ('positions').
 */
import { type AcquireOptions, GpuContext } from './device.js';
import { type Bound, type GpuTensor, GpuRuntime, type RuntimeOptions } from './runtime.js';
import { ADAM, BIAS_FORWARD, ELEMENTWISE_GROUP, EMBEDDING_FORWARD, GELU_BACKWARD, GELU_FORWARD,
         KV_CACHE_STORE, MEAN_POOL_BACKWARD, SPLIT_K_SUM } from './wgsl/elementwise.js';
import { gemmAlignedForVec4, gemmNarrowWgsl, gemmWgsl, type GemmTile, NARROW_COLUMNS, NARROW_ROWS } from './wgsl/gemm.js';
import { COLUMN_GROUP, COLUMN_SUM, CROSS_ENTROPY, DRAW_MAX_PALETTE, DRAW_PIXELS, MEAN_POOL_FORWARD, NORM_BACKWARD_DX, NORM_FORWARD,
         POSITION_EMBEDDING_BACKWARD, ROW_GROUP, SQUARE_PARTIALS, SUM_INTO, TOKEN_CLASSES, TOKEN_EMBEDDING_BACKWARD,
         withReductions } from './wgsl/reductions.js';
import { ATTENTION_CACHED, attentionBackwardKeyWgsl, DECODE_GROUP, attentionBackwardQueryWgsl, attentionForwardWgsl,
         attentionTiles, type AttentionTiles } from './wgsl/attention.js';

/** A weight matrix B [k, n] prepared for `sgemmPacked`: on the GPU, the tensor itself. */
export interface GpuPackedMatrix { readonly k: number; readonly n: number; readonly data: GpuTensor }

/** A GEMM operand: its tensor, the element where the matrix starts, its row stride. */
interface Operand { t: GpuTensor; off: number; ld: number; stride: number }

/** The dimensions of a (batched) GEMM: rows m, columns n, inner k, matrix z. */
type GemmDim = 'm' | 'n' | 'k' | 'z';
/** One piece of a split product: a half-open range [start, end) of every dimension. */
type GemmPiece = Record<GemmDim, readonly [number, number]>;
const extent = (q: GemmPiece, d: GemmDim): number => q[d][1] - q[d][0];

/** columnSum: rows a slice takes at least, and at most how many slices (a 64-column group's workgroups). */
const COLUMN_SLICE_ROWS = 256;
const MAX_COLUMN_SLICES = 64;

/** Split-k: the workgroups a product should make, and the least k a piece takes. */
const SPLIT_K_GROUPS = 128;
const SPLIT_K_MIN = 256;

/** Workgroups a product must make at 128-wide tiles to take them (a large GPU has ~100 compute units). */
const WIDE_TILE_GROUPS = 256;

/** Cached attention's scores scratch holds at most this many floats (16 MiB): longer prefills take several dispatches. */
const SCORES_LIMIT = 1 << 22;

function need(t: GpuTensor, elements: number, what: string, type: 'f32' | 'i32' = 'f32'): void {
  if (t.type !== type) throw new Error(`igpt webgpu: ${what} must be a ${type} tensor`);
  if (t.length < elements) throw new Error(`igpt webgpu: ${what} holds ${t.length} elements, needs ${elements}`);
}

export class WebGpuKernels {
  readonly name = 'webgpu';
  readonly kvLayout = 'positions';
  /** Scratch: attention's D = rowsum(dO∘O) [B, H, T], decoding's scores [B, H, maxT], sumOfSquares' and columnSum's partial sums. */
  private delta: GpuTensor | null = null;
  private scores: GpuTensor | null = null;
  private partials: GpuTensor | null = null;
  private columnPartials: GpuTensor | null = null;
  /** Split-k's pieces of a product [splits, m, n]. */
  private pieces: GpuTensor | null = null;

  constructor(readonly runtime: GpuRuntime) {}

  /** Acquires a device from `gpu` (navigator.gpu, or nodeGpu()) and builds the kernels on it. */
  static async create(gpu: GPU, options: AcquireOptions & RuntimeOptions = {}): Promise<WebGpuKernels> {
    const ctx = await GpuContext.acquire(gpu, options);
    return new WebGpuKernels(new GpuRuntime(ctx, options));
  }

  /** Releases the device (every tensor with it). */
  dispose(): void { this.runtime.ctx.dispose(); }

  private get rt(): GpuRuntime { return this.runtime; }

  /** A kernel's source with its reductions (over `group` threads): over subgroups where the device has them. */
  private rowKernel(code: string, group?: number): string { return withReductions(code, this.rt.subgroupReductions, group); }

  private scratch(which: 'delta' | 'scores' | 'partials' | 'columnPartials' | 'pieces', length: number): GpuTensor {
    const current = this[which];
    if (current && current.length >= length) return current;
    if (current) this.rt.destroy(current);
    const t = this.rt.tensor(length);
    this[which] = t;
    return t;
  }

  /** Records a 1-D elementwise dispatch of `count` threads. */
  private elementwise(code: string, constants: Record<string, number>, u: number[], f: number[], bound: Bound[], count: number): void {
    const groups = this.rt.grid(Math.ceil(count / ELEMENTWISE_GROUP));
    this.rt.dispatch(this.rt.pipeline(code, constants), { u, f }, bound, groups);
  }

  // -------------------------------------------------------------------------------------------
  // GEMM

  /**
   * C = alpha·op(A)·op(B) + beta·C (see Kernels.sgemm), A, B, C starting at element offsets
   * aOff, bOff, cOff of their tensors. With beta = 0, C is not read.
   */
  sgemm(transA: boolean, transB: boolean, m: number, n: number, k: number, alpha: number,
        a: GpuTensor, aOff: number, lda: number, b: GpuTensor, bOff: number, ldb: number,
        beta: number, c: GpuTensor, cOff: number, ldc: number): void {
    this.sgemmStridedBatched(transA, transB, m, n, k, alpha, a, aOff, lda, 0, b, bOff, ldb, 0, beta, c, cOff, ldc, 0, 1);
  }

  /**
   * `batch` independent products; matrix i of A starts at aOff + i·strideA (likewise B, C). With
   * `bias` ([n]), C = alpha·op(A)·op(B) + bias + beta·C, the bias added in the store.
   */
  sgemmStridedBatched(transA: boolean, transB: boolean, m: number, n: number, k: number, alpha: number,
                      a: GpuTensor, aOff: number, lda: number, strideA: number,
                      b: GpuTensor, bOff: number, ldb: number, strideB: number,
                      beta: number, c: GpuTensor, cOff: number, ldc: number, strideC: number, batch: number,
                      bias: GpuTensor | null = null): void {
    if (m === 0 || n === 0 || batch === 0) return;
    if (bias) need(bias, n, 'sgemm bias');
    const A: Operand = { t: a, off: aOff, ld: lda, stride: strideA };
    const B: Operand = { t: b, off: bOff, ld: ldb, stride: strideB };
    const C: Operand = { t: c, off: cOff, ld: ldc, stride: strideC };
    const whole: GemmPiece = { m: [0, m], n: [0, n], k: [0, k], z: [0, batch] };
    const last = (p: GemmPiece): number[] => this.gemmRanges(transA, transB, A, B, C, p).map((r) => r[1]);
    if (k > 0) {
      need(a, last(whole)[0] + 1, 'sgemm A');
      need(b, last(whole)[1] + 1, 'sgemm B');
    }
    need(c, last(whole)[2] + 1, 'sgemm C');
    if (k === 0 || alpha === 0) {
      // Nothing to multiply: C = beta·C, which the kernel does with a zero-length k loop.
      this.gemmSplit(transA, transB, { ...whole, k: [0, 0] }, 0, A, B, beta, C, bias);
      return;
    }
    const splits = batch === 1 && m > NARROW_ROWS ? this.splitsOfK(m, n, k, ldc) : 1;
    if (splits > 1) this.gemmSplitK(transA, transB, m, n, k, alpha, A, B, beta, C, bias, splits);
    else this.gemmSplit(transA, transB, whole, alpha, A, B, beta, C, bias);
  }

  /**
   * How many pieces to cut k into: a product of few output tiles and a long k (a weight gradient:
   * d×d outputs, each a sum over all B·T rows) would keep a few workgroups busy and the rest of a
   * GPU idle. 1 (no split) when the tiles already fill SPLIT_K_GROUPS workgroups, k is short, or
   * the pieces or C (row stride ldc) would not fit one binding.
   */
  private splitsOfK(m: number, n: number, k: number, ldc: number): number {
    const tiles = Math.ceil(m / 64) * Math.ceil(n / 64);
    const splits = Math.min(Math.ceil(SPLIT_K_GROUPS / tiles), Math.floor(k / SPLIT_K_MIN));
    const window = this.rt.windowElements;
    return splits > 1 && splits * m * n <= window && (m - 1) * ldc + n <= window ? splits : 1;
  }

  /**
   * C = alpha·op(A)·op(B) + bias + beta·C with k cut into `splits` pieces of kPiece (a multiple of
   * the tiles' 16) computed at once, as a batched product whose matrix z is piece z (op(A)'s columns
   * and op(B)'s rows from z·kPiece), into a scratch [splits, m, n]; the short remainder of k, if
   * any, is added onto piece 0; SPLIT_K_SUM then writes C from the pieces.
   */
  private gemmSplitK(transA: boolean, transB: boolean, m: number, n: number, k: number, alpha: number,
                     A: Operand, B: Operand, beta: number, C: Operand, bias: GpuTensor | null, splits: number): void {
    const kPiece = Math.ceil(k / splits / 16) * 16, full = Math.floor(k / kPiece), rest = k - full * kPiece;
    const pieces = this.scratch('pieces', full * m * n);
    const inPieces = (z: number): Operand => ({ t: pieces, off: z * m * n, ld: n, stride: m * n });
    const stepA = transA ? kPiece * A.ld : kPiece, stepB = transB ? kPiece : kPiece * B.ld;
    this.gemmSplit(transA, transB, { m: [0, m], n: [0, n], k: [0, kPiece], z: [0, full] }, alpha,
                   { ...A, stride: stepA }, { ...B, stride: stepB }, 0, inPieces(0), null);
    if (rest > 0) {
      this.gemmSplit(transA, transB, { m: [0, m], n: [0, n], k: [full * kPiece, k], z: [0, 1] }, alpha, A, B, 1, inPieces(0), null);
    }
    const c = this.rt.bind(C.t, C.off, (m - 1) * C.ld + n), sums = this.rt.bind(pieces, 0, full * m * n);
    const bb = bias ? this.rt.bind(bias, 0, n) : this.rt.bind(this.rt.placeholder);
    this.elementwise(SPLIT_K_SUM, { BIAS: bias ? 1 : 0 }, [m * n, n, C.ld, full, c.shift, sums.shift, bb.shift], [beta], [c, sums, bb], m * n);
  }

  /** [first, last] element of A, B and C that a piece touches. */
  private gemmRanges(transA: boolean, transB: boolean, A: Operand, B: Operand, C: Operand, q: GemmPiece): [number, number][] {
    // Stored rows × stored columns of an operand, over the piece's matrices.
    const span = (o: Operand, rows: GemmDim, cols: GemmDim): [number, number] => {
      const [r0, r1] = q[rows], [c0, c1] = q[cols], [z0, z1] = q.z;
      const first = o.off + z0 * o.stride + r0 * o.ld + c0;
      if (r1 <= r0 || c1 <= c0) return [first, first];
      return [first, o.off + (z1 - 1) * o.stride + (r1 - 1) * o.ld + c1 - 1];
    };
    return [
      transA ? span(A, 'k', 'm') : span(A, 'm', 'k'),
      transB ? span(B, 'n', 'k') : span(B, 'k', 'n'),
      span(C, 'm', 'n'),
    ];
  }

  /**
   * Dispatches a piece of the product if A, B and C each fit one binding and its tiles one
   * dispatch; otherwise halves the longest dimension among those at fault and recurses. A split of k
   * adds the second half onto the first (beta = 1).
   */
  private gemmSplit(transA: boolean, transB: boolean, q: GemmPiece, alpha: number,
                    A: Operand, B: Operand, beta: number, C: Operand, bias: GpuTensor | null): void {
    const ranges = this.gemmRanges(transA, transB, A, B, C, q);
    const limit = this.rt.windowElements;
    const tooBig = ranges.map(([first, last], i) => [A, B, C][i].t.buffer.size > this.rt.maxBindingBytes && last - first + 1 > limit);
    // One dispatch holds at most maxComputeWorkgroupsPerDimension tiles along m, n and the batch.
    const maxGroups = this.rt.ctx.adapter.limits.maxComputeWorkgroupsPerDimension;
    const tooMany = (['m', 'n', 'z'] as const).filter((d) => Math.ceil(extent(q, d) / (d === 'z' ? 1 : d === 'n' ? NARROW_COLUMNS : 64)) > maxGroups);
    if (!tooBig.some(Boolean) && tooMany.length === 0) {
      this.gemmDispatch(transA, transB, q, alpha, A, B, beta, C, bias, ranges);
      return;
    }
    const dims: GemmDim[] = [...tooMany];
    if (tooBig[0]) dims.push('m', 'k');
    if (tooBig[1]) dims.push('k', 'n');
    if (tooBig[2]) dims.push('m', 'n');
    // Whole matrices of a batch go first; then the longest of the dimensions that matter.
    const dim = extent(q, 'z') > 1 && !tooMany.includes('m') && !tooMany.includes('n') ? 'z'
      : dims.reduce((best, d) => (extent(q, d) > extent(q, best) ? d : best));
    const len = extent(q, dim);
    if (len <= 1) throw new Error('igpt webgpu: sgemm: a single element row does not fit one storage binding');
    // Split at a multiple of the 64-wide tile where possible, so both halves keep vec4 alignment.
    const [start, end] = q[dim];
    const mid = start + (len >= 128 ? Math.ceil(len / 128) * 64 : Math.ceil(len / 2));
    // A split of k adds the second half (and not the bias again) onto the first.
    this.gemmSplit(transA, transB, { ...q, [dim]: [start, mid] }, alpha, A, B, beta, C, bias);
    this.gemmSplit(transA, transB, { ...q, [dim]: [mid, end] }, alpha, A, B, dim === 'k' ? 1 : beta, C, dim === 'k' ? null : bias);
  }

  private gemmDispatch(transA: boolean, transB: boolean, q: GemmPiece, alpha: number, A: Operand, B: Operand,
                       beta: number, C: Operand, bias: GpuTensor | null, ranges: [number, number][]): void {
    const [a, b, c] = ranges.map(([first, last], i) => this.rt.bind([A, B, C][i].t, first, last - first + 1)) as [Bound, Bound, Bound];
    const bb = bias ? this.rt.bind(bias, q.n[0], extent(q, 'n')) : this.rt.bind(this.rt.placeholder);
    const m = extent(q, 'm'), n = extent(q, 'n'), k = extent(q, 'k'), batch = extent(q, 'z');
    const vec4 = gemmAlignedForVec4(transA, transB, m, n, k, [A.ld, B.ld, C.ld, A.stride, B.stride, C.stride],
                                    [a.shift, b.shift, c.shift]);
    // A few rows (decoding) against B as stored: the narrow kernel, its accumulators sized to m.
    const narrow = vec4 && !transA && !transB && m <= NARROW_ROWS;
    // Large products take 128-wide tiles (twice the arithmetic per shared read) while they still
    // make enough workgroups to fill a GPU; the rest 64-wide ones.
    const tile: GemmTile = vec4 && Math.ceil(m / 128) * Math.ceil(n / 128) * batch >= WIDE_TILE_GROUPS ? 128 : 64;
    const pipeline = this.rt.pipeline(narrow ? gemmNarrowWgsl(2 ** Math.ceil(Math.log2(m))) : gemmWgsl(vec4, tile), { BIAS: bias ? 1 : 0 });
    const groups: [number, number, number] = narrow ? [Math.ceil(n / NARROW_COLUMNS), 1, batch] : [Math.ceil(n / tile), Math.ceil(m / tile), batch];
    this.rt.dispatch(pipeline, {
      u: [m, n, k, A.ld, B.ld, C.ld, a.shift, b.shift, c.shift, A.stride, B.stride, C.stride, transA ? 1 : 0, transB ? 1 : 0, bb.shift],
      f: [alpha, beta],
    }, [a, b, c, bb], groups);
  }

  /** On the GPU a weight needs no packing: the product reads it in place. */
  packMatrix(b: GpuTensor, k: number, n: number): GpuPackedMatrix {
    need(b, k * n, 'packMatrix B');
    return { k, n, data: b };
  }

  /** C[m, n] = A[m, k]·B + bias, or C += A·B + bias with `accumulate` (no bias when null). */
  sgemmPacked(m: number, a: GpuTensor, b: GpuPackedMatrix, c: GpuTensor, accumulate: boolean, bias: GpuTensor | null = null): void {
    this.sgemmStridedBatched(false, false, m, b.n, b.k, 1, a, 0, b.k, 0, b.data, 0, b.n, 0, accumulate ? 1 : 0, c, 0, b.n, 0, 1, bias);
  }

  // -------------------------------------------------------------------------------------------
  // Elementwise

  /** out[r, :] += bias for each of `rows` rows of width n. */
  biasForward(out: GpuTensor, bias: GpuTensor, rows: number, n: number): void {
    need(out, rows * n, 'biasForward out');
    need(bias, n, 'biasForward bias');
    this.rt.requireWhole(bias, 'a bias');
    for (const { first, count } of this.rt.planChunks(rows, [n], 'biasForward')) {
      const o = this.rt.bind(out, first * n, count * n), bb = this.rt.bind(bias);
      this.elementwise(BIAS_FORWARD, {}, [count * n, n, o.shift, bb.shift], [], [o, bb], count * n);
    }
  }

  /** dbias += sum over rows of dout[r, :]. */
  biasBackward(dbias: GpuTensor, dout: GpuTensor, rows: number, n: number): void {
    need(dbias, n, 'biasBackward dbias');
    need(dout, rows * n, 'biasBackward dout');
    this.columnSum(dbias, dout, null, rows, n);
  }

  /**
   * out[j] += Σ_r a[r, j] (·x[r, j]·rstd[r] when `weighted` is given), rows chunked. Many rows are
   * split into slices of at least COLUMN_SLICE_ROWS, each summed into a row of partial sums that a
   * second dispatch adds: the first pass then has n/64 · slices workgroups, not n/64.
   */
  private columnSum(out: GpuTensor, a: GpuTensor, weighted: { x: GpuTensor; rstd: GpuTensor } | null, rows: number, n: number): void {
    this.rt.requireWhole(out, 'a column sum');
    const columnGroups = Math.ceil(n / COLUMN_GROUP.columns);
    for (const { first, count } of this.rt.planChunks(rows, [n], 'column sum')) {
      const slices = Math.min(MAX_COLUMN_SLICES, Math.ceil(count / COLUMN_SLICE_ROWS), Math.floor(this.rt.windowElements / n));
      const sliceRows = Math.ceil(count / slices);
      const ab = this.rt.bind(a, first * n, count * n);
      const x = weighted ? this.rt.bind(weighted.x, first * n, count * n) : this.rt.bind(this.rt.placeholder);
      const r = weighted ? this.rt.bind(weighted.rstd, first, count) : this.rt.bind(this.rt.placeholder);
      const sums = this.rt.pipeline(COLUMN_SUM, { WEIGHTED: weighted ? 1 : 0, PARTIALS: slices > 1 ? 1 : 0 });
      if (slices === 1) {
        const o = this.rt.bind(out);
        this.rt.dispatch(sums, { u: [count, n, count, o.shift, ab.shift, x.shift, r.shift] }, [o, ab, x, r], [columnGroups]);
        continue;
      }
      const partials = this.scratch('columnPartials', slices * n);
      const pb = this.rt.bind(partials, 0, slices * n);
      this.rt.dispatch(sums, { u: [count, n, sliceRows, pb.shift, ab.shift, x.shift, r.shift] }, [pb, ab, x, r], [columnGroups, slices]);
      const o = this.rt.bind(out), pa = this.rt.bind(partials, 0, slices * n), none = this.rt.bind(this.rt.placeholder);
      this.rt.dispatch(this.rt.pipeline(COLUMN_SUM, { WEIGHTED: 0, PARTIALS: 0 }),
                       { u: [slices, n, slices, o.shift, pa.shift, 0, 0] }, [o, pa, none, none], [columnGroups]);
    }
  }

  /** Quick GELU, out = x·sigmoid(1.702 x) over n values. */
  geluForward(out: GpuTensor, x: GpuTensor, n: number): void {
    need(out, n, 'geluForward out');
    need(x, n, 'geluForward x');
    for (const { first, count } of this.rt.planChunks(n, [1], 'geluForward')) {
      const o = this.rt.bind(out, first, count), xb = this.rt.bind(x, first, count);
      this.elementwise(GELU_FORWARD, {}, [count, o.shift, xb.shift], [], [o, xb], count);
    }
  }

  /** Writes dx = dout·GELU'(x); dx may be dout itself. */
  geluBackward(dx: GpuTensor, dout: GpuTensor, x: GpuTensor, n: number): void {
    need(dx, n, 'geluBackward dx');
    need(dout, n, 'geluBackward dout');
    need(x, n, 'geluBackward x');
    const inPlace = dx === dout;
    for (const { first, count } of this.rt.planChunks(n, [1], 'geluBackward')) {
      const d = this.rt.bind(dx, first, count), xb = this.rt.bind(x, first, count);
      const g = inPlace ? this.rt.bind(this.rt.placeholder) : this.rt.bind(dout, first, count);
      this.elementwise(GELU_BACKWARD, { IN_PLACE: inPlace ? 1 : 0 }, [count, d.shift, g.shift, xb.shift], [], [d, g, xb], count);
    }
  }

  /** One Adam step over n parameters (see Kernels.adamUpdate). */
  adamUpdate(params: GpuTensor, grads: GpuTensor, m: GpuTensor, v: GpuTensor, n: number, lr: number,
             beta1: number, beta2: number, eps: number, t: number, gate: GpuTensor): void {
    for (const [x, what] of [[params, 'params'], [grads, 'grads'], [m, 'm'], [v, 'v']] as const) need(x, n, `adamUpdate ${what}`);
    need(gate, 1, 'adamUpdate gate');
    const c1 = 1 / (1 - Math.pow(beta1, t));
    const c2 = 1 / (1 - Math.pow(beta2, t));
    const g = this.rt.bind(gate, 0, 1);
    for (const { first, count } of this.rt.planChunks(n, [1], 'adamUpdate')) {
      const b = [params, grads, m, v].map((x) => this.rt.bind(x, first, count));
      this.elementwise(ADAM, {}, [count, ...b.map((x) => x.shift), g.shift], [lr, beta1, beta2, eps, c1, c2], [...b, g], count);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Norm

  /** out = x·rsqrt(mean(x²) + eps)·g per row; writes rstd. */
  normForward(out: GpuTensor, rstd: GpuTensor, x: GpuTensor, g: GpuTensor, rows: number, d: number, eps: number): void {
    need(out, rows * d, 'normForward out'); need(rstd, rows, 'normForward rstd');
    need(x, rows * d, 'normForward x'); need(g, d, 'normForward g');
    this.rt.requireWhole(g, 'a norm gain');
    const pipeline = this.rt.pipeline(this.rowKernel(NORM_FORWARD));
    for (const { first, count } of this.rt.planChunks(rows, [d], 'normForward')) {
      const b = [this.rt.bind(out, first * d, count * d), this.rt.bind(rstd, first, count),
                 this.rt.bind(x, first * d, count * d), this.rt.bind(g)];
      this.rt.dispatch(pipeline, { u: [count, d, ...b.map((x) => x.shift)], f: [eps] }, b, this.rt.grid(count));
    }
  }

  /** Accumulates dx and dg (see Kernels.normBackward). */
  normBackward(dx: GpuTensor, dg: GpuTensor, dout: GpuTensor, x: GpuTensor, rstd: GpuTensor, g: GpuTensor,
               rows: number, d: number): void {
    need(dx, rows * d, 'normBackward dx'); need(dg, d, 'normBackward dg'); need(dout, rows * d, 'normBackward dout');
    need(x, rows * d, 'normBackward x'); need(rstd, rows, 'normBackward rstd'); need(g, d, 'normBackward g');
    this.rt.requireWhole(g, 'a norm gain');
    const pipeline = this.rt.pipeline(this.rowKernel(NORM_BACKWARD_DX));
    for (const { first, count } of this.rt.planChunks(rows, [d], 'normBackward')) {
      const b = [this.rt.bind(dx, first * d, count * d), this.rt.bind(dout, first * d, count * d),
                 this.rt.bind(x, first * d, count * d), this.rt.bind(rstd, first, count), this.rt.bind(g)];
      this.rt.dispatch(pipeline, { u: [count, d, ...b.map((x) => x.shift)] }, b, this.rt.grid(count));
    }
    this.columnSum(dg, dout, { x, rstd }, rows, d);
  }

  // -------------------------------------------------------------------------------------------
  // Attention

  private tiles(hs: number): AttentionTiles {
    return attentionTiles(hs, this.rt.ctx.adapter.limits.maxComputeWorkgroupStorageSize);
  }

  /** The attention kernels' parameters, in the order of their shared Params struct. */
  private attentionParams(T: number, H: number, hs: number, causal: boolean,
                          shifts: { qkv?: Bound; out?: Bound; lse?: Bound; dout?: Bound; dqkv?: Bound; delta?: Bound }) {
    const s = (b?: Bound): number => b?.shift ?? 0;
    return { u: [T, H, causal ? 1 : 0, s(shifts.qkv), s(shifts.out), s(shifts.lse), s(shifts.dout), s(shifts.dqkv), s(shifts.delta)],
             f: [1 / Math.sqrt(hs)] };
  }

  /** Writes out [B, T, H·hs] and lse [B, H, T] from qkv [B, T, 3·H·hs] (flash-style). */
  attentionForward(out: GpuTensor, lse: GpuTensor, qkv: GpuTensor, B: number, T: number, H: number, hs: number,
                   causal: boolean): void {
    const C = H * hs;
    need(out, B * T * C, 'attentionForward out'); need(lse, B * H * T, 'attentionForward lse');
    need(qkv, B * T * 3 * C, 'attentionForward qkv');
    const tiles = this.tiles(hs);
    const pipeline = this.rt.pipeline(attentionForwardWgsl(hs, tiles));
    for (const { first, count } of this.rt.planChunks(B, [3 * T * C], 'attentionForward')) {
      const q = this.rt.bind(qkv, first * T * 3 * C, count * T * 3 * C);
      const o = this.rt.bind(out, first * T * C, count * T * C);
      const l = this.rt.bind(lse, first * H * T, count * H * T);
      this.rt.dispatch(pipeline, this.attentionParams(T, H, hs, causal, { qkv: q, out: o, lse: l }), [q, o, l],
                       [Math.ceil(T / tiles.threads), count * H]);
    }
  }

  /** Writes dqkv from dout and the forward's qkv, out and lse. */
  attentionBackward(dqkv: GpuTensor, dout: GpuTensor, qkv: GpuTensor, out: GpuTensor, lse: GpuTensor,
                    B: number, T: number, H: number, hs: number, causal: boolean): void {
    const C = H * hs;
    need(dqkv, B * T * 3 * C, 'attentionBackward dqkv'); need(dout, B * T * C, 'attentionBackward dout');
    need(qkv, B * T * 3 * C, 'attentionBackward qkv'); need(out, B * T * C, 'attentionBackward out');
    need(lse, B * H * T, 'attentionBackward lse');
    const tiles = this.tiles(hs);
    const queries = this.rt.pipeline(attentionBackwardQueryWgsl(hs, tiles));
    const keys = this.rt.pipeline(attentionBackwardKeyWgsl(hs, tiles));
    const delta = this.scratch('delta', B * H * T);
    for (const { first, count } of this.rt.planChunks(B, [3 * T * C], 'attentionBackward')) {
      const bound = {
        qkv: this.rt.bind(qkv, first * T * 3 * C, count * T * 3 * C),
        out: this.rt.bind(out, first * T * C, count * T * C),
        lse: this.rt.bind(lse, first * H * T, count * H * T),
        dout: this.rt.bind(dout, first * T * C, count * T * C),
        dqkv: this.rt.bind(dqkv, first * T * 3 * C, count * T * 3 * C),
        delta: this.rt.bind(delta, first * H * T, count * H * T),
      };
      const params = this.attentionParams(T, H, hs, causal, bound);
      const groups = [Math.ceil(T / tiles.threads), count * H];
      this.rt.dispatch(queries, params, [bound.qkv, bound.out, bound.lse, bound.dout, bound.dqkv, bound.delta], groups);
      this.rt.dispatch(keys, params, [bound.qkv, bound.lse, bound.dout, bound.dqkv, bound.delta], groups);
    }
  }

  /** One cached decoding step at position t (see Kernels.attentionDecode); caches [B, H, maxT, hs]. */
  attentionDecode(out: GpuTensor, qkv: GpuTensor, kCache: GpuTensor, vCache: GpuTensor,
                  B: number, H: number, hs: number, t: number, maxT: number): void {
    this.attentionCached(out, qkv, kCache, vCache, B, H, hs, t, 1, maxT, 'attentionDecode');
  }

  /** Positions t..t+n-1 at once (see Kernels.attentionPrefill). */
  attentionPrefill(out: GpuTensor, qkv: GpuTensor, kCache: GpuTensor, vCache: GpuTensor,
                   B: number, H: number, hs: number, t: number, n: number, maxT: number): void {
    this.attentionCached(out, qkv, kCache, vCache, B, H, hs, t, n, maxT, 'attentionPrefill');
  }

  /**
   * Cached attention at n positions of B sequences: per run of sequences whose caches fit one
   * binding, and per run of positions whose scores (a maxT row per query and head) stay within
   * SCORES_LIMIT floats, one KV_CACHE_STORE dispatch (several positions) and one ATTENTION_CACHED.
   */
  private attentionCached(out: GpuTensor, qkv: GpuTensor, kCache: GpuTensor, vCache: GpuTensor,
                          B: number, H: number, hs: number, t: number, n: number, maxT: number, what: string): void {
    const C = H * hs;
    if (n < 1 || t + n > maxT) throw new Error(`igpt webgpu: ${what} at positions ${t}..${t + n - 1} of a ${maxT}-position cache`);
    need(out, n * B * C, `${what} out`); need(qkv, n * B * 3 * C, `${what} qkv`);
    need(kCache, B * H * maxT * hs, `${what} kCache`); need(vCache, B * H * maxT * hs, `${what} vCache`);
    const window = this.rt.windowElements;
    for (const { first, count } of this.rt.planChunks(B, [H * maxT * hs], what)) {
      const perDispatch = Math.max(1, Math.min(n, Math.floor(Math.min(SCORES_LIMIT, window) / (count * H * maxT)),
                                               1 + Math.floor((window / (3 * C) - count) / B)));
      for (let i = 0; i < n; i += perDispatch) {
        const m = Math.min(perDispatch, n - i), firstRow = i * B + first, rows = (m - 1) * B + count;
        const scores = this.scratch('scores', m * count * H * maxT);
        const q = this.rt.bind(qkv, firstRow * 3 * C, rows * 3 * C);
        const k = this.rt.bind(kCache, first * H * maxT * hs, count * H * maxT * hs);
        const v = this.rt.bind(vCache, first * H * maxT * hs, count * H * maxT * hs);
        if (m > 1) {
          this.elementwise(KV_CACHE_STORE, {}, [m * count * C, H, hs, t + i, maxT, B, count, q.shift, k.shift, v.shift], [],
                           [q, k, v], m * count * C);
        }
        const o = this.rt.bind(out, firstRow * C, rows * C), sc = this.rt.bind(scores, 0, m * count * H * maxT);
        this.rt.dispatch(this.rt.pipeline(this.rowKernel(ATTENTION_CACHED, DECODE_GROUP), { STORE: m > 1 ? 0 : 1 }),
                         { u: [H, hs, t + i, maxT, B, count, o.shift, q.shift, k.shift, v.shift, sc.shift], f: [1 / Math.sqrt(hs)] },
                         [o, q, k, v, sc], this.rt.grid(m * count * H));
      }
    }
  }

  /**
   * Pixel t of B images drawn from logits [B, V] (see DRAW_PIXELS and Kernels.pixelDraws): writes
   * tokens[b·n + t] and drawn[b]; uniforms[uAt + b] is image b's random number in [0, 1).
   */
  drawPixels(tokens: GpuTensor, drawn: GpuTensor, t: number, n: number, logits: GpuTensor, uniforms: GpuTensor, uAt: number,
             B: number, V: number, temperature: number, topK: number, topP: number): void {
    if (V > DRAW_MAX_PALETTE) throw new Error(`igpt webgpu: drawPixels takes palettes of up to ${DRAW_MAX_PALETTE} colors, not ${V}`);
    if (t >= n) throw new Error(`igpt webgpu: drawPixels at pixel ${t} of ${n}`);
    need(tokens, B * n, 'drawPixels tokens', 'i32'); need(drawn, B, 'drawPixels drawn', 'i32');
    need(logits, B * V, 'drawPixels logits'); need(uniforms, uAt + B, 'drawPixels uniforms');
    const b = [this.rt.bind(tokens, 0, B * n), this.rt.bind(drawn, 0, B), this.rt.bind(logits, 0, B * V), this.rt.bind(uniforms, uAt, B)];
    this.rt.dispatch(this.rt.pipeline(DRAW_PIXELS), { u: [n, t, V, topK, ...b.map((x) => x.shift)], f: [temperature, topP] }, b, this.rt.grid(B));
  }

  // -------------------------------------------------------------------------------------------
  // Losses

  /**
   * Softmax cross-entropy over rows of logits [rows, V] (see Kernels.crossEntropy): writes losses,
   * dlogits when given, and total[0] = the sum of the losses (NaN if a target is ≥ V).
   */
  crossEntropy(losses: GpuTensor, dlogits: GpuTensor | null, logits: GpuTensor, targets: GpuTensor,
               rows: number, V: number, gradScale: number, total: GpuTensor): void {
    need(losses, rows, 'crossEntropy losses'); need(logits, rows * V, 'crossEntropy logits');
    need(targets, rows, 'crossEntropy targets', 'i32'); need(total, 1, 'crossEntropy total');
    if (dlogits) need(dlogits, rows * V, 'crossEntropy dlogits');
    const pipeline = this.rt.pipeline(this.rowKernel(CROSS_ENTROPY), { WITH_GRAD: dlogits ? 1 : 0 });
    const sum = this.rt.pipeline(this.rowKernel(SUM_INTO));
    this.rt.zero(total, 0, 1);
    for (const { first, count } of this.rt.planChunks(rows, [V], 'crossEntropy')) {
      const l = this.rt.bind(losses, first, count);
      const b = [l, dlogits ? this.rt.bind(dlogits, first * V, count * V) : this.rt.bind(this.rt.placeholder),
                 this.rt.bind(logits, first * V, count * V), this.rt.bind(targets, first, count)];
      this.rt.dispatch(pipeline, { u: [count, V, ...b.map((x) => x.shift)], f: [gradScale] }, b, this.rt.grid(count));
      const tb = this.rt.bind(total, 0, 1);
      this.rt.dispatch(sum, { u: [count, tb.shift, l.shift] }, [tb, l], [1]);
    }
  }

  /**
   * total[0] = Σ x[i]²: per chunk, up to 256 workgroups write partial sums, one workgroup adds
   * them into the total (two passes, so a large gradient keeps the GPU busy, not one workgroup).
   */
  sumOfSquares(total: GpuTensor, x: GpuTensor): void {
    need(total, 1, 'sumOfSquares total');
    const partials = this.scratch('partials', 256);
    const square = this.rt.pipeline(this.rowKernel(SQUARE_PARTIALS)), sum = this.rt.pipeline(this.rowKernel(SUM_INTO));
    this.rt.zero(total, 0, 1);
    for (const { first, count } of this.rt.planChunks(x.length, [1], 'sumOfSquares')) {
      const groups = Math.min(256, Math.ceil(count / ROW_GROUP));
      const pb = this.rt.bind(partials, 0, groups), xb = this.rt.bind(x, first, count);
      this.rt.dispatch(square, { u: [count, groups, pb.shift, xb.shift] }, [pb, xb], [groups]);
      const tb = this.rt.bind(total, 0, 1), sb = this.rt.bind(partials, 0, groups);
      this.rt.dispatch(sum, { u: [groups, tb.shift, sb.shift] }, [tb, sb], [1]);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Embeddings and pooling (the model's layers.ts does these in TypeScript on the CPU)

  /** h0[b, t, :] = wte[token] + wpe[t]; token -1 (masked) keeps wpe only. tokens: i32 [B, T]. */
  embeddingForward(out: GpuTensor, tokens: GpuTensor, wte: GpuTensor, wpe: GpuTensor, B: number, T: number, d: number): void {
    need(out, B * T * d, 'embeddingForward out'); need(tokens, B * T, 'embeddingForward tokens', 'i32');
    need(wpe, T * d, 'embeddingForward wpe');
    this.rt.requireWhole(wte, 'wte'); this.rt.requireWhole(wpe, 'wpe');
    for (const { first, count } of this.rt.planChunks(B * T, [d], 'embeddingForward')) {
      const b = [this.rt.bind(out, first * d, count * d), this.rt.bind(tokens, first, count), this.rt.bind(wte), this.rt.bind(wpe)];
      this.elementwise(EMBEDDING_FORWARD, {}, [count * d, T, d, first, ...b.map((x) => x.shift)], [], b, count * d);
    }
  }

  /** Accumulates dwte (rows of the tokens used, masked ones skipped) and dwpe. */
  embeddingBackward(dwte: GpuTensor, dwpe: GpuTensor, dout: GpuTensor, tokens: GpuTensor, B: number, T: number, d: number): void {
    need(dwpe, T * d, 'embeddingBackward dwpe'); need(dout, B * T * d, 'embeddingBackward dout');
    need(tokens, B * T, 'embeddingBackward tokens', 'i32');
    this.rt.requireWhole(dwte, 'dwte'); this.rt.requireWhole(dwpe, 'dwpe');
    const positions = this.rt.pipeline(POSITION_EMBEDDING_BACKWARD);
    for (const { first, count } of this.rt.planChunks(B, [T * d], 'embeddingBackward')) {
      const b = [this.rt.bind(dwpe), this.rt.bind(dout, first * T * d, count * T * d)];
      this.rt.dispatch(positions, { u: [T * d, count, T, d, ...b.map((x) => x.shift)] }, b, this.rt.grid(Math.ceil(T * d / 64)));
    }
    const tokensPipeline = this.rt.pipeline(TOKEN_EMBEDDING_BACKWARD);
    for (const { first, count } of this.rt.planChunks(B * T, [d], 'embeddingBackward')) {
      const b = [this.rt.bind(dwte), this.rt.bind(dout, first * d, count * d), this.rt.bind(tokens, first, count)];
      this.rt.dispatch(tokensPipeline, { u: [count, d, ...b.map((x) => x.shift)] }, b, this.rt.grid(Math.ceil(TOKEN_CLASSES * d / 64)));
    }
  }

  /** pooled[b, :] = mean over t of x[b, t, :], written at pooledOffset (features of one layer). */
  meanPoolForward(pooled: GpuTensor, x: GpuTensor, B: number, T: number, d: number, pooledOffset = 0): void {
    need(pooled, pooledOffset + B * d, 'meanPoolForward pooled'); need(x, B * T * d, 'meanPoolForward x');
    const pipeline = this.rt.pipeline(MEAN_POOL_FORWARD);
    for (const { first, count } of this.rt.planChunks(B, [T * d], 'meanPoolForward')) {
      const b = [this.rt.bind(pooled, pooledOffset + first * d, count * d), this.rt.bind(x, first * T * d, count * T * d)];
      this.rt.dispatch(pipeline, { u: [count * d, T, d, ...b.map((x) => x.shift)] }, b, this.rt.grid(Math.ceil(count * d / 64)));
    }
  }

  /** Accumulates dx[b, t, :] += dpooled[b, :] / T. */
  meanPoolBackward(dx: GpuTensor, dpooled: GpuTensor, B: number, T: number, d: number): void {
    need(dx, B * T * d, 'meanPoolBackward dx'); need(dpooled, B * d, 'meanPoolBackward dpooled');
    for (const { first, count } of this.rt.planChunks(B, [T * d], 'meanPoolBackward')) {
      const b = [this.rt.bind(dx, first * T * d, count * T * d), this.rt.bind(dpooled, first * d, count * d)];
      this.elementwise(MEAN_POOL_BACKWARD, {}, [count * T * d, T, d, ...b.map((x) => x.shift)], [], b, count * T * d);
    }
  }
}
