import { loadKernels } from '../src/kernels/select.js';
const k = loadKernels();
for (const [m, n, kk] of [[16, 1024, 256], [16, 256, 1024], [16, 768, 256], [16, 256, 256], [256, 1024, 256]]) {
  const a = new Float32Array(m * kk).fill(0.5), b = new Float32Array(kk * n).fill(0.25), c = new Float32Array(m * n);
  // many distinct weight matrices, as in the model (8 layers): cycle through 8 copies
  const bs = Array.from({ length: 8 }, () => new Float32Array(b));
  const reps = 2000;
  for (let i = 0; i < 50; i++) k.sgemm(false, false, m, n, kk, 1, a, kk, bs[i % 8]!, n, 0, c, n);
  let t0 = performance.now();
  for (let i = 0; i < reps; i++) k.sgemm(false, false, m, n, kk, 1, a, kk, b, n, 0, c, n);
  const same = (performance.now() - t0) / reps * 1000;
  t0 = performance.now();
  for (let i = 0; i < reps; i++) k.sgemm(false, false, m, n, kk, 1, a, kk, bs[i % 8]!, n, 0, c, n);
  const cyc = (performance.now() - t0) / reps * 1000;
  console.log(`${m}x${n}x${kk}: same B ${same.toFixed(1)} us (${(2 * m * n * kk / same / 1e3).toFixed(0)} GFLOP/s), 8 Bs ${cyc.toFixed(1)} us`);
}
