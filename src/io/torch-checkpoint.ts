/**
 * PyTorch checkpoints (`pytorch_model.bin`) as torch.save writes them since PyTorch 1.6: a zip
 * archive `<top>/data.pkl` (a pickle of the state dict, name → tensor), `<top>/data/<key>` (one
 * raw little-endian file per storage), and `<top>/version`, `<top>/byteorder` beside them.
 *
 * The pickle is run by the restricted reader in pickle.ts with the globals a state dict needs and
 * nothing else (see TORCH_GLOBALS), so a hostile file can at worst be refused. Tensors are views
 * of storages (offset, shape, strides; several tensors may share one storage) and are read one at
 * a time from the archive, as float32, made contiguous.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import type { DType } from './safetensors-format.js';
import { decodeFloats, DTYPE_BYTES, FLOAT_DTYPES, numel, shapeText } from './safetensors-format.js';
import { definePickleGlobal, describe, isTuple, MAX_PICKLE_BYTES, type PickleGlobal, unpickle } from './pickle.js';
import { ZipArchive } from './zip.js';

/** The storage classes torch pickles (by their `torch.<Name>Storage` spelling, which PyTorch 2 still writes). */
const STORAGE_DTYPES: Readonly<Record<string, DType>> = {
  FloatStorage: 'F32', HalfStorage: 'F16', BFloat16Storage: 'BF16', DoubleStorage: 'F64',
  LongStorage: 'I64', IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8', BoolStorage: 'BOOL',
};

/** Larger tensors than this (2^32 values, 16 GiB as float32) are taken for forged sizes. */
const MAX_TENSOR_VALUES = 2 ** 32;

/** One storage of the archive: `numel` values of `dtype` in entry `entry`. */
class StorageRef {
  constructor(readonly key: string, readonly dtype: DType, readonly numel: number, readonly entry: string) {}
}

/** A tensor as the pickle describes it: a strided view of a storage. */
class TensorRef {
  constructor(readonly storage: StorageRef, readonly offset: number, readonly shape: number[], readonly stride: number[]) {}
}

/** One tensor of a checkpoint, as the reader lists it (the same shape as a safetensors header entry, minus offsets). */
export interface CheckpointTensor { name: string; dtype: DType; shape: number[] }

const nonNegativeInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function intTuple(v: unknown, what: string): number[] {
  if (!isTuple(v) || !v.every(nonNegativeInt)) throw new Error(`${what} must be a tuple of non-negative integers, got ${describe(v)}`);
  return [...v];
}

/** torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]). */
function rebuildTensor(args: readonly unknown[]): TensorRef {
  if (args.length < 4 || args.length > 7) throw new Error(`expected 4 to 7 arguments, got ${args.length}`);
  const [storage, offset, sizeArg, strideArg] = args;
  if (!(storage instanceof StorageRef)) throw new Error(`the storage is ${describe(storage)}`);
  if (!nonNegativeInt(offset)) throw new Error(`storage offset ${describe(offset)}`);
  const shape = intTuple(sizeArg, 'size'), stride = intTuple(strideArg, 'stride');
  if (stride.length !== shape.length) throw new Error(`size ${shapeText(shape)} and stride ${shapeText(stride)} differ in rank`);
  const count = shape.reduce((a, b) => a * b, 1);
  if (count > MAX_TENSOR_VALUES) throw new Error(`tensor of size ${shapeText(shape)} is implausibly large`);
  if (count > 0) {
    const last = offset + shape.reduce((sum, s, i) => sum + (s - 1) * stride[i], 0);
    if (last >= storage.numel) {
      throw new Error(`a tensor of size ${shapeText(shape)}, stride ${shapeText(stride)}, offset ${offset} reaches ` +
                      `element ${last} of storage "${storage.key}", which holds ${storage.numel}`);
    }
  }
  return new TensorRef(storage, offset, shape, stride);
}

/** torch._utils._rebuild_parameter(data, requires_grad, backward_hooks[, state]): a Parameter is its tensor. */
function rebuildParameter(args: readonly unknown[]): TensorRef {
  if (args.length < 3 || args.length > 4 || !(args[0] instanceof TensorRef)) {
    throw new Error(`expected (tensor, requires_grad, hooks[, state]), got ${args.length} arguments`);
  }
  return args[0];
}

function orderedDict(args: readonly unknown[]): Map<unknown, unknown> {
  if (args.length !== 0) throw new Error('only an empty OrderedDict() is built (items follow as SETITEMS)');
  return new Map();
}

const storageGlobals = new Map<PickleGlobal, DType>(
  Object.entries(STORAGE_DTYPES).map(([name, dtype]) => [definePickleGlobal('torch', name), dtype]));

