/**
 * STL-10 binary files: `*_X.bin` holds 96×96×3 images, each channel a plane stored column-major
 * (x outer, y inner); `*_y.bin` holds one label byte per image, 1..10 (we return 0..9).
 */
import { readMaybeGzip } from './binary.js';
import type { ImageSet } from './images.js';

const SIDE = 96;
const PLANE = SIDE * SIDE;

export function readStl10(xPath: string, yPath: string | null, classNames?: string[]): ImageSet {
  const x = readMaybeGzip(xPath);
  const imageBytes = 3 * PLANE;
  if (x.length === 0 || x.length % imageBytes !== 0) {
    throw new Error(`${xPath}: size ${x.length} is not a multiple of ${imageBytes} (96×96×3 STL-10 images; truncated?)`);
  }
  const count = x.length / imageBytes;
  const labels = new Int32Array(count).fill(-1);
  if (yPath !== null) {
    const y = readMaybeGzip(yPath);
    if (y.length !== count) throw new Error(`${yPath}: ${y.length} labels but ${xPath} has ${count} images`);
    for (let i = 0; i < count; i++) {
      if (y[i] < 1 || y[i] > 10) throw new Error(`${yPath}: label ${y[i]} of image ${i} is outside 1..10`);
      labels[i] = y[i] - 1;
    }
  }
  const pixels = new Uint8Array(count * imageBytes);
  for (let i = 0; i < count; i++) {
    const base = i * imageBytes;
    for (let c = 0; c < 3; c++) {
      const plane = base + c * PLANE;
      for (let col = 0; col < SIDE; col++) {
        for (let row = 0; row < SIDE; row++) {
          pixels[base + (row * SIDE + col) * 3 + c] = x[plane + col * SIDE + row];
        }
      }
    }
  }
  return { count, height: SIDE, width: SIDE, channels: 3, pixels, labels, classNames };
}
