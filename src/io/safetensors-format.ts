/**
 * The safetensors format itself, without files: header parsing and validation, and dtype
 * conversions. No Node imports, so the browser demo parses a fetched ArrayBuffer with the same
 * code that `safetensors.ts` (the Node reader/writer) uses for files.
 *
 * Layout: an 8-byte little-endian u64 header length N, N bytes of JSON header, then the raw
 * little-endian tensor data. The header maps each tensor name to
 * `{ dtype, shape, data_offsets: [begin, end] }` (offsets relative to the first data byte) and may
 * hold a `__metadata__` string→string map.
 */

/** Every dtype the format defines, with its size in bytes. */
export const DTYPE_BYTES = {
  F64: 8, F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1,
  I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
} as const;
export type DType = keyof typeof DTYPE_BYTES;

/** The dtypes we read into float32. */
export const FLOAT_DTYPES: readonly DType[] = ['F32', 'F16', 'BF16', 'F64'];
/** The dtypes we can write (converted from float32). */
export type WritableDType = 'F32' | 'F16' | 'BF16';

/** One tensor as the header describes it. `begin`/`end` are byte offsets relative to the data start. */
export interface TensorEntry {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Tensors in the order of their data offsets. */
  entries: TensorEntry[];
  metadata: Record<string, string>;
  /** Absolute file offset of the first data byte (8 + N). */
  dataStart: number;
}

/** A tensor to write: float32 data, stored as `dtype` (default F32). */
export interface TensorToWrite {
  name: string;
  shape: number[];
  data: Float32Array;
  dtype?: WritableDType;
}

/** Upper bound on the header length (the reference implementation uses 100 MB). */
/** Upper bound on the header length (the reference implementation uses 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

/** Typed arrays use the host byte order and the format is little-endian: views pass straight through. */
export function assertLittleEndianHost(): void {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new Error('safetensors: big-endian hosts are not supported');
  }
}

export const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);
export const shapeText = (shape: readonly number[]): string => `[${shape.join(', ')}]`;

// ---------------------------------------------------------------------------------------------
// Header