/** Every global a state dict pickle may name; the pickle reader refuses all others. */
export const TORCH_GLOBALS: ReadonlyMap<string, PickleGlobal> = new Map([
  definePickleGlobal('collections', 'OrderedDict', orderedDict),
  definePickleGlobal('torch._utils', '_rebuild_tensor_v2', rebuildTensor),
  definePickleGlobal('torch._utils', '_rebuild_parameter', rebuildParameter),
  definePickleGlobal('torch._utils', '_rebuild_parameter_with_state', rebuildParameter),
  ...storageGlobals.keys(),
].map((g) => [`${g.module}.${g.name}`, g]));

/** An open PyTorch checkpoint: the tensor list from the pickle; tensor data read on demand. */
export class TorchCheckpoint {
  readonly entries: readonly CheckpointTensor[];
  private readonly tensors: Map<string, TensorRef>;

  private constructor(readonly path: string, private readonly zip: ZipArchive) {
    const top = findTopFolder(zip, path);
    const byteorderEntry = zip.entries.get(`${top}/byteorder`);
    const byteorder = !byteorderEntry ? 'little'
      : byteorderEntry.size <= 8 ? Buffer.from(zip.readAll(byteorderEntry.name)).toString('latin1') : 'unknown';
    if (byteorder !== 'little') throw new Error(`${path}: saved on a ${byteorder}-endian machine; only little-endian checkpoints are read`);

    const persistentLoad = storageLoader(zip, top);
    const pickleSize = zip.entries.get(`${top}/data.pkl`)!.size;
    if (pickleSize > MAX_PICKLE_BYTES) throw new Error(`${path}: ${top}/data.pkl of ${pickleSize} bytes is implausibly large for a state dict`);
    const stateDict = unpickle(zip.readAll(`${top}/data.pkl`), { globals: TORCH_GLOBALS, persistentLoad, file: `${path}: ${top}/data.pkl` });

    if (!(stateDict instanceof Map)) throw new Error(`${path}: expected a state dict (name → tensor), the pickle holds ${describe(stateDict)}`);
    this.tensors = new Map();
    for (const [name, value] of stateDict) {
      if (typeof name !== 'string') throw new Error(`${path}: state dict key ${describe(name)} is not a string`);
      if (!(value instanceof TensorRef)) throw new Error(`${path}: state dict entry "${name}" holds ${describe(value)}, not a tensor`);
      this.tensors.set(name, value);
    }
    this.entries = [...this.tensors].map(([name, t]) => ({ name, dtype: t.storage.dtype, shape: t.shape }));
  }

  /** Opens and validates a checkpoint (the archive's directory and the pickle; no tensor data is read). */
  static open(path: string): TorchCheckpoint {
    let zip: ZipArchive;
    try {
      zip = ZipArchive.open(path);
    } catch (err) {
      if (isLegacyCheckpoint(path)) {
        throw new Error(`${path}: saved by PyTorch older than 1.6 (the legacy, non-zip format), which is not read; ` +
                        're-save it with torch.save in PyTorch 1.6 or newer');
      }
      throw err;
    }
    try {
      return new TorchCheckpoint(path, zip);
    } catch (err) {
      zip.close();
      throw err;
    }
  }

  has(name: string): boolean { return this.tensors.has(name); }
  entry(name: string): CheckpointTensor | undefined { return this.entries.find((e) => e.name === name); }

  /** Reads one floating tensor as contiguous float32; checks the shape when `expectedShape` is given. */
  read(name: string, expectedShape?: readonly number[]): Float32Array {
    const t = this.require(name, expectedShape);
    const out = new Float32Array(numel(t.shape));
    this.readTensorInto(t, out);
    return out;
  }

  /** Reads one floating tensor into `out` (whose length must match), e.g. a view of a parameter buffer. */
  readInto(name: string, out: Float32Array, expectedShape?: readonly number[]): void {
    const t = this.require(name, expectedShape);
    if (numel(t.shape) !== out.length) {
      throw new Error(`${this.path}: tensor "${name}" has ${numel(t.shape)} values ${shapeText(t.shape)}, the destination holds ${out.length}`);
    }
    this.readTensorInto(t, out);
  }

  close(): void { this.zip.close(); }

