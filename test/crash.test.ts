/**
 * Crashes and interruptions lose nothing: `igpt pretrain` killed with SIGKILL at seeded random
 * moments (some while a checkpoint is being written) resumes from its last complete checkpoint and
 * then computes exactly the losses of an uninterrupted run; Ctrl-C saves and exits 130 with a
 * resume hint; a NaN stops the run naming step and tensor without touching the last checkpoint;
 * too-large models and mismatched model/data are refused before any work.
 *
 * Everything runs on the portable kernels, whose sums have a fixed order, so equality is exact.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, type FSWatcher, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, watch } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildTokenDataset } from '../src/data/build.js';
import { saveTokenDataset, type TokenDataset } from '../src/data/tokens.js';
import { writeChecksums } from '../src/io/checksums.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { loadCheckpoint } from '../src/train/checkpoint.js';
import type { HistoryPoint } from '../src/train/trainer.js';
import { Rng } from '../src/util/rng.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
const STEPS = 60;
const root = mkdtempSync(join(tmpdir(), 'igpt-crash-'));
const dataDir = join(root, 'data');
let data: TokenDataset;
let reference: HistoryPoint[] = [];
const referenceRun = join(root, 'reference');

interface Exit { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** Starts `igpt ...args`; `done` resolves with the exit status and the output. */
function igpt(args: string[]): { child: ChildProcess; done: Promise<Exit>; stderr(): string } {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], {
    env: { ...process.env, IGPT_DEBUG: '' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '', stderr = '';
  child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const done = new Promise<Exit>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done, stderr: () => stderr };
}

const trainArgs = (out: string, steps = STEPS): string[] => [
  'pretrain', '--data', dataDir, '--out', out, '--preset', 'cpu-tiny', '--batch', '8', '--steps', String(steps),
  '--checkpoint-every', '2', '--eval-every', '10', '--eval-images', '40', '--seed', '5', '--backend', 'portable',
];

const history = (run: string): HistoryPoint[] => JSON.parse(readFileSync(join(run, 'history.json'), 'utf8')) as HistoryPoint[];
const latestStep = (run: string): number | null =>
  existsSync(join(run, 'latest.json')) ? (JSON.parse(readFileSync(join(run, 'latest.json'), 'utf8')) as { step: number }).step : null;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves once `ready()` holds (polled), failing if the process ends first. */
async function waitFor(ready: () => boolean, exit: Promise<Exit>, what: string): Promise<void> {
  let ended = false;
  void exit.then(() => { ended = true; });
  while (!ready()) {
    if (ended) throw new Error(`the run ended before ${what}`);
    await sleep(5);
  }
}

/** Resolves once `run/latest.json` exists (the first checkpoint is complete). */
const firstCheckpoint = (run: string, exit: Promise<Exit>): Promise<void> =>
  waitFor(() => existsSync(join(run, 'latest.json')), exit, 'its first checkpoint');

/** SIGKILLs the child as soon as a new checkpoint's temporary folder appears (or returns when it has ended). */
async function killOnCheckpointWrite(child: ChildProcess, exit: Promise<Exit>, run: string): Promise<void> {
  let w: FSWatcher | null = null;
  const seen = new Promise<void>((resolve) => {
    w = watch(join(run, 'checkpoints'), (_event, name) => {
      if (name !== null && String(name).startsWith('.tmp-')) { child.kill('SIGKILL'); resolve(); }
    });
  });
  await Promise.race([seen, exit]);
  w!.close();
}

before(async () => {
  data = await buildTokenDataset('mnist', { side: 8, channels: 1, k: 16, maxTrain: 400, maxTest: 100 });
  saveTokenDataset(dataDir, data);
  const r = await igpt(trainArgs(referenceRun)).done;
  assert.equal(r.code, 0, r.stderr);
  reference = history(referenceRun);
});

after(() => rmSync(root, { recursive: true, force: true }));

