/**
 * The one interface all heavy arithmetic goes through. Two implementations: `native` (a Node-API
 * addon over OpenBLAS plus threaded fused loops) and `portable` (TypeScript, runs in browsers).
 * The plain loops of loops.ts (the portable backend without WebAssembly SIMD) are the reference
 * implementation: the one to read for what each kernel computes. test/kernels.test.ts runs every
 * backend, those loops included, through the same cases against float64 references, so each
 * agrees with the loops within float32 rounding.
 *
 * Conventions: every matrix is row-major float32; buffers are the caller's memory (pass
 * `subarray` views for offsets, never copies); `rows` is the flattened batch·time dimension.
 * "writes" means the output is overwritten, "accumulates" means `+=`.
 */
export interface Kernels {
  readonly name: 'native' | 'portable';
  /** Threads used by the fused loops (and by GEMM where the backend controls it). */
  readonly threads: number;

  /**
   * C = alpha·op(A)·op(B) + beta·C, with op(A) m×k, op(B) k×n, C m×n.
   * lda/ldb/ldc are the row strides of A, B, C as stored (A is stored k×m when transA).
   * With beta = 0, C is written without being read (NaN in C does not leak).
   */
  sgemm(transA: boolean, transB: boolean, m: number, n: number, k: number, alpha: number,
        a: Float32Array, lda: number, b: Float32Array, ldb: number,
        beta: number, c: Float32Array, ldc: number): void;

  /**
   * B [k, n] (row-major, as the linear layers store their weights) rearranged once for
   * `sgemmPacked`, in the backend's own layout. For products of a few rows at a time (decoding),
   * where packing B inside every sgemm call would cost as much as the product. With `half`, B is
   * stored as IEEE half floats where the backend supports them (`data` is then a Uint16Array):
   * half the bytes to read, B rounded to 11 significant bits.
   */
  packMatrix(b: Float32Array, k: number, n: number, half?: boolean): PackedMatrix;

  /** C[m, n] = A[m, k]·B, or C += A·B with `accumulate`; B from packMatrix, A and C row-major. */
  sgemmPacked(m: number, a: Float32Array, b: PackedMatrix, c: Float32Array, accumulate: boolean): void;

  /**
   * Matrix products with bf16 operands and float32 accumulation. Present only where the backend
   * was loaded for bf16 (`loadKernels`' precision) and the CPU multiplies bf16 in hardware; the
   * model then runs its linear layers' products here (see ImageGPT), everything else in float32.
   */
  readonly bf16?: Bf16Products;

  /** out[r, :] += bias for each of `rows` rows of width n. */
  biasForward(out: Float32Array, bias: Float32Array, rows: number, n: number): void;
  /** dbias += sum over rows of dout[r, :]. */
  biasBackward(dbias: Float32Array, dout: Float32Array, rows: number, n: number): void;

  /**
   * iGPT's gain-only norm: out[r, :] = x[r, :] · rsqrt(mean(x[r, :]²) + eps) · g.
   * Writes out and rstd[r] (kept for the backward pass).
   */
  normForward(out: Float32Array, rstd: Float32Array, x: Float32Array, g: Float32Array,
              rows: number, d: number, eps: number): void;
  /** Accumulates dx (the residual stream's gradient) and dg. */
  normBackward(dx: Float32Array, dg: Float32Array, dout: Float32Array, x: Float32Array,
               rstd: Float32Array, g: Float32Array, rows: number, d: number): void;

  /** Quick GELU, out = x · sigmoid(1.702 x), elementwise over n values. */
  geluForward(out: Float32Array, x: Float32Array, n: number): void;
  /** Writes dx = dout · d/dx[quick GELU](x). dx may alias dout. */
  geluBackward(dx: Float32Array, dout: Float32Array, x: Float32Array, n: number): void;

  /**
   * Multi-head attention core (after c_attn, before c_proj).
   * qkv: [B, T, 3·H·hs], per row q (H·hs) then k then v, head h at columns h·hs..(h+1)·hs.
   * Writes out: [B, T, H·hs] and att: [B, H, T, T], the softmax probabilities (kept for the
   * backward pass), with scores scaled by 1/sqrt(hs). With `causal`, query t sees keys 0..t only
   * and att entries above the diagonal are written as 0.
   */
  attentionForward(out: Float32Array, att: Float32Array, qkv: Float32Array,
                   B: number, T: number, H: number, hs: number, causal: boolean): void;
  /** Writes dqkv [B, T, 3·H·hs] from dout [B, T, H·hs] and the forward's qkv and att. */
  attentionBackward(dqkv: Float32Array, dout: Float32Array, qkv: Float32Array, att: Float32Array,
                    B: number, T: number, H: number, hs: number, causal: boolean): void;

