/**
 * safetensors files on disk (Node). The format itself (header parsing, dtype conversions) lives in
 * safetensors-format.ts, shared with the browser; this module adds file descriptors and atomic writes.
 *
 * Reading goes through a file descriptor, one tensor at a time, so a multi-GB checkpoint is never
 * held in memory twice. Floating tensors (F32, F16, BF16, F64) are returned as float32.
 */
import { closeSync, fstatSync, openSync, readFileSync, statSync } from 'node:fs';
import { readFully, writeAll, writeFileAtomic } from '../util/fs.js';
import {
  assertLittleEndianHost, decodeFloats, DTYPE_BYTES, FLOAT_DTYPES, float32ToBfloat16Bits, float32ToHalfBits,
  headerLengthOf, numel, parseHeader, parseSafetensors, shapeText,
  type LoadedTensor, type SafetensorsHeader, type TensorEntry, type TensorToWrite,
} from './safetensors-format.js';

export {
  bfloat16ToFloat32, DTYPE_BYTES, FLOAT_DTYPES, float32ToBfloat16Bits, float32ToHalfBits, halfToFloat32,
  numel, parseHeader, parseSafetensors,
  type DType, type LoadedTensor, type SafetensorsHeader, type TensorEntry, type TensorToWrite, type WritableDType,
} from './safetensors-format.js';

/** Reads the header length and header of an open file and validates them. */
function readHeaderFromFd(fd: number, file: string): SafetensorsHeader {
  const fileSize = fstatSync(fd).size;
  const lengthBytes = Buffer.alloc(8);
  if (fileSize >= 8) readFully(fd, lengthBytes, 0, file);
  const n = headerLengthOf(lengthBytes, fileSize, file);
  const headerBytes = Buffer.alloc(n);
  readFully(fd, headerBytes, 8, file);
  return parseHeader(headerBytes.toString('utf8'), n, fileSize, file);
}

// ---------------------------------------------------------------------------------------------
// Reading

/** An open safetensors file: the validated header, and tensors read one at a time on demand. */
export class SafetensorsReader {
  readonly header: SafetensorsHeader;
  private readonly byName: Map<string, TensorEntry>;
  private fd: number | null;

  private constructor(readonly path: string, fd: number) {
    this.fd = fd;
    try {
      this.header = readHeaderFromFd(fd, path);
    } catch (err) {
      closeSync(fd);
      this.fd = null;
      throw err;
    }
    this.byName = new Map(this.header.entries.map((e) => [e.name, e]));
  }