test('SIGKILL at random moments (also mid-checkpoint), then --resume: the last complete checkpoint is loaded and the losses equal an uninterrupted run', async () => {
  assert.equal(reference.filter((h) => h.loss !== undefined).length, STEPS);
  const run = join(root, 'killed');
  const rng = new Rng(777);
  const kinds = ['startup', 'random', 'mid-checkpoint', 'random', 'mid-checkpoint'] as const;
  const report: string[] = [];
  let resumeFrom: number | null = null;
  for (const [i, kind] of kinds.entries()) {
    const p = igpt(kind === 'startup' ? trainArgs(run) : [...trainArgs(run), '--resume']);
    if (kind === 'startup') {
      // Killed while starting: no checkpoint yet, so --resume must start from scratch.
      await sleep(rng.int(300));
      p.child.kill('SIGKILL');
      await p.done;
      assert.equal(latestStep(run), null);
      report.push('startup: killed before the first checkpoint');
      continue;
    }
    if (resumeFrom === null) await firstCheckpoint(run, p.done);
    else await waitFor(() => p.stderr().includes('resumed at step'), p.done, 'training started');
    // A resumed run starts from the checkpoint latest.json named when the previous one was killed.
    if (resumeFrom !== null) assert.match(p.stderr(), new RegExp(`resumed at step ${resumeFrom}\\b`));
    // Spread the kills over the run: the i-th lands after a seeded step in the i-th quarter.
    const quarter = STEPS / 4;
    const target = Math.max((resumeFrom ?? 0) + 2, Math.floor((i - 1) * quarter + 2 + rng.int(quarter - 4)));
    await waitFor(() => (latestStep(run) ?? 0) >= target, p.done, `step ${target}`).catch(() => { /* it ended first: see below */ });
    await sleep(rng.int(150));
    if (kind === 'random') p.child.kill('SIGKILL');
    else await killOnCheckpointWrite(p.child, p.done, run);
    const exit = await p.done;
    if (exit.signal !== 'SIGKILL') {
      // It finished before the kill landed: the final resume has nothing left to do.
      assert.equal(exit.code, 0, exit.stderr);
      resumeFrom = latestStep(run);
      report.push(`${kind}: the run finished before the kill`);
      break;
    }
    const step = latestStep(run);
    assert.notEqual(step, null);
    // latest.json points at a complete, loadable checkpoint of that step.
    const ckpt = loadCheckpoint<{ step: number }>(join(run, 'checkpoints', `step-${String(step).padStart(6, '0')}`));
    assert.equal(ckpt.state.step, step);
    const leftovers = readdirSync(join(run, 'checkpoints')).filter((n) => n.startsWith('.tmp-'));
    report.push(`${kind}: killed with latest checkpoint at step ${step}${leftovers.length ? ' (a half-written checkpoint was left behind)' : ''}`);
    resumeFrom = step;
  }
  const last = await igpt([...trainArgs(run), '--resume']).done;
  assert.equal(last.code, 0, last.stderr);
  if (resumeFrom !== null) assert.match(last.stderr, new RegExp(`resumed at step ${resumeFrom}\\b`));
  assert.deepEqual(history(run), reference, 'the interrupted-and-resumed history must equal the uninterrupted one exactly');
  const final = loadCheckpoint<{ history: HistoryPoint[] }>(join(run, 'checkpoints', `step-${String(STEPS).padStart(6, '0')}`));
  assert.deepEqual(final.state.history, reference, 'and so must the history in the last checkpoint');
  assert.deepEqual(readdirSync(join(run, 'checkpoints')).filter((n) => n.startsWith('.tmp-')), [], 'stale temporary checkpoints are cleaned up');
  console.log(report.join('\n'));
});

/** Starts a training run, sends `signal` once it has a checkpoint, and returns how it ended. */
async function interruptedRun(run: string, signal: NodeJS.Signals) {
  const p = igpt(trainArgs(run));
  await firstCheckpoint(run, p.done);
  p.child.kill(signal);
  const exit = await p.done;
  assert.equal(exit.code, 130, exit.stderr);
  const stopped = Number(/stopped at step (\d+)/.exec(exit.stdout)?.[1]);
  assert.ok(stopped > 0 && stopped < STEPS, exit.stdout);
  return { exit, stopped };
}

test('Ctrl-C saves a checkpoint, exits 130 with a --resume hint, and the resumed run continues from that step', async () => {
  const run = join(root, 'interrupted');
  const { exit, stopped } = await interruptedRun(run, 'SIGINT');
  assert.match(exit.stdout, /--resume/);
  assert.equal(latestStep(run), stopped);
  // Everything up to the stop matches the uninterrupted run.
  assert.deepEqual(history(run).filter((h) => h.step <= stopped && h.loss !== undefined),
                   reference.filter((h) => h.step <= stopped && h.loss !== undefined));
  const resumed = await igpt([...trainArgs(run, stopped + 2), '--resume']).done;
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, new RegExp(`resumed at step ${stopped}\\b`));
  assert.equal(latestStep(run), stopped + 2);
});

test('SIGTERM stops like Ctrl-C: a checkpoint at the step reached, exit 130, a --resume hint', async () => {
  const run = join(root, 'terminated');
  const { exit, stopped } = await interruptedRun(run, 'SIGTERM');
  assert.match(exit.stderr, /SIGTERM: stopping after this step/);
  assert.equal(latestStep(run), stopped);
});

test('a corrupt newest checkpoint: --resume falls back to the previous one and still matches the uninterrupted run', async () => {
  const run = join(root, 'corrupt-newest');
  cpSync(referenceRun, run, { recursive: true });
  const newest = join(run, 'checkpoints', `step-${String(STEPS).padStart(6, '0')}`, 'model.safetensors');
  truncateSync(newest, 1000);
  const exit = await igpt([...trainArgs(run), '--resume']).done;
  assert.equal(exit.code, 0, exit.stderr);
  assert.match(exit.stderr, new RegExp(`resumed at step ${STEPS - 2}\\b`));
  assert.match(exit.stderr, /warning: skipped a newer checkpoint that does not load: .*model\.safetensors/);
  assert.deepEqual(history(run), reference);
});

