/**
 * PyTorch checkpoints built by hand for tests (no Python): a zip of stored entries laid out as
 * torch.save writes it, and its data.pkl assembled opcode by opcode, so tests can also write the
 * hostile pickles a real torch.save never would.
 */
import { crc32 } from 'node:zlib';

/**
 * A zip archive of stored (uncompressed) entries. `zip64` writes it as archives over 4 GiB must be
 * written: sizes and offsets in the directory as 0xFFFFFFFF with their values in a zip64 extra
 * field, and a zip64 end-of-central-directory record with its locator.
 */
export function storedZip(entries: readonly (readonly [string, Uint8Array])[], zip64 = false): Uint8Array {
  const locals: Buffer[] = [], centrals: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of entries) {
    const nameBytes = Buffer.from(name, 'utf8');
    const crc = crc32(data) >>> 0;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0); local.writeUInt16LE(20, 4); local.writeUInt16LE(0x21, 12);
    local.writeUInt32LE(crc, 14); local.writeUInt32LE(data.length, 18); local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    const extra = Buffer.alloc(zip64 ? 28 : 0);
    if (zip64) {
      extra.writeUInt16LE(1, 0); extra.writeUInt16LE(24, 2);
      extra.writeBigUInt64LE(BigInt(data.length), 4); extra.writeBigUInt64LE(BigInt(data.length), 12); extra.writeBigUInt64LE(BigInt(offset), 20);
    }
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0); central.writeUInt16LE(45, 4); central.writeUInt16LE(45, 6); central.writeUInt16LE(0x21, 14);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(zip64 ? 0xffffffff : data.length, 20); central.writeUInt32LE(zip64 ? 0xffffffff : data.length, 24);
    central.writeUInt16LE(nameBytes.length, 28); central.writeUInt16LE(extra.length, 30);
    central.writeUInt32LE(zip64 ? 0xffffffff : offset, 42);
    locals.push(local, nameBytes, Buffer.from(data));
    centrals.push(central, nameBytes, extra);
    offset += 30 + nameBytes.length + data.length;
  }
  const directory = Buffer.concat(centrals);
  const tail: Buffer[] = [];
  if (zip64) {
    const record = Buffer.alloc(56);
    record.writeUInt32LE(0x06064b50, 0); record.writeBigUInt64LE(44n, 4); record.writeUInt16LE(45, 12); record.writeUInt16LE(45, 14);
    record.writeBigUInt64LE(BigInt(entries.length), 24); record.writeBigUInt64LE(BigInt(entries.length), 32);
    record.writeBigUInt64LE(BigInt(directory.length), 40); record.writeBigUInt64LE(BigInt(offset), 48);
    const locator = Buffer.alloc(20);
    locator.writeUInt32LE(0x07064b50, 0); locator.writeBigUInt64LE(BigInt(offset + directory.length), 8); locator.writeUInt32LE(1, 16);
    tail.push(record, locator);
  }
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(zip64 ? 0xffff : entries.length, 8); end.writeUInt16LE(zip64 ? 0xffff : entries.length, 10);
  end.writeUInt32LE(zip64 ? 0xffffffff : directory.length, 12); end.writeUInt32LE(zip64 ? 0xffffffff : offset, 16);
  return new Uint8Array(Buffer.concat([...locals, directory, ...tail, end]));
}

/** A pickle assembled from opcodes (protocol 2, as torch.save writes). */
export class PickleWriter {
  private readonly parts: number[] = [];
  op(...bytes: number[]): this { this.parts.push(...bytes); return this; }
  proto(): this { return this.op(0x80, 2); }
  mark(): this { return this.op(0x28); }
  global(module: string, name: string): this { return this.op(0x63, ...Buffer.from(`${module}\n${name}\n`, 'utf8')); }
  str(s: string): this {
    const b = Buffer.from(s, 'utf8'), n = Buffer.alloc(4);
    n.writeUInt32LE(b.length);
    return this.op(0x58, ...n, ...b);
  }
  int(v: number): this {
    if (v >= 0 && v < 256) return this.op(0x4b, v);
    if (v >= -(2 ** 31) && v < 2 ** 31) {
      const b = Buffer.alloc(4);
      b.writeInt32LE(v);
      return this.op(0x4a, ...b);
    }
    const b = Buffer.alloc(8); // LONG1: little-endian two's complement, as pickle writes big ints
    b.writeBigInt64LE(BigInt(v));
    return this.op(0x8a, 8, ...b);
  }
  ints(values: readonly number[]): this { this.mark(); for (const v of values) this.int(v); return this.tuple(); }
  tuple(): this { return this.op(0x74); }
  emptyTuple(): this { return this.op(0x29); }
  emptyDict(): this { return this.op(0x7d); }
  reduce(): this { return this.op(0x52); }
  setItems(): this { return this.op(0x75); }
  persistentId(): this { return this.op(0x51); }
  newFalse(): this { return this.op(0x89); }
  stop(): this { return this.op(0x2e); }
  bytes(): Uint8Array { return Uint8Array.from(this.parts); }
}

/** One tensor of a hand-built checkpoint: a view of storage `key`. */
export interface ArchiveTensor {
  name: string;
  storageType: string;
  key: string;
  /** The storage's declared size, in values. */
  storageSize: number;
  offset: number;
  shape: number[];
  stride: number[];
}

/** data.pkl of an OrderedDict state dict, opcode for opcode as torch.save (PyTorch 1.13) writes it. */
export function stateDictPickle(tensors: readonly ArchiveTensor[]): Uint8Array {
  const p = new PickleWriter().proto().global('collections', 'OrderedDict').emptyTuple().reduce().mark();
  for (const t of tensors) {
    p.str(t.name).global('torch._utils', '_rebuild_tensor_v2').mark()
      .mark().str('storage').global('torch', t.storageType).str(t.key).str('cpu').int(t.storageSize).tuple().persistentId()
      .int(t.offset).ints(t.shape).ints(t.stride).newFalse()
      .global('collections', 'OrderedDict').emptyTuple().reduce()
      .tuple().reduce();
  }
  return p.setItems().stop().bytes();
}

/** A whole checkpoint: `<top>/data.pkl`, `<top>/data/<key>` for each storage, `<top>/version`. */
export function torchArchive(pickle: Uint8Array, storages: ReadonlyMap<string, Uint8Array>, top = 'archive', zip64 = false): Uint8Array {
  return storedZip([
    [`${top}/data.pkl`, pickle],
    ...[...storages].map(([key, data]) => [`${top}/data/${key}`, data] as const),
    [`${top}/version`, Buffer.from('3\n')],
  ], zip64);
}

const contiguousStride = (shape: readonly number[]): number[] =>
  shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));

/** A checkpoint of contiguous float32 tensors, one storage each. */
export function float32Checkpoint(tensors: readonly { name: string; shape: number[]; data: Float32Array }[]): Uint8Array {
  const storages = new Map<string, Uint8Array>();
  const described = tensors.map((t, i): ArchiveTensor => {
    storages.set(String(i), new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    return { name: t.name, storageType: 'FloatStorage', key: String(i), storageSize: t.data.length, offset: 0, shape: t.shape, stride: contiguousStride(t.shape) };
  });
  return torchArchive(stateDictPickle(described), storages);
}
