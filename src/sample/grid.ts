/**
 * The paper's completion figure: per row the occluded input, several completions, the original.
 */
import type { Palette } from '../palette/palette.js';
import { dequantize } from '../palette/quantize.js';
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { writeImage, writeImageGrid } from '../util/image.js';

export interface CompletionFigure {
  side: number;
  /** count × n² ids of the originals (null for unconditional samples). */
  originals: ArrayLike<number> | null;
  /** Per image, `samples` completions: (count · samples) × n² ids, image-major. */
  completions: Int32Array;
  /** 1 where the pixel was given to the model. */
  known: Uint8Array | null;
  count: number;
  samples: number;
}

/** Writes the grid PNG, upscaled so a person can see it; hidden pixels are drawn mid-gray. */
export async function writeCompletionGrid(path: string, fig: CompletionFigure, palette: Palette, scale = 4): Promise<void> {
  const n = fig.side * fig.side;
  const c = palette.channels;
  const cells: Uint8Array[] = [];
  const image = (ids: ArrayLike<number>, offset: number): Uint8Array =>
    dequantize(palette, Array.prototype.slice.call(ids, offset, offset + n) as number[]);
  const conditional = fig.originals !== null && fig.known !== null;
  for (let i = 0; i < fig.count; i++) {
    if (conditional) {
      const occluded = image(fig.originals!, i * n);
      for (let t = 0; t < n; t++) if (!fig.known![i * n + t]) occluded.fill(128, t * c, (t + 1) * c);
      cells.push(occluded);
    }
    for (let s = 0; s < fig.samples; s++) cells.push(image(fig.completions, (i * fig.samples + s) * n));
    if (conditional) cells.push(image(fig.originals!, i * n));
  }
  const cols = fig.samples + (conditional ? 2 : 0);
  await writeImageGrid(path, cells, fig.side, fig.side, c, cols, scale, { gap: 2 * scale, background: 255 });
}

/**
 * Writes every completion as its own PNG in `dir`: `<name>-<s>.png` for image i's completion s,
 * where `names[i]` names image i (e.g. its file name without extension). Returns the paths.
 */
export async function writeCompletionImages(dir: string, fig: CompletionFigure, palette: Palette, names: readonly string[],
                                            scale = 1): Promise<string[]> {
  if (names.length !== fig.count) throw new Error(`${names.length} names for ${fig.count} images`);
  mkdirSync(dir, { recursive: true });
  const n = fig.side * fig.side;
  const paths: string[] = [];
  for (let i = 0; i < fig.count; i++) {
    for (let s = 0; s < fig.samples; s++) {
      const offset = (i * fig.samples + s) * n;
      const path = join(dir, `${names[i]}-${s}.png`);
      await writeImage(path, dequantize(palette, fig.completions.subarray(offset, offset + n)), fig.side, fig.side, palette.channels, scale);
      paths.push(path);
    }
  }
  return paths;
}
