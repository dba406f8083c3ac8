/** Resizing a whole image set to side × side: shorter side to `side`, then center crop (sharp). */
import sharp from 'sharp';
import type { ImageSet } from './images.js';
import { imageAt } from './images.js';

export async function resizeImageSet(set: ImageSet, side: number): Promise<ImageSet> {
  if (set.height === side && set.width === side) return set;
  if (!Number.isInteger(side) || side < 1) throw new Error(`image side must be a positive integer, got ${side}`);
  const size = side * side * set.channels;
  const pixels = new Uint8Array(set.count * size);
  const batch = 64;
  for (let start = 0; start < set.count; start += batch) {
    const end = Math.min(set.count, start + batch);
    const jobs: Promise<void>[] = [];
    for (let i = start; i < end; i++) {
      const src = imageAt(set, i);
      jobs.push(
        sharp(src, { raw: { width: set.width, height: set.height, channels: set.channels } })
          .resize(side, side, { fit: 'cover', position: 'centre' })
          // sharp would otherwise hand back gray as sRGB.
          .toColourspace(set.channels === 1 ? 'b-w' : 'srgb')
          .raw()
          .toBuffer()
          .then((buf) => {
            if (buf.length !== size) throw new Error(`resize produced ${buf.length} bytes for image ${i}, expected ${size}`);
            pixels.set(buf, i * size);
          }),
      );
    }
    await Promise.all(jobs);
  }
  return { ...set, height: side, width: side, pixels };
}
