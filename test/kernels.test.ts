/**
 * Every kernel of every available backend against float64 references on random inputs of awkward
 * sizes, plus the backends against each other. Outputs are poisoned with NaN before each call so an
 * element a kernel forgets to write fails the comparison.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Kernels } from '../src/kernels/kernels.js';
import { crossEntropySum } from '../src/kernels/host.js';
import { createNativeKernels } from '../src/kernels/native.js';
import { createPortableKernels } from '../src/kernels/portable.js';
import { createSimdKernels } from '../src/kernels/simd.js';
import { Rng } from '../src/util/rng.js';
import { relativeError } from './relative-error.js';

const TOLERANCE = 1e-5;

// ---------------------------------------------------------------------------------------------
// Backends

/** The native backend, or the reason it cannot load (its tests are then skipped). */
function loadNative(): Kernels | string {
  try {
    return createNativeKernels();
  } catch (err) {
    return (err as Error).message;
  }
}

const portable = createPortableKernels();
const nativeOrReason = loadNative();
const native = typeof nativeOrReason === 'string' ? null : nativeOrReason;
/** Portable twice: with its WebAssembly SIMD kernels and with the plain loops it falls back to. */
const backends: { label: string; kernels: Kernels }[] = [
  { label: 'portable', kernels: portable },
  { label: 'portable (no SIMD)', kernels: createPortableKernels({ simd: false }) },
  ...(native ? [{ label: 'native', kernels: native }] : []),
];
test('the WebAssembly SIMD kernels load in Node (else "portable" below would silently be the plain loops twice)', () => {
  const simd = createSimdKernels();
  assert.notEqual(simd, null, 'createSimdKernels() returned null: the module did not validate or compile');
  for (const name of ['gemmBlock', 'normForwardRows', 'normBackwardRows', 'decodeAttend'] as const) {
    assert.equal(typeof simd![name], 'function', `the SIMD module exports ${name}`);
  }
});

if (!native) {
  // CI installs the addon's build tools and libraries, so there a backend that does not load is a
  // failure, not a reason to skip every native test; elsewhere it is the reason, said once.
  test('the native backend loads', { skip: process.env.CI ? false : `native backend tests skipped: ${String(nativeOrReason)}` }, () => {
    assert.fail(`the native addon does not load (${String(nativeOrReason)}); its tests would all be skipped`);
  });
}

// ---------------------------------------------------------------------------------------------
// Helpers

function randomArray(rng: Rng, n: number, std = 1): Float32Array {
  const a = new Float32Array(n);
  rng.fillNormal(a, std);
  return a;
}

function poisoned(n: number): Float32Array {
  return new Float32Array(n).fill(NaN);
}

function assertClose(got: ArrayLike<number>, ref: ArrayLike<number>, what: string,
                     tolerance = TOLERANCE): void {
  const err = relativeError(got, ref);
  assert.ok(err < tolerance, `${what}: relative error ${err.toExponential(2)} ≥ ${tolerance}`);
}

/** x rounded to the nearest IEEE half float (ties to even), as the half-float kernels store it. */
function toHalf(x: number): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  const ulp = 2 ** (Math.max(Math.floor(Math.log2(Math.abs(x))), -14) - 10);
  const r = x / ulp, f = Math.floor(r), rest = r - f;
  return (rest > 0.5 || (rest === 0.5 && f % 2 !== 0) ? f + 1 : f) * ulp;
}

// ---------------------------------------------------------------------------------------------
// GEMM

interface GemmCase {
  transA: boolean; transB: boolean; m: number; n: number; k: number;
  alpha: number; beta: number; padA: number; padB: number; padC: number; offset: number;
}

/** Float64 C = alpha·op(A)·op(B) + beta·C over the m×n window; the rest of C is copied. */
function referenceGemm(g: GemmCase, a: Float32Array, lda: number, b: Float32Array, ldb: number,
                       c: Float32Array, ldc: number): Float64Array {
  const out = Float64Array.from(c);
  for (let i = 0; i < g.m; i++) {
    for (let j = 0; j < g.n; j++) {
      let sum = 0;
      for (let p = 0; p < g.k; p++) {
        const aip = g.transA ? a[p * lda + i] : a[i * lda + p];
        const bpj = g.transB ? b[j * ldb + p] : b[p * ldb + j];
        sum += aip * bpj;
      }
      const prev = g.beta === 0 ? 0 : g.beta * c[i * ldc + j];
      out[i * ldc + j] = g.alpha * sum + prev;
    }
  }
  return out;
}

