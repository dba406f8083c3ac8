/**
 * Plain-loop kernels of the portable backend: the fallback GEMM (tiny products, or no WebAssembly
 * SIMD), attention built on any GEMM, cached decoding and GELU.
 */

/** sgemm with element offsets into A, B and C instead of subarray views. */
export type Gemm = (transA: boolean, transB: boolean, m: number, n: number, k: number, alpha: number,
                    a: Float32Array, aOff: number, lda: number, b: Float32Array, bOff: number, ldb: number,
                    beta: number, c: Float32Array, cOff: number, ldc: number) => void;

/** Scales C (m×n at offset cOff, row stride ldc) by beta; beta = 0 writes zeros without reading C. */
function scaleMatrix(c: Float32Array, cOff: number, m: number, n: number, ldc: number, beta: number): void {
  if (beta === 1) return;
  for (let i = 0; i < m; i++) {
    const row = cOff + i * ldc;
    if (beta === 0) c.fill(0, row, row + n);
    else for (let j = 0; j < n; j++) c[row + j] *= beta;
  }
}

/** The plain-loop GEMM: used for tiny products and where WebAssembly SIMD is missing. */
export function sgemmLoops(transA: boolean, transB: boolean, m: number, n: number, k: number,
                           alpha: number, a: Float32Array, aOff: number, lda: number, b: Float32Array,
                           bOff: number, ldb: number, beta: number, c: Float32Array, cOff: number,
                           ldc: number): void {
  scaleMatrix(c, cOff, m, n, ldc, beta);
  if (alpha === 0 || k === 0) return;
  const aStrideI = transA ? 1 : lda;
  const aStrideP = transA ? lda : 1;
  for (let i = 0; i < m; i++) {
    const cRow = cOff + i * ldc;
    const aRow = aOff + i * aStrideI;
    if (!transB) {
      // C[i, :] += alpha·A[i, p]·B[p, :], streaming over rows of B.
      for (let p = 0; p < k; p++) {
        const aip = alpha * a[aRow + p * aStrideP];
        const bRow = bOff + p * ldb;
        for (let j = 0; j < n; j++) c[cRow + j] += aip * b[bRow + j];
      }
    } else {
      // B is stored n×k: C[i, j] += alpha·dot(A[i, :], B[j, :]).
      for (let j = 0; j < n; j++) {
        const bRow = bOff + j * ldb;
        let sum = 0;
        for (let p = 0; p < k; p++) sum += a[aRow + p * aStrideP] * b[bRow + p];
        c[cRow + j] += alpha * sum;
      }
    }
  }
}

/** dst[dOff..dOff+n) = src[sOff..sOff+n): a loop for short runs, where a subarray costs more. */
export function copyFloats(dst: Float32Array, dOff: number, src: Float32Array, sOff: number, n: number): void {
  if (n < 96) for (let i = 0; i < n; i++) dst[dOff + i] = src[sOff + i];
  else dst.set(src.subarray(sOff, sOff + n), dOff);
}

/** Softmax over x[row..row+count) in place. */
export function softmaxRow(x: Float32Array, row: number, count: number): void {
  const end = row + count;
  let max = -Infinity;
  for (let i = row; i < end; i++) if (x[i] > max) max = x[i];
  let sum = 0;
  for (let i = row; i < end; i++) {
    const e = Math.exp(x[i] - max);
    x[i] = e;
    sum += e;
  }
  const inv = 1 / sum;
  for (let i = row; i < end; i++) x[i] *= inv;
}

/** Query rows per block in causal attention: blocks skip the keys after their last query. */
export const ATTENTION_BLOCK = 64;

/**
 * Where head h of sequence b lies in the attention buffers: its query, key and value columns in
 * qkv [B, T, 3C] (q; k = q + C; v = q + 2C), its columns in the output [B, T, C], and its
 * [T, T] block of the probabilities [B, H, T, T].
 */
export function headOffsets(b: number, h: number, T: number, H: number, hs: number): { q: number; k: number; v: number; out: number; att: number } {
  const C = H * hs;
  const q = b * T * 3 * C + h * hs;
  return { q, k: q + C, v: q + 2 * C, out: b * T * C + h * hs, att: (b * H + h) * T * T };
}

/**
 * Attention per (batch, head) as GEMMs over row blocks: S = scale·Q·Kᵀ into att, a row softmax in
 * place, then out = P·V. Causal blocks only compute keys up to their last query.
 */
export function attentionForwardLoops(gemm: Gemm, out: Float32Array, att: Float32Array, qkv: Float32Array,
                                      B: number, T: number, H: number, hs: number, causal: boolean): void {
  const C = H * hs;
  const C3 = 3 * C;
  const scale = 1 / Math.sqrt(hs);
  const block = causal ? ATTENTION_BLOCK : T;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const { q: qOff, k: kOff, v: vOff, out: oOff, att: attOff } = headOffsets(b, h, T, H, hs);
      for (let t0 = 0; t0 < T; t0 += block) {
        const t1 = Math.min(T, t0 + block);
        const keys = causal ? t1 : T;
        gemm(false, true, t1 - t0, keys, hs, scale, qkv, qOff + t0 * C3, C3, qkv, kOff, C3,
             0, att, attOff + t0 * T, T);
        for (let t = t0; t < t1; t++) {
          const count = causal ? t + 1 : T;
          softmaxRow(att, attOff + t * T, count);
          att.fill(0, attOff + t * T + count, attOff + (t + 1) * T);
        }
        gemm(false, false, t1 - t0, hs, keys, 1, att, attOff + t0 * T, T, qkv, vOff, C3,
             0, out, oOff + t0 * C, C);
      }
    }
  }
}

