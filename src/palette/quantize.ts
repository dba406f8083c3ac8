/**
 * Pixels → palette ids (nearest center by squared distance in [-1, 1] units, ties to the lowest
 * id) and back. Gray: a 256-entry lookup table decides every byte value once. RGB: a 16³ grid
 * over the byte cube lists, per cell, the few centers that can win there (see nearest.ts).
 */
import { byteToUnit, unitToByte, validatePalette, type Palette } from './palette.js';

import { ColorGrid } from './nearest.js';

export type TokenArray = Uint8Array | Uint16Array;

/** An id array able to hold ids < k (uint8 when k ≤ 256). */
export function allocTokens(k: number, length: number): TokenArray {
  return k <= 256 ? new Uint8Array(length) : new Uint16Array(length);
}

/** Reference nearest center for one pixel of byte values (brute force). */
export function nearestCenter(palette: Palette, pixel: ArrayLike<number>): number {
  const { k, channels, centers } = palette;
  let best = Infinity;
  let index = 0;
  for (let j = 0; j < k; j++) {
    let d = 0;
    for (let t = 0; t < channels; t++) { const e = byteToUnit(pixel[t]) - centers[j * channels + t]; d += e * e; }
    if (d < best) { best = d; index = j; }
  }
  return index;
}

/** Reusable quantizer for one palette (the lookup structures are built once). */
export class Quantizer {
  private readonly palette: Palette;
  private readonly grayTable: Uint16Array | null = null;
  private readonly grid: ColorGrid | null = null;
  /** Byte value → [-1, 1], so the inner loop does no division. */
  private readonly unit = Float64Array.from({ length: 256 }, (_, v) => byteToUnit(v));

  constructor(palette: Palette) {
    validatePalette(palette);
    this.palette = palette;
    if (palette.channels === 1) {
      const table = new Uint16Array(256);
      for (let v = 0; v < 256; v++) table[v] = nearestCenter(palette, [v]);
      this.grayTable = table;
    } else {
      this.grid = new ColorGrid(palette.centers, palette.k, byteToUnit, 4);
    }
  }

  /** Ids of `pixels` (HWC bytes, the palette's channels each). */
  quantize(pixels: Uint8Array, out?: TokenArray): TokenArray {
    const { k, channels } = this.palette;
    const n = pixels.length / channels;
    if (!Number.isInteger(n)) throw new Error(`quantize: ${pixels.length} bytes is not a whole number of ${channels}-channel pixels`);
    const ids = out ?? allocTokens(k, n);
    if (ids.length < n) throw new Error(`quantize: output holds ${ids.length} ids, need ${n}`);
    if (k > 256 && ids instanceof Uint8Array) throw new Error(`quantize: a uint8 output cannot hold ids of k = ${k}`);
    if (this.grayTable) {
      // Monomorphic loops: one per output type keeps the lookup a few instructions a pixel.
      if (ids instanceof Uint8Array) lookupGray8(this.grayTable, pixels, ids, n);
      else lookupGray16(this.grayTable, pixels, ids, n);
      return ids;
    }
    const grid = this.grid as ColorGrid;
    const unit = this.unit;
    for (let i = 0; i < n; i++) {
      const r = pixels[3 * i], g = pixels[3 * i + 1], b = pixels[3 * i + 2];
      ids[i] = grid.nearest(r, g, b, unit[r], unit[g], unit[b]);
    }
    return ids;
  }
}

function lookupGray8(table: Uint16Array, pixels: Uint8Array, ids: Uint8Array, n: number): void {
  for (let i = 0; i < n; i++) ids[i] = table[pixels[i]];
}

function lookupGray16(table: Uint16Array, pixels: Uint8Array, ids: Uint16Array, n: number): void {
  for (let i = 0; i < n; i++) ids[i] = table[pixels[i]];
}

/** Ids of `pixels` under `palette` (builds a Quantizer; reuse one for many calls). */
export function quantize(palette: Palette, pixels: Uint8Array): TokenArray {
  return new Quantizer(palette).quantize(pixels);
}

/** Palette ids → HWC bytes (each id's center, rounded back to bytes). */
export function dequantize(palette: Palette, ids: ArrayLike<number>, out?: Uint8Array): Uint8Array {
  const { k, channels, centers } = palette;
  const bytes = new Uint8Array(k * channels);
  for (let i = 0; i < bytes.length; i++) bytes[i] = unitToByte(centers[i]);
  const result = out ?? new Uint8Array(ids.length * channels);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!(id >= 0 && id < k)) throw new Error(`dequantize: id ${id} at position ${i} is not a palette color (k = ${k})`);
    for (let t = 0; t < channels; t++) result[i * channels + t] = bytes[id * channels + t];
  }
  return result;
}

