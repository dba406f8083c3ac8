/**
 * Reading the stored (uncompressed) entries of a zip archive through a file descriptor, for
 * PyTorch checkpoints: torch.save writes every entry stored, so an entry is a byte range of the
 * file and a tensor is read straight from it. Only the central directory is held in memory;
 * zip64 archives (over 4 GiB, or over 65,535 entries) are understood.
 *
 * Synchronous on purpose: the model loaders it serves are synchronous, and the zip libraries on
 * npm (yauzl and kin) are callback- or promise-based.
 */
import { closeSync, fstatSync, openSync } from 'node:fs';
import { readFully } from '../util/fs.js';

const EOCD_SIGNATURE = 0x06054b50;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const ZIP64_EOCD_SIGNATURE = 0x06064b50;
const CENTRAL_SIGNATURE = 0x02014b50;
const LOCAL_SIGNATURE = 0x04034b50;
const EOCD_BYTES = 22, ZIP64_LOCATOR_BYTES = 20, ZIP64_EOCD_BYTES = 56, CENTRAL_BYTES = 46, LOCAL_BYTES = 30;
const MAX_COMMENT_BYTES = 0xffff;
const ZIP64_EXTRA_ID = 0x0001;
/** A state dict's directory is ~100 bytes an entry; this admits millions of tensors and no more. */
const MAX_CENTRAL_DIRECTORY_BYTES = 256 * 2 ** 20;

export interface ZipEntry {
  name: string;
  /** Bytes of the entry (stored: compressed and uncompressed sizes agree). */
  size: number;
  /** Absolute file offset of the local header; the data follows it (see dataStart). */
  localHeaderOffset: number;
}

/** An open zip archive of stored entries; entries are read on demand. */
export class ZipArchive {
  readonly entries: ReadonlyMap<string, ZipEntry>;
  readonly size: number;
  private fd: number | null;
  private readonly dataStarts = new Map<string, number>();

  private constructor(readonly path: string, fd: number) {
    this.fd = fd;
    try {
      this.size = fstatSync(fd).size;
      this.entries = readCentralDirectory(fd, this.size, path);
    } catch (err) {
      closeSync(fd);
      this.fd = null;
      throw err;
    }
  }

