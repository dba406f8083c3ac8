import type { Kernels } from '../src/kernels/kernels.js';
import { createNativeKernels } from '../src/kernels/native.js';
import { createPortableKernels } from '../src/kernels/portable.js';

/** The kernel backends this machine can run: portable always, native when the addon is built. */
export function availableBackends(): { name: string; kernels: Kernels }[] {
  const backends = [{ name: 'portable', kernels: createPortableKernels() }];
  try {
    backends.push({ name: 'native', kernels: createNativeKernels() });
  } catch (err) {
    // CI builds the addon (it installs libopenblas-dev), so a missing one is worth a line.
    console.log(`# native kernels not tested: ${err instanceof Error ? err.message : String(err)}`);
  }
  return backends;
}
