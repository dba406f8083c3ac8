/**
 * The WebGPU kernels against the reference loops (src/kernels/loops.ts, the portable backend's
 * plain loops, the model's layer loops) on small random shapes, forward and gradients, in float32.
 * Without a GPU this runs on SwiftShader (Vulkan on the CPU, from Debian's chromium package); with
 * neither, every test is skipped with the reason. IGPT_WEBGPU_ADAPTER=default uses the system's
 * adapter instead of SwiftShader. Outputs start as NaN, so an element a kernel forgets fails.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { attentionBackwardLoops, attentionDecodeLoops, attentionForwardLoops, geluBackwardLoops,
         geluForwardLoops, sgemmLoops } from '../src/kernels/loops.js';
import { createPortableKernels } from '../src/kernels/portable.js';
import { crossEntropySum, hostOperations } from '../src/kernels/host.js';

const { embeddingBackward, embeddingForward, meanPoolBackward, meanPoolForward } = hostOperations;
import { createWebGpuBackend } from '../src/kernels/webgpu/backend.js';
import { WebGpuKernels } from '../src/kernels/webgpu/kernels.js';
import { acquireNodeDevice, swiftShaderMissing } from '../src/kernels/webgpu/node-gpu.js';
import { GpuRuntime, type GpuTensor } from '../src/kernels/webgpu/runtime.js';
import { samplePixel } from '../src/sample/sampler.js';
import { Rng } from '../src/util/rng.js';
import { relativeError } from './relative-error.js';

/** Relative tolerances (max |got - ref| / max |ref|), float32 against float32 loops. */
const TOL = { gemm: 1e-5, elementwise: 1e-5, reduction: 1e-5, softmax: 1e-5, adam: 1e-5 };

const loops = createPortableKernels({ simd: false });

/** SwiftShader where chromium provides it (as in CI), so results do not depend on the machine. */
const adapterChoice = process.env.IGPT_WEBGPU_ADAPTER === 'default' || swiftShaderMissing() ? 'default' : 'swiftshader';

async function acquire(): Promise<WebGpuKernels | string> {
  try {
    return new WebGpuKernels(new GpuRuntime(await acquireNodeDevice(adapterChoice, { timeoutMs: 20_000 })));
  } catch (err) {
    return (err as Error).message;
  }
}

const acquired = await acquire();
const skip = typeof acquired === 'string' ? `webgpu tests skipped: ${acquired}` : false;
const gpu = typeof acquired === 'string' ? null : acquired;
if (gpu) console.log(`# webgpu adapter: ${gpu.runtime.ctx.describe()}`);
after(() => gpu?.dispose());

// ---------------------------------------------------------------------------------------------
// Helpers

const rng = new Rng(21);

function random(n: number, std = 1): Float32Array {
  const a = new Float32Array(n);
  rng.fillNormal(a, std);
  return a;
}

/** Largest error seen per kernel, printed at the end (the report's tolerance table). */
const worst = new Map<string, number>();

