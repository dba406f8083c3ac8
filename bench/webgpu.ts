/**
 * WebGPU GEMM benchmark: GFLOP/s of the tiled WGSL GEMM at 256³ and 1024³ in the model's three
 * layouts (NN, NT, TN; on SwiftShader 1024³ in NN only, timed once) on whatever adapter Node finds: the system's GPU, else SwiftShader (Vulkan
 * on the CPU, from Debian's chromium), where the figures say nothing about GPU speed and the row says
 * so. Every product is first checked against the portable kernels (max relative error).
 *
 *   node --import tsx bench/webgpu.ts [--quick]        IGPT_WEBGPU_ADAPTER=default|swiftshader|auto
 */
import { pathToFileURL } from 'node:url';
import { createPortableKernels } from '../src/kernels/portable.js';
import { WebGpuKernels } from '../src/kernels/webgpu/kernels.js';
import { acquireNodeDevice, type NodeAdapterChoice } from '../src/kernels/webgpu/node-gpu.js';
import { GpuRuntime } from '../src/kernels/webgpu/runtime.js';
import { Rng } from '../src/util/rng.js';
import type { BenchResult } from './types.js';

interface Shape { label: string; transA: boolean; transB: boolean; size: number }

const SHAPES: Shape[] = [
  { label: 'NN 256³', transA: false, transB: false, size: 256 },
  { label: 'NT 256³', transA: false, transB: true, size: 256 },
  { label: 'TN 256³', transA: true, transB: false, size: 256 },
  { label: 'NN 1024³', transA: false, transB: false, size: 1024 },
  { label: 'NT 1024³', transA: false, transB: true, size: 1024 },
  { label: 'TN 1024³', transA: true, transB: false, size: 1024 },
];

export async function run(opts: { quick: boolean }): Promise<BenchResult[]> {
  const choice = (process.env.IGPT_WEBGPU_ADAPTER ?? 'auto') as NodeAdapterChoice | 'auto';
  const ctx = await acquireNodeDevice(choice, { timeoutMs: 20_000 });
  const k = new WebGpuKernels(new GpuRuntime(ctx));
  const rt = k.runtime;
  const software = ctx.adapter.software;
  // SwiftShader runs a 1024³ product in seconds to tens of seconds: time it once, and only NN.
  const reps = (s: Shape): number => (software ? (s.size > 256 ? 1 : 2) : opts.quick ? 3 : 10);
  const rows: BenchResult[] = [];
  const rng = new Rng(4);
  const portable = createPortableKernels();
  try {
    for (const s of SHAPES) {
      if (software && s.size > 256 && s.label !== 'NN 1024³') continue;
      const n = s.size;
      const a = new Float32Array(n * n), b = new Float32Array(n * n);
      rng.fillNormal(a, 1);
      rng.fillNormal(b, 1);
      const A = rt.upload(a), B = rt.upload(b), C = rt.tensor(n * n);
      const product = (): void => k.sgemm(s.transA, s.transB, n, n, n, 1, A, 0, n, B, 0, n, 0, C, 0, n);
      product();
      const got = await rt.readFloats(C);
      const ref = new Float32Array(n * n);
      portable.sgemm(s.transA, s.transB, n, n, n, 1, a, n, b, n, 0, ref, n);
      let maxDiff = 0, maxRef = 0;
      for (let i = 0; i < ref.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(got[i] - ref[i]));
        maxRef = Math.max(maxRef, Math.abs(ref[i]));
      }
      // Timed: `reps` products recorded back to back, then one wait for all of them.
      const t0 = performance.now();
      for (let i = 0; i < reps(s); i++) product();
      await rt.sync();
      const seconds = (performance.now() - t0) / 1000 / reps(s);
      rows.push({
        name: `webgpu sgemm ${s.label}`, value: (2 * n ** 3) / seconds / 1e9, unit: 'GFLOP/s',
        note: `${software ? 'SwiftShader (CPU): correctness only, not GPU speed; ' : ''}` +
          `max rel. error vs portable ${(maxDiff / maxRef).toExponential(1)}; ${ctx.describe()}`,
      });
      [A, B, C].forEach((t) => rt.destroy(t));
    }
  } finally {
    k.dispose();
  }
  return rows;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const quick = process.argv.includes('--quick');
  for (const r of await run({ quick })) console.log(`${r.name}: ${r.value.toFixed(2)} ${r.unit} (${r.note})`);
}
