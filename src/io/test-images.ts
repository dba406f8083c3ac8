/**
 * The test images of the browser demo, as JSON: a few images of a token dataset, stored as pixel
 * bytes (the dataset's palette colors) so the page quantizes them with whatever model it loaded,
 * exactly as it does an uploaded image. `igpt serve --data` builds this from a token dataset;
 * web/public/test-images.json is the same JSON, written once by `igpt serve --write-test-images`.
 * No Node imports: the page parses the file with the same module.
 */
import { dequantize } from '../palette/quantize.js';
import type { Palette } from '../palette/palette.js';
import type { TokenDatasetMeta, TokenSplit } from '../data/tokens.js';

export interface TestImage {
  /** Index of the image in its split. */
  index: number;
  /** Class id, -1 when unlabeled. */
  label: number;
  /** side × side × channels bytes, row-major (HWC). */
  pixels: number[];
}

export interface TestImages {
  source: string;
  split: string;
  side: number;
  channels: 1 | 3;
  classNames: string[] | null;
  images: TestImage[];
}

/** `count` images of a split from `first` on, as colors of the dataset's palette. */
export function testImagesFromSplit(split: TokenSplit, splitName: string, meta: TokenDatasetMeta,
                                    palette: Palette, first: number, count: number): TestImages {
  const n = meta.pixels;
  const end = Math.min(split.count, first + count);
  const images: TestImage[] = [];
  for (let i = first; i < end; i++) {
    const bytes = dequantize(palette, split.tokens.subarray(i * n, (i + 1) * n));
    images.push({ index: i, label: split.labels[i] ?? -1, pixels: Array.from(bytes) });
  }
  return {
    source: meta.source, split: splitName, side: meta.side, channels: meta.channels,
    classNames: meta.classNames ?? null, images,
  };
}

/** Validates parsed test-image JSON; `where` names the source (a file or URL) in errors. */
export function parseTestImages(json: unknown, where: string): TestImages {
  const bad = (why: string): Error => new Error(`${where}: ${why}`);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw bad('expected a JSON object');
  const v = json as Record<string, unknown>;
  const side = v.side, channels = v.channels;
  if (typeof side !== 'number' || !Number.isInteger(side) || side < 1) throw bad('"side" must be a positive integer');
  if (channels !== 1 && channels !== 3) throw bad('"channels" must be 1 or 3');
  if (!Array.isArray(v.images)) throw bad('"images" must be a list');
  const size = side * side * channels;
  const images = v.images.map((raw: unknown, i): TestImage => {
    const im = raw as Record<string, unknown> | null;
    const pixels = im?.pixels;
    if (!Array.isArray(pixels) || pixels.length !== size ||
        !pixels.every((p) => typeof p === 'number' && Number.isInteger(p) && p >= 0 && p <= 255)) {
      throw bad(`image ${i} must hold ${size} pixel bytes (${side}×${side}×${channels})`);
    }
    const index = typeof im?.index === 'number' ? im.index : i;
    const label = typeof im?.label === 'number' ? im.label : -1;
    return { index, label, pixels: pixels as number[] };
  });
  const classNames = Array.isArray(v.classNames) && v.classNames.every((c) => typeof c === 'string')
    ? v.classNames as string[] : null;
  return {
    source: typeof v.source === 'string' ? v.source : 'unknown', split: typeof v.split === 'string' ? v.split : 'test',
    side, channels, classNames, images,
  };
}
