"""The process settings that let Debian's PyTorch run at its best on a small CPU machine; every torch
peer under bench/ calls `settle()` first, before it imports torch.

- OMP_WAIT_POLICY=passive: Debian's torch runs its own ops on libgomp's OpenMP threads and its matrix
  products on OpenBLAS's pthreads; both pools spin while idle and, on a machine with few cores that is
  busy, take the cores from each other (a Linear layer's forward and backward on the loaded 2-core
  Zen 4: 0.99 s spinning, 0.17 s passive). It must be set before torch loads libgomp.
- glibc's malloc hands every block over its mmap threshold back to the kernel when freed, so each
  step's attention scores (B·H·T² floats, 157 MiB at batch 16 and 784 pixels) are page-faulted in
  afresh: on the 2-core Zen 4 a training step of the study's model (d 128, 6 layers) took 22–24 s,
  40% of it in the kernel, and 3.9 s with the thresholds raised. The tunables are read when the
  process starts, so settle() starts the script again with them set (PyTorch's CPU performance
  guide makes the same point with jemalloc or tcmalloc, which Debian's torch does not bring).
"""
import os
import sys

MALLOC_SETTINGS = {
    "MALLOC_MMAP_THRESHOLD_": "4000000000",  # keep large blocks in the heap for reuse
    "MALLOC_TRIM_THRESHOLD_": "4000000000",  # and do not return the heap's top to the kernel
}


def settle():
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if any(os.environ.get(name) != value for name, value in MALLOC_SETTINGS.items()):
        os.environ.update(MALLOC_SETTINGS)
        os.execv(sys.executable, [sys.executable, *sys.argv])