function assertClose(got: ArrayLike<number>, ref: ArrayLike<number>, what: string, tolerance: number): void {
  const err = relativeError(got, ref);
  const key = what.replace(/ \(.*$/, '');
  worst.set(key, Math.max(worst.get(key) ?? 0, err));
  assert.ok(err < tolerance, `${what}: relative error ${err.toExponential(2)} ≥ ${tolerance}`);
}
after(() => {
  if (worst.size) console.log('# webgpu worst relative errors: ' + [...worst].map(([k, v]) => `${k} ${v.toExponential(1)}`).join(', '));
});

/** A device tensor holding `data`; `poisoned`: one of n NaNs. */
function up(k: WebGpuKernels, data: Float32Array | Int32Array): GpuTensor {
  return k.runtime.upload(data);
}
function poisoned(k: WebGpuKernels, n: number): GpuTensor {
  return k.runtime.upload(new Float32Array(n).fill(NaN));
}
const read = (k: WebGpuKernels, t: GpuTensor): Promise<Float32Array> => k.runtime.readFloats(t);

/**
 * attentionPrefill over consecutive runs of positions (lengths `runs`, summing to maxT) against the
 * reference decoder stepping one position at a time: every output row, and the caches exactly.
 */
async function checkPrefill(k: WebGpuKernels, B: number, H: number, hs: number, maxT: number, runs: number[], what: string): Promise<void> {
  const C = H * hs;
  const kCache = new Float32Array(B * H * maxT * hs), vCache = new Float32Array(B * H * maxT * hs);
  const K = up(k, kCache), V = up(k, vCache);
  const scores = new Float32Array(maxT);
  let t = 0;
  for (const n of runs) {
    const qkv = random(n * B * 3 * C), out = new Float32Array(n * B * C); // position-major
    for (let i = 0; i < n; i++) {
      attentionDecodeLoops(scores, out.subarray(i * B * C, (i + 1) * B * C), qkv.subarray(i * B * 3 * C, (i + 1) * B * 3 * C),
                           kCache, vCache, B, H, hs, t + i, maxT);
    }
    const OUT = poisoned(k, n * B * C);
    k.attentionPrefill(OUT, up(k, qkv), K, V, B, H, hs, t, n, maxT);
    assertClose(await read(k, OUT), out, `${what} (positions ${t}..${t + n - 1})`, TOL.softmax);
    t += n;
  }
  assert.deepEqual(await read(k, K), kCache, `${what}: the keys are copied into the cache exactly`);
  assert.deepEqual(await read(k, V), vCache, `${what}: the values are copied into the cache exactly`);
}

// ---------------------------------------------------------------------------------------------
// GEMM

/** One product on the GPU against sgemmLoops, with C starting as `c0` (NaN when beta = 0). */
async function checkGemm(k: WebGpuKernels, transA: boolean, transB: boolean, m: number, n: number, kk: number,
                         alpha: number, beta: number, pad = 0, batch = 1): Promise<void> {
  const lda = (transA ? m : kk) + pad, ldb = (transB ? kk : n) + pad, ldc = n + pad;
  const sizeA = (transA ? kk : m) * lda, sizeB = (transB ? n : kk) * ldb, sizeC = m * ldc;
  const offA = pad, offB = 2 * pad, offC = pad;
  const a = random(offA + batch * sizeA), b = random(offB + batch * sizeB);
  const c = beta === 0 ? new Float32Array(offC + batch * sizeC).fill(NaN) : random(offC + batch * sizeC);
  const ref = c.slice();
  for (let i = 0; i < batch; i++) {
    sgemmLoops(transA, transB, m, n, kk, alpha, a, offA + i * sizeA, lda, b, offB + i * sizeB, ldb, beta, ref, offC + i * sizeC, ldc);
  }
  if (beta === 0) for (let i = 0; i < ref.length; i++) if (Number.isNaN(ref[i])) ref[i] = 0;
  const C = up(k, c);
  k.sgemmStridedBatched(transA, transB, m, n, kk, alpha, up(k, a), offA, lda, sizeA, up(k, b), offB, ldb, sizeB,
                        beta, C, offC, ldc, sizeC, batch);
  const got = await read(k, C);
  if (beta === 0) for (let i = 0; i < got.length; i++) if (Number.isNaN(c[i]) && !isWritten(i, offC, m, n, ldc, sizeC, batch)) got[i] = 0;
  assertClose(got, ref, `sgemm ${transA ? 'T' : 'N'}${transB ? 'T' : 'N'} (${m}×${n}×${kk}, α ${alpha}, β ${beta}, pad ${pad}, batch ${batch})`, TOL.gemm);
}

/** sgemmPacked (C = A·W, C += with accumulate, + bias) against sgemmLoops. */
async function checkPacked(k: WebGpuKernels, m: number, n: number, kk: number, accumulate: boolean, withBias: boolean): Promise<void> {
  const a = random(m * kk), w = random(kk * n), bias = random(n);
  const c = accumulate ? random(m * n) : new Float32Array(m * n).fill(NaN);
  const ref = accumulate ? c.slice() : new Float32Array(m * n);
  sgemmLoops(false, false, m, n, kk, 1, a, 0, kk, w, 0, n, accumulate ? 1 : 0, ref, 0, n);
  if (withBias) for (let i = 0; i < m * n; i++) ref[i] += bias[i % n]!;
  const C = up(k, c);
  k.sgemmPacked(m, up(k, a), k.packMatrix(up(k, w), kk, n), C, accumulate, withBias ? up(k, bias) : null);
  assertClose(await read(k, C), ref, `sgemmPacked ${m}×${n}×${kk}${accumulate ? ', accumulating' : ''}${withBias ? ', + bias' : ''}`, TOL.gemm);
}

/** Whether element i of C lies inside one of the batch's m×n matrices (the rest is untouched). */
function isWritten(i: number, offC: number, m: number, n: number, ldc: number, sizeC: number, batch: number): boolean {
  const j = i - offC;
  if (j < 0 || j >= batch * sizeC) return false;
  const within = j % sizeC;
  return Math.floor(within / ldc) < m && within % ldc < n;
}

describe('webgpu kernels', { skip }, () => {
  const k = gpu!;
  // The row reductions both ways where the adapter has subgroups (SwiftShader does): over
  // subgroups (the default there) and over workgroup-memory trees.
  const reductions: [string, WebGpuKernels][] = k.runtime.subgroupReductions
    ? [['subgroups', k], ['trees', new WebGpuKernels(new GpuRuntime(k.runtime.ctx, { subgroups: false }))]]
    : [['trees', k]];

  test('adapter facts are reported', () => {
    const a = k.runtime.ctx.adapter;
    assert.equal(k.runtime.subgroupReductions, a.features.subgroupReductions, 'subgroups used for reductions where they compile');
    if (a.features.subgroups && a.software) assert.ok(a.features.subgroupReductions, 'SwiftShader\'s subgroups take the reductions');
    assert.ok(a.limits.maxStorageBufferBindingSize >= 128 * 2 ** 20, 'the WebGPU minimum binding size');
    assert.ok(a.limits.maxComputeWorkgroupStorageSize >= 16384);
    assert.match(k.runtime.ctx.describe(), /storage binding \d+ MiB/);
  });

  for (const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]] as const) {
    const layout = `${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}`;
    test(`sgemm ${layout}: edges, vec4 path, alpha/beta, strides, batches`, async () => {
      await checkGemm(k, transA, transB, 37, 29, 19, 1, 0);            // scalar path, ragged edges
      await checkGemm(k, transA, transB, 72, 68, 36, 0.7, 0.3);        // vec4 path, partial tiles
      await checkGemm(k, transA, transB, 130, 64, 80, 1, 1);           // several tiles, accumulate
      await checkGemm(k, transA, transB, 5, 3, 7, -0.5, 2, 3);         // row strides and offsets
      await checkGemm(k, transA, transB, 20, 12, 16, 1, 0, 4, 3);      // batched, vec4
      await checkGemm(k, transA, transB, 2000, 2100, 20, 0.5, 0.25);   // 128-wide tiles, ragged edges
      await checkGemm(k, transA, transB, 100, 72, 3000, 0.5, 0.25);    // split-k: 10 pieces of 288, a rest of 120
      await checkGemm(k, transA, transB, 36, 20, 1024, 1, 0, 4);       // split-k, exact pieces, strides
    });
  }

  test('sgemm NN with at most 16 rows (decoding\'s products) goes through the narrow kernel and agrees', async () => {
    for (const m of [1, 2, 3, 8, 13, 16, 17]) {
      await checkGemm(k, false, false, m, 100, 68, 0.7, 0.3);     // a partial last group of columns
      await checkGemm(k, false, false, m, 36, 8, 1, 0, 4, 2);      // strides, offsets, batched
    }
  });

  test('sgemm with k = 0 scales C by beta; sgemmPacked is NN with accumulate and the bias added in the store', async () => {
    await checkGemm(k, false, false, 9, 7, 0, 1, 0.5);
    for (const m of [3, 40]) { // the narrow kernel, the tiled one
      for (const [accumulate, withBias] of [[true, false], [false, true], [true, true]] as const) await checkPacked(k, m, 24, 40, accumulate, withBias);
    }
    await checkPacked(k, 5, 22, 13, true, true); // not vec4-aligned: the scalar tiled kernel
    await checkPacked(k, 40, 24, 2000, true, true); // split-k: the bias added once, in the sum
  });

  test('bias forward and backward', async () => {
    const rows = 37, n = 23;
    const out = random(rows * n), bias = random(n), dbias = random(n), dout = random(rows * n);
    const refOut = out.slice(), refDbias = dbias.slice();
    loops.biasForward(refOut, bias, rows, n);
    loops.biasBackward(refDbias, dout, rows, n);
    const O = up(k, out), DB = up(k, dbias);
    k.biasForward(O, up(k, bias), rows, n);
    k.biasBackward(DB, up(k, dout), rows, n);
    assertClose(await read(k, O), refOut, 'biasForward', TOL.elementwise);
    assertClose(await read(k, DB), refDbias, 'biasBackward', TOL.reduction);
  });

  test('bias and gain gradients over many rows (sliced into partial sums, then added)', async () => {
    const rows = 3001, n = 70, eps = 1e-5; // 12 slices of 251 rows; 70 columns: two 64-column groups, the second ragged
    const dout = random(rows * n), x = random(rows * n), g = random(n, 0.5).map((v) => 1 + v);
    const dbias = random(n), refDbias = dbias.slice();
    loops.biasBackward(refDbias, dout, rows, n);
    const DB = up(k, dbias);
    k.biasBackward(DB, up(k, dout), rows, n);
    assertClose(await read(k, DB), refDbias, 'biasBackward (sliced)', TOL.reduction);
    const out = new Float32Array(rows * n), rstd = new Float32Array(rows);
    loops.normForward(out, rstd, x, g, rows, n, eps);
    const dx = random(rows * n), dg = random(n), refDx = dx.slice(), refDg = dg.slice();
    loops.normBackward(refDx, refDg, dout, x, rstd, g, rows, n);
    const DX = up(k, dx), DG = up(k, dg);
    k.normBackward(DX, DG, up(k, dout), up(k, x), up(k, rstd), up(k, g), rows, n);
    assertClose(await read(k, DG), refDg, 'normBackward dg (sliced)', TOL.reduction);
    assertClose(await read(k, DX), refDx, 'normBackward dx', TOL.reduction);
  });

  for (const [how, k] of reductions) test(`gain-only norm forward and backward (reductions over ${how})`, async () => {
    for (const d of [24, 200]) {
      const rows = 19, eps = 1e-5;
      const x = random(rows * d), g = random(d, 0.5).map((v) => 1 + v), dout = random(rows * d);
      const out = new Float32Array(rows * d), rstd = new Float32Array(rows);
      loops.normForward(out, rstd, x, g, rows, d, eps);
      const dx = random(rows * d), dg = random(d);
      const refDx = dx.slice(), refDg = dg.slice();
      loops.normBackward(refDx, refDg, dout, x, rstd, g, rows, d);
      const OUT = poisoned(k, rows * d), RSTD = poisoned(k, rows), X = up(k, x), G = up(k, g);
      k.normForward(OUT, RSTD, X, G, rows, d, eps);
      const DX = up(k, dx), DG = up(k, dg);
      k.normBackward(DX, DG, up(k, dout), X, RSTD, G, rows, d);
      assertClose(await read(k, OUT), out, `normForward (d ${d}, ${how})`, TOL.reduction);
      assertClose(await read(k, RSTD), rstd, `normForward rstd (d ${d}, ${how})`, TOL.reduction);
      assertClose(await read(k, DX), refDx, `normBackward dx (d ${d}, ${how})`, TOL.reduction);
      assertClose(await read(k, DG), refDg, `normBackward dg (d ${d}, ${how})`, TOL.reduction);
    }
  });

  test('quick GELU forward and backward (also in place)', async () => {
    const n = 1001;
    const x = random(n, 3), dout = random(n);
    x[0] = 90; x[1] = -90; // far tails: no overflow to NaN
    const out = new Float32Array(n), dx = new Float32Array(n);
    geluForwardLoops(out, x, n);
    geluBackwardLoops(dx, dout, x, n);
    const X = up(k, x), OUT = poisoned(k, n), DX = poisoned(k, n), DOUT = up(k, dout);
    k.geluForward(OUT, X, n);
    k.geluBackward(DX, DOUT, X, n);
    assertClose(await read(k, OUT), out, 'geluForward', TOL.elementwise);
    assertClose(await read(k, DX), dx, 'geluBackward', TOL.elementwise);
    k.geluBackward(DOUT, DOUT, X, n);
    assertClose(await read(k, DOUT), dx, 'geluBackward (in place)', TOL.elementwise);
  });

  for (const causal of [true, false]) {
    test(`attention forward and backward (${causal ? 'causal' : 'bidirectional'})`, async () => {
      for (const [B, T, H, hs] of [[2, 37, 3, 8], [1, 70, 2, 16], [2, 5, 1, 8]] as const) {
        const C = H * hs;
        const qkv = random(B * T * 3 * C), dout = random(B * T * C);
        const out = new Float32Array(B * T * C), att = new Float32Array(B * H * T * T);
        attentionForwardLoops(sgemmLoops, out, att, qkv, B, T, H, hs, causal);
        const dqkv = new Float32Array(B * T * 3 * C);
        attentionBackwardLoops(sgemmLoops, new Float32Array(T * T), dqkv, dout, qkv, att, B, T, H, hs, causal);
        const lse = logSumExps(qkv, B, T, H, hs, causal);
        const QKV = up(k, qkv), OUT = poisoned(k, B * T * C), LSE = poisoned(k, B * H * T), DQKV = poisoned(k, B * T * 3 * C);
        k.attentionForward(OUT, LSE, QKV, B, T, H, hs, causal);
        k.attentionBackward(DQKV, up(k, dout), QKV, OUT, LSE, B, T, H, hs, causal);
        const shape = `(B ${B}, T ${T}, H ${H}, hs ${hs})`;
        assertClose(await read(k, OUT), out, `attentionForward ${shape}`, TOL.softmax);
        assertClose(await read(k, LSE), lse, `attentionForward lse ${shape}`, TOL.softmax);
        assertClose(await read(k, DQKV), dqkv, `attentionBackward ${shape}`, TOL.softmax);
      }
    });
  }

  test('KV-cache decode steps equal the reference decoder, position by position', async () => {
    const B = 3, H = 2, hs = 8, maxT = 70, C = H * hs;
    const kCache = new Float32Array(B * H * maxT * hs), vCache = new Float32Array(B * H * maxT * hs);
    const K = up(k, kCache), V = up(k, vCache), OUT = poisoned(k, B * C);
    const scores = new Float32Array(maxT), out = new Float32Array(B * C);
    for (let t = 0; t < maxT; t++) {
      const qkv = random(B * 3 * C);
      attentionDecodeLoops(scores, out, qkv, kCache, vCache, B, H, hs, t, maxT);
      k.attentionDecode(OUT, up(k, qkv), K, V, B, H, hs, t, maxT);
      if (t % 23 === 0 || t === maxT - 1) assertClose(await read(k, OUT), out, `attentionDecode (t ${t})`, TOL.softmax);
    }
    assert.deepEqual(await read(k, K), kCache, 'the new keys are copied into the cache exactly');
    assert.deepEqual(await read(k, V), vCache, 'the new values are copied into the cache exactly');
  });

  for (const [how, k] of reductions) test(`prefill over runs of positions equals the reference decoder stepping through them, caches included (reductions over ${how})`, async () => {
    await checkPrefill(k, 3, 2, 8, 70, [1, 5, 30, 34], `attentionPrefill (${how})`);
  });

  test('pixel draws on the device pick what samplePixel picks with the same random numbers (greedy, temperature, top-k, top-p, ties)', async () => {
    const backend = createWebGpuBackend(k);
    const draws = backend.pixelDraws!;
    const B = 40, n = 3, t = 1, opts = [
      { temperature: 0, topK: 0, topP: 1 }, { temperature: 1, topK: 0, topP: 1 }, { temperature: 0.6, topK: 5, topP: 1 },
      { temperature: 1.4, topK: 0, topP: 0.8 }, { temperature: 1, topK: 40, topP: 0.95 },
    ];
    for (const V of [16, 512]) {
      // Row b: random logits, every fourth row with ties (logits rounded to a coarse grid).
      const logits = random(B * V, 2).map((v, i) => (Math.floor(i / V) % 4 === 0 ? Math.round(v) : v));
      const uniforms = Float32Array.from({ length: B }, () => rng.next());
      const L = up(k, logits), U = up(k, uniforms);
      for (const o of opts) {
        const tokens = draws.idsFromHost(new Int32Array(B * n).fill(-1)), drawn = draws.idsFromHost(new Int32Array(B));
        draws.draw(tokens, drawn, t, n, L, U, 0, B, V, o);
        const got = await draws.readIds(tokens);
        const want = Array.from({ length: B }, (_, b) => samplePixel(logits, b * V, V, { ...o, seed: 0 }, { next: () => uniforms[b]! } as Rng,
                                                                      new Float64Array(V), new Int32Array(V)));
        assert.deepEqual(Array.from({ length: B }, (_, b) => got[b * n + t]), want, `V ${V}, ${JSON.stringify(o)}`);
        assert.deepEqual(Array.from(await draws.readIds(drawn)), want, 'drawn holds the same ids');
        assert.ok(Array.from(got).every((id, i) => i % n === t || id === -1), 'only pixel t of each image is written');
      }
    }
  });

  for (const [how, k] of reductions) test(`softmax cross-entropy: losses, gradient, total; ignored rows; a bad target gives NaN (reductions over ${how})`, async () => {
    const rows = 29, V = 300, scale = 1 / 25;
    const logits = random(rows * V, 4);
    const targets = Int32Array.from({ length: rows }, (_, r) => (r % 7 === 3 ? -1 : rng.int(V)));
    const losses = new Float32Array(rows), dlogits = new Float32Array(rows * V);
    const total = crossEntropySum(loops, losses, dlogits, logits, targets, rows, V, scale);
    const L = poisoned(k, rows), D = poisoned(k, rows * V), TOT = poisoned(k, 1), LOGITS = up(k, logits);
    k.crossEntropy(L, D, LOGITS, up(k, targets), rows, V, scale, TOT);
    assertClose(await read(k, L), losses, 'crossEntropy losses', TOL.softmax);
    assertClose(await read(k, D), dlogits, 'crossEntropy dlogits', TOL.softmax);
    assertClose(await read(k, TOT), [total], 'crossEntropy total', TOL.softmax);
    k.crossEntropy(L, null, LOGITS, up(k, targets), rows, V, scale, TOT);
    assertClose(await read(k, TOT), [total], 'crossEntropy total (no gradient)', TOL.softmax);
    targets[5] = V;
    k.crossEntropy(L, null, LOGITS, up(k, targets), rows, V, scale, TOT);
    assert.ok(Number.isNaN((await read(k, TOT))[0]), 'a target ≥ V poisons the total');
  });

  for (const [how, k] of reductions) test(`sum of squares (the gradient norm): large and small, at an offset, NaN propagates (reductions over ${how})`, async () => {
    const sumSquares = (x: Float32Array): number => x.reduce((a, v) => a + v * v, 0);
    const TOT = poisoned(k, 1);
    for (const n of [1, 127, 128, 5000, 100_003]) {
      const x = random(n);
      k.sumOfSquares(TOT, up(k, x));
      assertClose(await read(k, TOT), [sumSquares(x)], `sumOfSquares (${n})`, TOL.reduction);
    }
    const x = random(1000);
    k.sumOfSquares(TOT, k.runtime.view(up(k, x), 3, 900));
    assertClose(await read(k, TOT), [sumSquares(x.subarray(3, 903))], 'sumOfSquares (a view)', TOL.reduction);
    x[777] = NaN;
    k.sumOfSquares(TOT, up(k, x));
    assert.ok(Number.isNaN((await read(k, TOT))[0]), 'a NaN poisons the sum');
  });

  test('Adam update over a few steps', async () => {
    const n = 777;
    const p = random(n), m = new Float32Array(n), v = new Float32Array(n);
    const P = up(k, p), M = up(k, m), Vv = up(k, v);
    for (let t = 1; t <= 3; t++) {
      const g = random(n);
      loops.adamUpdate(p, g, m, v, n, 0.01, 0.9, 0.95, 1e-8, t, Float32Array.of(1));
      k.adamUpdate(P, up(k, g), M, Vv, n, 0.01, 0.9, 0.95, 1e-8, t, up(k, Float32Array.of(1)));
    }
    assertClose(await read(k, P), p, 'adamUpdate params', TOL.adam);
    assertClose(await read(k, M), m, 'adamUpdate m', TOL.adam);
    assertClose(await read(k, Vv), v, 'adamUpdate v', TOL.adam);
    // A gradient whose sum of squares is NaN or inf changes nothing (the gate is read on the device).
    const before = await Promise.all([P, M, Vv].map((x) => read(k, x)));
    for (const bad of [NaN, Infinity, -Infinity]) {
      k.adamUpdate(P, up(k, random(n)), M, Vv, n, 0.01, 0.9, 0.95, 1e-8, 4, up(k, Float32Array.of(bad)));
      assert.deepEqual(await Promise.all([P, M, Vv].map((x) => read(k, x))), before, `adamUpdate with gate ${bad}`);
    }
  });

  test('embeddings with SOS and masked tokens, forward and backward', async () => {
    const B = 3, T = 11, d = 20, vocab = 17; // ids 0..15 colors, 16 = SOS
    const tokens = Int32Array.from({ length: B * T }, (_, i) => (i % T === 0 ? vocab - 1 : i % 5 === 2 ? -1 : rng.int(vocab - 1)));
    const wte = random(vocab * d), wpe = random(T * d), dout = random(B * T * d);
    const out = new Float32Array(B * T * d), dwte = random(vocab * d), dwpe = random(T * d);
    const refDwte = dwte.slice(), refDwpe = dwpe.slice();
    embeddingForward(out, tokens, wte, wpe, B, T, d);
    embeddingBackward(refDwte, refDwpe, dout, tokens, B, T, d);
    const OUT = poisoned(k, B * T * d), TOK = up(k, tokens), DWTE = up(k, dwte), DWPE = up(k, dwpe);
    k.embeddingForward(OUT, TOK, up(k, wte), up(k, wpe), B, T, d);
    k.embeddingBackward(DWTE, DWPE, up(k, dout), TOK, B, T, d);
    assertClose(await read(k, OUT), out, 'embeddingForward', TOL.elementwise);
    assertClose(await read(k, DWTE), refDwte, 'embeddingBackward dwte', TOL.reduction);
    assertClose(await read(k, DWPE), refDwpe, 'embeddingBackward dwpe', TOL.reduction);
  });

  test('integer uploads recorded without a sync land where each dispatch reads them (arena appended, restarted, outgrown)', async () => {
    // Five batches of tokens recorded back to back: the arena (4096 ids) takes the first three, is
    // full at the fourth (the recorded work is submitted, the arena starts over), and is outgrown by
    // the fifth (freed while the fourth's embedding is recorded, not yet submitted).
    const backend = createWebGpuBackend(k);
    const d = 6, vocab = 9, T = 2, wte = random(vocab * d), wpe = random(T * d);
    const WTE = up(k, wte), WPE = up(k, wpe);
    const batches = [2, 1500, 1500, 1500, 4200].map((n, j) => Int32Array.from({ length: n }, (_, i) => (5 * i + j) % vocab));
    const outs = batches.map((tokens) => poisoned(k, tokens.length * d)); // uploads submit the work before them
    batches.forEach((tokens, i) => backend.embeddingForward(outs[i]!, tokens, WTE, WPE, tokens.length / T, T, d));
    for (const [i, tokens] of batches.entries()) {
      const ref = new Float32Array(tokens.length * d);
      embeddingForward(ref, tokens, wte, wpe, tokens.length / T, T, d);
      assertClose(await read(k, outs[i]!), ref, `embeddingForward batch ${i}`, TOL.elementwise);
    }
  });

  test('mean-pooled features forward (at an offset) and backward', async () => {
    const B = 4, T = 13, d = 10;
    const x = random(B * T * d), dpooled = random(B * d), dx = random(B * T * d);
    const pooled = new Float32Array(B * d), refDx = dx.slice();
    meanPoolForward(pooled, x, B, T, d);
    meanPoolBackward(refDx, dpooled, B, T, d);
    const POOLED = poisoned(k, 3 * B * d), DX = up(k, dx);
    k.meanPoolForward(POOLED, up(k, x), B, T, d, 2 * B * d);
    k.meanPoolBackward(DX, up(k, dpooled), B, T, d);
    assertClose((await read(k, POOLED)).subarray(2 * B * d), pooled, 'meanPoolForward', TOL.reduction);
    assertClose(await read(k, DX), refDx, 'meanPoolBackward', TOL.elementwise);
  });

  test('chunking: with a 4 KiB binding limit every kernel splits its work and agrees', async () => {
    const small = new WebGpuKernels(new GpuRuntime(k.runtime.ctx, { maxBindingBytes: 4096 }));
    for (const [tA, tB] of [[false, false], [false, true], [true, false]] as const) {
      await checkGemm(small, tA, tB, 100, 50, 40, 1, 0.5);
      await checkGemm(small, tA, tB, 30, 20, 12, 1, 0, 4, 6);
    }
    // Split along k and n: each column's bias added once, in the first piece of k.
    for (const m of [4, 30]) await checkPacked(small, m, 60, 100, true, true);
    const rows = 300, d = 16;
    const x = random(rows * d), g = random(d), out = new Float32Array(rows * d), rstd = new Float32Array(rows);
    loops.normForward(out, rstd, x, g, rows, d, 1e-5);
    const OUT = poisoned(small, rows * d), RSTD = poisoned(small, rows);
    small.normForward(OUT, RSTD, up(small, x), up(small, g), rows, d, 1e-5);
    assertClose(await read(small, OUT), out, 'normForward (chunked)', TOL.reduction);
    const gelu = new Float32Array(rows * d);
    geluForwardLoops(gelu, x, rows * d);
    small.geluForward(OUT, up(small, x), rows * d);
    assertClose(await read(small, OUT), gelu, 'geluForward (chunked)', TOL.elementwise);
    const dbias = new Float32Array(d), DB = up(small, dbias);
    loops.biasBackward(dbias, x, rows, d);
    small.biasBackward(DB, up(small, x), rows, d);
    assertClose(await read(small, DB), dbias, 'biasBackward (chunked)', TOL.reduction);
    const B = 6, T = 20, H = 2, hs = 4, C = H * hs;
    const qkv = random(B * T * 3 * C), attOut = new Float32Array(B * T * C), att = new Float32Array(B * H * T * T);
    attentionForwardLoops(sgemmLoops, attOut, att, qkv, B, T, H, hs, true);
    const AO = poisoned(small, B * T * C);
    small.attentionForward(AO, poisoned(small, B * H * T), up(small, qkv), B, T, H, hs, true);
    assertClose(await read(small, AO), attOut, 'attentionForward (chunked)', TOL.softmax);
    // Sequences in runs whose caches fit a window, and positions in runs whose scores do.
    await checkPrefill(small, 7, 1, 4, 40, [3, 37], 'attentionPrefill (chunked)');
    const V = 40, targets = Int32Array.from({ length: rows }, () => rng.int(V)), logits = random(rows * V);
    const losses = new Float32Array(rows), total = crossEntropySum(loops, losses, null, logits, targets, rows, V, 1);
    const TOT = poisoned(small, 1);
    small.crossEntropy(poisoned(small, rows), null, up(small, logits), up(small, targets), rows, V, 1, TOT);
    assertClose(await read(small, TOT), [total], 'crossEntropy total (chunked)', TOL.softmax);
    const big = random(5000); // 20 KB: five windows
    small.sumOfSquares(TOT, up(small, big));
    assertClose(await read(small, TOT), [big.reduce((a, v) => a + v * v, 0)], 'sumOfSquares (chunked)', TOL.reduction);
  });

  test('a lost device is a clear error on the next call, not a hang', async () => {
    const ctx = await acquireNodeDevice(adapterChoice, { timeoutMs: 20_000 });
    const rt = new GpuRuntime(ctx);
    const t = rt.upload(new Float32Array([1, 2, 3]));
    ctx.device.destroy(); // as a driver reset would
    await ctx.device.lost;
    await new Promise((r) => setTimeout(r, 0));
    assert.throws(() => rt.tensor(4), /device was lost/);
    await assert.rejects(rt.read(t), /device was lost/);
    ctx.dispose();
  });

  test('a tensor larger than the adapter allows is refused with the sizes', () => {
    const max = k.runtime.ctx.adapter.limits.maxBufferSize;
    assert.throws(() => k.runtime.tensor(max / 4 + 1024), /exceeds the adapter's largest buffer/);
  });

  test('an allocation the GPU cannot make is a clear out-of-memory error on the next sync, and the device goes on', async (t) => {
    // SwiftShader refuses a buffer of its full 1 GiB maxBufferSize (vkAllocateMemory runs out);
    // a real GPU may well hold it, and then there is no failure to see.
    if (!k.runtime.ctx.adapter.software) return t.skip('a hardware adapter may allocate the whole maxBufferSize');
    const max = k.runtime.ctx.adapter.limits.maxBufferSize;
    const huge = k.runtime.tensor(max / 4);
    await assert.rejects(k.runtime.sync(), new RegExp(`igpt webgpu: the GPU is out of memory: a tensor of ${max / 2 ** 20} MiB could not be ` +
      'allocated beside the \\d+ MiB already held .*lower --batch or choose a smaller --preset'));
    k.runtime.destroy(huge);
    const x = random(300);
    assert.deepEqual(await read(k, up(k, x)), x, 'later work runs');
  });
});

/** lse[b, h, t] = log Σ_s exp(scale·q_t·k_s) over the keys t sees, in float64. */
function logSumExps(qkv: Float32Array, B: number, T: number, H: number, hs: number, causal: boolean): Float32Array {
  const C = H * hs, lse = new Float32Array(B * H * T), scale = 1 / Math.sqrt(hs);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let t = 0; t < T; t++) {
    const scores: number[] = [];
    for (let s = 0; s < (causal ? t + 1 : T); s++) {
      let dot = 0;
      for (let i = 0; i < hs; i++) dot += qkv[(b * T + t) * 3 * C + h * hs + i] * qkv[(b * T + s) * 3 * C + C + h * hs + i];
      scores.push(dot * scale);
    }
    const mx = Math.max(...scores);
    lse[(b * H + h) * T + t] = mx + Math.log(scores.reduce((acc, s) => acc + Math.exp(s - mx), 0));
  }
  return lse;
}