  /**
   * One step of cached (incremental) causal attention for B sequences at position t (0-based).
   * qkv: [B, 3·H·hs], the new token's q, k, v (layout as in attentionForward); its k and v are
   * first copied into the caches at position t. kCache, vCache: B·H·maxT·hs elements each, laid
   * out as `kvLayout` says.
   * Writes out: [B, H·hs], each head attending to cached keys 0..t with scale 1/sqrt(hs).
   */
  attentionDecode(out: Float32Array, qkv: Float32Array, kCache: Float32Array, vCache: Float32Array,
                  B: number, H: number, hs: number, t: number, maxT: number): void;

  /**
   * How attentionDecode lays out its caches: 'channels' is [B, H, hs, maxT] (each head's keys and
   * values channel by channel, so both products run down contiguous positions: native), and
   * 'positions' is [B, H, maxT, hs] (each head's cache one contiguous run, which the portable
   * backend copies into WebAssembly memory in one piece per step).
   */
  readonly kvLayout: 'channels' | 'positions';

  /**
   * How many images to decode together when sampling (AR), given the bytes of one image's key/value
   * caches and the bytes every image shares (the weights). Decoding reads all of them once per
   * pixel: where that traffic bounds it (native), as many images as keep their caches and the
   * weights in the last-level cache the machine reports; Infinity where arithmetic bounds it.
   */
  decodeGroup(imageBytes: number, sharedBytes: number): number;

  /**
   * attentionDecode with caches of IEEE half floats (same layout): decoding is bound by reading
   * the caches, and this halves the bytes, at the cost of rounding the cached keys and values to
   * 11 significant bits. Present only where the CPU converts halves in hardware.
   */
  attentionDecodeHalf?(out: Float32Array, qkv: Float32Array, kCache: Uint16Array, vCache: Uint16Array,
                       B: number, H: number, hs: number, t: number, maxT: number): void;

  /**
   * Softmax cross-entropy over rows of logits [rows, V]. targets[r] < 0 means "ignore row r".
   * Writes losses[r] (NLL in nats, 0 for ignored rows) and, when dlogits is given,
   * dlogits[r, :] = (softmax(logits[r, :]) - onehot(target)) · gradScale (0 for ignored rows).
   * Returns the sum of losses over the rows that count.
   */
  crossEntropy(losses: Float32Array, dlogits: Float32Array | null, logits: Float32Array,
               targets: Int32Array, rows: number, V: number, gradScale: number): number;

  /**
   * One Adam step (no weight decay) over n parameters, bias-corrected with step t (1-based):
   * m = b1·m + (1-b1)·g; v = b2·v + (1-b2)·g²; p -= lr · m̂ / (sqrt(v̂) + eps).
   */
  adamUpdate(params: Float32Array, grads: Float32Array, m: Float32Array, v: Float32Array,
             n: number, lr: number, beta1: number, beta2: number, eps: number, t: number): void;
}

/** A matrix B [k, n] in a backend's packed layout (see Kernels.packMatrix). */
export interface PackedMatrix {
  readonly k: number;
  readonly n: number;
  readonly data: Float32Array | Uint16Array;
}

/** bf16 matrix products (Kernels.bf16): the weights' bf16 copies and the products using them. */
export interface Bf16Products {
  /** dst[i] = src[i] rounded to bf16 (to nearest, ties to even), for n values. */
  toBf16(dst: Uint16Array, src: Float32Array, n: number): void;
  /**
   * sgemm's product (same arguments and conventions) with every operand in bf16: a Uint16Array
   * holds bf16 values already (a weight's copy), a Float32Array is rounded to bf16 first. Sums in
   * float32; C stays float32.
   */
  gemm(transA: boolean, transB: boolean, m: number, n: number, k: number, alpha: number,
       a: Float32Array | Uint16Array, lda: number, b: Float32Array | Uint16Array, ldb: number,
       beta: number, c: Float32Array, ldc: number): void;
}
