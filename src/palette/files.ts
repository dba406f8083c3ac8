/**
 * Palette files: our JSON `{ "k", "channels", "centers": [[...], ...] }` (centers in [-1, 1]),
 * and OpenAI's `kmeans_centers.npy` (float32 [512, 3], same scale).
 */
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import { readNpy } from '../io/npy.js';
import type { Palette } from './palette.js';
import { validatePalette } from './quantize.js';

/** The JSON form: centers as k rows of `channels` numbers. */
export function paletteToJson(p: Palette): { k: number; channels: 1 | 3; centers: number[][] } {
  const centers: number[][] = [];
  for (let j = 0; j < p.k; j++) centers.push(Array.from(p.centers.subarray(j * p.channels, (j + 1) * p.channels)));
  return { k: p.k, channels: p.channels, centers };
}

/** Parses the JSON form; `where` names the source in errors. */
export function paletteFromJson(value: unknown, where: string): Palette {
  if (typeof value !== 'object' || value === null) throw new Error(`${where}: palette must be a JSON object`);
  const v = value as { k?: unknown; channels?: unknown; centers?: unknown };
  if (!Array.isArray(v.centers)) throw new Error(`${where}: palette has no "centers" array`);
  const rows = v.centers as unknown[];
  const first = rows[0];
  const channels = typeof v.channels === 'number' ? v.channels : Array.isArray(first) ? first.length : NaN;
  const k = typeof v.k === 'number' ? v.k : rows.length;
  if (channels !== 1 && channels !== 3) throw new Error(`${where}: palette channels must be 1 or 3, got ${String(v.channels ?? channels)}`);
  if (rows.length !== k) throw new Error(`${where}: "k" is ${k} but there are ${rows.length} centers`);
  const centers = new Float32Array(k * channels);
  rows.forEach((row, j) => {
    const r = typeof row === 'number' && channels === 1 ? [row] : row;
    if (!Array.isArray(r) || r.length !== channels || r.some((x) => typeof x !== 'number')) {
      throw new Error(`${where}: center ${j} must be ${channels} number${channels > 1 ? 's' : ''}`);
    }
    centers.set(r as number[], j * channels);
  });
  const palette: Palette = { k, channels, centers };
  validatePalette(palette, where);
  return palette;
}

export function savePalette(path: string, p: Palette): void {
  validatePalette(p);
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(paletteToJson(p)) + '\n');
  renameSync(tmp, path);
}

/** Loads a palette from our JSON or a .npy of centers ([k, 3], [k, 1] or [k]). */
export function loadPalette(path: string): Palette {
  if (path.endsWith('.npy')) return loadPaletteNpy(path);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`${path}: cannot read palette (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: not valid JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  return paletteFromJson(value, path);
}

/** OpenAI's kmeans_centers.npy: float32/float64 [k, 3] (or [k, 1] / [k] for gray) in [-1, 1]. */
export function loadPaletteNpy(path: string): Palette {
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
