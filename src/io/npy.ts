/**
 * NumPy .npy files (format versions 1, 2 and 3): magic "\x93NUMPY", version, header length
 * (uint16 for v1, uint32 after), a Python-dict header {'descr', 'fortran_order', 'shape'}, data.
 * We read and write little-endian numeric arrays in C order.
 */
import { readFileSync, writeFileSync, renameSync } from 'node:fs';

export type NpyData = Float32Array | Float64Array | Uint8Array | Int8Array | Int16Array | Uint16Array | Int32Array | Uint32Array;

export interface NpyArray {
  /** NumPy dtype string, e.g. '<f4'. */
  dtype: string;
  shape: number[];
  data: NpyData;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

const DTYPES: Record<string, { size: number; make: (buf: ArrayBuffer, n: number) => NpyData }> = {
  f4: { size: 4, make: (b, n) => new Float32Array(b, 0, n) },
  f8: { size: 8, make: (b, n) => new Float64Array(b, 0, n) },
  u1: { size: 1, make: (b, n) => new Uint8Array(b, 0, n) },
  i1: { size: 1, make: (b, n) => new Int8Array(b, 0, n) },
  i2: { size: 2, make: (b, n) => new Int16Array(b, 0, n) },
  u2: { size: 2, make: (b, n) => new Uint16Array(b, 0, n) },
  i4: { size: 4, make: (b, n) => new Int32Array(b, 0, n) },
  u4: { size: 4, make: (b, n) => new Uint32Array(b, 0, n) },
};

/** Parses .npy bytes; `name` appears in error messages. */
export function parseNpy(bytes: Uint8Array, name: string): NpyArray {
  if (bytes.length < 10 || MAGIC.some((m, i) => bytes[i] !== m)) throw new Error(`${name}: not a .npy file (bad magic)`);
  const major = bytes[6];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  let headerLen: number;
  let headerStart: number;
  if (major === 1) { headerLen = view.getUint16(8, true); headerStart = 10; }
  else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw new Error(`${name}: truncated .npy header`);
    headerLen = view.getUint32(8, true); headerStart = 12;
  } else throw new Error(`${name}: unsupported .npy format version ${major}.${bytes[7]}`);
  if (headerStart + headerLen > bytes.length) throw new Error(`${name}: truncated .npy header`);
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(headerStart, headerStart + headerLen));
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new Error(`${name}: malformed .npy header ${JSON.stringify(header.trim())}`);
  }
  if (fortran === 'True') throw new Error(`${name}: Fortran-order arrays are not supported (save with np.ascontiguousarray)`);
  const shape = shapeText.split(',').map((s) => s.trim()).filter((s) => s.length > 0).map((s) => {
    const v = Number(s.replace(/L$/, ''));
    if (!Number.isInteger(v) || v < 0) throw new Error(`${name}: bad dimension "${s}" in .npy shape`);
    return v;
  });
  const endian = descr[0];
  const kind = descr.slice(1);
  const spec = DTYPES[kind];
  if (!spec || endian === '>' || (endian === '|' && spec.size > 1) || !['<', '|', '='].includes(endian)) {
    throw new Error(`${name}: unsupported .npy dtype '${descr}' (little-endian f4, f8, u1, i1, i2, u2, i4, u4 only)`);
  }
  const count = shape.reduce((a, b) => a * b, 1);
  const dataStart = headerStart + headerLen;
  const expected = count * spec.size;
  if (bytes.length - dataStart !== expected) {
    throw new Error(`${name}: .npy data is ${bytes.length - dataStart} bytes, shape [${shape.join(', ')}] of '${descr}' needs ${expected}`);
  }
  // Copy into a fresh, aligned buffer.
  const buf = new ArrayBuffer(expected);
  new Uint8Array(buf).set(bytes.subarray(dataStart));
  return { dtype: `${spec.size === 1 ? '|' : '<'}${kind}`, shape, data: spec.make(buf, count) };
}

export function readNpy(path: string): NpyArray {
  let raw: Buffer;
  try {
    raw = readFileSync(path);
  } catch (err) {
    throw new Error(`${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  return parseNpy(new Uint8Array(raw.buffer, raw.byteOffset, raw.length), path);
}

function dtypeOf(data: NpyData): string {
  if (data instanceof Float32Array) return '<f4';
  if (data instanceof Float64Array) return '<f8';
  if (data instanceof Uint8Array) return '|u1';
  if (data instanceof Int8Array) return '|i1';
  if (data instanceof Int16Array) return '<i2';
  if (data instanceof Uint16Array) return '<u2';
  if (data instanceof Int32Array) return '<i4';
  return '<u4';
}

/** .npy (v1) bytes of a C-order array. */
export function encodeNpy(data: NpyData, shape: number[]): Uint8Array {
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) throw new Error(`encodeNpy: shape [${shape.join(', ')}] holds ${count} values, data has ${data.length}`);
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${dtypeOf(data)}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // Pad with spaces so magic + version + length + header + '\n' is a multiple of 64.
  const total = Math.ceil((10 + header.length + 1) / 64) * 64;
  header = header.padEnd(total - 10 - 1, ' ') + '\n';
  const out = new Uint8Array(total + data.byteLength);
  out.set(MAGIC, 0);
  out[6] = 1; out[7] = 0;
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), total);
  return out;
}

/** Writes a .npy file atomically. */
export function writeNpy(path: string, data: NpyData, shape: number[]): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, encodeNpy(data, shape));
  renameSync(tmp, path);
}
