/**
 * The one interface all heavy arithmetic goes through, generic in the backend's array handle `T`.
 * Three implementations: `native` (a Node-API addon over OpenBLAS plus threaded fused loops) and
 * `portable` (TypeScript, runs in browsers), whose handles are Float32Arrays in host memory, and
 * `webgpu` (src/kernels/webgpu), whose handles are tensors in GPU memory. The model is written
 * once over `T` and never looks inside a handle; only `read` brings values back to the host.
 * The plain loops of loops.ts (the portable backend without WebAssembly SIMD) are the reference
 * implementation: the one to read for what each kernel computes. test/kernels.test.ts runs every
 * CPU backend, those loops included, through the same cases against float64 references, and
 * test/webgpu.test.ts the GPU kernels against the loops.
 *
 * Conventions: every matrix is row-major float32; arrays are the backend's handles (pass `view`s
 * for offsets, never copies); integer inputs (tokens, targets) are host Int32Arrays, which a GPU
 * backend uploads in program order; `rows` is the flattened batch·time dimension. "writes" means
 * the output is overwritten, "accumulates" means `+=`. Calls record work and return: on the CPU
 * it is done on return, on a GPU when a later `read` resolves.
 */
export interface Kernels<T extends DeviceArray = Float32Array> {
  readonly name: 'native' | 'portable' | 'webgpu';
  /** Threads used by the fused loops (and by GEMM where the backend controls it); 1 on a GPU. */
  readonly threads: number;
  /**
   * On a GPU, the largest array it allocates (the adapter's maxBufferSize), in bytes, for checking
   * a model's size before work starts; absent on the CPU, where the host's memory is the limit.
   */
  readonly maxArrayBytes?: number;

  /** A zero-filled array of `length` floats. */
  alloc(length: number): T;
  /** Elements [offset, offset + length) of t, sharing its memory (a `subarray` on the CPU). */
  view(t: T, offset: number, length: number): T;
  /**
   * The host array as a handle: on the CPU the array itself (no copy: the handle and the array
   * are one memory), on a GPU a new device array holding a copy.
   */
  fromHost(src: Float32Array): T;
  /** Overwrites t[0, src.length) with src, in program order with the recorded work. */
  upload(dst: T, src: Float32Array): void;
  /**
   * t's values on the host once all recorded work is done. On the CPU it resolves at once with t
   * itself (no copy: do not keep it across later kernel calls that write t).
   */
  read(t: T): Promise<Float32Array>;
  /** dst[0, src.length) = src. */
  copy(dst: T, src: T): void;
  /** t = 0. */
  zero(t: T): void;
  /**
   * out[0] = Σ x[i]² over all of x (NaN and inf propagate): a gradient's norm without reading the
   * gradient back.
   */
  sumOfSquares(out: T, x: T): void;

  /**
   * C = alpha·op(A)·op(B) + beta·C, with op(A) m×k, op(B) k×n, C m×n.
   * lda/ldb/ldc are the row strides of A, B, C as stored (A is stored k×m when transA).
   * With beta = 0, C is written without being read (NaN in C does not leak).
   */
  sgemm(transA: boolean, transB: boolean, m: number, n: number, k: number, alpha: number,
        a: T, lda: number, b: T, ldb: number,
        beta: number, c: T, ldc: number): void;

  /**
   * B [k, n] (row-major, as the linear layers store their weights) rearranged once for
   * `sgemmPacked`, in the backend's own layout. For products of a few rows at a time (decoding),
   * where packing B inside every sgemm call would cost as much as the product. With `half`, B is
   * stored as IEEE half floats where the backend supports them (`data` is then a Uint16Array):
   * half the bytes to read, B rounded to 11 significant bits.
   */
  packMatrix(b: T, k: number, n: number, half?: boolean): PackedMatrix<T>;

  /**
   * C[m, n] = A[m, k]·B + bias, or C += A·B + bias with `accumulate` (bias [n] added to every row,
   * none when null); B from packMatrix, A and C row-major. A GPU adds the bias in the product's
   * store (one dispatch, not two: decoding is bound by dispatches there).
   */
  sgemmPacked(m: number, a: T, b: PackedMatrix<T>, c: T, accumulate: boolean, bias: T | null): void;