/**
 * Attention backward per (batch, head): dP = dO·Vᵀ, dS = P∘(dP - rowsum(P∘dP))·scale (in scratch),
 * then dQ = dS·K, dK = dSᵀ·Q, dV = Pᵀ·dO. Causal blocks skip the zero upper triangle.
 */
export function attentionBackwardLoops(gemm: Gemm, scratch: Float32Array, dqkv: Float32Array,
                                       dout: Float32Array, qkv: Float32Array, att: Float32Array, B: number,
                                       T: number, H: number, hs: number, causal: boolean): void {
  const C = H * hs;
  const C3 = 3 * C;
  const scale = 1 / Math.sqrt(hs);
  const block = causal ? ATTENTION_BLOCK : T;
  const dS = scratch;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const { q: qOff, k: kOff, v: vOff, out: dOff, att: attOff } = headOffsets(b, h, T, H, hs);
      for (let t0 = 0; t0 < T; t0 += block) {
        const t1 = Math.min(T, t0 + block);
        const keys = causal ? t1 : T;
        gemm(false, true, t1 - t0, keys, hs, 1, dout, dOff + t0 * C, C, qkv, vOff, C3, 0, dS, t0 * T, T);
        for (let t = t0; t < t1; t++) {
          const row = t * T;
          const pRow = attOff + t * T;
          const count = causal ? t + 1 : T;
          let weighted = 0;
          for (let s = 0; s < count; s++) weighted += att[pRow + s] * dS[row + s];
          for (let s = 0; s < count; s++) dS[row + s] = att[pRow + s] * (dS[row + s] - weighted) * scale;
          dS.fill(0, row + count, row + keys);
        }
        gemm(false, false, t1 - t0, hs, keys, 1, dS, t0 * T, T, qkv, kOff, C3, 0, dqkv, qOff + t0 * C3, C3);
      }
      // Key/value rows s0..s1 only receive gradient from queries t ≥ s0 when causal.
      for (let s0 = 0; s0 < T; s0 += block) {
        const s1 = Math.min(T, s0 + block);
        const tStart = causal ? s0 : 0;
        gemm(true, false, s1 - s0, hs, T - tStart, 1, dS, tStart * T + s0, T, qkv, qOff + tStart * C3, C3,
             0, dqkv, kOff + s0 * C3, C3);
        gemm(true, false, s1 - s0, hs, T - tStart, 1, att, attOff + tStart * T + s0, T, dout, dOff + tStart * C, C,
             0, dqkv, vOff + s0 * C3, C3);
      }
    }
  }
}

/** One cached decoding step (see Kernels.attentionDecode); `scores` holds at least t + 1 floats. */
export function attentionDecodeLoops(scores: Float32Array, out: Float32Array, qkv: Float32Array,
                                     kCache: Float32Array, vCache: Float32Array, B: number, H: number,
                                     hs: number, t: number, maxT: number): void {
  const C = H * hs;
  const scale = 1 / Math.sqrt(hs);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const qOff = b * 3 * C + h * hs;
      const cacheOff = (b * H + h) * maxT * hs;
      kCache.set(qkv.subarray(qOff + C, qOff + C + hs), cacheOff + t * hs);
      vCache.set(qkv.subarray(qOff + 2 * C, qOff + 2 * C + hs), cacheOff + t * hs);
      for (let s = 0; s <= t; s++) {
        const kOff = cacheOff + s * hs;
        let dot = 0;
        for (let i = 0; i < hs; i++) dot += qkv[qOff + i] * kCache[kOff + i];
        scores[s] = dot * scale;
      }
      softmaxRow(scores, 0, t + 1);
      const oOff = b * C + h * hs;
      out.fill(0, oOff, oOff + hs);
      for (let s = 0; s <= t; s++) {
        const vOff = cacheOff + s * hs;
        const p = scores[s];
        for (let i = 0; i < hs; i++) out[oOff + i] += p * vCache[vOff + i];
      }
    }
  }
}

/** Quick GELU, out = x·sigmoid(1.702·x). */
export function geluForwardLoops(out: Float32Array, x: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const xi = x[i];
    out[i] = xi / (1 + Math.exp(-1.702 * xi));
  }
}

/** dx = dout·(s + 1.702·x·s·(1 - s)) with s = sigmoid(1.702·x); dx may alias dout. */
export function geluBackwardLoops(dx: Float32Array, dout: Float32Array, x: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const xi = x[i];
    const s = 1 / (1 + Math.exp(-1.702 * xi));
    dx[i] = dout[i] * (s + 1.702 * xi * s * (1 - s));
  }
}
