/** Reading whole binary files, gunzipping when the name or the bytes say gzip. */
import { readFileSync, existsSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

/** Most bytes a gzip file may decompress to: beyond every dataset read here, short of a gzip bomb. */
export const MAX_GUNZIPPED_BYTES = 2 ** 31;

/** The file's bytes, decompressed if it is gzip (to at most `maxBytes`). Errors name the file. */
export function readMaybeGzip(path: string, maxBytes = MAX_GUNZIPPED_BYTES): Uint8Array {
  let raw: Buffer;
  try {
    raw = readFileSync(path);
  } catch (err) {
    throw new Error(`${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  const isGzip = raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b;
  if (!isGzip) {
    if (path.endsWith('.gz')) throw new Error(`${path}: named .gz but is not gzip data`);
    return new Uint8Array(raw.buffer, raw.byteOffset, raw.length);
  }
  try {
    const out = gunzipSync(raw, { maxOutputLength: maxBytes });
    return new Uint8Array(out.buffer, out.byteOffset, out.length);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new Error(`${path}: decompresses to more than ${maxBytes} bytes (not a dataset file, or a gzip bomb)`);
    }
    throw new Error(`${path}: corrupt gzip data (${err instanceof Error ? err.message : String(err)})`);
  }
}

/** The first of `names` that exists in `dir` (each tried also with .gz), or null. */
export function findFile(dir: string, names: string[]): string | null {
  for (const name of names) {
    for (const candidate of [`${dir}/${name}`, `${dir}/${name}.gz`]) {
      if (existsSync(candidate)) return candidate;
    }
  }
  return null;
}