/** Builds the operands of a case; C's padding holds a sentinel so stray writes show. */
function gemmOperands(rng: Rng, g: GemmCase) {
  const aRows = g.transA ? g.k : g.m;
  const aCols = g.transA ? g.m : g.k;
  const bRows = g.transB ? g.n : g.k;
  const bCols = g.transB ? g.k : g.n;
  const lda = aCols + g.padA;
  const ldb = bCols + g.padB;
  const ldc = g.n + g.padC;
  const a = randomArray(rng, g.offset + aRows * lda).subarray(g.offset);
  const b = randomArray(rng, g.offset + bRows * ldb).subarray(g.offset);
  const cSize = g.m * ldc;
  const c = new Float32Array(g.offset + cSize).fill(777).subarray(g.offset);
  for (let i = 0; i < g.m; i++) {
    for (let j = 0; j < g.n; j++) c[i * ldc + j] = g.beta === 0 ? NaN : rng.normal();
  }
  return { a, lda, b, ldb, c, ldc };
}

function gemmCases(): GemmCase[] {
  const shapes: [number, number, number][] = [
    [1, 1, 1], [1, 9, 5], [7, 1, 3], [3, 5, 1], [13, 17, 11], [8, 8, 8], [33, 9, 70],
    [64, 40, 31], [40, 100, 37], [67, 129, 45], [150, 300, 270], [5, 520, 3], [3, 2100, 5],
  ];
  const cases: GemmCase[] = [];
  let variant = 0;
  for (const [m, n, k] of shapes) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const v = variant++;
        cases.push({
          transA, transB, m, n, k,
          alpha: [1, 0.75, -1.5][v % 3],
          beta: [0, 1, -0.5, 0][v % 4],
          padA: v % 2 === 0 ? 0 : 3, padB: v % 3 === 0 ? 0 : 5, padC: v % 5 === 0 ? 0 : 2,
          offset: v % 2 === 0 ? 0 : 7,
        });
      }
    }
  }
  return cases;
}

function caseName(g: GemmCase): string {
  return `${g.transA ? 'T' : 'N'}${g.transB ? 'T' : 'N'} ${g.m}×${g.n}×${g.k} α=${g.alpha} β=${g.beta}`;
}

for (const { label, kernels } of backends) {
  test(`${label}: sgemm matches float64 on awkward shapes, transposes, strides, offsets`, () => {
    const rng = new Rng(1);
    for (const g of gemmCases()) {
      const { a, lda, b, ldb, c, ldc } = gemmOperands(rng, g);
      const ref = referenceGemm(g, a, lda, b, ldb, c, ldc);
      kernels.sgemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, a, lda, b, ldb, g.beta, c, ldc);
      assertClose(c, ref, caseName(g));
      for (let i = 0; i < g.m; i++) {
        for (let j = g.n; j < ldc; j++) assert.equal(c[i * ldc + j], 777, `${caseName(g)}: wrote padding`);
      }
    }
  });

  test(`${label}: sgemmPacked (a few rows against a packed matrix) matches float64, writing or accumulating, with or without a bias`, () => {
    const rng = new Rng(3);
    // Row counts around the register tiles (6 and 8 rows), widths around the 32-column strips.
    for (const [m, n, k] of [[1, 1, 1], [3, 33, 7], [7, 31, 5], [9, 100, 129], [16, 96, 64], [17, 64, 20]] as const) {
      const b = randomArray(rng, k * n);
      const packed = kernels.packMatrix(b, k, n);
      const a = randomArray(rng, m * k), bias = randomArray(rng, n);
      for (const accumulate of [false, true]) {
        for (const withBias of [false, true]) {
          const c = accumulate ? randomArray(rng, m * n) : poisoned(m * n);
          const g: GemmCase = { transA: false, transB: false, m, n, k, alpha: 1, beta: accumulate ? 1 : 0,
                                padA: 0, padB: 0, padC: 0, offset: 0 };
          const ref = referenceGemm(g, a, k, b, n, c, n);
          if (withBias) for (let i = 0; i < m * n; i++) ref[i] += bias[i % n];
          kernels.sgemmPacked(m, a, packed, c, accumulate, withBias ? bias : null);
          assertClose(c, ref, `m${m} n${n} k${k}${accumulate ? ' accumulating' : ''}${withBias ? ' + bias' : ''}`);
        }
      }
    }
  });

  // Half floats exist only where the CPU converts them (native on x86 with F16C).
  if (kernels.attentionDecodeHalf) test(`${label}: half-float packing is exact rounding to halves, and products with it match float64`, () => {
    const rng = new Rng(4);
    for (const [m, n, k] of [[1, 5, 3], [8, 64, 32], [13, 70, 33]] as const) {
      const b = randomArray(rng, k * n);
      const packed = kernels.packMatrix(b, k, n, true);
      assert.ok(packed.data instanceof Uint16Array, 'packMatrix(half) gives half floats');
      const rounded = Float32Array.from(b, toHalf);
      const a = randomArray(rng, m * k);
      const c = poisoned(m * n);
      const g: GemmCase = { transA: false, transB: false, m, n, k, alpha: 1, beta: 0, padA: 0, padB: 0, padC: 0, offset: 0 };
      kernels.sgemmPacked(m, a, packed, c, false, null);
      assertClose(c, referenceGemm(g, a, k, rounded, n, c, n), `half m${m} n${n} k${k}`);
    }
  });

  test(`${label}: biasForward and biasBackward accumulate`, () => {
    const rng = new Rng(3);
    for (const [rows, n] of [[1, 1], [7, 13], [33, 256], [3, 1031]]) {
      const out = randomArray(rng, rows * n);
      const bias = randomArray(rng, n);
      const ref = Float64Array.from(out, (v, i) => v + bias[i % n]);
      kernels.biasForward(out, bias, rows, n);
      assertClose(out, ref, `biasForward ${rows}×${n}`);

      const dbias = randomArray(rng, n);
      const dout = randomArray(rng, rows * n);
      const refDb = Float64Array.from(dbias);
      for (let r = 0; r < rows; r++) for (let j = 0; j < n; j++) refDb[j] += dout[r * n + j];
      kernels.biasBackward(dbias, dout, rows, n);
      assertClose(dbias, refDb, `biasBackward ${rows}×${n}`);
    }
  });
}

