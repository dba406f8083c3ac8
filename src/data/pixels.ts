/**
 * Per-pixel conversions shared by the Node readers and the browser page (no Node imports):
 * compositing transparent pixels over a background color, and gray ↔ RGB.
 */

/** An opaque sRGB color, bytes 0..255. */
export type Rgb = readonly [number, number, number];

/** What transparent pixels become unless asked otherwise: white, as image viewers show them. */
export const DEFAULT_BACKGROUND: Rgb = [255, 255, 255];

const NAMED_COLORS: Record<string, Rgb> = { white: [255, 255, 255], black: [0, 0, 0] };

/** `#rrggbb`, `#rgb`, `white` or `black` → bytes; anything else is a clear error. */
export function parseColor(spec: string): Rgb {
  const s = spec.trim().toLowerCase();
  const named = NAMED_COLORS[s];
  if (named) return named;
  const long = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/.exec(s);
  if (long) return [parseInt(long[1], 16), parseInt(long[2], 16), parseInt(long[3], 16)];
  const short = /^#([0-9a-f])([0-9a-f])([0-9a-f])$/.exec(s);
  if (short) return [17 * parseInt(short[1], 16), 17 * parseInt(short[2], 16), 17 * parseInt(short[3], 16)];
  throw new Error(`"${spec}" is not a color: give #rrggbb, #rgb, white or black`);
}

/** The color as `#rrggbb`. */
export function formatColor(c: Rgb): string {
  return `#${c.map((v) => v.toString(16).padStart(2, '0')).join('')}`;
}

/**
 * RGBA bytes (straight, not premultiplied alpha) → RGB bytes, each pixel laid over `background`
 * ("source over"): out = (color · α + background · (255 − α)) / 255, rounded. A fully transparent
 * pixel becomes the background whatever color it hides; an opaque one keeps its color.
 */
export function compositeOver(rgba: ArrayLike<number>, background: Rgb): Uint8Array {
  if (rgba.length % 4 !== 0) throw new Error(`compositeOver: ${rgba.length} bytes is not a whole number of RGBA pixels`);
  const n = rgba.length / 4;
  const out = new Uint8Array(3 * n);
  for (let p = 0; p < n; p++) {
    const alpha = rgba[4 * p + 3];
    for (let c = 0; c < 3; c++) {
      out[3 * p + c] = Math.round((rgba[4 * p + c] * alpha + background[c] * (255 - alpha)) / 255);
    }
  }
  return out;
}

/**
 * HWC bytes with `from` channels → `to` channels: RGB → gray by ITU-R BT.601 luma
 * (0.299 R + 0.587 G + 0.114 B), gray → RGB by repetition. The same bytes back when they agree.
 */
export function convertPixelChannels(pixels: Uint8Array, from: 1 | 3, to: 1 | 3): Uint8Array {
  if (from === to) return pixels;
  const n = pixels.length / from;
  const out = new Uint8Array(n * to);
  if (to === 1) {
    for (let p = 0; p < n; p++) out[p] = Math.round(0.299 * pixels[3 * p] + 0.587 * pixels[3 * p + 1] + 0.114 * pixels[3 * p + 2]);
  } else {
    for (let p = 0; p < n; p++) out[3 * p] = out[3 * p + 1] = out[3 * p + 2] = pixels[p];
  }
  return out;
}
