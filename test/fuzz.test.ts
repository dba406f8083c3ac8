/**
 * Hostile inputs: every reader gets valid files we generate, then ~30 seeded mutations of them
 * (empty, truncated, bit-flipped, junk-appended, forged size fields). Each read must end normally
 * (a flipped pixel byte still parses) or in an Error whose message names the file; never a hang,
 * a process crash, or an allocation the size of a forged header field.
 *
 * The readers run in a child process (this file with FUZZ_CHILD=1) so that a crash or a hang is
 * caught and the case it happened in is named: the child prints one JSON line as it starts each
 * case and one with the outcome. A hang is a child that prints nothing for HANG_MS, and a slow read
 * is one that burns CPU: neither is measured in wall time for the whole run, which a busy machine
 * stretches (that made this test fail at random).
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync, crc32 } from 'node:zlib';

// ---------------------------------------------------------------------------------------------
// What the child reports

interface CaseStart { start: string }
interface CaseResult {
  id: string;
  reader: string;
  /** The file that was mutated. */
  file: string;
  outcome: 'ok' | 'error' | 'non-error-throw';
  message: string;
  ms: number;
  /** CPU time of the read (user + system): what a slow parser costs, whatever else the machine runs. */
  cpuMs: number;
  /** ArrayBuffer bytes allocated during the case (before any GC). */
  allocated: number;
}

const READERS = ['idx', 'idx-gz', 'cifar10', 'cifar100', 'stl10', 'image-folder', 'palette-json', 'npy',
  'safetensors', 'pytorch-bin', 'token-dataset', 'model-folder'] as const;

/** A child that prints nothing for this long is hung (each case prints as it starts and ends). */
const HANG_MS = 30_000;

/** Runs the child to its end, killing it when it goes silent for HANG_MS. */
function runWithWatchdog(command: string, args: string[], env: NodeJS.ProcessEnv):
    Promise<{ stdout: string; stderr: string; status: number | null; signal: NodeJS.Signals | null; hung: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '', hung = false;
    let timer = setTimeout(() => undefined, 0);
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => { hung = true; child.kill('SIGKILL'); }, HANG_MS);
    };
    arm();
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; arm(); });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    child.on('error', reject);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, status, signal, hung });
    });
  });
}

if (process.env.FUZZ_CHILD === '1') {
  await runChild(process.env.FUZZ_DIR!);
} else {
  let results: CaseResult[] = [];
  let childProblem = '';

  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'igpt-fuzz-'));
    const self = fileURLToPath(import.meta.url);
    const r = await runWithWatchdog(process.execPath, ['--expose-gc', '--import', 'tsx', self],
                                    { ...process.env, FUZZ_CHILD: '1', FUZZ_DIR: dir, IGPT_QUIET: '1' });
    const lines = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as CaseStart | CaseResult);
    results = lines.filter((l): l is CaseResult => 'id' in l);
    const started = lines.filter((l): l is CaseStart => 'start' in l).map((l) => l.start);
    const unfinished = started.filter((s) => !results.some((x) => x.id === s));
    if (r.status !== 0 || r.signal !== null) {
      childProblem = `fuzz child ended with ${r.signal ?? `exit code ${r.status}`} ` +
        `${r.hung ? `(hang: silent for ${HANG_MS / 1000} s) ` : ''}during case ${unfinished[0] ?? '?'}\n${r.stderr.slice(-3000)}`;
      if (process.env.FUZZ_VERBOSE) console.log(childProblem);
    }
    if (process.env.FUZZ_VERBOSE) {
      for (const x of results) console.log(`${x.id}\t${x.outcome}\t${x.ms}ms\t${(x.allocated / 2 ** 20).toFixed(1)}MB\t${x.message.slice(0, 300)}`);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  for (const reader of READERS) {
    test(`${reader}: hostile inputs end in a named error or a clean parse, never a crash, hang or huge allocation`, () => {
      const mine = results.filter((r) => r.reader === reader);
      assert.ok(mine.length > 0 || childProblem === '', `did not run: ${childProblem}`);
      if (childProblem.includes(`during case ${reader}/`)) assert.fail(childProblem);
      const valid = mine.find((r) => r.id.endsWith('/valid'));
      assert.ok(valid, `no valid-file case for ${reader}`);
      assert.equal(valid.outcome, 'ok', `the unmutated files must read: ${valid.message}`);
      const mutations = mine.filter((r) => r !== valid);
      assert.ok(mutations.length >= 25, `${reader}: only ${mutations.length} mutations ran`);
      for (const r of mutations) {
        assert.notEqual(r.outcome, 'non-error-throw', `${r.id}: threw a non-Error: ${r.message}`);
        if (r.outcome === 'error') {
          assert.ok(r.message.includes(r.file), `${r.id}: the error does not name ${r.file}: ${r.message}`);
          assert.ok(!/\n\s+at /.test(r.message), `${r.id}: the message holds a stack trace: ${r.message}`);
        }
        assert.ok(r.cpuMs < 5000, `${r.id}: took ${r.cpuMs} ms of CPU`);
        assert.ok(r.allocated < 64 * 2 ** 20, `${r.id}: allocated ${(r.allocated / 2 ** 20).toFixed(0)} MB for a small file`);
      }
      // Forged size fields and truncations must be refused, not parsed.
      for (const r of mutations.filter((m) => /[/:](forged|truncated|empty)/.test(m.id))) {
        assert.equal(r.outcome, 'error', `${r.id}: a forged or truncated file was accepted`);
      }
    });
  }
}

