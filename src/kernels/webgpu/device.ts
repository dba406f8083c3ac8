/**
 * Getting a WebGPU device: the adapter (which GPU, its vendor and architecture, its limits), the
 * optional features worth having (`shader-f16`, `subgroups`), limits raised to what the adapter
 * allows for the few that bound our kernels, and device loss turned into a clear error on the next
 * call instead of silent zeros or a hang. Browser-safe: the GPU object comes from the caller
 * (`navigator.gpu`, or `nodeGpu()` in Node).
 */

/** What a run prints about its adapter, and what the kernels plan around. */
export interface GpuAdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** A software adapter (SwiftShader, WARP, llvmpipe): correct, but no measure of GPU speed. */
  software: boolean;
  /**
   * Optional features the device has. `subgroupReductions`: subgroups with the subgroup_id and
   * num_subgroups builtins, which the row reductions use (checked by compiling a probe shader).
   */
  features: { shaderF16: boolean; subgroups: boolean; subgroupReductions: boolean };
  limits: {
    maxStorageBufferBindingSize: number;
    maxBufferSize: number;
    maxComputeWorkgroupStorageSize: number;
    maxComputeInvocationsPerWorkgroup: number;
    maxComputeWorkgroupsPerDimension: number;
    minStorageBufferOffsetAlignment: number;
    minUniformBufferOffsetAlignment: number;
  };
}

export interface AcquireOptions {
  /** Milliseconds to wait for the adapter and for the device (default 10 s each). */
  timeoutMs?: number;
  powerPreference?: GPUPowerPreference;
}

/**
 * Features requested when the adapter offers them. Plain strings: an older copy of the WebGPU
 * types (a dependency of a dev dependency) may win the global declarations and lack 'subgroups'.
 */
const OPTIONAL_FEATURES: readonly string[] = ['shader-f16', 'subgroups'];

/** What the row reductions take from subgroups (older implementations lack subgroup_id). */
const SUBGROUP_PROBE = /* wgsl */ `
enable subgroups;
@group(0) @binding(0) var<storage, read_write> o: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(subgroup_id) g: u32, @builtin(num_subgroups) n: u32) {
  let s = subgroupAdd(1.0) + subgroupMax(2.0);
  if (subgroupElect()) { o[g] = s + f32(n); }
}`;

/** Whether `code` compiles on `device` (its errors caught, not reported). */
async function compiles(device: GPUDevice, code: string): Promise<boolean> {
  device.pushErrorScope('validation');
  const info = await device.createShaderModule({ code }).getCompilationInfo();
  const error = await device.popErrorScope();
  return !error && !info.messages.some((m) => m.type === 'error');
}

/** The limits our kernels and chunking depend on; each is requested at the adapter's maximum. */
const RAISED_LIMITS = [
  'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup', 'maxStorageBuffersPerShaderStage',
] as const;

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`igpt webgpu: ${what} did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A device with the facts about its adapter; `dispose` when done (tests must, or Node may linger). */
export class GpuContext {
  private lostMessage: string | null = null;
  /** Compiled pipelines by WGSL and override constants, shared by every runtime on this device. */
  readonly pipelines = new Map<string, GPUComputePipeline>();
  private disposed = false;

  /**
   * `gpu` and `gpuAdapter` are held for the device's lifetime: in Node, a collected GPU object
   * frees Dawn's instance under a live device (seen as random crashes and deadlocks).
   */
  private constructor(readonly device: GPUDevice, readonly adapter: GpuAdapterSummary,
                      private readonly gpu: GPU, private readonly gpuAdapter: GPUAdapter) {
    void device.lost.then((info) => {
      if (this.disposed) return;
      this.lostMessage = `the WebGPU device was lost (${info.reason}): ${info.message || 'no message'}; ` +
        'the GPU may have been reset or run out of memory';
    });
  }

  /** Requests an adapter and a device from `gpu`; throws a clear Error when there is none. */
  static async acquire(gpu: GPU, options: AcquireOptions = {}): Promise<GpuContext> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const adapter = await withTimeout(gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' }),
                                      timeoutMs, 'requestAdapter');
    if (!adapter) {
      throw new Error('igpt webgpu: no WebGPU adapter found (no GPU driver; in Node without a GPU, ' +
        'Debian\'s chromium package provides SwiftShader: see README, "WebGPU (preview)")');
    }
    const features = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
    const requiredLimits: Record<string, number> = {};
    for (const name of RAISED_LIMITS) requiredLimits[name] = adapter.limits[name];
    const device = await withTimeout(adapter.requestDevice({ requiredFeatures: features, requiredLimits }),
                                     timeoutMs, 'requestDevice');
    const info = adapter.info;
    const l = device.limits;
    const summary: GpuAdapterSummary = {
      vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description,
      software: isSoftware(info),
      features: {
        shaderF16: device.features.has('shader-f16'), subgroups: device.features.has('subgroups'),
        subgroupReductions: device.features.has('subgroups') && await compiles(device, SUBGROUP_PROBE),
      },
      limits: {
        maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
        maxBufferSize: l.maxBufferSize,
        maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
        maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
        maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
        minStorageBufferOffsetAlignment: l.minStorageBufferOffsetAlignment,
        minUniformBufferOffsetAlignment: l.minUniformBufferOffsetAlignment,
      },
    };
    return new GpuContext(device, summary, gpu, adapter);
  }

  /** Throws the loss as an Error if the device is gone; called before every piece of work. */
  check(): void {
    if (this.disposed) throw new Error('igpt webgpu: the device was disposed');
    if (this.lostMessage) throw new Error(`igpt webgpu: ${this.lostMessage}`);
  }

  /** Resolves when the device is lost for any reason but `dispose` (for racing against waits). */
  get lost(): Promise<never> {
    return this.device.lost.then(() => {
      throw new Error(`igpt webgpu: ${this.lostMessage ?? 'the device was destroyed'}`);
    });
  }

  /** One line for a run's start: adapter, architecture, the limits that bound model size. */
  describe(): string {
    const a = this.adapter;
    const mib = (n: number): string => `${Math.round(n / 2 ** 20)} MiB`;
    const name = [a.vendor, a.architecture, a.device].filter((s) => s !== '').join(' ') || a.description || 'unknown adapter';
    const extras = [a.features.shaderF16 ? 'shader-f16' : '', a.features.subgroups ? 'subgroups' : ''].filter(Boolean);
    return `${name}${a.software ? ' (software: SwiftShader/CPU, correctness only)' : ''}; ` +
      `storage binding ${mib(a.limits.maxStorageBufferBindingSize)}, buffer ${mib(a.limits.maxBufferSize)}, ` +
      `workgroup memory ${a.limits.maxComputeWorkgroupStorageSize} B` + (extras.length ? `; ${extras.join(', ')}` : '');
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.device.destroy();
  }
}

function isSoftware(info: GPUAdapterInfo): boolean {
  const text = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`.toLowerCase();
  return /swiftshader|llvmpipe|lavapipe|warp|software/.test(text) ||
    (info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter === true;
}
