/**
 * Picks the kernel backend: native when its addon loads, portable otherwise. The choice comes from
 * the argument or IGPT_KERNELS ('auto' | 'native' | 'portable'); one line on stderr says which
 * backend runs and the precision of its matrix products (IGPT_QUIET=1 silences it).
 *
 * The precision asked for ('f32' | 'bf16' | 'auto'): `bf16` multiplies the linear layers in bf16
 * where the native kernels can (a CPU with AVX512-BF16 or AMX, an addon built with oneDNN) and
 * elsewhere says why not and runs float32; `auto` takes bf16 where it is available, silently
 * float32 elsewhere; `f32` (the default) never uses bf16.
 */
import type { DeviceArray, Kernels } from './kernels.js';
import { createNativeKernels, nativeBf16Available } from './native.js';
import { createPortableKernels } from './portable.js';

export type KernelChoice = 'auto' | 'native' | 'portable';
/** Every backend a command may name; 'webgpu' starts asynchronously (kernels/webgpu/node-gpu.ts). */
export type BackendChoice = KernelChoice | 'webgpu';
export const BACKENDS: readonly BackendChoice[] = ['auto', 'native', 'portable', 'webgpu'];
export type PrecisionChoice = 'f32' | 'bf16' | 'auto';

export const PRECISIONS: readonly PrecisionChoice[] = ['f32', 'bf16', 'auto'];

let announced = false;

function announce(line: string): void {
  if (announced) return;
  announced = true;
  if (process.env.IGPT_QUIET !== '1') process.stderr.write(line + '\n');
}

/** The backend IGPT_KERNELS names ('auto' when unset). */
export function backendFromEnv(): BackendChoice {
  const env = process.env.IGPT_KERNELS;
  if (env === undefined || env === '') return 'auto';
  if (!(BACKENDS as readonly string[]).includes(env)) {
    throw new Error(`IGPT_KERNELS must be one of ${BACKENDS.join(', ')}; got '${env}'`);
  }
  return env as BackendChoice;
}

function choiceFromEnv(): KernelChoice {
  const choice = backendFromEnv();
  if (choice === 'webgpu') throw new Error(WEBGPU_NOT_HERE);
  return choice;
}

/** What loadKernels (the CPU kernels) says when IGPT_KERNELS asks for webgpu, whose device is acquired asynchronously. */
export const WEBGPU_NOT_HERE = 'loadKernels gives the CPU kernels; IGPT_KERNELS=webgpu is for igpt\'s commands, and in code ' +
  'loadWebGpuKernels (src/kernels/webgpu/node-gpu.ts) gives the webgpu backend';

/** What the announcement says about the matrix products. */
function productsNote(kernels: Kernels): string {
  return kernels.bf16 ? 'linear layers in bf16 through oneDNN, the rest float32' : 'float32';
}

/** The native kernels at the precision asked for; bf16 falls back to float32 where it cannot run. */
function nativeKernels(precision: PrecisionChoice): Kernels {
  if (precision === 'f32') return createNativeKernels('f32');
  if (nativeBf16Available()) return createNativeKernels('bf16');
  if (precision === 'bf16') {
    // Said whatever IGPT_QUIET says: the run is not what was asked for.
    process.stderr.write('igpt: --precision bf16 is not available here (it needs a CPU with AVX512-BF16 or AMX and ' +
      'native kernels built with oneDNN: apt-get install -y libdnnl-dev && npm rebuild igpt); running float32\n');
  }
  return createNativeKernels('f32');
}

function portableKernels(precision: PrecisionChoice, line: string): Kernels {
  const portable = createPortableKernels();
  if (precision === 'bf16') process.stderr.write('igpt: --precision bf16: the portable kernels multiply in float32 only; running float32\n');
  announce(line);
  return portable;
}

/**
 * The CPU kernels for work on host arrays beside `kernels` (the probes' regressions): `kernels`
 * themselves, or beside webgpu the CPU's (native, else portable).
 */
export function hostKernelsBeside(kernels: Kernels<DeviceArray>): Kernels {
  return kernels.name === 'webgpu' ? loadKernels('auto') : kernels as Kernels;
}

/**
 * The kernels to compute with. `native` throws if the addon is missing; `auto` falls back to the
 * portable kernels (which multiply in float32 only).
 */
export function loadKernels(choice: KernelChoice = choiceFromEnv(), precision: PrecisionChoice = 'f32'): Kernels {
  if (!(PRECISIONS as readonly string[]).includes(precision)) {
    throw new Error(`precision must be one of ${PRECISIONS.join(', ')}; got '${String(precision)}'`);
  }
  if (choice === 'portable') return portableKernels(precision, 'igpt: using the portable kernels (IGPT_KERNELS=portable; float32)');
  if (choice === 'native') {
    const native = nativeKernels(precision);
    announce(`igpt: using the native kernels (OpenBLAS, ${native.threads} threads; ${productsNote(native)})`);
    return native;
  }
  if (choice !== 'auto') throw new Error(`loadKernels: unknown backend '${String(choice)}'`);
  let native: Kernels;
  try {
    native = nativeKernels(precision);
  } catch {
    return portableKernels(precision, 'igpt: using the portable kernels (slower; float32); for the fast native ones: ' +
      'apt-get install -y libopenblas-dev && npm rebuild igpt');
  }
  announce(`igpt: using the native kernels (OpenBLAS, ${native.threads} threads; ${productsNote(native)})`);
  return native;
}
