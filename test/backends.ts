/**
 * The kernel backends available in this process, for tests that run once per backend.
 * Portable is always there; native joins when its addon loads.
 */
import type { Kernels } from '../src/kernels/kernels.js';
import { createPortableKernels } from '../src/kernels/portable.js';

export interface NamedBackend { name: string; kernels: Kernels }

export function availableBackends(): NamedBackend[] {
  return [{ name: 'portable', kernels: createPortableKernels() }];
}
