/**
 * bf16 matrix products (native kernels through oneDNN): the GEMM against float64, the weights' bf16
 * copy, and a tiny model's gradients against float64 finite differences, each within what bf16's
 * 8 significant bits allow. Skipped, saying why, where the CPU or the addon has no bf16.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cachedFeatures } from '../src/eval/feature-cache.js';
import type { Kernels } from '../src/kernels/kernels.js';
import { createNativeKernels, nativeAvailable, nativeBf16Available } from '../src/kernels/native.js';
import { makeConfig } from '../src/model/config.js';
import { ImageGPT, type Batch } from '../src/model/model.js';
import { initParameters, ParameterTensors } from '../src/model/parameters.js';
import { Rng } from '../src/util/rng.js';
import { referenceForward } from './reference-model.js';

const skip = nativeBf16Available() ? false
  : nativeAvailable() ? 'no bf16 products here: the CPU lacks AVX512-BF16 and AMX, or the addon was built without oneDNN (libdnnl-dev)'
  : 'the native addon is not built';
if (skip) console.log(`# bf16 tests skipped: ${skip}`);

/** The bf16 value nearest x (ties to even), as a number: the reference for rounding. */
function bf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  const bits = u[0];
  u[0] = ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) << 16;
  return f[0];
}

function fromBf16(h: Uint16Array): Float32Array {
  const u = new Uint32Array(h.length);
  for (let i = 0; i < h.length; i++) u[i] = h[i] << 16;
  return new Float32Array(u.buffer);
}

test('bf16: rounding to nearest even, NaN and infinities kept', { skip }, () => {
  const products = createNativeKernels('bf16').bf16;
  assert.ok(products, 'kernels loaded for bf16 offer bf16 products');
  const ulp = 2 ** -7; // bf16 has 8 significant bits: the step just above 1
  const xs = [1, 1 + ulp / 2, 1 + ulp * 1.5, 1 + ulp / 2 + 2 ** -20, -3.3e-3, 65504, 3.4e38, Infinity, -Infinity, 0, -0];
  const src = Float32Array.from([...xs, NaN]);
  const dst = new Uint16Array(src.length);
  products.toBf16(dst, src, src.length);
  const back = fromBf16(dst);
  assert.equal(back[1], 1, 'a tie rounds to the even neighbor (down)');
  assert.equal(back[2], 1 + 2 * ulp, 'a tie rounds to the even neighbor (up)');
  assert.equal(back[3], 1 + ulp, 'above the tie rounds up');
  for (let i = 0; i < xs.length; i++) assert.ok(Object.is(back[i], bf16(xs[i])), `bf16(${xs[i]}) = ${back[i]}`);
  assert.ok(Number.isNaN(back[xs.length]), 'NaN stays NaN');
});

