/**
 * The paper's augmentation for 32×32 color fine-tuning, applied to token images (palette ids are
 * per pixel, so moving ids is moving pixels): reflect-pad by 4, random side×side crop, random
 * horizontal flip.
 */
import type { Rng } from '../util/rng.js';

const PAD = 4;

/** Reflects an index into 0..n-1 (…2 1 0 1 2… at the edges, no edge repeat). */
function reflect(i: number, n: number): number {
  if (i < 0) return -i;
  if (i >= n) return 2 * (n - 1) - i;
  return i;
}

export function augmentImage(out: Uint8Array | Uint16Array, src: Uint8Array | Uint16Array, side: number, rng: Rng): void {
  const dy = rng.int(2 * PAD + 1) - PAD;
  const dx = rng.int(2 * PAD + 1) - PAD;
  const flip = rng.next() < 0.5;
  for (let y = 0; y < side; y++) {
    const sy = reflect(y + dy, side);
    for (let x = 0; x < side; x++) {
      const sx = reflect((flip ? side - 1 - x : x) + dx, side);
      out[y * side + x] = src[sy * side + sx];
    }
  }
}
