/**
 * Completions of image files (Node: reads files). Kept apart from complete.ts, which has no Node
 * imports, so the browser page can complete pixels with it.
 */
import { readImageTokenBatches, type ImageInputOptions } from '../data/image-inputs.js';
import type { DeviceArray, Kernels } from '../kernels/kernels.js';
import { world } from '../parallel/world.js';
import type { ParameterTensors } from '../model/parameters.js';
import type { Palette } from '../palette/palette.js';
import { completeImages, modelImageSide, type CompleteOptions } from './complete.js';
import type { CompletionFigure } from './grid.js';

/**
 * Completions of image files (decoded at the model's side and channels, quantized with its
 * palette); unreadable files are skipped per `strict`. Every image is in the figure, so they are
 * all in memory: completion is for a handful of pictures, not a dataset. Under MPI the ranks share
 * the completions (every rank reads the files) and each returns the whole figure.
 */
export async function completeImageFiles<T extends DeviceArray>(k: Kernels<T>, params: ParameterTensors<T>, palette: Palette, files: readonly string[],
                                         o: Omit<CompleteOptions, 'count'> & Omit<ImageInputOptions, 'side' | 'channels'>): Promise<{ files: string[]; figure: CompletionFigure }> {
  const n = params.config.nPositions;
  const read: string[] = [];
  const batches: Int32Array[] = [];
  for await (const b of readImageTokenBatches(files, palette, modelImageSide(params), o)) {
    read.push(...b.files);
    batches.push(Int32Array.from(b.tokens));
  }
  if (read.length === 0) throw new Error(`none of the ${files.length} image files could be read`);
  const originals = new Int32Array(read.length * n);
  let offset = 0;
  for (const t of batches) { originals.set(t, offset); offset += t.length; }
  return { files: read, figure: await completeImages(k, params, originals, { comm: world(), ...o, count: read.length }) };
}
