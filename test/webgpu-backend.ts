/**
 * The webgpu backend for tests: on SwiftShader (Vulkan on the CPU, from Debian's chromium) where it
 * is installed, so results do not depend on the machine; IGPT_WEBGPU_ADAPTER=default takes the
 * system's adapter instead. Where neither the `webgpu` package nor an adapter is there, the reason
 * to skip; except under CI (CI=true), which installs chromium: there a missing backend fails.
 */
import type { Kernels } from '../src/kernels/kernels.js';
import { createWebGpuBackend } from '../src/kernels/webgpu/backend.js';
import { WebGpuKernels } from '../src/kernels/webgpu/kernels.js';
import { acquireNodeDevice, swiftShaderMissing } from '../src/kernels/webgpu/node-gpu.js';
import { GpuRuntime, type GpuTensor } from '../src/kernels/webgpu/runtime.js';

export type WebGpuTestBackend = Kernels<GpuTensor> & { readonly gpu: WebGpuKernels };

export async function acquireTestWebGpu(): Promise<{ kernels: WebGpuTestBackend } | { skip: string }> {
  const choice = process.env.IGPT_WEBGPU_ADAPTER === 'default' || swiftShaderMissing() ? 'default' : 'swiftshader';
  try {
    const ctx = await acquireNodeDevice(choice, { timeoutMs: 20_000 });
    const kernels = createWebGpuBackend(new WebGpuKernels(new GpuRuntime(ctx)));
    console.log(`# webgpu adapter: ${ctx.describe()}`);
    return { kernels };
  } catch (err) {
    const reason = `webgpu tests skipped: ${(err as Error).message}`;
    if (process.env.CI === 'true') throw new Error(`CI installs chromium (SwiftShader), so webgpu must run: ${reason}`);
    return { skip: reason };
  }
}