// ---------------------------------------------------------------------------------------------
// The child: valid files, mutations, reads

interface Mutation {
  name: string;
  file: string;
  apply(original: Uint8Array): Uint8Array;
}

interface ReaderCase {
  reader: (typeof READERS)[number];
  /** Valid files (path → bytes), restored before every case. */
  files: Map<string, Uint8Array>;
  read(): unknown;
  mutations: Mutation[];
}

async function runChild(root: string): Promise<void> {
  const { Rng } = await import('../src/util/rng.js');
  const rng = new Rng(20201);
  process.stdout.write(JSON.stringify({ phase: 'building the cases' }) + '\n'); // alive, for the watchdog
  const cases = await buildCases(root, rng);
  const gc = (globalThis as { gc?: () => void }).gc ?? ((): void => {});
  for (const c of cases) {
    const run = async (id: string, file: string, mutate?: Mutation): Promise<void> => {
      for (const [path, bytes] of c.files) writeFileSync(path, bytes);
      if (mutate) writeFileSync(mutate.file, mutate.apply(c.files.get(mutate.file)!));
      process.stdout.write(JSON.stringify({ start: id }) + '\n');
      gc();
      const before = process.memoryUsage().arrayBuffers;
      const t0 = performance.now(), cpu0 = process.cpuUsage();
      let outcome: CaseResult['outcome'] = 'ok';
      let message = '';
      try {
        await c.read();
      } catch (err) {
        outcome = err instanceof Error ? 'error' : 'non-error-throw';
        message = err instanceof Error ? err.message : String(err);
      }
      const allocated = process.memoryUsage().arrayBuffers - before;
      const cpu = process.cpuUsage(cpu0);
      const result: CaseResult = {
        id, reader: c.reader, file, outcome, message, ms: Math.round(performance.now() - t0), cpuMs: Math.round((cpu.user + cpu.system) / 1000), allocated,
      };
      process.stdout.write(JSON.stringify(result) + '\n');
    };
    await run(`${c.reader}/valid`, '');
    for (const m of c.mutations) await run(`${c.reader}/${basename(m.file)}:${m.name}`, m.file, m);
  }
}

// ---------------------------------------------------------------------------------------------
// Generic mutations of any file

/** ~25 mutations: empty, truncations, bit flips (mostly in the header), junk, garbage. */
function genericMutations(file: string, size: number, headerBytes: number, rng: { int(n: number): number }): Mutation[] {
  const out: Mutation[] = [{ name: 'empty', file, apply: () => new Uint8Array(0) }];
  const cuts = new Set([1, 4, 7, 8, headerBytes - 1, headerBytes, headerBytes + 1, Math.floor(size / 2)]);
  for (const cut of [...cuts].filter((c) => c > 0 && c < size - 1).sort((a, b) => a - b)) {
    out.push({ name: `truncated-${cut}`, file, apply: (b) => b.slice(0, cut) });
  }
  // The last byte may be a trailer a decoder can do without (a PNG's IEND CRC, a JSON newline).
  out.push({ name: 'cut-last-byte', file, apply: (b) => b.slice(0, -1) });
  const flip = (where: number): Mutation => {
    const pos = where, bit = rng.int(8);
    return { name: `bitflip-${pos}.${bit}`, file, apply: (b) => { const c = b.slice(); c[pos] ^= 1 << bit; return c; } };
  };
  for (let i = 0; i < 8; i++) out.push(flip(rng.int(Math.min(size, headerBytes + 16))));
  for (let i = 0; i < 6; i++) out.push(flip(rng.int(size)));
  const p = rng.int(Math.min(size, headerBytes));
  out.push({ name: `byte-ff-${p}`, file, apply: (b) => { const c = b.slice(); c[p] = 0xff; return c; } });
  out.push({ name: 'junk-appended-1', file, apply: (b) => concat(b, new Uint8Array([0x2a])) });
  out.push({ name: 'junk-appended-1000', file, apply: (b) => concat(b, randomBytes(1000, rng)) });
  out.push({ name: 'doubled', file, apply: (b) => concat(b, b) });
  out.push({ name: 'garbage', file, apply: (b) => randomBytes(b.length, rng) });
  return out;
}