/**
 * Copies the reference run and poisons one value of a tensor in its latest checkpoint, as if the
 * checkpoint had been written with it: its checksums are recorded anew, so the NaN is what loads.
 */
function poisonedCopy(name: string, file: string, tensor: string, value: number): { run: string; step: number } {
  const run = join(root, name);
  cpSync(referenceRun, run, { recursive: true });
  const step = latestStep(run)!;
  const path = join(run, 'checkpoints', `step-${String(step).padStart(6, '0')}`, file);
  const { metadata, tensors } = readSafetensors(path);
  const copy = [...tensors].map(([n, t]) => ({ name: n, shape: t.shape, data: Float32Array.from(t.data) }));
  copy.find((t) => t.name === tensor)!.data[3] = value;
  writeSafetensors(path, copy, metadata);
  writeChecksums(dirname(path));
  return { run, step };
}

test('a NaN weight in the checkpoint: resume stops with exit 1 naming the step and tensor; latest.json is untouched', async () => {
  const { run, step } = poisonedCopy('nan-weight', 'model.safetensors', 'transformer.h.1.mlp.c_fc.weight', NaN);
  const before = readFileSync(join(run, 'latest.json'), 'utf8');
  const exit = await igpt([...trainArgs(run, step + 6), '--resume']).done;
  assert.equal(exit.code, 1, exit.stderr);
  assert.match(exit.stderr, new RegExp(`igpt: training stopped at step ${step}: the loss is NaN \\(parameter transformer\\.h\\.1\\.mlp\\.c_fc\\.weight`));
  assert.match(exit.stderr, /last good checkpoint is kept/);
  assert.equal(readFileSync(join(run, 'latest.json'), 'utf8'), before);
  assert.ok(readdirSync(join(run, 'checkpoints')).every((n) => Number(n.slice(5)) <= step || n.startsWith('.')));
});

test('a NaN in the Adam state: the broken update is caught before it is checkpointed', async () => {
  const { run, step } = poisonedCopy('nan-adam', 'optimizer.safetensors', 'adam.v', NaN);
  const before = readFileSync(join(run, 'latest.json'), 'utf8');
  // One more step: its update breaks a weight, and the final checkpoint must not save it.
  const exit = await igpt([...trainArgs(run, step + 1), '--resume']).done;
  assert.equal(exit.code, 1, exit.stderr);
  assert.match(exit.stderr, new RegExp(`igpt: training stopped at step ${step}: the update made parameter transformer\\.wte\\.weight NaN or inf`));
  assert.equal(readFileSync(join(run, 'latest.json'), 'utf8'), before);
});

test('a model and batch that cannot fit in memory are refused at once, with the estimate in GiB', async () => {
  const t0 = performance.now();
  const exit = await igpt(['pretrain', '--data', dataDir, '--out', join(root, 'huge'), '--preset', 'igpt-l', '--batch', '4096',
    '--steps', '1', '--backend', 'portable']).done;
  assert.equal(exit.code, 1);
  assert.match(exit.stderr, /igpt: this model and batch need about [\d.]+ GiB .* but only [\d.]+ GiB is available/);
  assert.ok(!existsSync(join(root, 'huge', 'checkpoints')));
  assert.ok(performance.now() - t0 < 20_000);
});

test('a model is refused on a dataset with another palette or image size, before any work', async () => {
  const model = join(referenceRun, 'model');
  // Same k, other colors.
  const otherColors = join(root, 'other-colors');
  const shifted = { ...data.palette, centers: data.palette.centers.map((c) => c * 0.5) };
  saveTokenDataset(otherColors, { ...data, palette: shifted });
  // Same palette, 4×4 images.
  const smaller = join(root, 'smaller');
  const crop = (s: TokenDataset['train']): TokenDataset['train'] => ({ ...s, tokens: s.tokens.slice(0, s.count * 16) });
  saveTokenDataset(smaller, { ...data, meta: { ...data.meta, side: 4, pixels: 16 }, train: crop(data.train), val: crop(data.val), test: crop(data.test) });
  for (const [dir, why] of [[otherColors, /its palette differs from the palette of the model/], [smaller, /images of 16 pixels, but the model .* reads 64/]] as const) {
    const out = join(root, `samples-${dir.length}.png`);
    const exit = await igpt(['sample', '--model', model, '--data', dir, '--out', out, '--backend', 'portable']).done;
    assert.equal(exit.code, 1, exit.stderr);
    assert.match(exit.stderr, new RegExp(`igpt: ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: `));
    assert.match(exit.stderr, why);
    assert.ok(!existsSync(out));
  }
});