/** Float64 gain-only norm of one buffer. */
function referenceNorm(x: ArrayLike<number>, g: ArrayLike<number>, rows: number, d: number,
                       eps: number): { out: Float64Array; rstd: Float64Array } {
  const out = new Float64Array(rows * d);
  const rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let j = 0; j < d; j++) ss += x[r * d + j] ** 2;
    rstd[r] = 1 / Math.sqrt(ss / d + eps);
    for (let j = 0; j < d; j++) out[r * d + j] = x[r * d + j] * rstd[r] * g[j];
  }
  return { out, rstd };
}

/** Runs normForward into poisoned buffers, checks out and rstd against float64, returns rstd. */
function checkedNormForward(kernels: Kernels, x: Float32Array, g: Float32Array, rows: number, d: number, eps: number): Float32Array {
  const out = poisoned(rows * d);
  const rstd = poisoned(rows);
  kernels.normForward(out, rstd, x, g, rows, d, eps);
  const ref = referenceNorm(x, g, rows, d, eps);
  assertClose(out, ref.out, `normForward out ${rows}×${d}`);
  assertClose(rstd, ref.rstd, `normForward rstd ${rows}×${d}`);
  return rstd;
}

/** Float64 central finite differences of L = Σ dout·f(inputs) with respect to each input. */
function finiteDifferenceGradient(inputs: Float64Array, dout: ArrayLike<number>,
                                  f: (x: Float64Array) => Float64Array, h = 1e-6): Float64Array {
  const grad = new Float64Array(inputs.length);
  const loss = (): number => {
    const y = f(inputs);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += dout[i] * y[i];
    return s;
  };
  for (let i = 0; i < inputs.length; i++) {
    const saved = inputs[i];
    inputs[i] = saved + h;
    const up = loss();
    inputs[i] = saved - h;
    const down = loss();
    inputs[i] = saved;
    grad[i] = (up - down) / (2 * h);
  }
  return grad;
}

