/**
 * The portable backend's fast path: GEMM and attention over the WebAssembly SIMD kernels of
 * simd.ts. Operands are copied (or packed) into the wasm memory, which doubles as reusable scratch
 * and only grows.
 */
import { ATTENTION_BLOCK, copyFloats, headOffsets, sgemmLoops, type Gemm } from './loops.js';
import { MR, NR, type SimdKernels } from './simd.js';

/** Column block of B packed at once, rows of A per packed block, and the shared-dimension block. */
const NC = 2048;
const MC = 128;
const KC = 256;
/** Floats of packed B at most (32 MB), which bounds the wasm memory a long shared dimension needs. */
const PACKED_B = 1 << 23;
/** Products with fewer multiply-adds than this skip packing and use the plain loops. */
const SMALL_GEMM = 512;
/** Products with fewer rows than this (and more columns) are computed transposed. */
const SWAP_ROWS = 64;

export interface SimdEngine {
  gemm: Gemm;
  attentionForward(out: Float32Array, att: Float32Array, qkv: Float32Array,
                   B: number, T: number, H: number, hs: number, causal: boolean): void;
  attentionBackward(dqkv: Float32Array, dout: Float32Array, qkv: Float32Array, att: Float32Array,
                    B: number, T: number, H: number, hs: number, causal: boolean): void;
  geluForward(out: Float32Array, x: Float32Array, n: number): void;
  geluBackward(dx: Float32Array, dout: Float32Array, x: Float32Array, n: number): void;
  attentionDecode(out: Float32Array, qkv: Float32Array, kCache: Float32Array, vCache: Float32Array,
                  B: number, H: number, hs: number, t: number, maxT: number): void;
  normForward(out: Float32Array, rstd: Float32Array, x: Float32Array, g: Float32Array,
              rows: number, d: number, eps: number): void;
  normBackward(dx: Float32Array, dg: Float32Array, dout: Float32Array, x: Float32Array,
               rstd: Float32Array, g: Float32Array, rows: number, d: number): void;
}

/** Floats per chunk of an elementwise map (inputs and output chunks sit side by side in wasm memory). */
const CHUNK = 16384;

/**
 * GEMM over the WebAssembly micro-kernel, Goto-style: op(B) is packed once per column block into
 * kc×NR panels (times alpha), A is copied in MC×kc blocks, the kernel accumulates an MC×nc block
 * of C in wasm memory over the shared dimension, and the block is merged into C (with beta) once.
 */