  static open(path: string): ZipArchive {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      throw new Error(`${path}: cannot open (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    return new ZipArchive(path, fd);
  }

  /** Reads `out.length` bytes of entry `name` starting `offset` bytes into it. */
  read(name: string, out: Uint8Array, offset = 0): void {
    const e = this.entries.get(name);
    if (!e) throw new Error(`${this.path}: no entry "${name}" in the archive`);
    if (offset < 0 || offset + out.length > e.size) {
      throw new Error(`${this.path}: entry "${name}" holds ${e.size} bytes; bytes ${offset}..${offset + out.length} asked for`);
    }
    readFully(this.descriptor(), out, this.dataStart(e) + offset, this.path);
  }

  /** The whole of a (small) entry. */
  readAll(name: string): Uint8Array {
    const e = this.entries.get(name);
    if (!e) throw new Error(`${this.path}: no entry "${name}" in the archive`);
    const out = new Uint8Array(e.size);
    this.read(name, out);
    return out;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  private descriptor(): number {
    if (this.fd === null) throw new Error(`${this.path}: archive already closed`);
    return this.fd;
  }

  /** Where an entry's bytes begin: after its local header, whose name and extra lengths may differ from the directory's. */
  private dataStart(e: ZipEntry): number {
    let start = this.dataStarts.get(e.name);
    if (start !== undefined) return start;
    const header = Buffer.alloc(LOCAL_BYTES);
    if (e.localHeaderOffset + LOCAL_BYTES > this.size) throw this.truncated(e.name);
    readFully(this.descriptor(), header, e.localHeaderOffset, this.path);
    if (header.readUInt32LE(0) !== LOCAL_SIGNATURE) {
      throw new Error(`${this.path}: entry "${e.name}" has no local header at byte ${e.localHeaderOffset} (corrupt archive)`);
    }
    start = e.localHeaderOffset + LOCAL_BYTES + header.readUInt16LE(26) + header.readUInt16LE(28);
    if (start + e.size > this.size) throw this.truncated(e.name);
    this.dataStarts.set(e.name, start);
    return start;
  }

  private truncated(name: string): Error {
    return new Error(`${this.path}: entry "${name}" runs past the end of the file (truncated archive)`);
  }
}

/** Finds the end-of-central-directory record (zip64 when present) and reads every directory entry. */
function readCentralDirectory(fd: number, fileSize: number, file: string): Map<string, ZipEntry> {
  const tailLength = Math.min(fileSize, EOCD_BYTES + MAX_COMMENT_BYTES + ZIP64_LOCATOR_BYTES);
  const tail = Buffer.alloc(tailLength);
  readFully(fd, tail, fileSize - tailLength, file);
  let eocd = -1;
  for (let i = tailLength - EOCD_BYTES; i >= 0; i--) {
    if (tail.readUInt32LE(i) === EOCD_SIGNATURE && i + EOCD_BYTES + tail.readUInt16LE(i + 20) === tailLength) { eocd = i; break; }
  }
  if (eocd < 0) throw new Error(`${file}: not a zip archive, or a truncated one (no end-of-central-directory record)`);
  let count = tail.readUInt16LE(eocd + 10);
  let dirSize = tail.readUInt32LE(eocd + 12);
  let dirOffset = tail.readUInt32LE(eocd + 16);
  if (tail.readUInt16LE(eocd + 4) !== 0 || tail.readUInt16LE(eocd + 6) !== 0) throw new Error(`${file}: multi-disk zip archives are not supported`);

  const locator = eocd - ZIP64_LOCATOR_BYTES;
  if (locator >= 0 && tail.readUInt32LE(locator) === ZIP64_LOCATOR_SIGNATURE) {
    const at = safeU64(tail, locator + 8, file);
    if (at + ZIP64_EOCD_BYTES > fileSize) throw new Error(`${file}: zip64 end-of-central-directory record past the end of the file (truncated archive)`);
    const z = Buffer.alloc(ZIP64_EOCD_BYTES);
    readFully(fd, z, at, file);
    if (z.readUInt32LE(0) !== ZIP64_EOCD_SIGNATURE) throw new Error(`${file}: corrupt zip64 end-of-central-directory record`);
    count = safeU64(z, 32, file);
    dirSize = safeU64(z, 40, file);
    dirOffset = safeU64(z, 48, file);
  }
  if (dirSize > MAX_CENTRAL_DIRECTORY_BYTES) throw new Error(`${file}: central directory of ${dirSize} bytes is implausibly large`);
  if (dirOffset + dirSize > fileSize) throw new Error(`${file}: central directory runs past the end of the file (truncated archive)`);
  if (count * CENTRAL_BYTES > dirSize) throw new Error(`${file}: ${count} entries cannot fit a central directory of ${dirSize} bytes`);

  const dir = Buffer.alloc(dirSize);
  readFully(fd, dir, dirOffset, file);
  const entries = new Map<string, ZipEntry>();
  let p = 0;
  for (let n = 0; n < count; n++) {
    if (p + CENTRAL_BYTES > dirSize || dir.readUInt32LE(p) !== CENTRAL_SIGNATURE) {
      throw new Error(`${file}: corrupt central directory (entry ${n} of ${count})`);
    }
    const flags = dir.readUInt16LE(p + 8), method = dir.readUInt16LE(p + 10);
    let compressed: number = dir.readUInt32LE(p + 20), size: number = dir.readUInt32LE(p + 24);
    const nameLength = dir.readUInt16LE(p + 28), extraLength = dir.readUInt16LE(p + 30), commentLength = dir.readUInt16LE(p + 32);
    let localHeaderOffset: number = dir.readUInt32LE(p + 42);
    const end = p + CENTRAL_BYTES + nameLength + extraLength + commentLength;
    if (end > dirSize) throw new Error(`${file}: corrupt central directory (entry ${n} runs past it)`);
    const name = dir.toString('utf8', p + CENTRAL_BYTES, p + CENTRAL_BYTES + nameLength);
    // zip64: the 32-bit fields that overflowed read 0xFFFFFFFF; their values follow, in order, in extra field 1.
    const extra = dir.subarray(p + CENTRAL_BYTES + nameLength, p + CENTRAL_BYTES + nameLength + extraLength);
    for (let q = 0; q + 4 <= extra.length;) {
      const id = extra.readUInt16LE(q), length = extra.readUInt16LE(q + 2);
      if (id === ZIP64_EXTRA_ID) {
        let r = q + 4;
        const next = (): number => {
          if (r + 8 > q + 4 + length || r + 8 > extra.length) throw new Error(`${file}: entry "${name}": short zip64 extra field`);
          const v = safeU64(extra, r, file);
          r += 8;
          return v;
        };
        if (size === 0xffffffff) size = next();
        if (compressed === 0xffffffff) compressed = next();
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = next();
      }
      q += 4 + length;
    }
    if (flags & 1) throw new Error(`${file}: entry "${name}" is encrypted`);
    if (method !== 0) {
      throw new Error(`${file}: entry "${name}" is compressed (method ${method}); only stored entries, as torch.save writes them, are read`);
    }
    if (compressed !== size) throw new Error(`${file}: entry "${name}" is stored, but its sizes disagree (${compressed} and ${size}): corrupt archive`);
    if (localHeaderOffset + LOCAL_BYTES + size > fileSize) {
      throw new Error(`${file}: entry "${name}" runs past the end of the file (truncated archive)`);
    }
    if (entries.has(name)) throw new Error(`${file}: entry "${name}" appears twice`);
    entries.set(name, { name, size, localHeaderOffset });
    p = end;
  }
  return entries;
}

/** A little-endian u64 that must fit a JavaScript number exactly. */
function safeU64(b: Buffer, at: number, file: string): number {
  const v = b.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`${file}: zip field of ${v} is out of range`);
  return Number(v);
}