for (const { label, kernels } of backends) {
  test(`${label}: normForward writes out and rstd; normBackward accumulates dx, dg (vs float64 FD)`, () => {
    const rng = new Rng(4);
    const eps = 1e-5;
    for (const [rows, d] of [[1, 2], [3, 7], [5, 67], [2, 256]]) {
      const x = randomArray(rng, rows * d);
      const g = randomArray(rng, d);
      for (let j = 0; j < d; j++) g[j] += 1;
      const rstd = checkedNormForward(kernels, x, g, rows, d, eps);

      const dout = randomArray(rng, rows * d);
      const dx = randomArray(rng, rows * d);
      const dg = randomArray(rng, d);
      const dx0 = Float64Array.from(dx);
      const dg0 = Float64Array.from(dg);
      kernels.normBackward(dx, dg, dout, x, rstd, g, rows, d);
      const g64 = Float64Array.from(g);
      const fdX = finiteDifferenceGradient(Float64Array.from(x), dout,
                                           (xx) => referenceNorm(xx, g64, rows, d, eps).out);
      const x64 = Float64Array.from(x);
      const fdG = finiteDifferenceGradient(Float64Array.from(g), dout,
                                           (gg) => referenceNorm(x64, gg, rows, d, eps).out);
      // Compare the increments, so the accumulated starting values cannot hide an error.
      assertClose(dx.map((v, i) => v - dx0[i]), fdX, `normBackward dx ${rows}×${d}`, 1e-4);
      assertClose(dg.map((v, i) => v - dg0[i]), fdG, `normBackward dg ${rows}×${d}`, 1e-4);
      const refDx = Float64Array.from(fdX, (v, i) => v + dx0[i]);
      assertClose(dx, refDx, `normBackward dx accumulates ${rows}×${d}`, 1e-4);
    }
    // Many rows (kernels may work in chunks of rows): the analytic float64 gradient, which the
    // finite differences above vouch for.
    const [rows, d] = [300, 67];
    const x = randomArray(rng, rows * d);
    const g = randomArray(rng, d);
    const dout = randomArray(rng, rows * d);
    const rstd = checkedNormForward(kernels, x, g, rows, d, eps);
    const dx = randomArray(rng, rows * d);
    const dg = randomArray(rng, d);
    const refDx = Float64Array.from(dx);
    const refDg = Float64Array.from(dg);
    const refRstd = referenceNorm(x, g, rows, d, eps).rstd;
    for (let r = 0; r < rows; r++) {
      const rs = refRstd[r];
      let dot = 0;
      for (let j = 0; j < d; j++) dot += dout[r * d + j] * g[j] * x[r * d + j];
      for (let j = 0; j < d; j++) {
        const i = r * d + j;
        refDx[i] += rs * (dout[i] * g[j] - x[i] * rs * rs * dot / d);
        refDg[j] += dout[i] * x[i] * rs;
      }
    }
    kernels.normBackward(dx, dg, dout, x, rstd, g, rows, d);
    assertClose(dx, refDx, `normBackward dx ${rows}×${d}`);
    assertClose(dg, refDg, `normBackward dg ${rows}×${d}`);
  });
}

function quickGelu(x: number): number {
  return x / (1 + Math.exp(-1.702 * x));
}