test('bf16: gemm matches float64 for every transpose, stride, alpha and beta; bf16 and float operands agree', { skip }, () => {
  const products = createNativeKernels('bf16').bf16;
  assert.ok(products, 'kernels loaded for bf16 offer bf16 products');
  const rng = new Rng(1);
  for (const [m, n, inner] of [[1, 1, 1], [7, 5, 3], [37, 19, 70], [130, 96, 64]] as const) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        for (const [alpha, beta] of [[1, 0], [0.5, 1], [1, -2]] as const) {
          const what = `${m}×${n}×${inner} transA=${transA} transB=${transB} alpha=${alpha} beta=${beta}`;
          const [aRows, aCols] = transA ? [inner, m] : [m, inner];
          const [bRows, bCols] = transB ? [n, inner] : [inner, n];
          const lda = aCols + 3, ldb = bCols + 1, ldc = n + 2;
          const a = Float32Array.from({ length: aRows * lda }, () => rng.normal());
          const b = Float32Array.from({ length: bRows * ldb }, () => rng.normal());
          const c0 = Float32Array.from({ length: m * ldc }, () => (beta === 0 ? NaN : rng.normal()));
          const A = (i: number, p: number): number => (transA ? a[p * lda + i] : a[i * lda + p]);
          const B = (p: number, j: number): number => (transB ? b[j * ldb + p] : b[p * ldb + j]);
          // Exact float64 of the rounded operands (what bf16 products compute, up to float32 sums),
          // and of the unrounded ones (what the caller meant, up to bf16's rounding).
          const rounded = new Float64Array(m * n), exact = new Float64Array(m * n);
          let scale = 0;
          for (let i = 0; i < m; i++) {
            for (let j = 0; j < n; j++) {
              let r = 0, e = 0, s = 0;
              for (let p = 0; p < inner; p++) {
                r += bf16(A(i, p)) * bf16(B(p, j));
                e += A(i, p) * B(p, j);
                s += Math.abs(A(i, p) * B(p, j));
              }
              const prior = beta === 0 ? 0 : beta * c0[i * ldc + j];
              rounded[i * n + j] = alpha * r + prior;
              exact[i * n + j] = alpha * e + prior;
              scale = Math.max(scale, Math.abs(alpha) * s);
            }
          }
          const b16 = new Uint16Array(b.length);
          products.toBf16(b16, b, b.length);
          for (const operand of [b, b16]) {
            const c = c0.slice();
            products.gemm(transA, transB, m, n, inner, alpha, a, lda, operand, ldb, beta, c, ldc);
            for (let i = 0; i < m; i++) {
              for (let j = 0; j < n; j++) {
                const got = c[i * ldc + j];
                assert.ok(Math.abs(got - rounded[i * n + j]) <= 1e-5 * scale + 1e-6, `${what}: [${i},${j}] ${got} vs rounded-operand ${rounded[i * n + j]}`);
                // bf16 keeps 8 significant bits, so each operand is within 2^-8 relative and each
                // term within 2^-7 (1 + 2^-9) of its own.
                assert.ok(Math.abs(got - exact[i * n + j]) <= 2 ** -7 * 1.01 * scale + 1e-5, `${what}: [${i},${j}] ${got} vs exact ${exact[i * n + j]}`);
              }
              for (let j = n; j < ldc; j++) assert.ok(Object.is(c[i * ldc + j], c0[i * ldc + j]), `${what}: wrote padding`);
            }
          }
        }
      }
    }
  }
});

const cfg = makeConfig({ nEmbd: 16, nLayer: 2, nHead: 2 }, 6, 8, 3);

function tinyModel(kernels: Kernels): { model: ImageGPT; batch: Batch } {
  const params = new ParameterTensors(cfg);
  initParameters(params, 3);
  const rng = new Rng(4);
  for (let i = 0; i < params.data.length; i++) params.data[i] += rng.normal() * 0.2;
  const B = 3, T = cfg.nPositions, colors = cfg.vocabSize - 1;
  const pixels = Int32Array.from({ length: B * T }, () => rng.int(colors));
  const inputs = Int32Array.from({ length: B * T }, (_, i) => (i % T === 0 ? colors : pixels[i - 1]));
  const labels = Int32Array.from({ length: B }, () => rng.int(cfg.numLabels));
  const batch: Batch = { B, T, inputs, targets: pixels, labels, causal: true, genWeight: 0.7 };
  return { model: new ImageGPT(kernels, cfg, params), batch };
}

