/**
 * The machinery under the WebGPU kernels: tensors the backend owns (a GPU buffer plus its length,
 * shape and element type), upload and readback, a pipeline cache, and dispatches recorded into one
 * command encoder that is submitted when the host needs a result (a readback, a write, `sync`).
 *
 * Two limits shape every dispatch. A storage binding may cover at most maxStorageBufferBindingSize
 * bytes and must start at a multiple of minStorageBufferOffsetAlignment, so a kernel binds a window
 * of a large tensor (`bind`) and receives the element offset of its data inside that window as a
 * parameter; the kernels split their work so each piece's windows fit (`planChunks`). A dispatch
 * has at most maxComputeWorkgroupsPerDimension workgroups per dimension, so long 1-D grids fold
 * into two dimensions (`grid`; the shaders unfold them with `GROUP_INDEX`).
 */
import type { GpuContext } from './device.js';

export type ElementType = 'f32' | 'i32';

/**
 * A tensor in GPU memory, owned by the runtime that made it, or a view of one (`GpuRuntime.view`):
 * elements [offset, offset + length) of the buffer. Views need no alignment: `bind` binds the
 * aligned window around them and passes the rest to the kernel as its shift.
 */
export interface GpuTensor {
  readonly buffer: GPUBuffer;
  /** Where the tensor starts in the buffer, in elements (0 unless it is a view). */
  readonly offset: number;
  /** Elements (4 bytes each). */
  readonly length: number;
  readonly shape: readonly number[];
  readonly type: ElementType;
}

/** A window of a tensor bound to a shader: the binding and where the requested data starts in it. */
export interface Bound {
  readonly resource: GPUBufferBinding;
  /** Element offset of the requested first element inside the bound window. */
  readonly shift: number;
}

/** A dispatch's parameters: the u32 fields of its uniform struct, then the f32 ones, in order. */
export interface Params { u: readonly number[]; f?: readonly number[] }

/** WGSL for the flat workgroup index of a grid folded by `GpuRuntime.grid`. */
export const GROUP_INDEX = 'fn groupIndex(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { return wid.x + wid.y * nwg.x; }';

const UNIFORM_SLOT = 256;       // bytes per dispatch's parameters (≥ minUniformBufferOffsetAlignment)
const UNIFORM_SLOTS = 512;      // dispatches recorded before a forced submit

export interface RuntimeOptions {
  /**
   * Binds at most this many bytes of a tensor at once (default and cap: the device's
   * maxStorageBufferBindingSize). Tests lower it to exercise the chunked paths on small tensors.
   */
  maxBindingBytes?: number;
  /** false: the row reductions use workgroup-memory trees even where subgroups are offered (tests). */
  subgroups?: boolean;
}

export class GpuRuntime {
  readonly device: GPUDevice;
  /** Largest window bound at once, in bytes. */
  readonly maxBindingBytes: number;
  /** Whether the row reductions add within subgroups first (see withReductions). */
  readonly subgroupReductions: boolean;
  private readonly uniforms: GPUBuffer;
  private readonly uniformData = new ArrayBuffer(UNIFORM_SLOT * UNIFORM_SLOTS);
  private slots = 0;
  private encoder: GPUCommandEncoder | null = null;
  /** Command buffers submitted so far: work recorded after the count last changed is not yet submitted. */
  submissions = 0;
  /** Compute dispatches recorded so far (the bench reports them per unit of work: host overhead). */
  dispatches = 0;
  /** Error scopes of submitted batches and allocations not yet checked: the message of each error. */
  private pendingErrors: Promise<string | null>[] = [];
  /** Bytes in the tensors this runtime holds (WebGPU has no free-memory query: this is what we know). */
  private allocatedBytes = 0;
  /** A 16-byte buffer bound where a shader declares a binding that a variant does not use. */
  readonly placeholder: GpuTensor;

