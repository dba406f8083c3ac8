/** Token datasets: palette ids of images in train / validation / test splits, in memory and on disk. */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Quantizer, allocTokens } from '../palette/quantize.js';
import type { ImageSet } from './images.js';
import { paletteFromJson, paletteToJson, validatePalette, type Palette } from '../palette/palette.js';

/** One split of a token dataset: `count` images of `pixels` palette ids each, raster order. */
export interface TokenSplit {
  count: number;
  /** count × pixels palette ids (uint8 when k ≤ 256, else uint16). */
  tokens: Uint8Array | Uint16Array;
  /** count labels, -1 where unlabeled. */
  labels: Int32Array;
}

export interface TokenDatasetMeta {
  /** Where the images came from (dataset name or path). */
  source: string;
  /** Image side n: sequences are n² long. */
  side: number;
  pixels: number;
  channels: 1 | 3;
  numClasses: number;
  classNames?: string[];
  /** Seed of the train/validation split (and of the test split when one was held out). */
  splitSeed: number;
  /** Set when the source had no test split: this share of its images was held out as one. */
  testFraction?: number;
}

/** What `igpt encode` writes and training, probes and sampling read. */
export interface TokenDataset {
  meta: TokenDatasetMeta;
  palette: Palette;
  train: TokenSplit;
  val: TokenSplit;
  test: TokenSplit;
}

// ---------------------------------------------------------------------------------------------
// Encoding images and the on-disk form.
//
// A token dataset is a folder:
//   meta.json        { format, version, meta, palette, dtype, labelDtype, splits: { train: { count }, ... } }
//   train.tokens     count × pixels ids, little-endian uint8 (k ≤ 256) or uint16
//   train.labels     count labels, little-endian int16 (classes ≤ 32767) or int32
//   val.*, test.*    the same for the other splits
// Every file is written to a temporary name and renamed; an old meta.json is removed first and the
// new one written last, so a folder with a meta.json is complete.

export const TOKEN_FORMAT = 'igpt-tokens';
export const TOKEN_FORMAT_VERSION = 1;
export const SPLITS = ['train', 'val', 'test'] as const;
export type SplitName = (typeof SPLITS)[number];

/** Palette ids of every image; the images must already be side × side with the palette's channels. */
export function encodeImages(images: ImageSet, palette: Palette, side: number): TokenSplit {
  if (images.channels !== palette.channels) {
    throw new Error(`the palette has ${palette.channels} channel${palette.channels > 1 ? 's' : ''} but the images have ${images.channels}`);
  }
  if (images.height !== side || images.width !== side) {
    throw new Error(`images are ${images.height}×${images.width}, expected ${side}×${side} (resize them first with resizeImageSet)`);
  }
  const pixels = side * side;
  const tokens = allocTokens(palette.k, images.count * pixels);
  new Quantizer(palette).quantize(images.pixels.subarray(0, images.count * pixels * images.channels), tokens);
  return { count: images.count, tokens, labels: Int32Array.from(images.labels) };
}

/** Images [start, end) of a split, sharing its memory. */
export function splitRows(split: TokenSplit, start: number, end: number, pixels: number): TokenSplit {
  const from = Math.min(start, split.count), to = Math.min(Math.max(end, from), split.count);
  return { count: to - from, tokens: split.tokens.subarray(from * pixels, to * pixels), labels: split.labels.subarray(from, to) };
}

/** An empty split, for sources without test images. */
export function emptySplit(k: number): TokenSplit {
  return { count: 0, tokens: allocTokens(k, 0), labels: new Int32Array(0) };
}

