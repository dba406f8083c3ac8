/** Completions of test images (or unconditional samples) drawn into the paper's grid, with a progress bar. */
import type { TokenSplit } from '../data/tokens.js';
import type { DeviceArray, Kernels } from '../kernels/kernels.js';
import type { ParameterTensors } from '../model/parameters.js';
import type { Palette } from '../palette/palette.js';
import { world } from '../parallel/world.js';
import { completeImages, type CompleteOptions } from '../sample/complete.js';
import { writeCompletionGrid, type CompletionFigure } from '../sample/grid.js';
import { createProgress } from '../util/progress.js';

/** Images first … first + count − 1 of a split, as model inputs; a split too short is named in the error. */
export function imagesOfSplit(split: TokenSplit, first: number, count: number, pixels: number, what: string): Int32Array {
  if (first + count > split.count) throw new Error(`${what} has ${split.count} images, cannot take ${count} from ${first}`);
  return Int32Array.from(split.tokens.subarray(first * pixels, (first + count) * pixels));
}

/**
 * Completes `originals` (null: unconditional samples) and writes the grid PNG to `gridPath`,
 * upscaled `scale` times; returns the figure and the sampling seconds. Under MPI the ranks share
 * the images, every rank gets the whole figure and rank 0 alone writes.
 */
export async function writeCompletions<T extends DeviceArray>(kernels: Kernels<T>, params: ParameterTensors<T>, originals: Int32Array | null,
                                       o: Omit<CompleteOptions, 'onProgress'>, palette: Palette, gridPath: string,
                                       scale: number): Promise<{ figure: CompletionFigure; seconds: number }> {
  const bar = createProgress('sample', o.count * o.samples * params.config.nPositions, 'pixels');
  const t0 = performance.now();
  let figure: CompletionFigure;
  try {
    figure = await completeImages(kernels, params, originals, { comm: world(), ...o, onProgress: (done) => bar.update(done) });
  } finally {
    bar.stop();
  }
  const seconds = (performance.now() - t0) / 1000;
  await writeCompletionGrid(gridPath, figure, palette, scale);
  return { figure, seconds };
}