  constructor(readonly ctx: GpuContext, options: RuntimeOptions = {}) {
    this.device = ctx.device;
    const limit = ctx.adapter.limits.maxStorageBufferBindingSize;
    this.maxBindingBytes = Math.min(limit, options.maxBindingBytes ?? limit);
    this.subgroupReductions = ctx.adapter.features.subgroupReductions && options.subgroups !== false;
    if (this.maxBindingBytes < 4 * ctx.adapter.limits.minStorageBufferOffsetAlignment) {
      throw new Error(`igpt webgpu: maxBindingBytes ${this.maxBindingBytes} is too small`);
    }
    this.uniforms = this.device.createBuffer({
      size: this.uniformData.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    this.placeholder = this.tensor(4);
  }

  // -------------------------------------------------------------------------------------------
  // Tensors

  /** A zero-filled tensor of `length` elements. */
  tensor(length: number, shape: readonly number[] = [length], type: ElementType = 'f32'): GpuTensor {
    this.ctx.check();
    const bytes = 4 * length;
    if (bytes > this.ctx.adapter.limits.maxBufferSize) {
      throw new Error(`igpt webgpu: a tensor of ${length} elements (${(bytes / 2 ** 20).toFixed(0)} MiB) exceeds ` +
        `the adapter's largest buffer (${(this.ctx.adapter.limits.maxBufferSize / 2 ** 20).toFixed(0)} MiB)`);
    }
    // An allocation the GPU cannot make fails on the next sync, saying what it was and what was held.
    const mib = (b: number): string => `${(b / 2 ** 20).toFixed(0)} MiB`;
    const held = this.allocatedBytes;
    this.device.pushErrorScope('out-of-memory');
    const buffer = this.device.createBuffer({
      // Rounded up to 16 bytes so that vec4 views of the whole buffer cover every element.
      size: Math.max(16, Math.ceil(bytes / 16) * 16),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
    this.pendingErrors.push(this.device.popErrorScope().then((e) => e && `the GPU is out of memory: a tensor of ${mib(bytes)} ` +
      `could not be allocated beside the ${mib(held)} already held (the start line gives the model's estimate); ` +
      'lower --batch or choose a smaller --preset'));
    this.allocatedBytes += buffer.size;
    return { buffer, offset: 0, length, shape, type };
  }

  /** Elements [offset, offset + length) of t, sharing its buffer. */
  view(t: GpuTensor, offset: number, length: number): GpuTensor {
    if (offset < 0 || length < 0 || offset + length > t.length) {
      throw new Error(`igpt webgpu: a view of ${length} at ${offset} outside a tensor of ${t.length}`);
    }
    return { buffer: t.buffer, offset: t.offset + offset, length, shape: [length], type: t.type };
  }

  /** A new tensor holding `data`. */
  upload(data: Float32Array | Int32Array, shape: readonly number[] = [data.length]): GpuTensor {
    const t = this.tensor(data.length, shape, data instanceof Int32Array ? 'i32' : 'f32');
    this.write(t, data);
    return t;
  }

  /** Overwrites t[offset, offset + data.length) after all work recorded so far. */
  write(t: GpuTensor, data: Float32Array | Int32Array, offset = 0): void {
    this.flush(); // queue writes happen before unsubmitted commands: keep program order
    this.writeAhead(t, data, offset);
  }

  /**
   * Writes t[offset, offset + data.length) now, ahead of the work recorded and not yet submitted:
   * for elements none of that work touches (the caller's word), so that no submit is needed.
   */
  writeAhead(t: GpuTensor, data: Float32Array | Int32Array, offset = 0): void {
    if (offset + data.length > t.length) throw new Error(`igpt webgpu: write of ${data.length} at ${offset} overruns ${t.length}`);
    this.device.queue.writeBuffer(t.buffer, 4 * (t.offset + offset), data.buffer, data.byteOffset, data.byteLength);
  }

  /** Reads t[offset, offset + count) back once all work recorded so far is done. */
  async read(t: GpuTensor, offset = 0, count = t.length - offset): Promise<Float32Array | Int32Array> {
    if (offset < 0 || count < 0 || offset + count > t.length) {
      throw new Error(`igpt webgpu: read of ${count} at ${offset} outside a tensor of ${t.length}`);
    }
    const staging = this.device.createBuffer({ size: Math.max(4, 4 * count), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    try {
      if (count > 0) this.commands().copyBufferToBuffer(t.buffer, 4 * (t.offset + offset), staging, 0, 4 * count);
      this.flush();
      await Promise.race([staging.mapAsync(GPUMapMode.READ), this.ctx.lost]);
      await this.checkErrors();
      const bytes = staging.getMappedRange(0, 4 * count).slice(0);
      staging.unmap();
      return t.type === 'i32' ? new Int32Array(bytes) : new Float32Array(bytes);
    } finally {
      staging.destroy();
    }
  }

  /** Reads a float tensor (a convenience over `read`). */
  async readFloats(t: GpuTensor, offset = 0, count = t.length - offset): Promise<Float32Array> {
    if (t.type !== 'f32') throw new Error('igpt webgpu: readFloats of an integer tensor');
    return (await this.read(t, offset, count)) as Float32Array;
  }

  /** dst[dstOffset, +count) = src[srcOffset, +count), in order with the recorded work. */
  copy(dst: GpuTensor, dstOffset: number, src: GpuTensor, srcOffset: number, count: number): void {
    if (count > 0) this.commands().copyBufferToBuffer(src.buffer, 4 * (src.offset + srcOffset), dst.buffer, 4 * (dst.offset + dstOffset), 4 * count);
  }

  /** t[offset, +count) = 0, in order with the recorded work. */
  zero(t: GpuTensor, offset = 0, count = t.length - offset): void {
    if (count > 0) this.commands().clearBuffer(t.buffer, 4 * (t.offset + offset), 4 * count);
  }

  /**
   * Frees t's buffer. Work recorded but not yet submitted may still use it (a scratch tensor
   * outgrown mid-step): submitted work may, and Dawn frees the memory once that work is done.
   */
  destroy(t: GpuTensor): void {
    this.flush();
    this.allocatedBytes -= t.buffer.size;
    t.buffer.destroy();
  }

  // -------------------------------------------------------------------------------------------
  // Binding windows and chunking

  /** Elements a window can hold once its start is rounded down to the offset alignment. */
  get windowElements(): number {
    return Math.floor((this.maxBindingBytes - this.ctx.adapter.limits.minStorageBufferOffsetAlignment) / 4);
  }

  /**
   * Binds the part of t that a dispatch touches, elements [first, first + count). The whole buffer
   * when it fits in one binding, else a window starting at the aligned byte at or below `first`.
   */
  bind(t: GpuTensor, first = 0, count = t.length - first): Bound {
    const size = t.buffer.size;
    first += t.offset;
    if (size <= this.maxBindingBytes) return { resource: { buffer: t.buffer, offset: 0, size }, shift: first };
    const align = this.ctx.adapter.limits.minStorageBufferOffsetAlignment;
    const start = Math.floor((4 * first) / align) * align;
    const end = Math.min(size, Math.ceil((4 * (first + count)) / 16) * 16);
    if (end - start > this.maxBindingBytes) {
      throw new Error(`igpt webgpu: ${count} elements do not fit one storage binding ` +
        `(${this.maxBindingBytes} bytes); the kernel should have split its work`);
    }
    return { resource: { buffer: t.buffer, offset: start, size: end - start }, shift: first - start / 4 };
  }

  /**
   * Splits `units` units of work (rows, batch items) into runs that fit one binding each, given
   * the elements one unit touches in each tensor it walks through. Throws a clear Error when not
   * even one unit fits.
   */
  planChunks(units: number, elementsPerUnit: readonly number[], what: string): { first: number; count: number }[] {
    const widest = Math.max(1, ...elementsPerUnit);
    const perChunk = Math.floor(this.windowElements / widest);
    if (perChunk < 1) {
      throw new Error(`igpt webgpu: ${what}: one unit of work spans ${widest} elements, more than one storage ` +
        `binding holds (${this.maxBindingBytes} bytes on this adapter)`);
    }
    const chunks: { first: number; count: number }[] = [];
    for (let first = 0; first < units; first += perChunk) chunks.push({ first, count: Math.min(perChunk, units - first) });
    return chunks;
  }

  /** Throws unless the whole of t fits one binding (weights, which every piece of work reads). */
  requireWhole(t: GpuTensor, what: string): void {
    if (t.buffer.size > this.maxBindingBytes && t.length > this.windowElements) {
      throw new Error(`igpt webgpu: ${what} (${t.length} elements) does not fit one storage binding ` +
        `(${this.maxBindingBytes} bytes on this adapter)`);
    }
  }

  /** Folds `groups` workgroups into a grid no dimension of which exceeds the device's limit. */
  grid(groups: number): [number, number] {
    const max = this.ctx.adapter.limits.maxComputeWorkgroupsPerDimension;
    if (groups <= max) return [Math.max(groups, 1), 1];
    const y = Math.ceil(groups / max);
    if (y > max) throw new Error(`igpt webgpu: ${groups} workgroups are more than one dispatch holds`);
    return [Math.ceil(groups / y), y];
  }

  // -------------------------------------------------------------------------------------------
  // Pipelines and dispatches

  /** The pipeline for `code` (entry point `main`) with override constants, compiled once. */
  pipeline(code: string, constants: Record<string, number> = {}): GPUComputePipeline {
    const key = code + JSON.stringify(constants);
    const cache = this.ctx.pipelines;
    let p = cache.get(key);
    if (!p) {
      this.commands(); // compile errors land in the current batch's error scope
      const module = this.device.createShaderModule({ code });
      p = this.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main', constants } });
      cache.set(key, p);
    }
    return p;
  }

  /**
   * Records one dispatch: binding 0 is the uniform struct built from `params`, bindings 1.. are
   * `bound` in order.
   */
  dispatch(pipeline: GPUComputePipeline, params: Params, bound: readonly Bound[], groups: readonly number[]): void {
    if (groups.some((g) => g === 0)) return;
    if (this.slots === UNIFORM_SLOTS) this.flush();
    const encoder = this.commands();
    const slot = this.slots++;
    const words = params.u.length + (params.f?.length ?? 0);
    if (4 * words > UNIFORM_SLOT) throw new Error('igpt webgpu: too many parameters for one dispatch');
    const view = new DataView(this.uniformData, slot * UNIFORM_SLOT, UNIFORM_SLOT);
    params.u.forEach((v, i) => {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`igpt webgpu: parameter ${v} is not a u32`);
      view.setUint32(4 * i, v, true);
    });
    params.f?.forEach((v, i) => view.setFloat32(4 * (params.u.length + i), v, true));
    const entries: GPUBindGroupEntry[] = [
      { binding: 0, resource: { buffer: this.uniforms, offset: slot * UNIFORM_SLOT, size: Math.ceil(words / 4) * 16 || 16 } },
      ...bound.map((b, i) => ({ binding: i + 1, resource: b.resource })),
    ];
    const bindGroup = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(groups[0], groups[1] ?? 1, groups[2] ?? 1);
    pass.end();
    this.dispatches++;
  }

  /** Submits the recorded work (it then runs while the host goes on). */
  flush(): void {
    if (!this.encoder) return;
    const queue = this.device.queue;
    if (this.slots > 0) queue.writeBuffer(this.uniforms, 0, this.uniformData, 0, this.slots * UNIFORM_SLOT);
    queue.submit([this.encoder.finish()]);
    this.submissions++;
    this.encoder = null;
    this.slots = 0;
    for (let i = 0; i < 3; i++) this.pendingErrors.push(this.device.popErrorScope().then((e) => e && `${e.constructor.name}: ${e.message}`));
  }

  /** Submits and waits for all recorded work; throws the first error it raised. */
  async sync(): Promise<void> {
    this.flush();
    await Promise.race([this.device.queue.onSubmittedWorkDone(), this.ctx.lost]);
    await this.checkErrors();
  }

  private commands(): GPUCommandEncoder {
    this.ctx.check();
    if (!this.encoder) {
      for (const filter of ['validation', 'out-of-memory', 'internal'] as const) this.device.pushErrorScope(filter);
      this.encoder = this.device.createCommandEncoder();
    }
    return this.encoder;
  }

  private async checkErrors(): Promise<void> {
    const pending = this.pendingErrors;
    this.pendingErrors = [];
    for (const message of await Promise.all(pending)) {
      if (message) throw new Error(`igpt webgpu: ${message}`);
    }
    this.ctx.check();
  }
}