function writeAtomic(path: string, data: Uint8Array | string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

const PALETTE_SLOT = '@palette@';

export function saveTokenDataset(dir: string, ds: TokenDataset): void {
  validatePalette(ds.palette);
  const { k } = ds.palette;
  const dtype = k <= 256 ? 'uint8' : 'uint16';
  const labelDtype = ds.meta.numClasses <= 32767 ? 'int16' : 'int32';
  mkdirSync(dir, { recursive: true });
  rmSync(join(dir, 'meta.json'), { force: true });
  const splits: Record<string, { count: number }> = {};
  for (const name of SPLITS) {
    const split = ds[name];
    if (split.tokens.length !== split.count * ds.meta.pixels) {
      throw new Error(`saveTokenDataset: ${name} split has ${split.tokens.length} tokens, expected ${split.count} × ${ds.meta.pixels}`);
    }
    if (split.labels.length !== split.count) throw new Error(`saveTokenDataset: ${name} split has ${split.labels.length} labels for ${split.count} images`);
    const tokens = dtype === 'uint8' ? Uint8Array.from(split.tokens) : Uint16Array.from(split.tokens);
    const labels = labelDtype === 'int16' ? Int16Array.from(split.labels) : split.labels;
    // Typed arrays are little-endian on every platform Node runs on.
    writeAtomic(join(dir, `${name}.tokens`), bytesOf(tokens));
    writeAtomic(join(dir, `${name}.labels`), bytesOf(labels));
    splits[name] = { count: split.count };
  }
  // Readable JSON, but the palette one center a line rather than one number a line.
  const meta = { format: TOKEN_FORMAT, version: TOKEN_FORMAT_VERSION, meta: ds.meta, dtype, labelDtype, splits, palette: PALETTE_SLOT };
  const centers = paletteToJson(ds.palette).centers.map((c) => JSON.stringify(c)).join(',\n   ');
  const paletteText = `{\n  "k": ${ds.palette.k},\n  "channels": ${ds.palette.channels},\n  "centers": [\n   ${centers}\n  ]\n }`;
  writeAtomic(join(dir, 'meta.json'), JSON.stringify(meta, null, 1).replace(JSON.stringify(PALETTE_SLOT), paletteText) + '\n');
}

interface StoredMeta {
  format?: unknown; version?: unknown; meta?: TokenDatasetMeta; palette?: unknown;
  dtype?: unknown; labelDtype?: unknown; splits?: Record<string, { count?: unknown }>;
}

function readSplit(dir: string, name: SplitName, count: number, pixels: number, k: number, numClasses: number, dtype: string, labelDtype: string): TokenSplit {
  const metaPath = join(dir, 'meta.json');
  const tokenPath = join(dir, `${name}.tokens`);
  const labelPath = join(dir, `${name}.labels`);
  const tokenSize = dtype === 'uint8' ? 1 : 2;
  const labelSize = labelDtype === 'int16' ? 2 : 4;
  const read = (path: string): Buffer => {
    if (!existsSync(path)) throw new Error(`${path}: missing (meta.json lists ${count} ${name} images)`);
    return readFileSync(path);
  };
  const tb = read(tokenPath);
  if (tb.length !== count * pixels * tokenSize) {
    throw new Error(`${tokenPath}: ${tb.length} bytes, but ${metaPath} lists ${count} images × ${pixels} pixels × ${tokenSize} bytes = ${count * pixels * tokenSize}`);
  }
  const lb = read(labelPath);
  if (lb.length !== count * labelSize) throw new Error(`${labelPath}: ${lb.length} bytes, but ${metaPath} lists ${count} labels × ${labelSize} bytes`);
  // Copy into aligned buffers (Buffer slices need not be aligned for uint16/int32 views).
  const tcopy = new Uint8Array(tb.length); tcopy.set(tb);
  const lcopy = new Uint8Array(lb.length); lcopy.set(lb);
  const tokens = dtype === 'uint8' ? tcopy : new Uint16Array(tcopy.buffer);
  const labels = labelDtype === 'int16' ? Int32Array.from(new Int16Array(lcopy.buffer)) : new Int32Array(lcopy.buffer);
  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i] >= k) throw new Error(`${tokenPath}: id ${tokens[i]} at image ${Math.floor(i / pixels)}, pixel ${i % pixels} is not < k = ${k}`);
  }
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] < -1 || (numClasses > 0 && labels[i] >= numClasses)) {
      throw new Error(`${labelPath}: label ${labels[i]} of image ${i} is outside -1..${numClasses - 1}`);
    }
  }
  return { count, tokens, labels };
}

export function loadTokenDataset(dir: string): TokenDataset {
  const metaPath = join(dir, 'meta.json');
  if (!existsSync(metaPath)) throw new Error(`${dir}: not a token dataset (no meta.json; create one with \`igpt encode\`)`);
  let stored: StoredMeta;
  try {
    stored = JSON.parse(readFileSync(metaPath, 'utf8')) as StoredMeta;
  } catch (err) {
    throw new Error(`${metaPath}: not valid JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (stored.format !== TOKEN_FORMAT) throw new Error(`${metaPath}: format is ${JSON.stringify(stored.format)}, expected "${TOKEN_FORMAT}"`);
  if (stored.version !== TOKEN_FORMAT_VERSION) throw new Error(`${metaPath}: unsupported version ${String(stored.version)}`);
  const meta = stored.meta;
  const isCount = (x: unknown, min: number): boolean => typeof x === 'number' && Number.isSafeInteger(x) && x >= min;
  if (!meta || !isCount(meta.side, 1) || meta.pixels !== meta.side * meta.side || !isCount(meta.numClasses, 0)) {
    throw new Error(`${metaPath}: "meta" needs an integer side ≥ 1, pixels = side², an integer numClasses ≥ 0`);
  }
  const palette = paletteFromJson(stored.palette, `${metaPath} (palette)`);
  if (palette.channels !== meta.channels) throw new Error(`${metaPath}: palette has ${palette.channels} channels, meta says ${meta.channels}`);
  const dtype = stored.dtype;
  const labelDtype = stored.labelDtype;
  if (dtype !== 'uint8' && dtype !== 'uint16') throw new Error(`${metaPath}: dtype ${JSON.stringify(dtype)} is not uint8 or uint16`);
  if (labelDtype !== 'int16' && labelDtype !== 'int32') throw new Error(`${metaPath}: labelDtype ${JSON.stringify(labelDtype)} is not int16 or int32`);
  if (dtype === 'uint8' && palette.k > 256) throw new Error(`${metaPath}: dtype uint8 cannot hold ids of k = ${palette.k}`);
  const splits = {} as Record<SplitName, TokenSplit>;
  for (const name of SPLITS) {
    const count = stored.splits?.[name]?.count;
    if (typeof count !== 'number' || !Number.isInteger(count) || count < 0) throw new Error(`${metaPath}: splits.${name}.count missing or invalid`);
    splits[name] = readSplit(dir, name, count, meta.pixels, palette.k, meta.numClasses, dtype, labelDtype);
  }
  return { meta, palette, ...splits };
}
