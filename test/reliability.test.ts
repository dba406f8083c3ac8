/**
 * Nothing lost when things go wrong, with real processes throughout:
 * - one process per run folder: a second `igpt pretrain/experiment/finetune` on a folder in use is
 *   refused at once naming the first; a dead process's lock is taken over with a warning; of many
 *   processes racing for a lock (fresh or stale) exactly one wins; signals release it;
 * - a full disk during a checkpoint write, made real by a file-size limit on the child process
 *   (`ulimit -f`: Node ignores SIGXFSZ, so the write fails with EFBIG): a clear error, the previous
 *   checkpoint intact, and `--resume` continues exactly;
 * - a bit flipped in a checkpoint is caught by its checksums (`--resume` falls back, `igpt info
 *   --verify` names the file); folders without checksums still load;
 * - `igpt serve` answers 200 concurrent downloads with bounded memory and keeps serving.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync,
} from 'node:fs';
import { request, Agent } from 'node:http';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildTokenDataset } from '../src/data/build.js';
import { saveTokenDataset, type TokenDataset } from '../src/data/tokens.js';
import { loadModelFolder, saveModelFolder } from '../src/io/hf.js';
import { makeConfig } from '../src/model/config.js';
import { initParameters, ParameterTensors } from '../src/model/parameters.js';
import { loadCheckpoint, loadLatestCheckpoint } from '../src/train/checkpoint.js';
import type { HistoryPoint } from '../src/train/trainer.js';
import { LOCK_FILE } from '../src/util/run-lock.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
const HOLD_LOCK = fileURLToPath(new URL('./fixtures/hold-lock.ts', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'igpt-reliability-'));
const dataDir = join(root, 'data');
let data: TokenDataset;

interface Exit { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number }
interface Child { child: ChildProcess; done: Promise<Exit>; stdout(): string }

/** Processes started and not yet ended: a test that fails midway leaves its long runs to `after`. */
const running = new Set<ChildProcess>();