  static open(path: string): SafetensorsReader {
    assertLittleEndianHost();
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      throw new Error(`${path}: cannot open safetensors file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    return new SafetensorsReader(path, fd);
  }

  get entries(): readonly TensorEntry[] { return this.header.entries; }
  get metadata(): Record<string, string> { return this.header.metadata; }
  has(name: string): boolean { return this.byName.has(name); }
  entry(name: string): TensorEntry | undefined { return this.byName.get(name); }

  /** Reads one floating tensor as float32; checks the shape when `expectedShape` is given. */
  read(name: string, expectedShape?: readonly number[]): Float32Array {
    const e = this.require(name, expectedShape);
    const out = new Float32Array(numel(e.shape));
    this.readEntryInto(e, out);
    return out;
  }

  /** Reads one floating tensor into `out` (whose length must match), e.g. a view of a parameter buffer. */
  readInto(name: string, out: Float32Array, expectedShape?: readonly number[]): void {
    const e = this.require(name, expectedShape);
    if (numel(e.shape) !== out.length) {
      throw new Error(`${this.path}: tensor "${name}" has ${numel(e.shape)} values ${shapeText(e.shape)}, ` +
                      `the destination holds ${out.length}`);
    }
    this.readEntryInto(e, out);
  }

  /** The raw bytes of any tensor (e.g. integer or bool buffers). */
  readBytes(name: string): Uint8Array {
    const e = this.require(name);
    const out = new Uint8Array(e.end - e.begin);
    readFully(this.descriptor(), out, this.header.dataStart + e.begin, this.path);
    return out;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  private descriptor(): number {
    if (this.fd === null) throw new Error(`${this.path}: safetensors file already closed`);
    return this.fd;
  }

  private require(name: string, expectedShape?: readonly number[]): TensorEntry {
    const e = this.byName.get(name);
    if (!e) throw new Error(`${this.path}: missing tensor "${name}"`);
    if (expectedShape && (expectedShape.length !== e.shape.length || expectedShape.some((s, i) => s !== e.shape[i]))) {
      throw new Error(`${this.path}: tensor "${name}" has shape ${shapeText(e.shape)}, expected ${shapeText(expectedShape)}`);
    }
    return e;
  }

  private readEntryInto(e: TensorEntry, out: Float32Array): void {
    if (!FLOAT_DTYPES.includes(e.dtype)) {
      throw new Error(`${this.path}: tensor "${e.name}" has dtype ${e.dtype}; expected one of ${FLOAT_DTYPES.join(', ')}`);
    }
    const position = this.header.dataStart + e.begin;
    if (e.dtype === 'F32') {
      // Straight into the destination's memory: no intermediate copy.
      readFully(this.descriptor(), new Uint8Array(out.buffer, out.byteOffset, out.byteLength), position, this.path);
      return;
    }
    const bytes = Buffer.alloc(e.end - e.begin);
    readFully(this.descriptor(), bytes, position, this.path);
    decodeFloats(out, bytes, e.dtype);
  }
}

/** Files larger than this are read tensor by tensor: one fs read is capped at 2 GiB. */
const WHOLE_FILE_MAX_BYTES = 2 ** 30;

/**
 * Reads all floating tensors of a file. A small file is read at once and its F32 tensors are
 * zero-copy views into the file buffer when aligned; a large one (over 1 GiB, e.g. Adam moments
 * of a big model) is read one tensor at a time. F16/BF16/F64 are converted; tensors of
 * non-floating dtypes are left out.
 */
export function readSafetensors(path: string): { metadata: Record<string, string>; tensors: Map<string, LoadedTensor> } {
  assertLittleEndianHost();
  if ((statSync(path, { throwIfNoEntry: false })?.size ?? 0) > WHOLE_FILE_MAX_BYTES) return readTensorByTensor(path);
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (err) {
    throw new Error(`${path}: cannot read safetensors file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return parseSafetensors(buf, path);
}

function readTensorByTensor(path: string): { metadata: Record<string, string>; tensors: Map<string, LoadedTensor> } {
  const r = SafetensorsReader.open(path);
  try {
    const tensors = new Map<string, LoadedTensor>();
    for (const e of r.entries) {
      if (FLOAT_DTYPES.includes(e.dtype)) tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: r.read(e.name) });
    }
    return { metadata: r.metadata, tensors };
  } finally {
    r.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

/**
 * The header bytes (length prefix included) for `tensors` laid out in the given order, padded
 * with spaces so the data starts at a multiple of 8.
 */
export function encodeHeader(tensors: readonly TensorToWrite[], metadata: Record<string, string> = {},
                             file = 'safetensors'): Buffer {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  const seen = new Set<string>();
  for (const t of tensors) {
    if (t.name === '' || t.name === '__metadata__') throw new Error(`${file}: invalid tensor name "${t.name}"`);
    if (seen.has(t.name)) throw new Error(`${file}: tensor "${t.name}" given twice`);
    seen.add(t.name);
    if (!t.shape.every((s) => Number.isSafeInteger(s) && s >= 0)) {
      throw new Error(`${file}: tensor "${t.name}" has an invalid shape ${shapeText(t.shape)}`);
    }
    if (numel(t.shape) !== t.data.length) {
      throw new Error(`${file}: tensor "${t.name}" has ${t.data.length} values, shape ${shapeText(t.shape)} needs ${numel(t.shape)}`);
    }
    const dtype = t.dtype ?? 'F32';
    const size = t.data.length * DTYPE_BYTES[dtype];
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  const out = Buffer.alloc(8 + padded, 0x20);
  out.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(out, 8);
  return out;
}

/** The bytes of one tensor as stored (a view for F32, a converted copy otherwise). */
function encodeTensorData(t: TensorToWrite): Uint8Array {
  const dtype = t.dtype ?? 'F32';
  if (dtype === 'F32') return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const bits = new Uint16Array(t.data.length);
  const convert = dtype === 'F16' ? float32ToHalfBits : float32ToBfloat16Bits;
  for (let i = 0; i < t.data.length; i++) bits[i] = convert(t.data[i]);
  return new Uint8Array(bits.buffer);
}

// The atomic writer lives in util/fs; re-exported for this module's users.
export { writeAll, writeFileAtomic };

/**
 * Writes a safetensors file atomically (temp file + rename). Tensors keep the given order; each
 * tensor's data is streamed from its own buffer, so nothing is concatenated in memory.
 */
export function writeSafetensors(path: string, tensors: readonly TensorToWrite[],
                                 metadata: Record<string, string> = {}): void {
  assertLittleEndianHost();
  const header = encodeHeader(tensors, metadata, path);
  writeFileAtomic(path, (fd) => {
    writeAll(fd, header);
    for (const t of tensors) writeAll(fd, encodeTensorData(t));
  }, tensors.reduce((n, t) => n + t.data.length * DTYPE_BYTES[t.dtype ?? 'F32'], header.length));
}