  /**
   * Matrix products with bf16 operands and float32 accumulation. Present only where the backend
   * was loaded for bf16 (`loadKernels`' precision) and the CPU multiplies bf16 in hardware; the
   * model then runs its linear layers' products here (see ImageGPT), everything else in float32.
   */
  readonly bf16?: Bf16Products<T>;

  /**
   * Pixel draws where the logits are (a GPU's backend), so that sampling records pixel after
   * pixel without waiting for a readback of each; absent on the CPU backends, where the host draws.
   */
  readonly pixelDraws?: PixelDraws<T>;

  /** out[r, :] += bias for each of `rows` rows of width n. */
  biasForward(out: T, bias: T, rows: number, n: number): void;
  /** dbias += sum over rows of dout[r, :]. */
  biasBackward(dbias: T, dout: T, rows: number, n: number): void;

  /**
   * iGPT's gain-only norm: out[r, :] = x[r, :] · rsqrt(mean(x[r, :]²) + eps) · g.
   * Writes out and rstd[r] (kept for the backward pass).
   */
  normForward(out: T, rstd: T, x: T, g: T,
              rows: number, d: number, eps: number): void;
  /** Accumulates dx (the residual stream's gradient) and dg. */
  normBackward(dx: T, dg: T, dout: T, x: T,
               rstd: T, g: T, rows: number, d: number): void;

  /** Quick GELU, out = x · sigmoid(1.702 x), elementwise over n values. */
  geluForward(out: T, x: T, n: number): void;
  /** Writes dx = dout · d/dx[quick GELU](x). dx may alias dout. */
  geluBackward(dx: T, dout: T, x: T, n: number): void;

  /**
   * Floats of the state attentionForward keeps for the backward pass: B·H·T·T on the CPU (`att`,
   * the softmax probabilities), B·H·T on a GPU (the log-sum-exp per query, flash-style: the
   * backward recomputes the probabilities and never stores T×T).
   */
  attentionStateLength(B: number, T: number, H: number): number;

  /**
   * Multi-head attention core (after c_attn, before c_proj).
   * qkv: [B, T, 3·H·hs], per row q (H·hs) then k then v, head h at columns h·hs..(h+1)·hs.
   * Writes out: [B, T, H·hs] and `state` (attentionStateLength floats; on the CPU att
   * [B, H, T, T], the softmax probabilities, with entries above the diagonal 0 when causal), with
   * scores scaled by 1/sqrt(hs). With `causal`, query t sees keys 0..t only.
   */
  attentionForward(out: T, state: T, qkv: T,
                   B: number, T: number, H: number, hs: number, causal: boolean): void;
  /**
   * Writes dqkv [B, T, 3·H·hs] from dout [B, T, H·hs] and the forward's qkv, out and state (the
   * CPU backends do not need `out`; the GPU's flash-style backward does).
   */
  attentionBackward(dqkv: T, dout: T, qkv: T, out: T, state: T,
                    B: number, T: number, H: number, hs: number, causal: boolean): void;

  /**
   * One step of cached (incremental) causal attention for B sequences at position t (0-based).
   * qkv: [B, 3·H·hs], the new token's q, k, v (layout as in attentionForward); its k and v are
   * first copied into the caches at position t. kCache, vCache: B·H·maxT·hs elements each, laid
   * out as `kvLayout` says.
   * Writes out: [B, H·hs], each head attending to cached keys 0..t with scale 1/sqrt(hs).
   */
  attentionDecode(out: T, qkv: T, kCache: T, vCache: T,
                  B: number, H: number, hs: number, t: number, maxT: number): void;

  /**
   * attentionDecode at n consecutive positions t..t+n-1 at once (a completion's given pixels): qkv
   * [n, B, 3·H·hs] position-major, out [n, B, H·hs]; the caches end as after n decoding steps.
   * Where dispatching costs (a GPU), a few dispatches instead of n; the CPU backends leave it out
   * and the decoder steps position by position.
   */
  attentionPrefill?(out: T, qkv: T, kCache: T, vCache: T,
                    B: number, H: number, hs: number, t: number, n: number, maxT: number): void;

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
  attentionDecodeHalf?(out: T, qkv: T, kCache: Uint16Array, vCache: Uint16Array,
                       B: number, H: number, hs: number, t: number, maxT: number): void;

