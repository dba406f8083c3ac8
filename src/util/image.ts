/**
 * Writing uint8 images (HWC, gray or RGB) and grids of them to PNG with sharp: nearest-neighbour
 * upscaling, gaps between cells, optional captions under each cell. Files are written atomically.
 */
import { world } from '../parallel/world.js';
import { writeFileAtomic } from './fs.js';
import sharp from 'sharp';

/** Each pixel repeated scale × scale times. */
export function upscaleNearest(pixels: Uint8Array, height: number, width: number, channels: number, scale: number): Uint8Array {
  if (scale === 1) return pixels;
  const outW = width * scale;
  const out = new Uint8Array(height * scale * outW * channels);
  for (let y = 0; y < height * scale; y++) {
    const sy = Math.floor(y / scale);
    for (let x = 0; x < outW; x++) {
      const src = (sy * width + Math.floor(x / scale)) * channels;
      const dst = (y * outW + x) * channels;
      for (let c = 0; c < channels; c++) out[dst + c] = pixels[src + c];
    }
  }
  return out;
}

export interface GridOptions {
  /** Pixels between cells and around the border (after scaling). Default 2. */
  gap?: number;
  /** Gray level of gaps and empty cells. Default 255 (white). */
  background?: number;
  /** One caption per image, drawn under its cell (e.g. labels). */
  captions?: string[];
}

export interface RawImage { data: Uint8Array; width: number; height: number; channels: 1 | 3 }

const CAPTION_HEIGHT = 14;

/** The grid as one raw image: `cols` images a row, each scaled by `scale`. */
export function composeGrid(images: Uint8Array[], height: number, width: number, channels: 1 | 3, cols: number, scale: number, opts: GridOptions = {}): RawImage {
  if (images.length === 0) throw new Error('image grid: no images');
  if (!Number.isInteger(cols) || cols < 1) throw new Error(`image grid: cols must be a positive integer, got ${cols}`);
  if (!Number.isInteger(scale) || scale < 1) throw new Error(`image grid: scale must be a positive integer, got ${scale}`);
  const size = height * width * channels;
  images.forEach((img, i) => {
    if (img.length !== size) throw new Error(`image grid: image ${i} has ${img.length} bytes, expected ${height}×${width}×${channels} = ${size}`);
  });
  const gap = opts.gap ?? 2;
  const captionH = opts.captions ? CAPTION_HEIGHT : 0;
  const cellW = width * scale;
  const cellH = height * scale;
  const rows = Math.ceil(images.length / cols);
  const outW = gap + cols * (cellW + gap);
  const outH = gap + rows * (cellH + captionH + gap);
  const data = new Uint8Array(outW * outH * channels).fill(opts.background ?? 255);
  images.forEach((img, i) => {
    const big = upscaleNearest(img, height, width, channels, scale);
    const x0 = gap + (i % cols) * (cellW + gap);
    const y0 = gap + Math.floor(i / cols) * (cellH + captionH + gap);
    for (let y = 0; y < cellH; y++) {
      data.set(big.subarray(y * cellW * channels, (y + 1) * cellW * channels), ((y0 + y) * outW + x0) * channels);
    }
  });
  return { data, width: outW, height: outH, channels };
}

function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c] ?? c);
}

/** PNG bytes of a raw image, with captions drawn under grid cells if given. */
async function encodePng(img: RawImage, captions?: { text: string; x: number; y: number }[]): Promise<Buffer> {
  let s = sharp(img.data, { raw: { width: img.width, height: img.height, channels: img.channels } });
  if (captions && captions.length > 0) {
    const texts = captions.map((c) => `<text x="${c.x}" y="${c.y}" font-family="sans-serif" font-size="11" fill="#000">${escapeXml(c.text)}</text>`).join('');
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${img.width}" height="${img.height}">${texts}</svg>`;
    s = sharp(await s.png().toBuffer()).composite([{ input: Buffer.from(svg), top: 0, left: 0 }]);
  }
  if (img.channels === 1 && !captions?.length) s = s.toColourspace('b-w');
  return s.png().toBuffer();
}

/** Writes one HWC uint8 image (gray or RGB) to PNG, upscaled by `scale`. */
export async function writeImage(path: string, pixels: Uint8Array, height: number, width: number, channels: 1 | 3, scale = 1): Promise<void> {
  if (pixels.length !== height * width * channels) throw new Error(`${path}: image has ${pixels.length} bytes, expected ${height}×${width}×${channels}`);
  if (world().rank !== 0) return; // under MPI, rank 0 alone writes
  const data = upscaleNearest(pixels, height, width, channels, scale);
  writeFileAtomic(path, await encodePng({ data, width: width * scale, height: height * scale, channels }));
}

/** Writes images (each HWC uint8, h × w × channels) as a PNG grid of `cols` columns, each upscaled by `scale`. */
export async function writeImageGrid(path: string, images: Uint8Array[], height: number, width: number, channels: 1 | 3, cols: number, scale: number, opts: GridOptions = {}): Promise<void> {
  if (world().rank !== 0) return; // under MPI, rank 0 alone writes
  const grid = composeGrid(images, height, width, channels, cols, scale, opts);
  const gap = opts.gap ?? 2;
  const captions = opts.captions?.slice(0, images.length).map((text, i) => ({
    text,
    x: gap + (i % cols) * (width * scale + gap) + 1,
    y: gap + Math.floor(i / cols) * (height * scale + CAPTION_HEIGHT + gap) + height * scale + CAPTION_HEIGHT - 3,
  }));
  writeFileAtomic(path, await encodePng(grid, captions));
}
