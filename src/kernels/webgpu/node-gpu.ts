/**
 * WebGPU in Node: the optional `webgpu` npm package (Google's Dawn, over Vulkan, Metal or D3D12).
 * The browser has `navigator.gpu` instead; this is the only Node-specific file of the backend.
 *
 * Without a GPU, Debian's `chromium` package carries SwiftShader, a Vulkan driver that runs on
 * the CPU, and the Vulkan loader it uses. Dawn opens `libvulkan.so.1` by name, so the loader must
 * be found by the dynamic linker: either LD_LIBRARY_PATH includes chromium's folder before Node
 * starts, or `useSwiftShader` loads it into the process first (see there).
 */
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import type { Kernels } from '../kernels.js';
import { createWebGpuBackend } from './backend.js';
import { type AcquireOptions, GpuContext } from './device.js';
import { WebGpuKernels } from './kernels.js';
import { GpuRuntime, type GpuTensor } from './runtime.js';

/** Chromium's library folder on Debian, where SwiftShader and its Vulkan loader live. */
export const CHROMIUM_LIB_DIR = '/usr/lib/chromium';
const SWIFTSHADER_ICD = join(CHROMIUM_LIB_DIR, 'vk_swiftshader_icd.json');
const VULKAN_LOADER = join(CHROMIUM_LIB_DIR, 'libvulkan.so.1');

/** RTLD_NODELETE (glibc): keeps a library loaded after dlclose. Node does not export it. */
const RTLD_NODELETE = 0x1000;

/** Why SwiftShader cannot be used here, or null when chromium's copy is installed. */
export function swiftShaderMissing(): string | null {
  if (process.platform !== 'linux') return 'SwiftShader from chromium is only wired up on Linux';
  for (const file of [SWIFTSHADER_ICD, VULKAN_LOADER]) {
    if (!existsSync(file)) return `${file} is missing (apt-get install -y --no-install-recommends chromium)`;
  }
  return null;
}

let swiftShaderReady = false;

/**
 * Points Vulkan at SwiftShader for this process, before the first adapter request: the ICD file by
 * VK_ICD_FILENAMES (read by the loader when Dawn creates its Vulkan instance), and chromium's
 * Vulkan loader loaded once, never unloaded, so that Dawn's later dlopen("libvulkan.so.1") finds
 * it by its soname whatever LD_LIBRARY_PATH said at startup. process.dlopen is Node's one way to
 * dlopen; the loader is not an addon, so the call ends in "did not self-register" after the
 * library is in, and RTLD_NODELETE keeps it there through Node's dlclose.
 */
export function useSwiftShader(): void {
  if (swiftShaderReady) return;
  const missing = swiftShaderMissing();
  if (missing) throw new Error(`igpt webgpu: cannot use SwiftShader: ${missing}`);
  process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  try {
    process.dlopen({ exports: {} }, VULKAN_LOADER, constants.dlopen.RTLD_NOW | constants.dlopen.RTLD_GLOBAL | RTLD_NODELETE);
  } catch (err) {
    if (!/self-register/.test((err as Error).message)) {
      throw new Error(`igpt webgpu: could not load ${VULKAN_LOADER}: ${(err as Error).message}`);
    }
  }
  swiftShaderReady = true;
}

/** The shape of the `webgpu` package's exports that we use. */
interface DawnModule { create(flags: string[]): GPU; globals: Record<string, unknown> }

/** Which adapter Node should offer: the system's (a GPU driver) or SwiftShader (the CPU). */
export type NodeAdapterChoice = 'default' | 'swiftshader';

/**
 * The GPU entry point of the `webgpu` package, or an Error saying why it is not there (the
 * package is an optional dependency: a platform without a prebuilt dawn.node skips it). With
 * 'swiftshader', Vulkan is pointed at chromium's SwiftShader first (see useSwiftShader).
 */