export function createSimdEngine(simd: SimdKernels): SimdEngine {
  // Local copies: imported bindings can be slow to read in hot loops under some loaders.
  const mr = MR;
  const nr = NR;
  let heap = new Float32Array(simd.memory.buffer);
  /** Grows the wasm memory to hold at least `floats` floats (it never shrinks). */
  const reserve = (floats: number): void => {
    const needed = floats * 4;
    const have = simd.memory.buffer.byteLength;
    if (needed > have) {
      try {
        simd.memory.grow(Math.ceil((needed - have) / 65536));
      } catch {
        throw new Error(`portable kernels: cannot grow WebAssembly memory to ${Math.ceil(needed / 2 ** 20)} MB`);
      }
    }
    if (heap.buffer !== simd.memory.buffer) heap = new Float32Array(simd.memory.buffer);
  };

  /**
   * The blocked GEMM; with transC it computes Cᵀ (m×n) into C (n×m, row stride ldc), which lets a
   * product with few rows swap operands so that the small one is the one packed.
   */
  const gemmBlocked = (transA: boolean, transB: boolean, m: number, n: number, k: number, alpha: number,
                       a: Float32Array, aOff: number, lda: number, b: Float32Array, bOff: number, ldb: number,
                       beta: number, c: Float32Array, cOff: number, ldc: number, transC: boolean): void => {
    // Column block: at most NC, and narrower when k is long so packed B stays within PACKED_B floats.
    const ncBlock = Math.max(nr, Math.min(NC, Math.floor(PACKED_B / k / nr) * nr));
    const ncMax = Math.min(ncBlock, Math.ceil(n / nr) * nr);
    // Layout in floats: [packed B: k × ncMax][packed A: MC × KC][C block: MC × ncMax].
    const bBase = 0;
    const aBase = bBase + k * ncMax;
    const cBase = aBase + MC * KC;
    reserve(cBase + MC * ncMax);
    const h = heap;

    for (let jc = 0; jc < n; jc += ncBlock) {
      const nc = Math.min(ncBlock, n - jc);
      const nTiles = Math.ceil(nc / nr);
      const ncPad = nTiles * nr;

      // Pack alpha·op(B)[:, jc..jc+nc) for every shared-dimension block, zero-padding the last panel.
      for (let pc = 0; pc < k; pc += KC) {
        const kc = Math.min(KC, k - pc);
        const blockBase = bBase + pc * ncPad;
        for (let jr = 0; jr < nTiles; jr++) {
          const panel = blockBase + jr * kc * nr;
          const j0 = jc + jr * nr;
          const cols = Math.min(nr, jc + nc - j0);
          if (!transB && cols === 8 && nr === 8) {
            // The common case, unrolled: a full panel row is 8 consecutive floats of B.
            for (let p = 0, src = bOff + pc * ldb + j0, dst = panel; p < kc; p++, src += ldb, dst += 8) {
              h[dst] = alpha * b[src]; h[dst + 1] = alpha * b[src + 1];
              h[dst + 2] = alpha * b[src + 2]; h[dst + 3] = alpha * b[src + 3];
              h[dst + 4] = alpha * b[src + 4]; h[dst + 5] = alpha * b[src + 5];
              h[dst + 6] = alpha * b[src + 6]; h[dst + 7] = alpha * b[src + 7];
            }
          } else if (!transB) {
            for (let p = 0; p < kc; p++) {
              const src = bOff + (pc + p) * ldb + j0;
              const dst = panel + p * nr;
              for (let j = 0; j < cols; j++) h[dst + j] = alpha * b[src + j];
              for (let j = cols; j < nr; j++) h[dst + j] = 0;
            }
          } else {
            for (let j = 0; j < cols; j++) {
              const src = bOff + (j0 + j) * ldb + pc;
              for (let p = 0; p < kc; p++) h[panel + p * nr + j] = alpha * b[src + p];
            }
            for (let j = cols; j < nr; j++) for (let p = 0; p < kc; p++) h[panel + p * nr + j] = 0;
          }
        }
      }

      for (let ic = 0; ic < m; ic += MC) {
        const mc = Math.min(MC, m - ic);
        const mTiles = Math.ceil(mc / mr);
        for (let pc = 0; pc < k; pc += KC) {
          const kc = Math.min(KC, k - pc);
          // Copy op(A)[ic..ic+mc, pc..pc+kc) as stored, a memcpy per row: rows of A, or rows of Aᵀ
          // when transposed; the kernel reads either layout through its strides. Padding is zero.
          const mcPad = mTiles * mr;
          let aRowBytes: number;
          let aStepBytes: number;
          if (!transA) {
            for (let i = 0; i < mc; i++) copyFloats(h, aBase + i * kc, a, aOff + (ic + i) * lda + pc, kc);
            h.fill(0, aBase + mc * kc, aBase + mcPad * kc);
            aRowBytes = kc * 4;
            aStepBytes = 4;
          } else {
            for (let p = 0; p < kc; p++) {
              const dst = aBase + p * mcPad;
              copyFloats(h, dst, a, aOff + (pc + p) * lda + ic, mc);
              h.fill(0, dst + mc, dst + mcPad);
            }
            aRowBytes = 4;
            aStepBytes = mcPad * 4;
          }
          simd.gemmBlock(aBase * 4, mr * aRowBytes, aRowBytes, aStepBytes, (bBase + pc * ncPad) * 4, kc * nr * 4,
                         cBase * 4, mTiles, nTiles, kc, ncPad * 4, pc > 0 ? 1 : 0);
        }

        // Merge the block into C.
        for (let i = 0; i < mc; i++) {
          const src = cBase + i * ncPad;
          if (transC) {
            const dst = cOff + jc * ldc + ic + i;
            if (beta === 0) for (let j = 0; j < nc; j++) c[dst + j * ldc] = h[src + j];
            else for (let j = 0; j < nc; j++) c[dst + j * ldc] = beta * c[dst + j * ldc] + h[src + j];
            continue;
          }
          const dst = cOff + (ic + i) * ldc + jc;
          if (beta === 0) copyFloats(c, dst, h, src, nc);
          else if (beta === 1) for (let j = 0; j < nc; j++) c[dst + j] += h[src + j];
          else for (let j = 0; j < nc; j++) c[dst + j] = beta * c[dst + j] + h[src + j];
        }
      }
    }
  };

  const gemm: Gemm = (transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc) => {
    if (m <= 0 || n <= 0) return;
    if (alpha === 0 || k <= 0 || m * n * k < SMALL_GEMM) {
      sgemmLoops(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
    } else if (m < SWAP_ROWS && n > m) {
      // Few rows (decoding): Cᵀ = op(B)ᵀ·op(A)ᵀ packs the small A instead of all of B.
      gemmBlocked(!transB, !transA, n, m, k, alpha, b, bOff, ldb, a, aOff, lda, beta, c, cOff, ldc, true);
    } else {
      gemmBlocked(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc, false);
    }
  };

  // Attention keeps a head's operands in wasm memory: Q (pre-scaled) and dO as rows, K, V, Q and dO
  // as B panels, the score block S (or, backward, all of P and dS). Rows are padded to MR and
  // columns to NR; padding is never read into a result that is kept.

  /** heap[dst + t·cols + i] = scale·src[off + t·stride + i] for t < rows, i < cols. */
  const copyRows = (dst: number, src: Float32Array, off: number, stride: number, rows: number, cols: number,
                    scale: number): void => {
    const h = heap;
    for (let t = 0; t < rows; t++) {
      const from = off + t * stride;
      const to = dst + t * cols;
      for (let i = 0; i < cols; i++) h[to + i] = scale * src[from + i];
    }
  };

  /** B panels of X (rows × cols, the rows being the shared dimension): panel j holds columns j·NR... */
  const packPanels = (dst: number, panelFloats: number, src: Float32Array, off: number, stride: number,
                      rows: number, cols: number): void => {
    const h = heap;
    for (let j0 = 0, panel = dst; j0 < cols; j0 += nr, panel += panelFloats) {
      const width = Math.min(nr, cols - j0);
      for (let t = 0; t < rows; t++) {
        const from = off + t * stride + j0;
        const to = panel + t * nr;
        for (let j = 0; j < width; j++) h[to + j] = src[from + j];
        for (let j = width; j < nr; j++) h[to + j] = 0;
      }
    }
  };

  /** B panels of Xᵀ (X is rows × cols, the cols being the shared dimension): panel j holds rows j·NR... */
  const packTransposedPanels = (dst: number, src: Float32Array, off: number, stride: number,
                                rows: number, cols: number): void => {
    const h = heap;
    for (let t0 = 0, panel = dst; t0 < rows; t0 += nr, panel += cols * nr) {
      for (let j = 0; j < nr; j++) {
        const t = t0 + j;
        const from = off + t * stride;
        if (t < rows) for (let i = 0; i < cols; i++) h[panel + i * nr + j] = src[from + i];
        else for (let i = 0; i < cols; i++) h[panel + i * nr + j] = 0;
      }
    }
  };

  /** Rows of the heap block at src (row stride srcStride) into x rows (stride xStride), `cols` wide. */
  const copyOut = (x: Float32Array, off: number, xStride: number, src: number, srcStride: number,
                   rows: number, cols: number): void => {
    for (let i = 0; i < rows; i++) copyFloats(x, off + i * xStride, heap, src + i * srcStride, cols);
  };

  /** Rows padded to whole row tiles (Tr) and to whole column tiles (Tc); the head size in column tiles and padded to them. */
  const attentionTiles = (T: number, hs: number): { Tr: number; Tc: number; hsTiles: number; hsPad: number } => {
    const hsTiles = Math.ceil(hs / nr);
    return { Tr: Math.ceil(T / mr) * mr, Tc: Math.ceil(T / nr) * nr, hsTiles, hsPad: hsTiles * nr };
  };

  const attentionForward = (out: Float32Array, att: Float32Array, qkv: Float32Array, B: number, T: number,
                            H: number, hs: number, causal: boolean): void => {
    const C = H * hs;
    const C3 = 3 * C;
    const scale = 1 / Math.sqrt(hs);
    const block = ATTENTION_BLOCK;
    const { Tr, Tc, hsTiles, hsPad } = attentionTiles(T, hs);
    // Layout in floats.
    const qRows = 0;
    const kT = qRows + Tr * hs;
    const vPanels = kT + Tc * hs;
    const S = vPanels + hsTiles * Tr * nr;
    const O = S + block * Tc;
    reserve(O + block * hsPad);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const { q: qOff, k: kOff, v: vOff, out: oOff, att: attOff } = headOffsets(b, h, T, H, hs);
        copyRows(qRows, qkv, qOff, C3, T, hs, scale);
        heap.fill(0, qRows + T * hs, qRows + Tr * hs);
        packTransposedPanels(kT, qkv, kOff, C3, T, hs);
        packPanels(vPanels, Tr * nr, qkv, vOff, C3, T, hs);
        for (let t0 = 0; t0 < T; t0 += block) {
          const rows = Math.min(block, T - t0);
          const mTiles = Math.ceil(rows / mr);
          const keys = causal ? t0 + rows : T;
          // S = (scale·Q)·Kᵀ, softmax (zeros after each row's last key), P out to att, then P·V.
          simd.gemmBlock((qRows + t0 * hs) * 4, mr * hs * 4, hs * 4, 4, kT * 4, hs * nr * 4, S * 4,
                         mTiles, Math.ceil(keys / nr), hs, Tc * 4, 0);
          simd.softmaxRows(S * 4, rows, Tc * 4, causal ? t0 + 1 : T, causal ? 1 : 0, keys);
          for (let i = 0; i < rows; i++) {
            const row = attOff + (t0 + i) * T;
            att.set(heap.subarray(S + i * Tc, S + i * Tc + keys), row);
            if (keys < T) att.fill(0, row + keys, row + T);
          }
          simd.gemmBlock(S * 4, mr * Tc * 4, Tc * 4, 4, vPanels * 4, Tr * nr * 4, O * 4, mTiles, hsTiles, keys, hsPad * 4, 0);
          copyOut(out, oOff + t0 * C, C, O, hsPad, rows, hs);
        }
      }
    }
  };

  const attentionBackward = (dqkv: Float32Array, dout: Float32Array, qkv: Float32Array, att: Float32Array,
                             B: number, T: number, H: number, hs: number, causal: boolean): void => {
    const C = H * hs;
    const C3 = 3 * C;
    const scale = 1 / Math.sqrt(hs);
    const block = ATTENTION_BLOCK;
    const { Tr, Tc, hsTiles, hsPad } = attentionTiles(T, hs);
    const panels = hsTiles * Tr * nr;
    // Layout in floats.
    const dORows = 0;
    const vT = dORows + Tr * hs;
    const kPanels = vT + Tc * hs;
    const qPanels = kPanels + panels;
    const dOPanels = qPanels + panels;
    const P = dOPanels + panels;
    const dS = P + Tr * Tc;
    const O = dS + Tr * Tc;
    reserve(O + block * hsPad);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const { q: qOff, k: kOff, v: vOff, out: dOff, att: attOff } = headOffsets(b, h, T, H, hs);
        copyRows(dORows, dout, dOff, C, T, hs, 1);
        heap.fill(0, dORows + T * hs, dORows + Tr * hs);
        packTransposedPanels(vT, qkv, vOff, C3, T, hs);
        packPanels(kPanels, Tr * nr, qkv, kOff, C3, T, hs);
        packPanels(qPanels, Tr * nr, qkv, qOff, C3, T, hs);
        packPanels(dOPanels, Tr * nr, dout, dOff, C, T, hs);
        for (let t = 0; t < T; t++) heap.set(att.subarray(attOff + t * T, attOff + (t + 1) * T), P + t * Tc);

        // Per query block: dP = dO·Vᵀ, dS = P∘(dP - rowsum(P∘dP))·scale, dQ = dS·K.
        for (let t0 = 0; t0 < T; t0 += block) {
          const rows = Math.min(block, T - t0);
          const mTiles = Math.ceil(rows / mr);
          const keys = causal ? t0 + rows : T;
          simd.gemmBlock((dORows + t0 * hs) * 4, mr * hs * 4, hs * 4, 4, vT * 4, hs * nr * 4, (dS + t0 * Tc) * 4,
                         mTiles, Math.ceil(keys / nr), hs, Tc * 4, 0);
          simd.softmaxBackwardRows((P + t0 * Tc) * 4, (dS + t0 * Tc) * 4, rows, Tc * 4, keys, scale);
          simd.gemmBlock((dS + t0 * Tc) * 4, mr * Tc * 4, Tc * 4, 4, kPanels * 4, Tr * nr * 4, O * 4,
                         mTiles, hsTiles, keys, hsPad * 4, 0);
          copyOut(dqkv, qOff + t0 * C3, C3, O, hsPad, rows, hs);
        }
        // Per key block: dK = dSᵀ·Q and dV = Pᵀ·dO; causal key s only gets gradient from queries t ≥ s.
        for (let s0 = 0; s0 < T; s0 += block) {
          const rows = Math.min(block, T - s0);
          const mTiles = Math.ceil(rows / mr);
          const tStart = causal ? s0 : 0;
          simd.gemmBlock((dS + tStart * Tc + s0) * 4, mr * 4, 4, Tc * 4, (qPanels + tStart * nr) * 4, Tr * nr * 4, O * 4,
                         mTiles, hsTiles, T - tStart, hsPad * 4, 0);
          copyOut(dqkv, kOff + s0 * C3, C3, O, hsPad, rows, hs);
          simd.gemmBlock((P + tStart * Tc + s0) * 4, mr * 4, 4, Tc * 4, (dOPanels + tStart * nr) * 4, Tr * nr * 4, O * 4,
                         mTiles, hsTiles, T - tStart, hsPad * 4, 0);
          copyOut(dqkv, vOff + s0 * C3, C3, O, hsPad, rows, hs);
        }
      }
    }
  };

  // Elementwise maps run chunk by chunk: copy inputs in, map, copy the output out (so dx may alias dout).
  const geluForward = (out: Float32Array, x: Float32Array, n: number): void => {
    reserve(2 * CHUNK);
    for (let off = 0; off < n; off += CHUNK) {
      const len = Math.min(CHUNK, n - off);
      heap.set(x.subarray(off, off + len), 0);
      simd.geluForward(0, CHUNK * 4, len);
      out.set(heap.subarray(CHUNK, CHUNK + len), off);
    }
  };

  const geluBackward = (dx: Float32Array, dout: Float32Array, x: Float32Array, n: number): void => {
    reserve(3 * CHUNK);
    for (let off = 0; off < n; off += CHUNK) {
      const len = Math.min(CHUNK, n - off);
      heap.set(dout.subarray(off, off + len), 0);
      heap.set(x.subarray(off, off + len), CHUNK);
      simd.geluBackward(0, CHUNK * 4, 2 * CHUNK * 4, len);
      dx.set(heap.subarray(2 * CHUNK, 2 * CHUNK + len), off);
    }
  };

  // Decoding: per (sequence, head), the cached keys and values 0..t are one contiguous run each.
  const attentionDecode = (out: Float32Array, qkv: Float32Array, kCache: Float32Array, vCache: Float32Array,
                           B: number, H: number, hs: number, t: number, maxT: number): void => {
    const C = H * hs;
    const n = t + 1;
    const q = 0;
    const keys = q + hs;
    const values = keys + n * hs;
    const scores = values + n * hs;
    const o = scores + n;
    reserve(o + hs);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const qOff = b * 3 * C + h * hs;
        const cacheOff = (b * H + h) * maxT * hs;
        copyFloats(kCache, cacheOff + t * hs, qkv, qOff + C, hs);
        copyFloats(vCache, cacheOff + t * hs, qkv, qOff + 2 * C, hs);
        copyFloats(heap, q, qkv, qOff, hs);
        heap.set(kCache.subarray(cacheOff, cacheOff + n * hs), keys);
        heap.set(vCache.subarray(cacheOff, cacheOff + n * hs), values);
        simd.decodeAttend(q * 4, keys * 4, values * 4, n, hs, 1 / Math.sqrt(hs), scores * 4, o * 4);
        copyFloats(out, b * C + h * hs, heap, o, hs);
      }
    }
  };

  // The norm runs on chunks of whole rows, with g (and the accumulating dg) resident throughout.
  const normForward = (out: Float32Array, rstd: Float32Array, x: Float32Array, g: Float32Array,
                       rows: number, d: number, eps: number): void => {
    const chunkRows = Math.max(1, Math.floor(CHUNK / d));
    const gw = 0;
    const xw = gw + d;
    const ow = xw + chunkRows * d;
    const rw = ow + chunkRows * d;
    reserve(rw + chunkRows);
    heap.set(g.subarray(0, d), gw);
    for (let r0 = 0; r0 < rows; r0 += chunkRows) {
      const n = Math.min(chunkRows, rows - r0);
      heap.set(x.subarray(r0 * d, (r0 + n) * d), xw);
      simd.normForwardRows(xw * 4, gw * 4, ow * 4, rw * 4, n, d, eps);
      out.set(heap.subarray(ow, ow + n * d), r0 * d);
      rstd.set(heap.subarray(rw, rw + n), r0);
    }
  };

  const normBackward = (dx: Float32Array, dg: Float32Array, dout: Float32Array, x: Float32Array,
                        rstd: Float32Array, g: Float32Array, rows: number, d: number): void => {
    const chunkRows = Math.max(1, Math.floor(CHUNK / d));
    const gw = 0;
    const dgw = gw + d;
    const dxw = dgw + d;
    const dow = dxw + chunkRows * d;
    const xw = dow + chunkRows * d;
    const rw = xw + chunkRows * d;
    reserve(rw + chunkRows);
    heap.set(g.subarray(0, d), gw);
    heap.set(dg.subarray(0, d), dgw);
    for (let r0 = 0; r0 < rows; r0 += chunkRows) {
      const n = Math.min(chunkRows, rows - r0);
      heap.set(dx.subarray(r0 * d, (r0 + n) * d), dxw);
      heap.set(dout.subarray(r0 * d, (r0 + n) * d), dow);
      heap.set(x.subarray(r0 * d, (r0 + n) * d), xw);
      heap.set(rstd.subarray(r0, r0 + n), rw);
      simd.normBackwardRows(dxw * 4, dgw * 4, dow * 4, xw * 4, rw * 4, gw * 4, n, d);
      dx.set(heap.subarray(dxw, dxw + n * d), r0 * d);
    }
    dg.set(heap.subarray(dgw, dgw + d), 0);
  };

  return { gemm, attentionForward, attentionBackward, geluForward, geluBackward, attentionDecode,
           normForward, normBackward };
}
