/**
 * A folder of images (PNG, JPEG, WebP, decoded by sharp). Layouts:
 *   dir/*.png                  unlabeled (labels -1)
 *   dir/<class>/*.png          one subfolder per class; classes sorted by name → labels 0..C-1
 * Images are converted to RGB or gray, transparency laid over a background color (white unless
 * asked otherwise); they must share one size unless `side` is given, in which case each is resized
 * (shorter side to `side`, then center crop).
 */
import { readdirSync, statSync, existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, extname } from 'node:path';
import { decodeImageBytes, isGrayImageBytes, type DecodedImage } from './decode.js';
import type { ImageSet } from './images.js';
import type { Rgb } from './pixels.js';

export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set(['.png', '.jpg', '.jpeg', '.webp']);

export interface FolderOptions {
  /** 1 = gray, 3 = RGB; default: 1 if every image is gray, else 3. */
  channels?: 1 | 3;
  /** Resize every image to side × side (cover, center crop). */
  side?: number;
  /** Color under transparent pixels; default white. */
  background?: Rgb;
}

interface FileEntry { path: string; label: number }

/** Whether the name ends in an image extension igpt reads. */
export function isImageFile(name: string): boolean {
  return IMAGE_EXTENSIONS.has(extname(name).toLowerCase());
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir).filter((n) => !n.startsWith('.')).sort();
  } catch (err) {
    throw new Error(`${dir}: cannot list folder (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
}

/** The image files of the folder and, if it has class subfolders, their labels. */
function listImageFiles(dir: string): { files: FileEntry[]; classNames?: string[] } {
  if (!existsSync(dir)) throw new Error(`${dir}: folder not found`);
  const names = listDir(dir);
  const subdirs = names.filter((n) => statSync(join(dir, n)).isDirectory());
  const direct = names.filter((n) => isImageFile(n) && statSync(join(dir, n)).isFile());
  if (subdirs.length > 0 && direct.length === 0) {
    const files: FileEntry[] = [];
    subdirs.forEach((cls, label) => {
      for (const n of listDir(join(dir, cls))) if (isImageFile(n)) files.push({ path: join(dir, cls, n), label });
    });
    if (files.length === 0) throw new Error(`${dir}: no PNG/JPEG/WebP images in its class subfolders`);
    return { files, classNames: subdirs };
  }
  if (direct.length === 0) throw new Error(`${dir}: no PNG/JPEG/WebP images found`);
  return { files: direct.map((n) => ({ path: join(dir, n), label: -1 })) };
}

/** Runs `fn` on the file's bytes; any failure becomes an error naming the file. */
async function withImageBytes<R>(path: string, fn: (bytes: Buffer) => Promise<R>): Promise<R> {
  try {
    return await fn(await readFile(path));
  } catch (err) {
    throw new Error(`${path}: cannot decode image (${err instanceof Error ? err.message : String(err)})`);
  }
}

async function isGrayImage(path: string): Promise<boolean> {
  return withImageBytes(path, isGrayImageBytes);
}

async function decodeImage(path: string, channels: 1 | 3, opts: FolderOptions): Promise<DecodedImage> {
  return withImageBytes(path, (bytes) => decodeImageBytes(bytes, { channels, side: opts.side, background: opts.background }));
}

/**
 * Runs `fn` over `items` with at most `limit` in flight, keeping order. After a failure no new
 * item starts, and the first error is thrown only once every started item has finished: no
 * decode outlives the call to race with the caller's next one.
 */
async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length && failure === undefined) {
      const i = next++;
      try {
        out[i] = await fn(items[i], i);
      } catch (error) {
        failure ??= { error };
      }
    }
  });
  await Promise.all(workers);
  if (failure !== undefined) throw failure.error;
  return out;
}

export async function readImageFolder(dir: string, opts: FolderOptions = {}): Promise<ImageSet> {
  const { files, classNames } = listImageFiles(dir);
  let channels = opts.channels;
  if (channels === undefined) {
    const gray = await mapLimited(files, 8, (f) => isGrayImage(f.path));
    channels = gray.every((g) => g) ? 1 : 3;
  }
  const ch = channels;
  const decoded = await mapLimited(files, 8, (f) => decodeImage(f.path, ch, opts));
  const { width, height } = decoded[0];
  const size = width * height * ch;
  const pixels = new Uint8Array(files.length * size);
  decoded.forEach((d, i) => {
    if (d.width !== width || d.height !== height) {
      throw new Error(`${files[i].path}: image is ${d.width}×${d.height} but ${files[0].path} is ${width}×${height}; pass a side to resize them all`);
    }
    pixels.set(d.data, i * size);
  });
  const labels = Int32Array.from(files, (f) => f.label);
  return { count: files.length, height, width, channels: ch, pixels, labels, classNames };
}
