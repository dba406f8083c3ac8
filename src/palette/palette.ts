/** Palettes: the type, the byte ↔ [-1, 1] scale of their centers, validation, and their JSON form. */
/** A color palette: k centers of `channels` values each, in [-1, 1] (OpenAI's and HF's scale). */
export interface Palette {
  /** The number of colors: k-means' k (and the JSON form's "k"); the model layers call it V. */
  k: number;
  channels: 1 | 3;
  /** k × channels, row-major. */
  centers: Float32Array;
}

/** Byte value → [-1, 1]. */
export function byteToUnit(v: number): number { return v / 127.5 - 1; }
/** [-1, 1] → nearest byte value. */
export function unitToByte(x: number): number {
  const v = Math.round((x + 1) * 127.5);
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** Throws unless the palette's shape and values make sense. */
export function validatePalette(p: Palette, where = 'palette'): void {
  if (!Number.isInteger(p.k) || p.k < 1 || p.k > 65535) throw new Error(`${where}: k must be an integer in 1..65535, got ${p.k}`);
  if (p.channels !== 1 && p.channels !== 3) throw new Error(`${where}: channels must be 1 or 3, got ${String(p.channels)}`);
  if (p.centers.length !== p.k * p.channels) throw new Error(`${where}: ${p.centers.length} center values, expected k × channels = ${p.k * p.channels}`);
  for (let i = 0; i < p.centers.length; i++) {
    if (!Number.isFinite(p.centers[i])) throw new Error(`${where}: center value ${i} is not a finite number`);
  }
}

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
