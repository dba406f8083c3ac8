/**
 * Checksums of a folder's files (checksums.json), so that a bit flipped on disk or a file edited
 * after it was written is caught when the folder is loaded, not trained on. Checkpoints record one
 * when they are written; folders from elsewhere have none and load as they are.
 *
 *   checksums.json  {"algorithm": "sha256", "files": {"model.safetensors": {"bytes": 123, "sha256": "…"}, …}}
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/fs.js';

export const CHECKSUMS_FILE = 'checksums.json';

/** Bytes read per call while hashing: large enough to be fast, far below fs's 2 GiB cap. */
const HASH_CHUNK_BYTES = 1 << 24;

export interface FileChecksum { bytes: number; sha256: string }
export interface ChecksumManifest { algorithm: 'sha256'; files: Record<string, FileChecksum> }

/** SHA-256 of a file, read in chunks (any size). */
export function hashFile(path: string): FileChecksum {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(HASH_CHUNK_BYTES);
  const fd = openSync(path, 'r');
  let bytes = 0;
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, bytes);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
      bytes += n;
    }
  } finally {
    closeSync(fd);
  }
  return { bytes, sha256: hash.digest('hex') };
}

/** Hashes every regular file of `dir` (hidden temp files excluded) and writes checksums.json. */
export function writeChecksums(dir: string): ChecksumManifest {
  const files: Record<string, FileChecksum> = {};
  for (const name of readdirSync(dir).sort()) {
    if (name === CHECKSUMS_FILE || name.startsWith('.') || !statSync(join(dir, name)).isFile()) continue;
    files[name] = hashFile(join(dir, name));
  }
  const manifest: ChecksumManifest = { algorithm: 'sha256', files };
  writeFileAtomic(join(dir, CHECKSUMS_FILE), JSON.stringify(manifest, null, 1) + '\n');
  return manifest;
}

/** A file whose content is not what its folder's checksums.json recorded. */
export class ChecksumMismatchError extends Error {
  constructor(readonly file: string, detail: string) {
    super(`${file}: checksum mismatch: ${detail} (the file changed after it was written: a damaged disk or an edit)`);
    this.name = 'ChecksumMismatchError';
  }
}

function readManifest(dir: string): ChecksumManifest | null {
  const file = join(dir, CHECKSUMS_FILE);
  if (!existsSync(file)) return null;
  let m: Partial<ChecksumManifest>;
  try {
    m = JSON.parse(readFileSync(file, 'utf8')) as Partial<ChecksumManifest>;
  } catch (err) {
    throw new ChecksumMismatchError(file, `not valid JSON (${(err as Error).message})`);
  }
  if (m.algorithm !== 'sha256' || typeof m.files !== 'object' || m.files === null) {
    throw new ChecksumMismatchError(file, 'expected {"algorithm": "sha256", "files": {…}}');
  }
  return m as ChecksumManifest;
}

/**
 * Checks every file listed in `dir`/checksums.json; throws ChecksumMismatchError naming the first
 * file that differs or is missing. Returns the files checked, or null when the folder records no
 * checksums (a folder from elsewhere). `only` limits the check to one file of the folder.
 */
export function verifyChecksums(dir: string, only?: string): { name: string; bytes: number }[] | null {
  const manifest = readManifest(dir);
  if (!manifest) return null;
  const checked: { name: string; bytes: number }[] = [];
  for (const [name, want] of Object.entries(manifest.files)) {
    if (only !== undefined && name !== only) continue;
    const path = join(dir, name);
    if (!existsSync(path)) throw new ChecksumMismatchError(path, `listed in ${CHECKSUMS_FILE} but missing`);
    const size = statSync(path).size;
    if (size !== want.bytes) throw new ChecksumMismatchError(path, `${size} bytes, ${want.bytes} recorded`);
    const got = hashFile(path);
    if (got.sha256 !== want.sha256) {
      throw new ChecksumMismatchError(path, `sha256 ${got.sha256.slice(0, 12)}…, ${want.sha256.slice(0, 12)}… recorded`);
    }
    checked.push({ name, bytes: size });
  }
  return checked;
}
