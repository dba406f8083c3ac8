/**
 * OpenAI's image-gpt release: the color palette `kmeans_centers.npy`, float [k, 3] in [-1, 1]
 * (the same scale as HF's `clusters`). OpenAI's TensorFlow checkpoints themselves are not read
 * here: the Hugging Face conversions of them are (see hf.ts).
 */
import { readNpy, writeNpy } from './npy.js';
import { validatePalette, type Palette } from '../palette/palette.js';

export const OPENAI_CLUSTERS_FILE = 'kmeans_centers.npy';

/** Reads a palette from an OpenAI-style `kmeans_centers.npy`: float32/float64 [k, 3] (or [k, 1] / [k] for gray) in [-1, 1]. */
export function readOpenAiClusters(path: string): Palette {
  const arr = readNpy(path);
  if (!(arr.data instanceof Float32Array || arr.data instanceof Float64Array)) {
    throw new Error(`${path}: palette centers must be float32 or float64, got '${arr.dtype}'`);
  }
  const [k, channels = 1] = arr.shape;
  if (arr.shape.length < 1 || arr.shape.length > 2 || (channels !== 1 && channels !== 3)) {
    throw new Error(`${path}: palette centers must have shape [k, 3], [k, 1] or [k], got [${arr.shape.join(', ')}]`);
  }
  const palette: Palette = { k, channels, centers: Float32Array.from(arr.data) };
  validatePalette(palette, path);
  return palette;
}

/** Writes a palette as an OpenAI-style `kmeans_centers.npy` (float32 [k, channels]). */
export function writeOpenAiClusters(path: string, palette: Palette): void {
  writeNpy(path, palette.centers, [palette.k, palette.channels]);
}
