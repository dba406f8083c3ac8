import { WebGpuKernels } from './src/kernels/webgpu/kernels.js';
import { nodeGpu } from './src/kernels/webgpu/node-gpu.js';
const k = await WebGpuKernels.create(await nodeGpu('swiftshader'));
const rt = k.runtime;
const t0 = performance.now();
const lap = (s: string) => console.log(s, (performance.now() - t0).toFixed(0));
const a = rt.upload(new Float32Array(72 * 36).fill(1)), c = rt.tensor(72 * 68), b = rt.upload(new Float32Array(36 * 68).fill(1));
await rt.read(a, 0, 1); lap('upload+read');
for (let i = 0; i < 3; i++) { k.sgemm(false, false, 72, 68, 36, 1, a, 0, 36, b, 0, 68, 0, c, 0, 68); lap('recorded'); await rt.read(c, 0, 1); lap('gemm vec4'); }
for (let i = 0; i < 3; i++) { k.sgemm(false, false, 71, 67, 35, 1, a, 0, 35, b, 0, 67, 0, c, 0, 67); lap('recorded'); await rt.read(c, 0, 1); lap('gemm scalar'); }
for (let i = 0; i < 3; i++) { k.geluForward(c, a, 100); await rt.read(c, 0, 1); lap('gelu'); }
k.dispose();
