/**
 * OpenAI's image-gpt release: the color palette `kmeans_centers.npy`, float [k, 3] in [-1, 1]
 * (the same scale as HF's `clusters`). OpenAI's TensorFlow checkpoints themselves are not read
 * here: the Hugging Face conversions of them are (see hf.ts).
 */
import { readNpy, writeNpy } from './npy.js';
import type { Palette } from '../palette/palette.js';

export const OPENAI_CLUSTERS_FILE = 'kmeans_centers.npy';

/** Reads a palette from an OpenAI-style `kmeans_centers.npy` ([k, 3] or [k, 1], float32/64). */
export function readOpenAiClusters(path: string): Palette {
  const a = readNpy(path);
  const [k, channels] = a.shape;
  if (a.shape.length !== 2 || k === undefined || k < 1 || (channels !== 1 && channels !== 3)) {
    throw new Error(`${path}: expected palette centers of shape [k, 3] or [k, 1], got [${a.shape.join(', ')}]`);
  }
  if (!(a.data instanceof Float32Array || a.data instanceof Float64Array)) {
    throw new Error(`${path}: expected float32 or float64 centers, got dtype ${a.dtype}`);
  }
  return { k, channels, centers: Float32Array.from(a.data) };
}

/** Writes a palette as an OpenAI-style `kmeans_centers.npy` (float32 [k, channels]). */
export function writeOpenAiClusters(path: string, palette: Palette): void {
  writeNpy(path, palette.centers, [palette.k, palette.channels]);
}