  /**
   * Softmax cross-entropy over rows of logits [rows, V]. targets[r] < 0 means "ignore row r".
   * Writes losses[r] (NLL in nats, 0 for ignored rows) and, when dlogits is given,
   * dlogits[r, :] = (softmax(logits[r, :]) - onehot(target)) · gradScale (0 for ignored rows).
   * Writes total[0] = the sum of losses over the rows that count (a handle, so that a GPU step
   * never waits for it: the host reads it when it prints).
   */
  crossEntropy(losses: T, dlogits: T | null, logits: T, targets: Int32Array,
               rows: number, V: number, gradScale: number, total: T): void;

  /**
   * h0[b, t, :] = wte[token] + wpe[t] for tokens [B, T]. A token of -1 is masked (BERT): its
   * content embedding is left out and only the position embedding remains.
   */
  embeddingForward(out: T, tokens: Int32Array, wte: T, wpe: T, B: number, T: number, d: number): void;
  /** Accumulates dwte (rows of the tokens used, masked ones skipped) and dwpe. */
  embeddingBackward(dwte: T, dwpe: T, dout: T, tokens: Int32Array, B: number, T: number, d: number): void;

  /** Writes pooled[b, :] = mean over t of x[b, t, :]. */
  meanPoolForward(pooled: T, x: T, B: number, T: number, d: number): void;
  /** Accumulates dx[b, t, :] += dpooled[b, :] / T. */
  meanPoolBackward(dx: T, dpooled: T, B: number, T: number, d: number): void;

  /**
   * One Adam step (no weight decay) over n parameters, bias-corrected with step t (1-based):
   * m = b1·m + (1-b1)·g; v = b2·v + (1-b2)·g²; p -= lr · m̂ / (sqrt(v̂) + eps). Nothing changes
   * when gate[0] (the gradient's sum of squares) is NaN or inf: a bad step is caught on the device,
   * before the host has read its numbers back.
   */
  adamUpdate(params: T, grads: T, m: T, v: T,
             n: number, lr: number, beta1: number, beta2: number, eps: number, t: number, gate: T): void;
}

/** What every backend's array handle offers: its length in floats. */
export interface DeviceArray { readonly length: number }

/** A matrix B [k, n] in a backend's packed layout (see Kernels.packMatrix). */
export interface PackedMatrix<T extends DeviceArray = Float32Array> {
  readonly k: number;
  readonly n: number;
  readonly data: T | Uint16Array;
}

/** bf16 matrix products (Kernels.bf16): the weights' bf16 copies and the products using them. */
export interface Bf16Products<T extends DeviceArray = Float32Array> {
  /** dst[i] = src[i] rounded to bf16 (to nearest, ties to even), for n values. */
  toBf16(dst: Uint16Array, src: T, n: number): void;
  /**
   * sgemm's product (same arguments and conventions) with every operand in bf16: a Uint16Array
   * holds bf16 values already (a weight's copy), a T is rounded to bf16 first. Sums in
   * float32; C stays float32.
   */
  gemm(transA: boolean, transB: boolean, m: number, n: number, k: number, alpha: number,
       a: T | Uint16Array, lda: number, b: T | Uint16Array, ldb: number,
       beta: number, c: T, ldc: number): void;
}

/**
 * Sampling's draws on the device (Kernels.pixelDraws). Integer arrays are handles too (T), made
 * and read here. A draw matches the host's samplePixel for the same logits and random number up
 * to the rounding of the probabilities.
 */
export interface PixelDraws<T extends DeviceArray> {
  /** The largest palette `draw` takes. */
  readonly maxPaletteSize: number;
  /** A device array of integer ids holding `ids`. */
  idsFromHost(ids: Int32Array): T;
  /** The ids back on the host. */
  readIds(ids: T): Promise<Int32Array>;
  /**
   * Pixel t of B images of n pixels from logits [B, V], as samplePixel draws it with random number
   * uniforms[uAt + b] for image b: writes tokens[b·n + t] and drawn[b].
   */
  draw(tokens: T, drawn: T, t: number, n: number, logits: T, uniforms: T, uAt: number, B: number, V: number,
       o: { temperature: number; topK: number; topP: number }): void;
  /** x[b, :] = wte[drawn[b]] + wpe[0, :] (wpe: a view of the position's row), for B rows of width d. */
  embed(x: T, drawn: T, wte: T, wpe: T, B: number, d: number): void;
}