/** Parses and validates the JSON header. `fileSize` bounds the offsets; `file` names errors. */
export function parseHeader(headerJson: string, headerLength: number, fileSize: number,
                            file: string): SafetensorsHeader {
  const dataStart = 8 + headerLength;
  const dataLength = fileSize - dataStart;
  let raw: unknown;
  try {
    raw = JSON.parse(headerJson);
  } catch (err) {
    throw new Error(`${file}: malformed safetensors header: not valid JSON (${(err as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new Error(`${file}: malformed safetensors header: expected a JSON object`);
  }
  const metadata: Record<string, string> = {};
  const entries: TensorEntry[] = [];
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        throw new Error(`${file}: malformed safetensors header: __metadata__ must be an object`);
      }
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') {
          throw new Error(`${file}: malformed safetensors header: __metadata__.${k} must be a string`);
        }
        metadata[k] = v;
      }
      continue;
    }
    entries.push(parseEntry(name, value, dataLength, file));
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < entries.length; i++) {
    const prev = entries[i - 1], cur = entries[i];
    if (cur.begin < prev.end) {
      throw new Error(`${file}: malformed safetensors header: tensors "${prev.name}" and "${cur.name}" overlap`);
    }
  }
  return { entries, metadata, dataStart };
}

function parseEntry(name: string, value: unknown, dataLength: number, file: string): TensorEntry {
  const bad = (why: string): Error => new Error(`${file}: malformed safetensors header: tensor "${name}" ${why}`);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad('is not an object');
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) throw bad(`has unknown dtype ${JSON.stringify(dtype)}`);
  const isCount = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
  if (!Array.isArray(shape) || !shape.every(isCount)) throw bad('has an invalid shape');
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
    throw bad('has invalid data_offsets');
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end || end > dataLength) {
    throw bad(`has data_offsets [${begin}, ${end}] outside the ${dataLength} data bytes (truncated file?)`);
  }
  const dt = dtype as DType;
  const expected = numel(shape as number[]) * DTYPE_BYTES[dt];
  if (end - begin !== expected) {
    throw bad(`holds ${end - begin} bytes, but ${dt} ${shapeText(shape as number[])} needs ${expected}`);
  }
  return { name, dtype: dt, shape: [...(shape as number[])], begin, end };
}

/**
 * The header length N from the first 8 bytes, checked against the file size. Throws the same
 * messages for a fetched buffer as for a file.
 */
export function headerLengthOf(first8: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < 8 || first8.length < 8) throw new Error(`${file}: malformed safetensors file: only ${fileSize} bytes, no header`);
  const headerLength = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (headerLength > BigInt(fileSize - 8) || headerLength > BigInt(MAX_HEADER_BYTES)) {
    throw new Error(`${file}: malformed safetensors header: header length ${headerLength} exceeds the file ` +
                    `size ${fileSize} (not a safetensors file, or truncated)`);
  }
  return Number(headerLength);
}

// ---------------------------------------------------------------------------------------------
// Conversions

let f16Table: Float32Array | null = null;

/** float32 values of all 65536 half-precision bit patterns (built once, 256 KB). */
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) t[h] = sign * mant * 2 ** -24;
    else if (exp === 31) t[h] = mant ? NaN : sign * Infinity;
    else t[h] = sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  f16Table = t;
  return t;
}

/** Half-precision bits → float32, n values. */
export function halfToFloat32(out: Float32Array, bits: Uint16Array): void {
  const t = halfTable();
  for (let i = 0; i < bits.length; i++) out[i] = t[bits[i]];
}

/** bfloat16 is the top half of a float32. */
export function bfloat16ToFloat32(out: Float32Array, bits: Uint16Array): void {
  const u = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < bits.length; i++) u[i] = bits[i] << 16;
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** float32 → half-precision bits, rounding to nearest even; overflow goes to ±Infinity. */
export function float32ToHalfBits(value: number): number {
  scratchF32[0] = value;
  const x = scratchU32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half: value = m · 2^-24 with m = (1.mant) · 2^(e - 14 + 23), i.e. a right shift.
    if (e < -10) return sign;
    const full = mant | 0x800000;
    const shift = 14 - e;
    const rem = full & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    let m = full >>> shift;
    if (rem > half || (rem === half && m & 1)) m++;
    return sign | m;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // a carry into the exponent is still right
  return sign | h;
}

/** float32 → bfloat16 bits, rounding to nearest even. */
export function float32ToBfloat16Bits(value: number): number {
  scratchF32[0] = value;
  const x = scratchU32[0];
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return (x >>> 16) | 0x40; // keep NaN a NaN
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Converts raw little-endian bytes of a float dtype into float32 values (out.length of them). */
export function decodeFloats(out: Float32Array, bytes: Uint8Array, dtype: DType): void {
  const size = DTYPE_BYTES[dtype];
  // Typed-array views need aligned offsets; copy the (rare) unaligned case.
  const src = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  switch (dtype) {
    case 'F32': out.set(new Float32Array(src.buffer, src.byteOffset, out.length)); break;
    case 'F16': halfToFloat32(out, new Uint16Array(src.buffer, src.byteOffset, out.length)); break;
    case 'BF16': bfloat16ToFloat32(out, new Uint16Array(src.buffer, src.byteOffset, out.length)); break;
    case 'F64': out.set(new Float64Array(src.buffer, src.byteOffset, out.length)); break;
    default: throw new Error(`dtype ${dtype} is not a floating type`);
  }
}

// ---------------------------------------------------------------------------------------------
// Whole buffers

export interface LoadedTensor { dtype: DType; shape: number[]; data: Float32Array }

/**
 * Parses a whole safetensors file held in memory (a Node Buffer or a fetched ArrayBuffer's bytes).
 * F32 tensors are zero-copy views into `bytes` when aligned; F16/BF16/F64 are converted.
 * Tensors of non-floating dtypes are left out. `file` names the source in errors.
 */
export function parseSafetensors(bytes: Uint8Array, file: string):
    { metadata: Record<string, string>; tensors: Map<string, LoadedTensor> } {
  assertLittleEndianHost();
  const n = headerLengthOf(bytes, bytes.length, file);
  const headerJson = new TextDecoder().decode(bytes.subarray(8, 8 + n));
  const header = parseHeader(headerJson, n, bytes.length, file);
  const tensors = new Map<string, LoadedTensor>();
  for (const e of header.entries) {
    if (!FLOAT_DTYPES.includes(e.dtype)) continue;
    const start = bytes.byteOffset + header.dataStart + e.begin;
    const count = numel(e.shape);
    let data: Float32Array;
    if (e.dtype === 'F32' && start % 4 === 0) {
      data = new Float32Array(bytes.buffer, start, count);
    } else {
      data = new Float32Array(count);
      decodeFloats(data, bytes.subarray(header.dataStart + e.begin, header.dataStart + e.end), e.dtype);
    }
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data });
  }
  return { metadata: header.metadata, tensors };
}