/** Structural mutations of a JSON file: a leaf set to a hostile value, a key deleted. */
function jsonMutations(file: string, text: string, rng: { int(n: number): number }, count: number): Mutation[] {
  const hostile: unknown[] = [2 ** 31, 1e300, -1, 0, 1.5, 'x', null, [], {}, true];
  const paths = leafPaths(JSON.parse(text) as unknown);
  const out: Mutation[] = [];
  for (let i = 0; i < count; i++) {
    const path = paths[rng.int(paths.length)];
    const value = hostile[rng.int(hostile.length)];
    const del = rng.int(4) === 0;
    out.push({
      name: `json-${del ? 'delete' : 'set'}-${path.join('.')}${del ? '' : `=${JSON.stringify(value)}`}`, file,
      apply: () => {
        const obj = JSON.parse(text) as unknown;
        setAt(obj, path, value, del);
        return Buffer.from(JSON.stringify(obj));
      },
    });
  }
  return out;
}

/** Paths of the leaves of a JSON value, visiting at most the first 3 items of each array. */
function leafPaths(v: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  if (Array.isArray(v)) return v.slice(0, 3).flatMap((x, i) => leafPaths(x, [...prefix, i])).concat(v.length === 0 ? [prefix] : []);
  if (typeof v === 'object' && v !== null) return Object.entries(v).flatMap(([k, x]) => leafPaths(x, [...prefix, k]));
  return [prefix];
}

function setAt(obj: unknown, path: (string | number)[], value: unknown, del: boolean): void {
  let o = obj as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) o = o[k] as Record<string | number, unknown>;
  const last = path[path.length - 1];
  if (del && !Array.isArray(o)) delete o[last];
  else o[last] = value;
}

/** n of the mutations, spread over the list (empty, truncations, flips, junk alike). */
function pick(list: Mutation[], n: number): Mutation[] {
  if (list.length <= n) return list;
  return Array.from({ length: n }, (_, i) => list[Math.floor((i * list.length) / n)]);
}

function forged(file: string, what: string, apply: (b: Uint8Array) => Uint8Array): Mutation {
  return { name: `forged-${what}`, file, apply };
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a); out.set(b, a.length);
  return out;
}

function randomBytes(n: number, rng: { int(n: number): number }): Uint8Array {
  return Uint8Array.from({ length: n }, () => rng.int(256));
}

function withU32BE(b: Uint8Array, at: number, v: number): Uint8Array {
  const c = b.slice();
  new DataView(c.buffer).setUint32(at, v, false);
  return c;
}

// ---------------------------------------------------------------------------------------------
// The readers and their valid files

