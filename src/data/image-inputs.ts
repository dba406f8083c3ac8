/**
 * A user's own images for a model: files and folders named on the command line, decoded in
 * batches at the model's side and channels (through decodeImageBytes, as the image-folder reader
 * does) and quantized with its palette, so a folder of any size streams through in bounded memory.
 * An unreadable file is skipped with a warning naming it (or is an error when `strict`).
 */
import { readdirSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeImageBytes, isGrayImageBytes } from './decode.js';
import { isImageFile } from './folder.js';
import type { Rgb } from './pixels.js';
import type { Palette } from '../palette/palette.js';
import { allocTokens, Quantizer, type TokenArray } from '../palette/quantize.js';

/**
 * The image files that `paths` name, in order: a file as given, a folder as the image files under
 * it (subfolders included, sorted by path). A folder without images is an error; a missing path
 * is kept, so that reading it names it as unreadable.
 */
export function listImageInputs(paths: readonly string[]): string[] {
  if (paths.length === 0) throw new Error('no images given: name image files or folders');
  const files: string[] = [];
  for (const path of paths) {
    let isDir = false;
    try { isDir = statSync(path).isDirectory(); } catch { /* missing: reported when read */ }
    if (!isDir) { files.push(path); continue; }
    const found = imagesUnder(path);
    if (found.length === 0) throw new Error(`${path}: no PNG/JPEG/WebP images in this folder`);
    files.push(...found);
  }
  return files;
}

function imagesUnder(dir: string): string[] {
  const out: string[] = [];
  const names = readdirSync(dir).filter((n) => !n.startsWith('.')).sort();
  for (const name of names) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...imagesUnder(path));
    else if (isImageFile(name)) out.push(path);
  }
  return out;
}

export interface ImageInputOptions {
  /** The model's image: side × side pixels of 1 (gray) or 3 (RGB) channels. */
  side: number;
  channels: 1 | 3;
  /** Color under transparent pixels; default white. */
  background?: Rgb;
  /** Images per batch (default 32). */
  batch?: number;
  /** Throw on the first unreadable file instead of skipping it. */
  strict?: boolean;
  /** Warnings: each skipped file, and once each way, that color images are made gray or gray ones RGB. */
  warn?: (message: string) => void;
}

/** One batch of images that could be read, in input order. */
export interface ImageBatch {
  files: string[];
  /** Files of the input handled (read or skipped) up to and including this batch. */
  handled: number;
  count: number;
  /** count × side² × channels bytes, HWC per image. */
  pixels: Uint8Array;
}

/** Decodes `files` `batch` at a time; skipped files leave no gap. */
export async function* readImageBatches(files: readonly string[], o: ImageInputOptions): AsyncGenerator<ImageBatch> {
  const batch = o.batch ?? 32;
  const size = o.side * o.side * o.channels;
  const converted = new Set<string>();
  // Every decode of a batch settles before anything is reported, so warnings come in input order,
  // --strict names the first bad file, and no decode outlives the call.
  const decodeOne = async (file: string): Promise<{ pixels: Uint8Array; gray: boolean } | { error: string }> => {
    try {
      const bytes = await readFile(file);
      const gray = await isGrayImageBytes(bytes);
      return { pixels: (await decodeImageBytes(bytes, { channels: o.channels, side: o.side, background: o.background })).data, gray };
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err));
      return { error: `${file}: cannot read image (${reason})` };
    }
  };
  for (let start = 0; start < files.length; start += batch) {
    const names = files.slice(start, start + batch);
    const decoded = await Promise.all(names.map(decodeOne));
    const kept: string[] = [];
    const pixels = new Uint8Array(names.length * size);
    decoded.forEach((d, i) => {
      if ('error' in d) {
        if (o.strict) throw new Error(d.error);
        o.warn?.(`${d.error}; skipped`);
        return;
      }
      const change = d.gray && o.channels === 3 ? 'gray images are repeated into RGB'
        : !d.gray && o.channels === 1 ? 'color images are converted to gray (luma)' : null;
      if (change && !converted.has(change)) {
        converted.add(change);
        o.warn?.(`the model reads ${o.channels === 1 ? 'gray' : 'RGB'} images: ${change} (first: ${names[i]})`);
      }
      pixels.set(d.pixels, size * kept.length);
      kept.push(names[i]);
    });
    if (kept.length > 0) yield { files: kept, handled: start + names.length, count: kept.length, pixels: pixels.subarray(0, kept.length * size) };
  }
}

/** A batch as palette ids: count × side² tokens, raster order. */
export interface TokenBatch {
  files: string[];
  handled: number;
  count: number;
  tokens: TokenArray;
}

/** Decodes and quantizes `files` with the model's palette, a batch at a time. */
export async function* readImageTokenBatches(files: readonly string[], palette: Palette, side: number,
                                             o: Omit<ImageInputOptions, 'side' | 'channels'>): AsyncGenerator<TokenBatch> {
  const quantizer = new Quantizer(palette);
  for await (const b of readImageBatches(files, { ...o, side, channels: palette.channels })) {
    const tokens = allocTokens(palette.k, b.count * side * side);
    quantizer.quantize(b.pixels, tokens);
    yield { files: b.files, handled: b.handled, count: b.count, tokens };
  }
}