for (const { label, kernels } of backends) {
  test(`${label}: geluForward and geluBackward (also with dx aliasing dout)`, () => {
    const rng = new Rng(5);
    for (const n of [1, 7, 1000, 4099, 40001]) {
      const x = randomArray(rng, n, 3);
      x[0] = -40; // far tails must not produce NaN
      if (n > 1) x[1] = 40;
      const out = poisoned(n);
      kernels.geluForward(out, x, n);
      assertClose(out, Float64Array.from(x, quickGelu), `geluForward n=${n}`);

      const dout = randomArray(rng, n);
      const h = 1e-6;
      const ref = Float64Array.from(x, (v, i) => dout[i] * (quickGelu(v + h) - quickGelu(v - h)) / (2 * h));
      const dx = poisoned(n);
      kernels.geluBackward(dx, dout, x, n);
      assertClose(dx, ref, `geluBackward n=${n}`, 1e-5);
      const aliased = Float32Array.from(dout);
      kernels.geluBackward(aliased, aliased, x, n);
      assertClose(aliased, dx, `geluBackward aliased n=${n}`, 1e-6);
    }
    // Every value on a dense grid to within a few float32 ulps (scaled by exp's conditioning,
    // |1.702·x|, since 1.702·x is itself rounded), so an inexact exp cannot hide.
    const grid = Float32Array.from({ length: 4001 }, (_, i) => (i - 2000) / 100);
    const out = poisoned(grid.length);
    kernels.geluForward(out, grid, grid.length);
    for (let i = 0; i < grid.length; i++) {
      const ref = quickGelu(grid[i]);
      const tolerance = 3e-7 * (1 + 1.702 * Math.abs(grid[i]));
      assert.ok(Math.abs(out[i] - ref) <= tolerance * Math.abs(ref) + 1e-30,
                `geluForward(${grid[i]}) = ${out[i]}, want ${ref}`);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Attention

interface AttentionShape { B: number; T: number; H: number; hs: number }

/** Float64 attention forward: returns out [B,T,C] and att [B,H,T,T]. */
function referenceAttention(qkv: ArrayLike<number>, s: AttentionShape, causal: boolean) {
  const { B, T, H, hs } = s;
  const C = H * hs;
  const out = new Float64Array(B * T * C);
  const att = new Float64Array(B * H * T * T);
  const scale = 1 / Math.sqrt(hs);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        const row = ((b * H + h) * T + t) * T;
        const last = causal ? t : T - 1;
        let max = -Infinity;
        for (let u = 0; u <= last; u++) {
          let dot = 0;
          for (let i = 0; i < hs; i++) {
            dot += qkv[(b * T + t) * 3 * C + h * hs + i] * qkv[(b * T + u) * 3 * C + C + h * hs + i];
          }
          att[row + u] = dot * scale;
          max = Math.max(max, att[row + u]);
        }
        let sum = 0;
        for (let u = 0; u <= last; u++) sum += (att[row + u] = Math.exp(att[row + u] - max));
        for (let u = 0; u <= last; u++) att[row + u] /= sum;
        for (let i = 0; i < hs; i++) {
          let acc = 0;
          for (let u = 0; u <= last; u++) acc += att[row + u] * qkv[(b * T + u) * 3 * C + 2 * C + h * hs + i];
          out[(b * T + t) * C + h * hs + i] = acc;
        }
      }
    }
  }
  return { out, att };
}

/** Float64 analytic attention backward (itself checked against finite differences below). */
function referenceAttentionBackward(dout: ArrayLike<number>, qkv: ArrayLike<number>,
                                    s: AttentionShape, causal: boolean): Float64Array {
  const { B, T, H, hs } = s;
  const C = H * hs;
  const { att } = referenceAttention(qkv, s, causal);
  const dqkv = new Float64Array(B * T * 3 * C);
  const scale = 1 / Math.sqrt(hs);
  const datt = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        const row = ((b * H + h) * T + t) * T;
        const last = causal ? t : T - 1;
        const q = (b * T + t) * 3 * C + h * hs;
        const o = (b * T + t) * C + h * hs;
        let weighted = 0;
        for (let u = 0; u <= last; u++) {
          const v = (b * T + u) * 3 * C + 2 * C + h * hs;
          let dot = 0;
          for (let i = 0; i < hs; i++) {
            dot += dout[o + i] * qkv[v + i];
            dqkv[v + i] += att[row + u] * dout[o + i];
          }
          datt[u] = dot;
          weighted += att[row + u] * dot;
        }
        for (let u = 0; u <= last; u++) {
          const ds = att[row + u] * (datt[u] - weighted) * scale;
          const k = (b * T + u) * 3 * C + C + h * hs;
          for (let i = 0; i < hs; i++) {
            dqkv[q + i] += ds * qkv[k + i];
            dqkv[k + i] += ds * qkv[q + i];
          }
        }
      }
    }
  }
  return dqkv;
}

test('the float64 attention backward reference matches finite differences', () => {
  const rng = new Rng(6);
  const s: AttentionShape = { B: 2, T: 5, H: 2, hs: 3 };
  for (const causal of [true, false]) {
    const qkv = Float64Array.from(randomArray(rng, s.B * s.T * 3 * s.H * s.hs));
    const dout = randomArray(rng, s.B * s.T * s.H * s.hs);
    const analytic = referenceAttentionBackward(dout, qkv, s, causal);
    const fd = finiteDifferenceGradient(qkv, dout, (x) => referenceAttention(x, s, causal).out);
    assertClose(analytic, fd, `reference attention backward causal=${causal}`, 1e-7);
  }
});

for (const { label, kernels } of backends) {
  test(`${label}: attentionForward/Backward match float64 (causal zeros above the diagonal)`, () => {
    const rng = new Rng(7);
    const shapes: AttentionShape[] = [
      { B: 1, T: 1, H: 1, hs: 1 }, { B: 2, T: 5, H: 2, hs: 3 }, { B: 1, T: 37, H: 3, hs: 16 },
      { B: 2, T: 70, H: 2, hs: 32 }, { B: 1, T: 9, H: 1, hs: 64 }, { B: 1, T: 131, H: 1, hs: 8 },
    ];
    for (const s of shapes) {
      for (const causal of [true, false]) {
        const what = `B${s.B} T${s.T} H${s.H} hs${s.hs} causal=${causal}`;
        const C = s.H * s.hs;
        const qkv = randomArray(rng, s.B * s.T * 3 * C);
        const out = poisoned(s.B * s.T * C);
        const att = poisoned(s.B * s.H * s.T * s.T);
        kernels.attentionForward(out, att, qkv, s.B, s.T, s.H, s.hs, causal);
        const ref = referenceAttention(qkv, s, causal);
        assertClose(out, ref.out, `attentionForward out ${what}`);
        assertClose(att, ref.att, `attentionForward att ${what}`);
        if (causal) {
          for (let bh = 0; bh < s.B * s.H; bh++) {
            for (let t = 0; t < s.T; t++) {
              for (let u = t + 1; u < s.T; u++) {
                assert.equal(att[(bh * s.T + t) * s.T + u], 0, `${what}: att above the diagonal`);
              }
            }
          }
        }
        const dout = randomArray(rng, s.B * s.T * C);
        const dqkv = poisoned(s.B * s.T * 3 * C);
        kernels.attentionBackward(dqkv, dout, qkv, poisoned(s.B * s.T * C), att, s.B, s.T, s.H, s.hs, causal);
        assertClose(dqkv, referenceAttentionBackward(dout, qkv, s, causal), `attentionBackward ${what}`);
      }
    }
  });
}

