/**
 * The WebGPU backend (preview): device acquisition, device-owned tensors, and WGSL kernels for
 * every operation of the `Kernels` interface. Not yet wired into the model; README.md in this
 * folder is the plan for that step.
 */
export { GpuContext, type AcquireOptions, type GpuAdapterSummary } from './device.js';
export { GpuRuntime, type GpuTensor, type RuntimeOptions } from './runtime.js';
export { WebGpuKernels, type GpuPackedMatrix } from './kernels.js';
