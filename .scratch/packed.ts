import { loadKernels } from '../src/kernels/select.js';
const k = loadKernels();
for (const [m, n, kk] of [[16, 1024, 256], [16, 256, 1024], [16, 768, 256], [16, 256, 256], [8, 1024, 256], [1, 1024, 256]]) {
  const a = new Float32Array(m * kk).fill(0.5), c = new Float32Array(m * n);
  const bs = Array.from({ length: 8 }, () => k.packMatrix(new Float32Array(kk * n).fill(0.25), kk, n, process.env.HALF === '1'));
  const reps = 3000;
  for (let i = 0; i < 50; i++) k.sgemmPacked(m, a, bs[i % 8]!, c, false);
  let t0 = performance.now();
  for (let i = 0; i < reps; i++) k.sgemmPacked(m, a, bs[0]!, c, false);
  const same = (performance.now() - t0) / reps * 1000;
  t0 = performance.now();
  for (let i = 0; i < reps; i++) k.sgemmPacked(m, a, bs[i % 8]!, c, false);
  const cyc = (performance.now() - t0) / reps * 1000;
  console.log(`${m}x${n}x${kk}: same B ${same.toFixed(1)} us (${(2 * m * n * kk / same / 1e3).toFixed(0)} GFLOP/s), 8 Bs ${cyc.toFixed(1)} us (${(2 * m * n * kk / cyc / 1e3).toFixed(0)} GFLOP/s)`);
}