async function buildCases(root: string, rng: InstanceType<typeof import('../src/util/rng.js').Rng>): Promise<ReaderCase[]> {
  const { readIdxImageSet } = await import('../src/data/idx.js');
  const { readCifar10Batch, readCifar100File } = await import('../src/data/cifar.js');
  const { readStl10 } = await import('../src/data/stl10.js');
  const { readImageFolder } = await import('../src/data/folder.js');
  const { loadPalette, savePalette } = await import('../src/io/palette-files.js');
  const { encodeNpy } = await import('../src/io/npy.js');
  const { readOpenAiClusters } = await import('../src/io/openai.js');
  const { SafetensorsReader, readSafetensors, writeSafetensors } = await import('../src/io/safetensors.js');
  const { saveTokenDataset, loadTokenDataset } = await import('../src/data/tokens.js');
  const { saveModelFolder, loadModelFolder, inspectModelFolder } = await import('../src/io/hf.js');
  const { ParameterTensors, initParameters } = await import('../src/model/parameters.js');
  const sharp = (await import('sharp')).default;

  const cases: ReaderCase[] = [];
  const bytes = (n: number): Uint8Array => randomBytes(n, rng);
  const gray16 = { k: 16, channels: 1 as const, centers: Float32Array.from({ length: 16 }, (_, i) => -1 + (2 * i) / 15) };

  // IDX (raw): 6 images of 28×28 and their labels.
  {
    const dir = join(root, 'idx'); mkdirSync(dir);
    const images = join(dir, 'images-idx3-ubyte'), labels = join(dir, 'labels-idx1-ubyte');
    const img = concat(Uint8Array.from([0, 0, 8, 3, 0, 0, 0, 6, 0, 0, 0, 28, 0, 0, 0, 28]), bytes(6 * 784));
    const lab = concat(Uint8Array.from([0, 0, 8, 1, 0, 0, 0, 6]), Uint8Array.from([0, 1, 2, 3, 4, 5]));
    cases.push({
      reader: 'idx', files: new Map([[images, img], [labels, lab]]),
      read: () => readIdxImageSet(images, labels),
      mutations: [
        ...genericMutations(images, img.length, 16, rng),
        ...pick(genericMutations(labels, lab.length, 8, rng), 6),
        forged(images, 'count-2^31', (b) => withU32BE(b, 4, 2 ** 31)),
        forged(images, 'count-2^20', (b) => withU32BE(b, 4, 2 ** 20)),
        forged(images, 'all-dims-max', (b) => withU32BE(withU32BE(withU32BE(b, 4, 0xffffffff), 8, 0xffffffff), 12, 0xffffffff)),
        forged(images, 'ndims-255', (b) => { const c = b.slice(); c[3] = 255; return c; }),
        forged(labels, 'label-count-2^31', (b) => withU32BE(b, 4, 2 ** 31)),
      ],
    });
  }

  // IDX (gzip): the same, compressed; forged headers are forged inside the compressed data.
  {
    const dir = join(root, 'idx-gz'); mkdirSync(dir);
    const images = join(dir, 'images-idx3-ubyte.gz');
    const raw = concat(Uint8Array.from([0, 0, 8, 3, 0, 0, 0, 6, 0, 0, 0, 28, 0, 0, 0, 28]), bytes(6 * 784));
    const gz = new Uint8Array(gzipSync(raw));
    const inside = (f: (b: Uint8Array) => Uint8Array) => (b: Uint8Array): Uint8Array => new Uint8Array(gzipSync(f(new Uint8Array(gunzipSync(b)))));
    cases.push({
      reader: 'idx-gz', files: new Map([[images, gz]]),
      read: () => readIdxImageSet(images, null),
      mutations: [
        ...genericMutations(images, gz.length, 10, rng),
        forged(images, 'count-2^31', inside((b) => withU32BE(b, 4, 2 ** 31))),
        forged(images, 'count-2^20', inside((b) => withU32BE(b, 4, 2 ** 20))),
        forged(images, 'rows-2^31', inside((b) => withU32BE(b, 8, 2 ** 31))),
        forged(images, 'truncated-inside', inside((b) => b.slice(0, 500))),
        forged(images, 'gzip-size-field', (b) => { const c = b.slice(); new DataView(c.buffer).setUint32(c.length - 4, 0xffffffff, true); return c; }),
      ],
    });
  }

  // CIFAR-10 and CIFAR-100: 3 records each.
  for (const [reader, labelBytes, maxLabel] of [['cifar10', 1, 9], ['cifar100', 2, 19]] as const) {
    const dir = join(root, reader); mkdirSync(dir);
    const file = join(dir, 'data.bin');
    const rec = labelBytes + 3072;
    const data = bytes(3 * rec);
    for (let i = 0; i < 3; i++) for (let j = 0; j < labelBytes; j++) data[i * rec + j] = i % (maxLabel + 1);
    cases.push({
      reader, files: new Map([[file, data]]),
      read: () => (reader === 'cifar10' ? readCifar10Batch(file) : readCifar100File(file)),
      mutations: [
        ...genericMutations(file, data.length, labelBytes, rng),
        forged(file, 'label-255', (b) => { const c = b.slice(); c[rec + labelBytes - 1] = 255; return c; }),
        forged(file, 'one-record-short', (b) => b.slice(0, 2 * rec + 100)),
        forged(file, 'gzip-named', (b) => new Uint8Array(gzipSync(b)).slice(0, 100)),
      ],
    });
  }

  // STL-10: 2 images of 96×96×3 and their labels 1..10.
  {
    const dir = join(root, 'stl10'); mkdirSync(dir);
    const x = join(dir, 'train_X.bin'), y = join(dir, 'train_y.bin');
    const xb = bytes(2 * 27648), yb = Uint8Array.from([1, 10]);
    cases.push({
      reader: 'stl10', files: new Map([[x, xb], [y, yb]]),
      read: () => readStl10(x, y),
      mutations: [
        ...genericMutations(x, xb.length, 0, rng),
        forged(y, 'label-0', () => Uint8Array.from([0, 3])),
        forged(y, 'label-11', () => Uint8Array.from([11, 3])),
        forged(y, 'labels-count', () => Uint8Array.from([1, 2, 3])),
        { name: 'empty-labels', file: y, apply: () => new Uint8Array(0) },
      ],
    });
  }

  // An image folder with two class subfolders of 8×8 PNGs.
  {
    const dir = join(root, 'folder');
    mkdirSync(join(dir, 'cat'), { recursive: true }); mkdirSync(join(dir, 'dog'));
    const png = async (seed: number): Promise<Uint8Array> => new Uint8Array(await sharp(Buffer.from(bytes(64).map((v) => (v + seed) & 255)),
      { raw: { width: 8, height: 8, channels: 1 } }).png().toBuffer());
    const a = join(dir, 'cat', 'a.png'), b = join(dir, 'dog', 'b.png');
    const pa = await png(1), pb = await png(2);
    // IHDR: 8-byte signature, length, "IHDR", width, height, …, CRC over type + data.
    const forgeIhdr = (width: number, height: number) => (src: Uint8Array): Uint8Array => {
      const c = withU32BE(withU32BE(src, 16, width), 20, height);
      return withU32BE(c, 29, crc32(c.subarray(12, 29)) >>> 0);
    };
    cases.push({
      reader: 'image-folder', files: new Map([[a, pa], [b, pb]]),
      read: () => readImageFolder(dir),
      mutations: [
        ...genericMutations(a, pa.length, 33, rng),
        forged(a, 'ihdr-2^31-wide', forgeIhdr(2 ** 31 - 1, 8)),
        forged(a, 'ihdr-65535-square', forgeIhdr(65535, 65535)),
        forged(a, 'ihdr-zero', forgeIhdr(0, 0)),
        forged(a, 'ihdr-bad-crc', (s) => withU32BE(s, 16, 4096)),
      ],
    });
  }

  // Palette JSON.
  {
    const dir = join(root, 'palette'); mkdirSync(dir);
    const file = join(dir, 'palette.json');
    savePalette(file, gray16);
    const data = new Uint8Array(readFileSync(file));
    const text = Buffer.from(data).toString('utf8');
    cases.push({
      reader: 'palette-json', files: new Map([[file, data]]),
      read: () => loadPalette(file),
      mutations: [
        ...pick(genericMutations(file, data.length, 24, rng), 18),
        ...jsonMutations(file, text, rng, 8),
        forged(file, 'k-2^31', () => Buffer.from(text.replace('"k":16', `"k":${2 ** 31}`))),
        forged(file, 'k-1e300', () => Buffer.from(text.replace('"k":16', '"k":1e300'))),
        forged(file, 'channels-1e9', () => Buffer.from(text.replace('"channels":1', '"channels":1000000000'))),
        forged(file, 'nested-depth', () => Buffer.from('['.repeat(100000) + ']'.repeat(100000))),
      ],
    });
  }

  // .npy palette centers (OpenAI's kmeans_centers.npy), read by both palette loaders.
  {
    const dir = join(root, 'npy'); mkdirSync(dir);
    const file = join(dir, 'kmeans_centers.npy');
    const centers = Float32Array.from({ length: 48 }, (_, i) => -1 + (2 * (i % 16)) / 15);
    const data = encodeNpy(centers, [16, 3]);
    const header = Buffer.from(data.subarray(10, 128)).toString('latin1');
    const reshape = (shape: string) => (b: Uint8Array): Uint8Array => {
      const h = header.replace('(16, 3)', shape).padEnd(header.length, ' ').slice(0, header.length - 1) + '\n';
      const c = b.slice();
      c.set(Buffer.from(h, 'latin1'), 10);
      return c;
    };
    cases.push({
      reader: 'npy', files: new Map([[file, data]]),
      read: () => { readOpenAiClusters(file); return loadPalette(file); },
      mutations: [
        ...genericMutations(file, data.length, 128, rng),
        forged(file, 'shape-2^31', reshape('(2147483648, 3)')),
        forged(file, 'shape-1e300', reshape('(1e300, 3)')),
        forged(file, 'shape-2^20', reshape('(1048576, 3)')),
        forged(file, 'header-len-ffff', (b) => { const c = b.slice(); c[8] = 0xff; c[9] = 0xff; return c; }),
        forged(file, 'v2-header-len-2^32', (b) => { const c = concat(b.slice(0, 8), concat(Uint8Array.from([255, 255, 255, 255]), b.slice(10))); c[6] = 2; return c; }),
      ],
    });
  }

  // safetensors: read header, every tensor one at a time, and the whole-file reader.
  {
    const dir = join(root, 'safetensors'); mkdirSync(dir);
    const file = join(dir, 'weights.safetensors');
    writeSafetensors(file, [
      { name: 'a', shape: [4, 8], data: Float32Array.from({ length: 32 }, (_, i) => i / 7) },
      { name: 'b', shape: [16], data: Float32Array.from({ length: 16 }, (_, i) => -i), dtype: 'F16' },
      { name: 'c', shape: [3, 3], data: new Float32Array(9).fill(0.5), dtype: 'BF16' },
    ], { step: '3' });
    const data = new Uint8Array(readFileSync(file));
    const n = Number(new DataView(data.buffer).getBigUint64(0, true));
    const headerText = Buffer.from(data.subarray(8, 8 + n)).toString('utf8');
    const reheader = (edit: (h: Record<string, { shape?: number[]; data_offsets?: number[] }>) => void) => (b: Uint8Array): Uint8Array => {
      const h = JSON.parse(headerText) as Record<string, { shape?: number[]; data_offsets?: number[] }>;
      edit(h);
      const json = Buffer.from(JSON.stringify(h));
      const len = new Uint8Array(8);
      new DataView(len.buffer).setBigUint64(0, BigInt(json.length), true);
      return concat(concat(len, json), b.subarray(8 + n));
    };
    const withLength = (v: bigint) => (b: Uint8Array): Uint8Array => { const c = b.slice(); new DataView(c.buffer).setBigUint64(0, v, true); return c; };
    cases.push({
      reader: 'safetensors', files: new Map([[file, data]]),
      read: () => {
        const r = SafetensorsReader.open(file);
        try { for (const e of r.entries) r.read(e.name); } finally { r.close(); }
        return readSafetensors(file);
      },
      mutations: [
        ...genericMutations(file, data.length, 8 + n, rng),
        forged(file, 'header-len-2^63', withLength(2n ** 63n)),
        forged(file, 'header-len-filesize', withLength(BigInt(data.length))),
        forged(file, 'header-len-200MB', withLength(200_000_000n)),
        forged(file, 'shape-2^31', reheader((h) => { h.a!.shape = [2 ** 31, 2 ** 31]; })),
        forged(file, 'offsets-2^53', reheader((h) => { h.a!.data_offsets = [0, 2 ** 53]; })),
        forged(file, 'offsets-overlap', reheader((h) => { h.b!.data_offsets = [0, 32]; })),
      ],
    });
  }

  // A PyTorch checkpoint (torch.save's zip), built by hand: views of a shared float32 storage, a
  // float16 storage; forged fields in the pickle and in the zip directory.
  {
    const { TorchCheckpoint } = await import('../src/io/torch-checkpoint.js');
    const { PickleWriter, stateDictPickle, torchArchive } = await import('./torch-archive.js');
    const dir = join(root, 'pytorch-bin'); mkdirSync(dir);
    const file = join(dir, 'pytorch_model.bin');
    const tensors = [
      { name: 'w', storageType: 'FloatStorage', key: '0', storageSize: 32, offset: 0, shape: [4, 8], stride: [8, 1] },
      { name: 'w.T', storageType: 'FloatStorage', key: '0', storageSize: 32, offset: 0, shape: [8, 4], stride: [1, 8] },
      { name: 'row', storageType: 'FloatStorage', key: '0', storageSize: 32, offset: 8, shape: [8], stride: [1] },
      { name: 'h', storageType: 'HalfStorage', key: '1', storageSize: 16, offset: 0, shape: [16], stride: [1] },
    ];
    const storages = new Map([['0', new Uint8Array(Float32Array.from({ length: 32 }, (_, i) => i / 7).buffer)], ['1', bytes(32)]]);
    const archive = (ts: typeof tensors, pickle = stateDictPickle(ts)): Uint8Array => torchArchive(pickle, storages);
    const data = archive(tensors);
    const pickleEnd = 30 + 'archive/data.pkl'.length + stateDictPickle(tensors).length;
    const editW = (edit: Partial<(typeof tensors)[number]>) => (): Uint8Array => archive([{ ...tensors[0], ...edit }, ...tensors.slice(1)]);
    const eocd = data.length - 22;
    const directory = new DataView(data.buffer).getUint32(eocd + 16, true);
    const withU32LE = (at: number, v: number) => (b: Uint8Array): Uint8Array => { const c = b.slice(); new DataView(c.buffer).setUint32(at, v, true); return c; };
    const systemCall = new PickleWriter().proto().global('os', 'system').str('touch pwned').op(0x85).reduce().stop().bytes();
    cases.push({
      reader: 'pytorch-bin', files: new Map([[file, data]]),
      read: () => {
        const c = TorchCheckpoint.open(file);
        try { for (const e of c.entries) c.read(e.name); } finally { c.close(); }
      },
      mutations: [
        ...genericMutations(file, data.length, pickleEnd, rng),
        forged(file, 'storage-size-2^40', editW({ storageSize: 2 ** 40 })),
        forged(file, 'shape-2^31-squared', editW({ shape: [2 ** 31, 2 ** 31], stride: [0, 0] })),
        forged(file, 'shape-past-storage', editW({ shape: [64, 8] })),
        forged(file, 'offset-2^50', editW({ offset: 2 ** 50 })),
        forged(file, 'stride-2^40', editW({ stride: [2 ** 40, 1] })),
        forged(file, 'storage-key-missing', editW({ key: '7' })),
        forged(file, 'global-os-system', () => archive(tensors, systemCall)),
        forged(file, 'pickle-truncated', () => archive(tensors, stateDictPickle(tensors).slice(0, 100))),
        forged(file, 'eocd-count-ffff', withU32LE(eocd + 8, 0xffffffff)),
        forged(file, 'eocd-directory-size-2^32', withU32LE(eocd + 12, 0xffffffff)),
        forged(file, 'eocd-directory-offset', withU32LE(eocd + 16, directory + 1)),
        forged(file, 'entry-size-2^32', (b) => withU32LE(directory + 20, 0xffffffff)(withU32LE(directory + 24, 0xffffffff)(b))),
        forged(file, 'entry-offset-2^32', withU32LE(directory + 42, 0xfffffff0)),
        forged(file, 'compressed-entry', (b) => { const c = b.slice(); c[directory + 10] = 8; return c; }),
      ],
    });
  }

  // A token dataset folder: meta.json and the binary split files.
  {
    const dir = join(root, 'tokens');
    const split = (count: number, seed: number) => ({
      count, tokens: Uint8Array.from({ length: count * 16 }, (_, i) => (i * 7 + seed) % 16),
      labels: Int32Array.from({ length: count }, (_, i) => i % 10),
    });
    saveTokenDataset(dir, {
      meta: { source: 'fuzz', side: 4, pixels: 16, channels: 1, numClasses: 10, splitSeed: 0 },
      palette: gray16, train: split(20, 1), val: split(5, 2), test: split(5, 3),
    });
    const files = new Map(readdirSync(dir).map((n) => [join(dir, n), new Uint8Array(readFileSync(join(dir, n)))]));
    const meta = join(dir, 'meta.json'), tokens = join(dir, 'train.tokens'), labels = join(dir, 'train.labels');
    const metaText = Buffer.from(files.get(meta)!).toString('utf8');
    const editMeta = (f: (m: { meta: Record<string, unknown>; splits: Record<string, { count: number }> }) => void) => (): Uint8Array => {
      const m = JSON.parse(metaText) as { meta: Record<string, unknown>; splits: Record<string, { count: number }> };
      f(m);
      return Buffer.from(JSON.stringify(m));
    };
    cases.push({
      reader: 'token-dataset', files,
      read: () => loadTokenDataset(dir),
      mutations: [
        ...pick(genericMutations(meta, files.get(meta)!.length, 60, rng), 10),
        ...jsonMutations(meta, metaText, rng, 8),
        ...pick(genericMutations(tokens, files.get(tokens)!.length, 0, rng), 8),
        ...pick(genericMutations(labels, files.get(labels)!.length, 0, rng), 6),
        forged(meta, 'train-count-2^31', editMeta((m) => { m.splits.train!.count = 2 ** 31; })),
        forged(meta, 'train-count-1e300', editMeta((m) => { m.splits.train!.count = 1e300; })),
        forged(meta, 'side-65536', editMeta((m) => { m.meta.side = 65536; m.meta.pixels = 65536 ** 2; })),
        forged(meta, 'side-fraction', editMeta((m) => {
          m.meta.side = 0.5; m.meta.pixels = 0.25; m.splits.train!.count = 1280; m.splits.val!.count = 320; m.splits.test!.count = 320;
        })),
        forged(meta, 'side-zero', editMeta((m) => { m.meta.side = 0; m.meta.pixels = 0; })),
        forged(meta, 'num-classes-fraction', editMeta((m) => { m.meta.numClasses = 10.5; })),
      ],
    });
  }

  // A Hugging Face model folder: config.json, model.safetensors, preprocessor_config.json.
  {
    const dir = join(root, 'model');
    const config = { vocabSize: 17, nPositions: 16, nEmbd: 8, nLayer: 2, nHead: 2, numLabels: 0, layerNormEpsilon: 1e-5 };
    const params = new ParameterTensors(config);
    initParameters(params, 1);
    saveModelFolder(dir, params, gray16);
    const files = new Map(readdirSync(dir).map((n) => [join(dir, n), new Uint8Array(readFileSync(join(dir, n)))]));
    const cfg = join(dir, 'config.json'), weights = join(dir, 'model.safetensors'), pre = join(dir, 'preprocessor_config.json');
    const cfgText = Buffer.from(files.get(cfg)!).toString('utf8');
    const editConfig = (f: (c: Record<string, unknown>) => void) => (): Uint8Array => {
      const c = JSON.parse(cfgText) as Record<string, unknown>;
      f(c);
      return Buffer.from(JSON.stringify(c));
    };
    const n = Number(new DataView(files.get(weights)!.buffer).getBigUint64(0, true));
    cases.push({
      reader: 'model-folder', files,
      read: () => { inspectModelFolder(dir); return loadModelFolder(dir); },
      mutations: [
        ...pick(genericMutations(cfg, files.get(cfg)!.length, 40, rng), 8),
        ...jsonMutations(cfg, cfgText, rng, 8),
        ...pick(genericMutations(weights, files.get(weights)!.length, 8 + n, rng), 10),
        ...jsonMutations(pre, Buffer.from(files.get(pre)!).toString('utf8'), rng, 3),
        forged(cfg, 'n-layer-1e7', editConfig((c) => { c.n_layer = 10_000_000; })),
        forged(cfg, 'n-layer-1e4', editConfig((c) => { c.n_layer = 10_000; })),
        forged(cfg, 'n-embd-2^20', editConfig((c) => { c.n_embd = 2 ** 20; })),
        forged(cfg, 'vocab-2^31', editConfig((c) => { c.vocab_size = 2 ** 31; })),
        forged(cfg, 'positions-2^24', editConfig((c) => { c.n_positions = 2 ** 24; })),
        forged(cfg, 'num-labels-1e9', editConfig((c) => { c.num_labels = 1e9; })),
      ],
    });
  }
  return cases;
}


if (process.env.FUZZ_CHILD !== '1') {
  test('the by-formula parameter count that guards model loading equals the layout count', async () => {
    const { parameterCountOf } = await import('../src/io/hf-format.js');
    const { parameterCount } = await import('../src/model/parameters.js');
    for (const [nEmbd, nLayer, nHead, vocabSize, nPositions, numLabels] of [[8, 1, 2, 17, 16, 0], [32, 3, 4, 513, 1024, 10], [64, 2, 8, 2, 4, 1]]) {
      const c = { nEmbd, nLayer, nHead, vocabSize, nPositions, numLabels, layerNormEpsilon: 1e-5 };
      assert.equal(parameterCountOf(c), parameterCount(c));
    }
  });
}