/** Starts a node process running `script` (with tsx); `fileSizeKiB` limits the size of any file it writes. */
function node(script: string, args: string[], fileSizeKiB?: number): Child {
  const argv = [process.execPath, '--import', 'tsx', script, ...args];
  const child = fileSizeKiB === undefined
    ? spawn(argv[0], argv.slice(1), { env: { ...process.env, IGPT_DEBUG: '' }, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn('bash', ['-c', `ulimit -f ${fileSizeKiB}; exec "$@"`, 'bash', ...argv], { env: { ...process.env, IGPT_DEBUG: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const t0 = performance.now();
  let stdout = '', stderr = '';
  child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  running.add(child);
  const done = new Promise<Exit>((resolve) => child.on('close', (code, signal) => {
    running.delete(child);
    resolve({ code, signal, stdout, stderr, ms: performance.now() - t0 });
  }));
  return { child, done, stdout: () => stdout };
}
const igpt = (args: string[], fileSizeKiB?: number): Child => node(MAIN, args, fileSizeKiB);

const trainArgs = (out: string, steps: number): string[] => [
  'pretrain', '--data', dataDir, '--out', out, '--preset', 'cpu-tiny', '--batch', '8', '--steps', String(steps),
  '--checkpoint-every', '2', '--eval-every', '4', '--eval-images', '40', '--seed', '3', '--backend', 'portable',
];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const history = (run: string): HistoryPoint[] => JSON.parse(readFileSync(join(run, 'history.json'), 'utf8')) as HistoryPoint[];
const latestStep = (run: string): number => (JSON.parse(readFileSync(join(run, 'latest.json'), 'utf8')) as { step: number }).step;
const stepDir = (run: string, step: number): string => join(run, 'checkpoints', `step-${String(step).padStart(6, '0')}`);
const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Resolves once `ready()` holds (polled), failing if the process ends first. */
async function waitFor(ready: () => boolean, c: Child, what: string): Promise<void> {
  let ended = false;
  void c.done.then(() => { ended = true; });
  while (!ready()) {
    if (ended) throw new Error(`the process ended before ${what}: ${(await c.done).stderr}`);
    await sleep(10);
  }
}

/** The pid of a process that has just ended (so certainly not running). */
async function deadPid(): Promise<number> {
  const c = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((r) => c.on('close', r));
  return c.pid!;
}

before(async () => {
  data = await buildTokenDataset('mnist', { side: 8, channels: 1, k: 16, maxTrain: 400, maxTest: 100 });
  saveTokenDataset(dataDir, data);
});

after(() => {
  for (const child of running) child.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Locks

test('a run folder in use: a second pretrain (--resume too), experiment or finetune is refused at once, naming the first; Ctrl-C releases it', async () => {
  const run = join(root, 'busy');
  const first = igpt(trainArgs(run, 100_000));
  await waitFor(() => existsSync(join(run, 'latest.json')), first, 'its first checkpoint');
  const owner = JSON.parse(readFileSync(join(run, LOCK_FILE), 'utf8')) as { pid: number; host: string; since: string; command: string };
  assert.equal(owner.pid, first.child.pid);
  assert.equal(owner.host, hostname());
  assert.match(owner.command, new RegExp(`^igpt pretrain --data .* --out ${escape(run)} `));

  const named = new RegExp(`igpt: ${escape(run)} is in use by another igpt process: pid ${owner.pid} on ${escape(hostname())}, ` +
                           `since ${escape(owner.since)} \\(igpt pretrain --data .*--out ${escape(run)} .*\\)\\. Wait for it to finish or stop it`);
  const others = await Promise.all([
    igpt([...trainArgs(run, 100_000), '--resume']).done,
    igpt(['experiment', 'mnist', '--out', run, '--backend', 'portable']).done,
    igpt(['finetune', '--model', join(run, 'model'), '--data', dataDir, '--out', run, '--backend', 'portable']).done,
  ]);
  for (const o of others) {
    assert.equal(o.code, 1, o.stderr);
    assert.match(o.stderr, named);
    assert.ok(o.ms < 30_000, `refused after ${o.ms} ms`);
  }
  assert.equal(first.child.exitCode, null, 'the first run is still training');
  assert.equal(JSON.parse(readFileSync(join(run, LOCK_FILE), 'utf8')).pid, owner.pid, 'the lock is still the first run\'s');

  first.child.kill('SIGINT');
  const stopped = await first.done;
  assert.equal(stopped.code, 130, stopped.stderr);
  assert.ok(!existsSync(join(run, LOCK_FILE)), 'Ctrl-C released the lock');
  const next = await igpt([...trainArgs(run, latestStep(run) + 2), '--resume']).done;
  assert.equal(next.code, 0, next.stderr);
  assert.ok(!existsSync(join(run, LOCK_FILE)), 'a finished run leaves no lock');
});

test('a lock left by a killed run is taken over with a warning naming the dead process', async () => {
  const run = join(root, 'killed');
  const first = igpt(trainArgs(run, 100_000));
  await waitFor(() => existsSync(join(run, 'latest.json')), first, 'its first checkpoint');
  first.child.kill('SIGKILL');
  await first.done;
  const stale = JSON.parse(readFileSync(join(run, LOCK_FILE), 'utf8')) as { pid: number; since: string };
  assert.equal(stale.pid, first.child.pid, 'SIGKILL leaves the lock behind');

  const resumed = await igpt([...trainArgs(run, latestStep(run) + 2), '--resume']).done;
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, new RegExp(`igpt: warning: ${escape(run)}: taking over the lock of pid ${stale.pid} on ${escape(hostname())}, ` +
                                          `since ${escape(stale.since)} \\(igpt pretrain .*\\), which is no longer running`));
  assert.ok(!existsSync(join(run, LOCK_FILE)));
});

/** Starts `n` processes that race for the lock of `dir`; resolves once each has said held or refused. */
async function race(dir: string, n: number): Promise<{ holders: Child[]; lines: string[] }> {
  const children = Array.from({ length: n }, () => node(HOLD_LOCK, [dir]));
  for (const c of children) await waitFor(() => c.stdout().includes('\n'), c, 'it reported');
  return { holders: children.filter((c) => c.stdout().startsWith('held')), lines: children.map((c) => c.stdout().trim()) };
}

test('processes racing for a lock, fresh or stale: exactly one holds it, the others name it; SIGTERM releases it', async () => {
  const dir = join(root, 'race');
  const fresh = await race(dir, 4);
  assert.equal(fresh.holders.length, 1, fresh.lines.join('\n'));
  const winner = fresh.holders[0].child.pid!;
  for (const line of fresh.lines.filter((l) => l.startsWith('refused'))) assert.match(line, new RegExp(`in use by another igpt process: pid ${winner} `));
  fresh.holders[0].child.kill('SIGTERM');
  const ended = await fresh.holders[0].done;
  assert.equal(ended.signal, 'SIGTERM', 'the process still dies of the signal');
  assert.ok(!existsSync(join(dir, LOCK_FILE)), 'SIGTERM released the lock');

  const dead = await deadPid();
  writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: dead, host: hostname(), since: '2020-01-01T00:00:00.000Z', command: 'igpt pretrain' }));
  const stale = await race(dir, 4);
  assert.equal(stale.holders.length, 1, stale.lines.join('\n'));
  assert.match(stale.holders[0].stdout(), new RegExp(`took-over ${dead}\\b`));
  const taker = stale.holders[0].child.pid!;
  for (const line of stale.lines.filter((l) => l.startsWith('refused'))) assert.match(line, new RegExp(`pid ${taker} `));
  stale.holders[0].child.kill('SIGINT');
  assert.equal((await stale.holders[0].done).signal, 'SIGINT');
  assert.deepEqual(readdirSync(dir), [], 'no lock, guard or note left behind');
});

test('a process holding two locks (igpt experiment: the study and its pretraining run) dies of SIGTERM and releases both', async () => {
  const study = join(root, 'two-locks'), run = join(study, 'pretrain');
  const holder = node(HOLD_LOCK, [study, run]);
  await waitFor(() => holder.stdout().includes('\n'), holder, 'it reported');
  assert.match(holder.stdout(), /^held /);
  assert.ok(existsSync(join(study, LOCK_FILE)) && existsSync(join(run, LOCK_FILE)));
  holder.child.kill('SIGTERM');
  const ended = await Promise.race([holder.done, sleep(20_000).then(() => null)]);
  assert.ok(ended, 'alive 20 s after SIGTERM: each lock left the signal to the other, and nobody acted on it');
  assert.equal(ended.signal, 'SIGTERM', 'the process dies of the signal');
  assert.ok(!existsSync(join(study, LOCK_FILE)) && !existsSync(join(run, LOCK_FILE)), 'both locks released');
});

// ---------------------------------------------------------------------------------------------
// A full disk during a checkpoint write

test('a full disk mid-checkpoint (file-size limit on the process): a clear error, the previous checkpoint intact, --resume continues exactly', async () => {
  // An 8-step run, and a copy of it cut back to step 4 as if it had stopped there.
  const reference = join(root, 'disk-reference');
  const r = await igpt([...trainArgs(reference, 8), '--keep-every', '2']).done;
  assert.equal(r.code, 0, r.stderr);
  const run = join(root, 'disk-full');
  cpSync(reference, run, { recursive: true, verbatimSymlinks: true });
  for (const step of [6, 8]) rmSync(stepDir(run, step), { recursive: true });
  writeFileSync(join(run, 'latest.json'), JSON.stringify({ step: 4, checkpoint: 'checkpoints/step-000004' }));
  const latestBefore = readFileSync(join(run, 'latest.json'), 'utf8');
  const weightsBytes = statSync(join(stepDir(run, 4), 'model.safetensors')).size;
  // Any file over half the weights' size cannot be written: the next checkpoint's weights fail.
  const limitKiB = Math.floor(weightsBytes / 2048);
  assert.ok(statSync(join(run, 'loss.png')).size < limitKiB * 1024, 'the small files of a run still fit under the limit');
  const full = await igpt([...trainArgs(run, 8), '--resume'], limitKiB).done;
  assert.equal(full.code, 1, full.stderr);
  const target = join(stepDir(run, 6), 'model.safetensors');
  assert.match(full.stderr, new RegExp(
    `igpt: checkpoint of step 6 not saved: ${escape(target)}: cannot write: the file is larger than this process or filesystem allows ` +
    `\\(EFBIG\\) after ${(limitKiB * 1024).toLocaleString('en-US')} bytes \\([\\d.]+ KiB\\) of the ${weightsBytes.toLocaleString('en-US')} bytes ` +
    `\\([\\d.]+ KiB\\) it needs\\. The previous checkpoint \\(checkpoints/step-000004\\) and latest\\.json are unchanged; ` +
    `make room, then continue with --resume`));
  assert.doesNotMatch(full.stderr, /\n\s+at /, 'no stack trace');
  assert.equal(readFileSync(join(run, 'latest.json'), 'utf8'), latestBefore);
  assert.deepEqual(readdirSync(join(run, 'checkpoints')), ['step-000002', 'step-000004'], 'no half-written checkpoint left');
  assert.ok(!existsSync(join(run, LOCK_FILE)), 'the failed run released its lock');
  assert.equal(loadCheckpoint(stepDir(run, 4)).params.count > 0, true, 'the previous checkpoint loads (checksums verified)');

  const resumed = await igpt([...trainArgs(run, 8), '--resume']).done;
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, /resumed at step 4\b/);
  assert.deepEqual(history(run), history(reference), 'the resumed run computes exactly the uninterrupted one');
});

// ---------------------------------------------------------------------------------------------
// Checksums

/** Flips one bit of a file at `position` bytes before its end. */
function flipBit(file: string, fromEnd: number): void {
  const bytes = readFileSync(file);
  bytes[bytes.length - fromEnd] ^= 0x10;
  writeFileSync(file, bytes);
}

test('a bit flipped in a checkpoint: info --verify names the file, --resume falls back to the previous checkpoint with a warning', async () => {
  const run = join(root, 'rotted');
  const r = await igpt(trainArgs(run, 6)).done;
  assert.equal(r.code, 0, r.stderr);
  const clean = await igpt(['info', join(run, 'model'), '--verify']).done;
  assert.equal(clean.code, 0, clean.stderr);
  assert.match(clean.stdout, /checksums: 5 file\(s\) match \(sha256 of .*\): config\.json, model\.safetensors, optimizer\.safetensors, preprocessor_config\.json, trainer_state\.json/);

  const weights = join(stepDir(run, 6), 'model.safetensors');
  flipBit(weights, 100); // inside the last tensor's bytes: the header still parses, the tensor loads
  assert.equal(loadModelFolder(stepDir(run, 6)).params.count > 0, true, 'a flipped bit alone does not stop a plain load');
  const bad = await igpt(['info', join(run, 'model'), '--verify']).done;
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, new RegExp(`igpt: ${escape(join(run, 'model', 'model.safetensors'))}: checksum mismatch: sha256 [0-9a-f]{12}…, [0-9a-f]{12}… recorded`));
  assert.throws(() => loadCheckpoint(stepDir(run, 6)), new RegExp(`${escape(weights)}: checksum mismatch`));

  const resumed = await igpt([...trainArgs(run, 8), '--resume']).done;
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, new RegExp(`igpt: warning: skipped a newer checkpoint that does not load: ${escape(weights)}: checksum mismatch`));
  assert.match(resumed.stderr, /resumed at step 4\b/);
  assert.equal(latestStep(run), 8);
});

