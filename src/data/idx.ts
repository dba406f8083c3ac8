/**
 * IDX files (MNIST, Fashion-MNIST): big-endian header `0 0 type ndims`, ndims uint32 sizes,
 * then the data. We read unsigned bytes (type 0x08): images [count, rows, cols], labels [count].
 */
import { readMaybeGzip } from './binary.js';
import type { ImageSet } from './images.js';

const UBYTE = 0x08;

interface IdxArray { dims: number[]; data: Uint8Array }

/** Parses an IDX ubyte file with `ndims` dimensions, checking magic and size. */
export function readIdx(path: string, ndims: number): IdxArray {
  const bytes = readMaybeGzip(path);
  if (bytes.length < 4) throw new Error(`${path}: too short for an IDX file (${bytes.length} bytes)`);
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    throw new Error(`${path}: not an IDX file (bad magic 0x${hex(bytes, 0, 4)})`);
  }
  if (bytes[2] !== UBYTE) throw new Error(`${path}: IDX data type 0x${bytes[2].toString(16)} is not unsigned byte (0x08)`);
  if (bytes[3] !== ndims) throw new Error(`${path}: IDX file has ${bytes[3]} dimensions, expected ${ndims}`);
  const headerSize = 4 + 4 * ndims;
  if (bytes.length < headerSize) throw new Error(`${path}: truncated IDX header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const dims: number[] = [];
  for (let i = 0; i < ndims; i++) dims.push(view.getUint32(4 + 4 * i, false));
  const expected = headerSize + dims.reduce((a, b) => a * b, 1);
  if (bytes.length < expected) {
    throw new Error(`${path}: truncated: dimensions [${dims.join(', ')}] need ${expected} bytes, file has ${bytes.length}`);
  }
  if (bytes.length > expected) {
    throw new Error(`${path}: ${bytes.length - expected} unexpected trailing bytes after [${dims.join(', ')}] data`);
  }
  return { dims, data: bytes.subarray(headerSize) };
}

/** Gray images from an IDX3 images file and its IDX1 labels file. */
export function readIdxImageSet(imagesPath: string, labelsPath: string | null, classNames?: string[]): ImageSet {
  const images = readIdx(imagesPath, 3);
  const [count, height, width] = images.dims;
  const labels = new Int32Array(count).fill(-1);
  if (labelsPath !== null) {
    const lab = readIdx(labelsPath, 1);
    if (lab.dims[0] !== count) {
      throw new Error(`${labelsPath}: ${lab.dims[0]} labels but ${imagesPath} has ${count} images`);
    }
    labels.set(lab.data);
  }
  return { count, height, width, channels: 1, pixels: images.data, labels, classNames };
}

function hex(b: Uint8Array, from: number, to: number): string {
  return Array.from(b.subarray(from, to), (x) => x.toString(16).padStart(2, '0')).join('');
}