test('bf16: a tiny model\'s gradients match float64 finite differences within bf16 tolerance', { skip }, () => {
  const { model, batch } = tinyModel(createNativeKernels('bf16'));
  assert.equal(model.precision, 'bf16');
  model.zeroGrad();
  const r = model.forwardOnHost(batch, true);
  model.backward();
  const flat = Float64Array.from(model.params.data);
  const ref = referenceForward(cfg, flat, batch);
  const loss = 0.7 * r.genLoss + r.clfLoss;
  assert.ok(Math.abs(loss - ref.loss) < 1e-2 * ref.loss, `loss ${loss} vs float64 ${ref.loss}`);

  // The same model in float32: its gradients must differ from bf16's (the products did run in bf16).
  const f32 = tinyModel(createNativeKernels('f32')).model;
  f32.zeroGrad();
  f32.forward(batch, true);
  f32.backward();
  let differs = 0;
  for (let i = 0; i < flat.length; i++) if (f32.grads.data[i] !== model.grads.data[i]) differs++;
  assert.ok(differs > flat.length / 4, `only ${differs} of ${flat.length} gradients differ from float32's`);

  // Per tensor, the gradient over a few coordinates as a vector: relative L2 error against central
  // differences of the float64 reference. bf16 operands (8 bits) leave a few 1e-3; a wrong formula
  // is off by order 1.
  const rng = new Rng(5);
  const h = 1e-5;
  for (const t of model.params.layout) {
    let err = 0, norm = 0;
    for (let j = 0; j < Math.min(8, t.size); j++) {
      const i = t.offset + rng.int(t.size);
      const saved = flat[i];
      flat[i] = saved + h;
      const up = referenceForward(cfg, flat, batch).loss;
      flat[i] = saved - h;
      const down = referenceForward(cfg, flat, batch).loss;
      flat[i] = saved;
      const numeric = (up - down) / (2 * h);
      err += (model.grads.data[i] - numeric) ** 2;
      norm += numeric ** 2;
    }
    const relative = Math.sqrt(err / Math.max(norm, 1e-12));
    assert.ok(relative < 3e-2, `gradient of ${t.name} off by ${relative.toExponential(2)} (relative L2)`);
  }
});

test('bf16: the weights\' copy follows the float32 weights after weightsChanged, not before', { skip }, () => {
  const { model, batch } = tinyModel(createNativeKernels('bf16'));
  model.forward(batch, false);
  const before = model.activations.logits.slice();
  const w = model.params.blocks[0].fcW;
  for (let i = 0; i < w.length; i++) w[i] *= 3;
  model.forward(batch, false);
  assert.deepEqual(model.activations.logits, before, 'a forward before weightsChanged keeps the old copy');
  model.weightsChanged();
  model.forward(batch, false);
  assert.notDeepEqual(model.activations.logits, before, 'after weightsChanged the new weights count');
});

test('--precision bf16 where it cannot run says so and runs float32', () => {
  const code = `import { loadKernels } from './src/kernels/select.ts';
    const kernels = loadKernels('portable', 'bf16'); console.log(kernels.bf16 === undefined ? 'float32' : 'bf16');`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { encoding: 'utf8', env: { ...process.env, IGPT_QUIET: '1' } });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'float32');
  assert.match(r.stderr, /--precision bf16: the portable kernels multiply in float32 only; running float32/);
});

test('--precision bf16 names bf16 in the line saying which kernels run', { skip }, () => {
  const code = `import { loadKernels } from './src/kernels/select.ts';
    const kernels = loadKernels('native', 'bf16'); console.log(kernels.bf16 ? 'bf16' : 'float32');`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { encoding: 'utf8', env: { ...process.env, IGPT_QUIET: '' } });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'bf16');
  assert.match(r.stderr.trim(), /^igpt: using the native kernels \(OpenBLAS, \d+ threads; linear layers in bf16 through oneDNN, the rest float32\)$/);
});

test('bf16: cached probe features are not reused across precisions', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'igpt-bf16-features-'));
  try {
    const T = cfg.nPositions;
    const split = { count: 4, tokens: Uint8Array.from({ length: 4 * T }, (_, i) => i % (cfg.vocabSize - 1)), labels: new Int32Array(4) };
    const options = { batch: 2, objective: 'ar' as const };
    const run = async (kernels: Kernels) => await cachedFeatures(tinyModel(kernels).model, split, 'train', dir, 'key', options);
    assert.equal((await run(createNativeKernels('f32'))).cached, false);
    assert.equal((await run(createNativeKernels('f32'))).cached, true, 'the same precision reads the cache');
    const bf16Run = await run(createNativeKernels('bf16'));
    assert.equal(bf16Run.cached, false, 'bf16 features are extracted anew');
    assert.equal((await run(createNativeKernels('bf16'))).cached, true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