test('folders without checksums (from elsewhere, or older checkpoints) still load; a listed file that is missing is named', () => {
  const dir = join(root, 'plain');
  const cfg = makeConfig({ nEmbd: 16, nLayer: 1, nHead: 2 }, 16, 64, 0);
  const params = new ParameterTensors(cfg);
  initParameters(params, 1);
  saveModelFolder(dir, params, data.palette);
  assert.ok(!existsSync(join(dir, 'checksums.json')));
  assert.deepEqual(loadModelFolder(dir).params.data, params.data);

  const run = join(root, 'rotted');
  const older = join(root, 'older-checkpoint');
  cpSync(stepDir(run, 8), older, { recursive: true });
  rmSync(join(older, 'checksums.json'));
  assert.equal(loadCheckpoint(older).params.count, loadLatestCheckpoint(run)!.params.count);

  const listed = join(root, 'listed');
  cpSync(stepDir(run, 8), listed, { recursive: true });
  rmSync(join(listed, 'trainer_state.json'));
  assert.throws(() => loadCheckpoint(listed), new RegExp(`${escape(join(listed, 'trainer_state.json'))}: checksum mismatch: listed in checksums\\.json but missing`));
});

test('info --verify on a folder without checksums says so and succeeds', async () => {
  const exit = await igpt(['info', join(root, 'plain'), '--verify']).done;
  assert.equal(exit.code, 0, exit.stderr);
  assert.match(exit.stdout, /checksums: none recorded/);
});

