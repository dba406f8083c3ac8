/**
 * The WebGPU backend: device acquisition, device-owned tensors, WGSL kernels, and
 * `createWebGpuBackend`, the `Kernels<GpuTensor>` the model runs on (browser-safe: Node's entry
 * point, loadWebGpuKernels, is in node-gpu.ts). README.md in this folder says what is done.
 */
export { GpuContext, type AcquireOptions, type GpuAdapterSummary } from './device.js';
export { GpuRuntime, type GpuTensor, type RuntimeOptions } from './runtime.js';
export { WebGpuKernels, type GpuPackedMatrix } from './kernels.js';
export { createWebGpuBackend } from './backend.js';
