/**
 * Picks the kernel backend: native when its addon loads, portable otherwise. The choice comes from
 * the argument or IGPT_KERNELS ('auto' | 'native' | 'portable'); one line on stderr says which
 * backend runs (IGPT_QUIET=1 silences it).
 */
import type { Kernels } from './kernels.js';
import { createNativeKernels } from './native.js';
import { createPortableKernels } from './portable.js';

export type KernelChoice = 'auto' | 'native' | 'portable';

const CHOICES: readonly KernelChoice[] = ['auto', 'native', 'portable'];

let announced = false;

function announce(line: string): void {
  if (announced) return;
  announced = true;
  if (process.env.IGPT_QUIET !== '1') process.stderr.write(line + '\n');
}

function choiceFromEnv(): KernelChoice {
  const env = process.env.IGPT_KERNELS;
  if (env === undefined || env === '') return 'auto';
  if (!(CHOICES as readonly string[]).includes(env)) {
    throw new Error(`IGPT_KERNELS must be one of ${CHOICES.join(', ')}; got '${env}'`);
  }
  return env as KernelChoice;
}

/** The kernels to compute with. `native` throws if the addon is missing; `auto` falls back. */
export function loadKernels(choice: KernelChoice = choiceFromEnv()): Kernels {
  if (choice === 'portable') {
    const portable = createPortableKernels();
    announce('igpt: using the portable kernels (IGPT_KERNELS=portable)');
    return portable;
  }
  if (choice === 'native') {
    const native = createNativeKernels();
    announce(`igpt: using the native kernels (OpenBLAS, ${native.threads} threads)`);
    return native;
  }
  if (choice !== 'auto') throw new Error(`loadKernels: unknown backend '${String(choice)}'`);
  let native: Kernels;
  try {
    native = createNativeKernels();
  } catch {
    announce('igpt: using the portable kernels (slower); for the fast native ones: ' +
      'apt-get install -y libopenblas-dev && npm rebuild igpt');
    return createPortableKernels();
  }
  announce(`igpt: using the native kernels (OpenBLAS, ${native.threads} threads)`);
  return native;
}
