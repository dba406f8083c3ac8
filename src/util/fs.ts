/** File helpers: atomic writes (temp name, fsync, rename), whole reads and writes in chunks. */
import { closeSync, fstatSync, fsyncSync, mkdirSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { world } from '../parallel/world.js';

/** Largest single read or write; fs calls take 32-bit lengths. */
const IO_CHUNK_BYTES = 1 << 28;

/** Errors that mean "no room": the disk, a quota, or the process's file-size limit (ulimit -f). */
const NO_ROOM: Record<string, string> = {
  ENOSPC: 'no space left on the device',
  EDQUOT: 'the disk quota is exceeded',
  EFBIG: 'the file is larger than this process or filesystem allows',
};

/**
 * Writes a file atomically: to a temp file beside `path`, fsynced, then renamed into place, so a
 * crash leaves the old file or the new one, never half of one. `data` is the content, or a
 * function that streams it into the open file descriptor (then `expectedBytes`, when given, is
 * named in the error if the disk fills up). The folder is created if needed.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array | ((fd: number) => void), expectedBytes?: number): void {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}`);
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const needed = typeof bytes === 'function' ? expectedBytes : bytes.length;
  let fd: number | null = null;
  try {
    mkdirSync(dirname(path), { recursive: true });
    fd = openSync(tmp, 'w');
    if (typeof bytes === 'function') bytes(fd);
    else writeAll(fd, bytes);
    fsyncSync(fd);
    closeSync(fd);
    fd = null;
    renameSync(tmp, path);
  } catch (err) {
    let written = 0;
    if (fd !== null) {
      try { written = fstatSync(fd).size; } catch { /* unknown */ }
      closeSync(fd);
    }
    try { unlinkSync(tmp); } catch { /* already gone */ }
    const code = (err as NodeJS.ErrnoException).code;
    if (code && NO_ROOM[code]) {
      throw new Error(`${path}: cannot write: ${NO_ROOM[code]} (${code}) after ${byteCount(written)}` +
                      (needed !== undefined ? ` of the ${byteCount(needed)} it needs` : ''));
    }
    if (code) throw new Error(`${path}: cannot write (${code}: ${(err as Error).message})`);
    throw err;
  }
}

/** "1,234,567 bytes (1.2 MiB)": exact, and readable. */
export function byteCount(n: number): string {
  const unit = n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
  return `${n.toLocaleString('en-US')} bytes (${unit})`;
}

/** Writes all of `bytes` at the current position of `fd`, in chunks. */
export function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) {
    done += writeSync(fd, bytes, done, Math.min(bytes.length - done, IO_CHUNK_BYTES));
  }
}

/** Reads `out.length` bytes of `fd` from `position`, in chunks (fs.readSync may return fewer bytes than asked). */
export function readFully(fd: number, out: Uint8Array, position: number, file: string): void {
  let done = 0;
  while (done < out.length) {
    const len = Math.min(out.length - done, IO_CHUNK_BYTES);
    const n = readSync(fd, out, done, len, position + done);
    if (n === 0) throw new Error(`${file}: unexpected end of file at byte ${position + done}`);
    done += n;
  }
}

/** Writes a small JSON or text artifact of a run (`runDir/name`) atomically; returns its path. */
export function writeRunFile(runDir: string, name: string, text: string): string {
  const path = join(runDir, name);
  if (world().rank !== 0) return path; // under MPI, rank 0 alone writes
  writeFileAtomic(path, text);
  return path;
}