  private require(name: string, expectedShape?: readonly number[]): TensorRef {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`${this.path}: missing tensor "${name}"`);
    if (expectedShape && (expectedShape.length !== t.shape.length || expectedShape.some((s, i) => s !== t.shape[i]))) {
      throw new Error(`${this.path}: tensor "${name}" has shape ${shapeText(t.shape)}, expected ${shapeText(expectedShape)}`);
    }
    if (!FLOAT_DTYPES.includes(t.storage.dtype)) {
      throw new Error(`${this.path}: tensor "${name}" has dtype ${t.storage.dtype}; expected one of ${FLOAT_DTYPES.join(', ')}`);
    }
    return t;
  }

  private readTensorInto(t: TensorRef, out: Float32Array): void {
    if (out.length === 0) return;
    const { dtype } = t.storage;
    const bytesPer = DTYPE_BYTES[dtype];
    if (isContiguous(t.shape, t.stride)) {
      const at = t.offset * bytesPer;
      if (dtype === 'F32') {
        this.zip.read(t.storage.entry, new Uint8Array(out.buffer, out.byteOffset, out.byteLength), at);
      } else {
        const bytes = new Uint8Array(out.length * bytesPer);
        this.zip.read(t.storage.entry, bytes, at);
        decodeFloats(out, bytes, dtype);
      }
      return;
    }
    // A strided view (a transpose, a slice): read the span of storage it touches, then gather.
    const last = t.offset + t.shape.reduce((sum, s, i) => sum + (s - 1) * t.stride[i], 0);
    const span = new Float32Array(last - t.offset + 1);
    const bytes = new Uint8Array(span.length * bytesPer);
    this.zip.read(t.storage.entry, bytes, t.offset * bytesPer);
    decodeFloats(span, bytes, dtype);
    gatherStrided(out, span, t.shape, t.stride);
  }
}

/**
 * Resolves the pickle's persistent ids, `('storage', torch.<Type>Storage, key, location, size)`,
 * to the archive's `<top>/data/<key>` entries, checking each holds the bytes it declares. Tensors
 * sharing a storage get the same StorageRef.
 */
function storageLoader(zip: ZipArchive, top: string): (pid: unknown) => StorageRef {
  const storages = new Map<string, StorageRef>();
  return (pid: unknown): StorageRef => {
    if (!isTuple(pid) || pid.length !== 5 || pid[0] !== 'storage') throw new Error(`persistent id ${describe(pid)} is not a storage reference`);
    const [, type, key, location, count] = pid;
    const dtype = storageGlobals.get(type as PickleGlobal);
    if (dtype === undefined) throw new Error(`storage type ${describe(type)} is not a storage class`);
    if (typeof key !== 'string' || !/^\w{1,64}$/.test(key)) throw new Error(`storage key ${describe(key)}`);
    if (typeof location !== 'string') throw new Error(`storage location ${describe(location)}`);
    if (!nonNegativeInt(count)) throw new Error(`storage size ${describe(count)}`);
    const known = storages.get(key);
    if (known) {
      if (known.dtype !== dtype || known.numel !== count) throw new Error(`storage "${key}" is declared twice, differently`);
      return known;
    }
    const entry = `${top}/data/${key}`;
    const stored = zip.entries.get(entry);
    if (!stored) throw new Error(`storage "${key}" has no entry ${entry} in the archive`);
    if (stored.size < count * DTYPE_BYTES[dtype]) {
      throw new Error(`storage "${key}" declares ${count} values of ${dtype} (${count * DTYPE_BYTES[dtype]} bytes), ` +
                      `but ${entry} holds ${stored.size} bytes`);
    }
    const s = new StorageRef(key, dtype, count, entry);
    storages.set(key, s);
    return s;
  };
}

/** Row-major strides of `shape` match `stride` (dimensions of size 1 may carry any stride). */
function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expected) return false;
    expected *= shape[i];
  }
  return true;
}

/** out[i0, i1, …] (row-major) = src[Σ i_k · stride_k]. */
function gatherStrided(out: Float32Array, src: Float32Array, shape: readonly number[], stride: readonly number[]): void {
  const rank = shape.length;
  const index = new Array<number>(rank).fill(0);
  let at = 0;
  for (let n = 0; n < out.length; n++) {
    out[n] = src[at];
    for (let k = rank - 1; k >= 0; k--) {
      if (++index[k] < shape[k]) { at += stride[k]; break; }
      at -= (shape[k] - 1) * stride[k];
      index[k] = 0;
    }
  }
}

/** The archive's top folder: the one holding data.pkl (torch names it after the file it saved to). */
function findTopFolder(zip: ZipArchive, path: string): string {
  const tops = [...zip.entries.keys()].map((n) => /^([^/]+)\/data\.pkl$/.exec(n)?.[1]).filter((t): t is string => t !== undefined);
  if (tops.length === 0) throw new Error(`${path}: a zip archive without <folder>/data.pkl (not a torch.save checkpoint)`);
  if (tops.length > 1) throw new Error(`${path}: several data.pkl files (${tops.join(', ')}); expected one checkpoint`);
  return tops[0];
}

/** torch.save before 1.6 wrote pickles back to back, the first being a magic number: PROTO 2, LONG1 of 10 bytes. */
function isLegacyCheckpoint(path: string): boolean {
  const head = Buffer.alloc(4);
  try {
    const fd = openSync(path, 'r');
    try { readSync(fd, head, 0, 4, 0); } finally { closeSync(fd); }
  } catch {
    return false;
  }
  return head[0] === 0x80 && head[1] === 0x02 && head[2] === 0x8a && head[3] === 0x0a;
}