export async function nodeGpu(adapter: NodeAdapterChoice = 'default', rank?: RankPlace): Promise<GPU> {
  if (adapter === 'swiftshader') useSwiftShader();
  let dawn: DawnModule;
  try {
    // Named through a variable, so that type-checking does not need the optional package.
    const packageName = 'webgpu';
    dawn = (await import(packageName)) as DawnModule;
  } catch (err) {
    throw new Error(`igpt webgpu: the optional 'webgpu' package did not load (${(err as Error).message}); ` +
      'npm install webgpu (it ships Dawn prebuilt for linux-x64, macOS and Windows)');
  }
  // The browser's WebGPU globals (GPUBufferUsage, GPUMapMode, …), so the backend reads the same.
  for (const [name, value] of Object.entries(dawn.globals)) {
    if (!(name in globalThis)) Object.defineProperty(globalThis, name, { value, writable: true, configurable: true });
  }
  if (adapter === 'default' && rank && rank.size > 1) {
    const names = await dawnAdapterNames(dawn);
    const name = adapterForRank(names, rank.rank);
    if (process.env.IGPT_QUIET !== '1') { // every rank: which GPU each one drives is worth a line
      process.stderr.write(`igpt: rank ${rank.rank} of ${rank.size}: ${name === undefined ? 'Dawn listed no adapters; the default one'
        : `adapter ${rank.rank % names.length} of ${names.length}, '${name}'`}\n`);
    }
    if (name !== undefined) return dawn.create([`adapter=${name}`]);
  }
  return dawn.create([]);
}

/** Where this process is among the ranks of an MPI job (src/parallel's world). */
export interface RankPlace { rank: number; size: number }

/** Issue 22: rank i takes adapter i mod count (undefined when there are none). */
export function adapterForRank(names: readonly string[], rank: number): string | undefined {
  return names.length === 0 ? undefined : names[rank % names.length];
}

/**
 * The adapters Dawn sees, by name. The `webgpu` package has no call that lists them; asked for an
 * adapter that does not exist (its `adapter=` option), it fails with the list, one
 * " * backend: 'vulkan', name: '…'" line each, which is what this reads.
 */
async function dawnAdapterNames(dawn: DawnModule): Promise<string[]> {
  try {
    await dawn.create(['adapter=igpt: no such adapter']).requestAdapter();
  } catch (err) {
    return parseAdapterList((err as Error).message);
  }
  return [];
}

/** The names in Dawn's "Available adapters" list. */
export function parseAdapterList(message: string): string[] {
  return [...message.matchAll(/^\s*\* backend: '[^']*', name: '(.*)'\s*$/gm)].map((m) => m[1]!);
}

/**
 * A device in Node: 'default' the system's adapter, 'swiftshader' the CPU one, 'auto' the system's
 * when it has one and SwiftShader otherwise (where chromium is installed).
 */
export async function acquireNodeDevice(choice: NodeAdapterChoice | 'auto' = 'auto',
                                        options: AcquireOptions = {}, rank?: RankPlace): Promise<GpuContext> {
  if (choice !== 'auto') return GpuContext.acquire(await nodeGpu(choice, rank), options);
  try {
    return await GpuContext.acquire(await nodeGpu('default', rank), options);
  } catch (err) {
    if (swiftShaderMissing() !== null || !/no WebGPU adapter/.test((err as Error).message)) throw err;
    return GpuContext.acquire(await nodeGpu('swiftshader'), options);
  }
}

/**
 * The webgpu backend in Node for a command (`--backend webgpu`): the system's adapter, else
 * SwiftShader where chromium is installed (correctness only: the start line says so). One line
 * on stderr names the adapter and its limits (IGPT_QUIET=1 silences it); no adapter is an Error
 * saying why, before any work. Under MPI (`rank` of size > 1) rank i takes the system's adapter
 * i mod count and says which.
 */
export async function loadWebGpuKernels(options: AcquireOptions = {}, rank?: RankPlace): Promise<Kernels<GpuTensor> & { readonly gpu: WebGpuKernels }> {
  let ctx: GpuContext;
  try {
    ctx = await acquireNodeDevice('auto', options, rank);
  } catch (err) {
    throw new Error(`--backend webgpu: ${(err as Error).message.replace(/^igpt webgpu: /, '')}`);
  }
  const kernels = createWebGpuBackend(new WebGpuKernels(new GpuRuntime(ctx)));
  if (process.env.IGPT_QUIET !== '1') process.stderr.write(`igpt: using the webgpu kernels on ${ctx.describe()}\n`);
  return kernels;
}
