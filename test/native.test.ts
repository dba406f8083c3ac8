/**
 * Native-backend specifics: backend selection and its fallback, argument checking at the addon
 * boundary, and results that do not depend on the number of threads or on how GEMMs are threaded.
 * (Numerical correctness of every kernel is in kernels.test.ts, run over both backends.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createNativeKernels, nativeAvailable, nativeGemmThreading } from '../src/kernels/native.js';
import { loadKernels } from '../src/kernels/select.js';
import { Rng } from '../src/util/rng.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const skip = nativeAvailable() ? false : 'the native addon is not built';

/** Runs a module snippet in a fresh Node with `env`; returns status, stdout, stderr. */
function runNode(code: string, env: Record<string, string>): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: root, encoding: 'utf8', env: { ...process.env, IGPT_QUIET: '', IGPT_KERNELS: '', ...env },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const SELECT = `import { loadKernels } from './src/kernels/select.ts';`;

test('loadKernels picks the requested backend', { skip }, () => {
  process.env.IGPT_QUIET = '1';
  assert.equal(loadKernels('native').name, 'native');
  assert.equal(loadKernels('portable').name, 'portable');
  assert.equal(loadKernels('auto').name, 'native');
  assert.ok(loadKernels('native').threads >= 1);
});

test('without the addon, auto falls back to portable with one hint line; native fails clearly', () => {
  const missing = { IGPT_NATIVE_ADDON: '/nonexistent/igpt_native.node' };
  const auto = runNode(`${SELECT} const k = loadKernels(); loadKernels(); console.log(k.name);`, missing);
  assert.equal(auto.status, 0, auto.stderr);
  assert.equal(auto.stdout.trim(), 'portable');
  const lines = auto.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got: ${auto.stderr}`);
  assert.match(lines[0], /portable/);
  assert.match(lines[0], /apt-get install -y libopenblas-dev && npm rebuild igpt/);

  const quiet = runNode(`${SELECT} console.log(loadKernels().name);`, { ...missing, IGPT_QUIET: '1' });
  assert.equal(quiet.stdout.trim(), 'portable');
  assert.equal(quiet.stderr.trim(), '');

  const forced = runNode(`${SELECT} loadKernels();`, { ...missing, IGPT_KERNELS: 'native' });
  assert.notEqual(forced.status, 0);
  assert.match(forced.stderr, /native kernels are not built \(\/nonexistent\/igpt_native\.node is missing\)/);

  const bad = runNode(`${SELECT} loadKernels();`, { IGPT_KERNELS: 'fast' });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /IGPT_KERNELS must be one of auto, native, portable, webgpu; got 'fast'/);

  // loadKernels gives the CPU kernels: asked for the GPU through IGPT_KERNELS, it points at the webgpu loader.
  const gpu = runNode(`${SELECT} loadKernels();`, { IGPT_KERNELS: 'webgpu' });
  assert.notEqual(gpu.status, 0);
  assert.match(gpu.stderr, /loadKernels gives the CPU kernels; IGPT_KERNELS=webgpu is for igpt's commands, and in code loadWebGpuKernels/);
});

test('with the addon, auto announces the native backend once', { skip }, () => {
  const r = runNode(`${SELECT} loadKernels(); loadKernels(); console.log(loadKernels().name);`, {});
  assert.equal(r.stdout.trim(), 'native');
  assert.match(r.stderr.trim(), /^igpt: using the native kernels \(OpenBLAS, \d+ threads; float32\)$/);
});

test('the addon rejects wrong types, short buffers and bad sizes with a clear error', { skip }, () => {
  const k = createNativeKernels();
  const f = (n: number): Float32Array => new Float32Array(n);
  assert.throws(() => k.sgemm(false, false, 4, 4, 4, 1, f(15), 4, f(16), 4, 0, f(16), 4),
                { name: 'RangeError', message: 'igpt native sgemm: a has 15 elements, needs 16' });
  assert.throws(() => k.sgemm(false, false, 4, 4, 4, 1, f(16), 3, f(16), 4, 0, f(16), 4),
                /leading dimension of a is 3, below its 4 columns/);
  assert.throws(() => k.sgemm(false, false, 4.5, 4, 4, 1, f(16), 4, f(16), 4, 0, f(16), 4),
                /m must be a non-negative integer/);
  assert.throws(() => k.geluForward(f(4), new Float64Array(4) as unknown as Float32Array, 4),
                { name: 'TypeError', message: 'igpt native geluForward: x must be a Float32Array' });
  assert.throws(() => k.attentionForward(f(8), f(3), f(24), 1, 2, 1, 4, true), /att has 3 elements, needs 4/);
  assert.throws(() => k.crossEntropy(f(2), null, f(4), Int32Array.of(0, 2), 2, 2, 1, f(1)),
                /target 2 of row 1 is not below V=2/);
  assert.throws(() => k.attentionDecode(f(4), f(12), f(8), f(8), 1, 1, 4, 2, 2), /position t=2 is not below maxT=2/);
  const packed = k.packMatrix(f(8), 2, 4);
  assert.throws(() => k.sgemmPacked(3, f(6), { ...packed, data: packed.data.subarray(1) }, f(12), false, null),
                /igpt native sgemmPacked: packed has 63 elements, needs 64/);
  assert.throws(() => k.sgemmPacked(3, f(5), packed, f(12), false, null), /a has 5 elements, needs 6/);
  if (k.attentionDecodeHalf) {
    assert.throws(() => k.attentionDecodeHalf!(f(4), f(12), f(8) as unknown as Uint16Array, new Uint16Array(8), 1, 1, 4, 0, 2),
                  { name: 'TypeError', message: 'igpt native attentionDecodeHalf: kCache must be a Uint16Array' });
  }
  // A subarray view is bounded by its own length, not by the buffer behind it.
  const big = f(100);
  assert.throws(() => k.biasForward(big.subarray(90), f(4), 3, 4), /out has 10 elements, needs 12/);
});

test('pool-split and OpenBLAS-threaded GEMM agree', { skip }, () => {
  const k = createNativeKernels();
  const rng = new Rng(3);
  const [m, n, kk] = [301, 203, 97];
  const a = new Float32Array(kk * m), b = new Float32Array(n * kk);
  rng.fillNormal(a, 1);
  rng.fillNormal(b, 1);
  const before = nativeGemmThreading();
  const results: Float32Array[] = [];
  try {
    for (const mode of ['pool', 'blas'] as const) {
      nativeGemmThreading(mode);
      const c = new Float32Array(m * n).fill(NaN);
      k.sgemm(true, true, m, n, kk, 1, a, m, b, kk, 0, c, n);
      results.push(c);
    }
  } finally {
    nativeGemmThreading(before);
  }
  let worst = 0, scale = 0;
  for (let i = 0; i < m * n; i++) {
    worst = Math.max(worst, Math.abs(results[0][i] - results[1][i]));
    scale = Math.max(scale, Math.abs(results[1][i]));
  }
  assert.ok(worst / scale < 1e-5, `pool vs blas: ${worst / scale}`);
});

/** Hashes every fused kernel's output on fixed inputs; run under different IGPT_THREADS. */
const FINGERPRINT = `
import { createHash } from 'node:crypto';
import { createNativeKernels } from './src/kernels/native.ts';
import { Rng } from './src/util/rng.ts';
const k = createNativeKernels();
const rng = new Rng(11);
const rand = (n) => { const a = new Float32Array(n); rng.fillNormal(a, 1); return a; };
const h = createHash('sha256');
const add = (x) => h.update(new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
const [B, T, H, hs] = [3, 77, 2, 16], C = H * hs;
const qkv = rand(B * T * 3 * C), out = new Float32Array(B * T * C), att = new Float32Array(B * H * T * T);
k.attentionForward(out, att, qkv, B, T, H, hs, true); add(out); add(att);
const dqkv = new Float32Array(B * T * 3 * C); k.attentionBackward(dqkv, rand(B * T * C), qkv, out, att, B, T, H, hs, true); add(dqkv);
const rows = 3001, d = 40, x = rand(rows * d), g = rand(d), y = new Float32Array(rows * d), rstd = new Float32Array(rows);
k.normForward(y, rstd, x, g, rows, d, 1e-5); add(y); add(rstd);
const dx = rand(rows * d), dg = rand(d); k.normBackward(dx, dg, rand(rows * d), x, rstd, g, rows, d); add(dx); add(dg);
const db = rand(d); k.biasBackward(db, x, rows, d); add(db);
const V = 17, logits = rand(rows * V), targets = Int32Array.from({ length: rows }, (_, r) => r % 5 === 0 ? -1 : r % V);
const losses = new Float32Array(rows), dl = new Float32Array(rows * V);
const sum = new Float32Array(1); k.crossEntropy(losses, dl, logits, targets, rows, V, 0.1, sum); add(losses); add(dl); add(sum);
const gl = rand(200001); k.geluBackward(gl, gl, rand(200001), 200001); add(gl);
console.log(k.threads + ' ' + h.digest('hex'));
`;

test('fused kernels give bit-identical results on 1, 2 and 3 threads', { skip }, () => {
  const prints = ['1', '2', '3'].map((threads) => {
    const r = runNode(FINGERPRINT, { IGPT_THREADS: threads });
    assert.equal(r.status, 0, r.stderr);
    const [used, digest] = r.stdout.trim().split(' ');
    assert.equal(used, threads);
    return digest;
  });
  assert.equal(prints[1], prints[0]);
  assert.equal(prints[2], prints[0]);
  assert.match(prints[0], /^[0-9a-f]{64}$/);
});

test('the AVX2 and BLAS attention paths (and AVX2 decoding products) pass the shared tests too', { skip }, () => {
  // On AVX-512 machines the default path is the AVX-512 one; IGPT_ATTENTION_ISA (attention and
  // cached decoding) and IGPT_PACKED_ISA (products with packed matrices) force the others.
  // A fresh runner: NODE_TEST_CONTEXT (set for files run by a parent runner) would redirect its report.
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.NODE_TEST_CONTEXT;
  for (const isa of ['avx2', 'none']) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-name-pattern=native: (attention|sgemmPacked|half)',
                                           'test/kernels.test.ts'],
                        { cwd: root, encoding: 'utf8', env: { ...env, IGPT_ATTENTION_ISA: isa, IGPT_PACKED_ISA: isa } });
    assert.equal(r.status, 0, `IGPT_ATTENTION_ISA=${isa}:\n${r.stdout.slice(-2000)}`);
    assert.match(r.stdout, /^ok \d+ - native: attentionForward\/Backward match float64/m);
    assert.match(r.stdout, /# fail 0/);
  }
});