// ---------------------------------------------------------------------------------------------
// igpt serve under load

/** Peak and current resident memory of a process, in bytes (Linux /proc). */
function memoryOf(pid: number): { peak: number; now: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string): number => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)![1]) * 1024;
  return { peak: kib('VmHWM'), now: kib('VmRSS') };
}

/** GETs `path` (sent as is); resolves with the status, body length and body hash. */
function get(url: URL, path: string, agent: Agent): Promise<{ status: number; bytes: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path, agent }, (res) => {
      const hash = createHash('sha256');
      let bytes = 0;
      res.on('data', (d: Buffer) => { bytes += d.length; hash.update(d); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, sha256: hash.digest('hex') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

test('igpt serve: 200 concurrent downloads of the model and the page are all answered, memory stays bounded, and it keeps serving', async () => {
  // A model of 12.6 MB: buffered per request, 100 downloads would hold 1.3 GB.
  const model = join(root, 'serve-model');
  const cfg = makeConfig({ nEmbd: 256, nLayer: 4, nHead: 8 }, 16, 64, 0);
  const params = new ParameterTensors(cfg);
  initParameters(params, 2);
  saveModelFolder(model, params, data.palette);
  const web = join(root, 'serve-web');
  mkdirSync(web, { recursive: true });
  const page = '<!doctype html><title>igpt</title>' + 'x'.repeat(4000);
  writeFileSync(join(web, 'index.html'), page);
  writeFileSync(join(root, 'secret.txt'), 'not served');
  const weights = readFileSync(join(model, 'model.safetensors'));
  const weightsHash = createHash('sha256').update(weights).digest('hex');
  const pageHash = createHash('sha256').update(page).digest('hex');

  const server = igpt(['serve', '--model', model, '--web', web, '--port', '0']);
  try {
    await waitFor(() => /igpt serve: http:\/\/\S+/.test(server.stdout()), server, 'it listened');
    const url = new URL(/igpt serve: (http:\/\/\S+)/.exec(server.stdout())![1]);
    const pid = server.child.pid!;
    const agent = new Agent({ keepAlive: false, maxSockets: 200 });
    await get(url, '/', agent); // warm up: the first request's code paths are not a per-request cost
    const before = memoryOf(pid);

    const t0 = performance.now();
    const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => get(url, i % 2 === 0 ? '/model/model.safetensors' : '/index.html', agent)));
    const seconds = (performance.now() - t0) / 1000;
    const after = memoryOf(pid);
    for (const [i, a] of answers.entries()) {
      assert.equal(a.status, 200, `request ${i}`);
      assert.equal(a.sha256, i % 2 === 0 ? weightsHash : pageHash, `request ${i}: the whole file`);
    }
    const growth = after.peak - before.now;
    const buffered = 100 * weights.length;
    console.log(`# serve: 200 concurrent requests (100 × ${(weights.length / 2 ** 20).toFixed(1)} MiB + 100 pages) in ${seconds.toFixed(2)} s; ` +
                `server peak memory +${(growth / 2 ** 20).toFixed(0)} MiB (buffering would need ${(buffered / 2 ** 20).toFixed(0)} MiB)`);
    assert.ok(growth < 256 * 2 ** 20 && growth < buffered / 4, `peak memory grew by ${growth} bytes`);

    // Still serving, and still refusing what is outside the served folders.
    assert.equal((await get(url, '/index.html', agent)).sha256, pageHash);
    for (const path of ['/model/trainer_state.json', '/model/../../secret.txt', '/%2e%2e/secret.txt', '/..%2fsecret.txt',
                        '/%2e%2e%2f%2e%2e%2fetc%2fpasswd', '/model/..%2f..%2fsecret.txt', '/../../../../etc/passwd']) {
      const a = await get(url, path, agent);
      assert.equal(a.status, 404, path);
      assert.notEqual(a.sha256, createHash('sha256').update('not served').digest('hex'), path);
    }
    agent.destroy();
  } finally {
    server.child.kill('SIGTERM');
    await server.done;
  }
});