/**
 * Feeds each position of qkv [B, T, 3C] to `decodeAt(out, step, t)` in turn (step: [B, 3C] at t;
 * out poisoned before each call) and gathers the outputs as [B, T, C].
 */
function decodeStepByStep(qkv: Float32Array, s: AttentionShape,
                          decodeAt: (out: Float32Array, step: Float32Array, t: number) => void): Float32Array {
  const C = s.H * s.hs;
  const got = new Float32Array(s.B * s.T * C);
  const step = new Float32Array(s.B * 3 * C);
  const out = poisoned(s.B * C);
  for (let t = 0; t < s.T; t++) {
    for (let b = 0; b < s.B; b++) step.set(qkv.subarray((b * s.T + t) * 3 * C, (b * s.T + t + 1) * 3 * C), b * 3 * C);
    out.fill(NaN);
    decodeAt(out, step, t);
    for (let b = 0; b < s.B; b++) got.set(out.subarray(b * C, (b + 1) * C), (b * s.T + t) * C);
  }
  return got;
}

for (const { label, kernels } of backends) {
  test(`${label}: attentionDecode step by step equals causal float64 attention and fills the caches`, () => {
    const rng = new Rng(11);
    for (const s of [{ B: 1, T: 1, H: 1, hs: 1 }, { B: 2, T: 13, H: 3, hs: 5 }, { B: 1, T: 40, H: 2, hs: 32 }]) {
      const C = s.H * s.hs;
      const maxT = s.T + 3;
      const qkv = randomArray(rng, s.B * s.T * 3 * C);
      const ref = referenceAttention(qkv, s, true).out;
      const kCache = poisoned(s.B * s.H * maxT * s.hs);
      const vCache = poisoned(s.B * s.H * maxT * s.hs);
      const got = decodeStepByStep(qkv, s, (out, step, t) => kernels.attentionDecode(out, step, kCache, vCache, s.B, s.H, s.hs, t, maxT));
      const what = `B${s.B} T${s.T} H${s.H} hs${s.hs}`;
      assertClose(got, ref, `attentionDecode ${what}`);
      for (let b = 0; b < s.B; b++) {
        for (let h = 0; h < s.H; h++) {
          for (let t = 0; t < s.T; t++) {
            for (let i = 0; i < s.hs; i++) {
              const cache = kernels.kvLayout === 'channels' ? ((b * s.H + h) * s.hs + i) * maxT + t
                                                            : ((b * s.H + h) * maxT + t) * s.hs + i;
              const src = (b * s.T + t) * 3 * C + h * s.hs + i;
              assert.equal(kCache[cache], qkv[src + C], `${what}: k cache`);
              assert.equal(vCache[cache], qkv[src + 2 * C], `${what}: v cache`);
            }
          }
        }
      }
    }
  });

  const decodeHalf = kernels.attentionDecodeHalf;
  if (decodeHalf) test(`${label}: attentionDecodeHalf equals float64 attention over keys and values rounded to halves`, () => {
    const rng = new Rng(12);
    // Head sizes off and on the vector widths; positions past the 64-wide register blocks.
    for (const s of [{ B: 2, T: 13, H: 3, hs: 5 }, { B: 1, T: 150, H: 2, hs: 32 }, { B: 3, T: 70, H: 1, hs: 12 }]) {
      const C = s.H * s.hs;
      const maxT = s.T + 3;
      const qkv = randomArray(rng, s.B * s.T * 3 * C);
      const rounded = Float32Array.from(qkv, (x, i) => (i % (3 * C) >= C ? toHalf(x) : x));
      const ref = referenceAttention(rounded, s, true).out;
      const kCache = new Uint16Array(s.B * s.H * maxT * s.hs), vCache = new Uint16Array(s.B * s.H * maxT * s.hs);
      const got = decodeStepByStep(qkv, s, (out, step, t) => decodeHalf(out, step, kCache, vCache, s.B, s.H, s.hs, t, maxT));
      assertClose(got, ref, `attentionDecodeHalf B${s.B} T${s.T} H${s.H} hs${s.hs}`);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Cross-entropy and Adam

for (const { label, kernels } of backends) {
  test(`${label}: crossEntropy losses, sum and dlogits, with ignored rows`, () => {
    const rng = new Rng(8);
    for (const [rows, V] of [[1, 2], [1, 17], [9, 17], [33, 513]]) {
      const logits = randomArray(rng, rows * V, 4);
      logits[0] = 80; // large logits must stay finite
      const targets = Int32Array.from({ length: rows }, (_, r) => (r % 3 === 1 ? -1 : rng.int(V)));
      const gradScale = 0.37;
      const refLoss = new Float64Array(rows);
      const refGrad = new Float64Array(rows * V);
      let refSum = 0;
      for (let r = 0; r < rows; r++) {
        if (targets[r] < 0) continue;
        let max = -Infinity;
        for (let j = 0; j < V; j++) max = Math.max(max, logits[r * V + j]);
        let sum = 0;
        for (let j = 0; j < V; j++) sum += Math.exp(logits[r * V + j] - max);
        refLoss[r] = Math.log(sum) + max - logits[r * V + targets[r]];
        refSum += refLoss[r];
        for (let j = 0; j < V; j++) {
          refGrad[r * V + j] = (Math.exp(logits[r * V + j] - max) / sum - (j === targets[r] ? 1 : 0)) * gradScale;
        }
      }
      const losses = poisoned(rows);
      const dlogits = poisoned(rows * V);
      const total = crossEntropySum(kernels, losses, dlogits, logits, targets, rows, V, gradScale);
      const what = `${rows}×${V}`;
      assertClose(losses, refLoss, `crossEntropy losses ${what}`);
      assertClose([total], [refSum], `crossEntropy sum ${what}`);
      assertClose(dlogits, refGrad, `crossEntropy dlogits ${what}`);
      for (let r = 0; r < rows; r++) {
        if (targets[r] >= 0) continue;
        assert.equal(losses[r], 0, `${what}: ignored row ${r} loss`);
        for (let j = 0; j < V; j++) assert.equal(dlogits[r * V + j], 0, `${what}: ignored row ${r} grad`);
      }
      const losses2 = poisoned(rows);
      const total2 = crossEntropySum(kernels, losses2, null, logits, targets, rows, V, gradScale);
      assertClose(losses2, refLoss, `crossEntropy without dlogits ${what}`);
      assertClose([total2], [refSum], `crossEntropy sum without dlogits ${what}`);
    }
  });

  test(`${label}: adamUpdate matches a float64 Adam step`, () => {
    const rng = new Rng(9);
    for (const [n, t, b2] of [[1, 1, 0.95], [7, 1, 0.999], [1001, 7, 0.95], [4099, 300, 0.999]]) {
      const params = randomArray(rng, n, 1e-3);
      const grads = randomArray(rng, n);
      const m = randomArray(rng, n, 0.1);
      const v = Float32Array.from(randomArray(rng, n, 0.1), (x) => x * x);
      if (t === 1) { m.fill(0); v.fill(0); }
      const [lr, b1, eps] = [1e-2, 0.9, 1e-8];
      const refM = Float64Array.from(m, (mi, i) => b1 * mi + (1 - b1) * grads[i]);
      const refV = Float64Array.from(v, (vi, i) => b2 * vi + (1 - b2) * grads[i] ** 2);
      const refStep = Float64Array.from(refM, (mi, i) =>
        -lr * (mi / (1 - b1 ** t)) / (Math.sqrt(refV[i] / (1 - b2 ** t)) + eps));
      const before = Float64Array.from(params);
      kernels.adamUpdate(params, grads, m, v, n, lr, b1, b2, eps, t, Float32Array.of(1));
      assertClose(m, refM, `adam m n=${n} t=${t} beta2=${b2}`);
      assertClose(v, refV, `adam v n=${n} t=${t} beta2=${b2}`);
      assertClose(Float64Array.from(params, (p, i) => p - before[i]), refStep, `adam step n=${n} t=${t} beta2=${b2}`, 1e-4);
    }
  });

  test(`${label}: adamUpdate changes nothing when the gradient's sum of squares is NaN or inf`, () => {
    const rng = new Rng(10);
    for (const bad of [NaN, Infinity]) {
      const params = randomArray(rng, 33), grads = randomArray(rng, 33), m = randomArray(rng, 33), v = randomArray(rng, 33, 0.1).map(Math.abs);
      const copies = [params, m, v].map((x) => Float32Array.from(x));
      kernels.adamUpdate(params, grads, m, v, 33, 1e-2, 0.9, 0.95, 1e-8, 2, Float32Array.of(bad));
      assert.deepEqual([params, m, v], copies, `gate ${bad}`);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Backends agree with each other

if (native) {
  test('native and portable agree on every kernel', () => {
    const rng = new Rng(10);
    const both = [portable, native];
    const run = <T>(f: (k: Kernels) => T): T[] => both.map(f);
    const [m, n, k] = [97, 130, 75];
    const a = randomArray(rng, m * k), b = randomArray(rng, k * n);
    const [c0, c1] = run((kk) => { const c = poisoned(m * n); kk.sgemm(false, true, m, n, k, 1, a, k, b, k, 0, c, n); return c; });
    assertClose(c1, c0, 'sgemm');

    const s: AttentionShape = { B: 2, T: 41, H: 2, hs: 16 };
    const C = s.H * s.hs;
    const qkv = randomArray(rng, s.B * s.T * 3 * C);
    const dout = randomArray(rng, s.B * s.T * C);
    const [f0, f1] = run((kk) => {
      const out = poisoned(s.B * s.T * C), att = poisoned(s.B * s.H * s.T * s.T), dqkv = poisoned(qkv.length);
      kk.attentionForward(out, att, qkv, s.B, s.T, s.H, s.hs, true);
      kk.attentionBackward(dqkv, dout, qkv, out, att, s.B, s.T, s.H, s.hs, true);
      return { out, att, dqkv };
    });
    assertClose(f1.out, f0.out, 'attention out');
    assertClose(f1.att, f0.att, 'attention att');
    assertClose(f1.dqkv, f0.dqkv, 'attention dqkv');

    const [rows, d] = [13, 96];
    const x = randomArray(rng, rows * d), g = randomArray(rng, d), dy = randomArray(rng, rows * d);
    const [n0, n1] = run((kk) => {
      const out = poisoned(rows * d), rstd = poisoned(rows), dx = new Float32Array(rows * d), dg = new Float32Array(d);
      kk.normForward(out, rstd, x, g, rows, d, 1e-5);
      kk.normBackward(dx, dg, dy, x, rstd, g, rows, d);
      const gl = poisoned(rows * d), gb = poisoned(rows * d);
      kk.geluForward(gl, x, rows * d);
      kk.geluBackward(gb, dy, x, rows * d);
      const bias = Float32Array.from(x); kk.biasForward(bias, g, rows, d);
      const db = new Float32Array(d); kk.biasBackward(db, dy, rows, d);
      return { out, rstd, dx, dg, gl, gb, bias, db };
    });
    for (const key of Object.keys(n0) as (keyof typeof n0)[]) assertClose(n1[key], n0[key], `rowwise ${key}`);

    const V = 17;
    const logits = randomArray(rng, rows * V, 3);
    const targets = Int32Array.from({ length: rows }, (_, r) => (r === 2 ? -1 : r % V));
    const [e0, e1] = run((kk) => {
      const losses = poisoned(rows), dl = poisoned(rows * V);
      const sum = crossEntropySum(kk, losses, dl, logits, targets, rows, V, 0.5);
      return { losses, dl, sum };
    });
    assertClose(e1.losses, e0.losses, 'crossEntropy losses');
    assertClose(e1.dl, e0.dl, 'crossEntropy dlogits');
    assertClose([e1.sum], [e0.sum], 'crossEntropy sum');

    const p = randomArray(rng, 301), gr = randomArray(rng, 301);
    const [p0, p1] = run((kk) => {
      const pp = Float32Array.from(p), mm = new Float32Array(301), vv = new Float32Array(301);
      for (let t = 1; t <= 3; t++) kk.adamUpdate(pp, gr, mm, vv, 301, 1e-2, 0.9, 0.999, 1e-8, t, Float32Array.of(1));
      return { pp, mm, vv };
    });
    assertClose(p1.pp, p0.pp, 'adam params');
    assertClose(p1.mm, p0.mm, 'adam m');
    assertClose(p1.vv, p0.vv, 'adam v');
  });
}
