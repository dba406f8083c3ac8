/**
 * The paper's augmentation for 32×32 color fine-tuning, applied to token images (palette ids are
 * per pixel, so moving ids is moving pixels): reflect-pad, random side×side crop, random
 * horizontal flip. The pad is an eighth of the side: the paper's 4 at 32, 3 at 28.
 */
import type { Rng } from '../util/rng.js';

/** The largest shift, in pixels, of an image of this side. */
export function augmentShift(side: number): number {
  return Math.floor(side / 8);
}

/** Reflects an index into 0..n-1 (…2 1 0 1 2… at the edges, no edge repeat). */
function reflect(i: number, n: number): number {
  if (i < 0) return -i;
  if (i >= n) return 2 * (n - 1) - i;
  return i;
}

export function augmentImage(out: Uint8Array | Uint16Array, src: Uint8Array | Uint16Array, side: number, rng: Rng): void {
  const pad = augmentShift(side);
  const dy = rng.int(2 * pad + 1) - pad;
  const dx = rng.int(2 * pad + 1) - pad;
  const flip = rng.next() < 0.5;
  for (let y = 0; y < side; y++) {
    const sy = reflect(y + dy, side);
    for (let x = 0; x < side; x++) {
      const sx = reflect((flip ? side - 1 - x : x) + dx, side);
      out[y * side + x] = src[sy * side + sx];
    }
  }
}
