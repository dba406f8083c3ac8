/**
 * Data parallelism under mpirun (2 ranks on this machine: --oversubscribe, --allow-run-as-root for
 * CI's root). Skipped, saying why, where Open MPI's mpirun or igpt's MPI binding is missing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildTokenDataset } from '../src/data/build.js';
import { saveTokenDataset } from '../src/data/tokens.js';
import { loadModelFolder } from '../src/io/hf.js';
import { swiftShaderMissing } from '../src/kernels/webgpu/node-gpu.js';
import { loadLatestCheckpoint } from '../src/train/checkpoint.js';
import type { HistoryPoint } from '../src/train/trainer.js';
import { writeImage } from '../src/util/image.js';
import { Rng } from '../src/util/rng.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
const COLLECTIVES = fileURLToPath(new URL('./fixtures/mpi-collectives.ts', import.meta.url));
const ADDON = fileURLToPath(new URL('../native-mpi/build/Release/igpt_mpi.node', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));

const hasMpirun = spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).status === 0;
const skip = !hasMpirun ? 'mpirun not found (apt-get install -y openmpi-bin libopenmpi-dev)'
  : !existsSync(ADDON) ? `the MPI binding is not built (${ADDON}; npm rebuild with libopenmpi-dev installed)` : false;
if (skip) process.stderr.write(`mpi tests skipped: ${skip}\n`);

const root = mkdtempSync(join(tmpdir(), 'igpt-mpi-'));
const dataDir = join(root, 'data');
const otherDataDir = join(root, 'other-data');
const STEPS = 6;

interface Exit { code: number | null; stdout: string; stderr: string; seconds: number }

/** `mpirun -np <np> <mpiArgs> node --import tsx <script> <args>` (np 0: plain node, no mpirun), with `env` added. */
function run(np: number, script: string, args: string[], mpiArgs: string[] = [], onStart?: (pid: number) => void,
             env: NodeJS.ProcessEnv = {}): Promise<Exit> {
  const node = [process.execPath, '--import', 'tsx', script, ...args];
  const [cmd, ...argv] = np === 0 ? node : ['mpirun', '--allow-run-as-root', '--oversubscribe', '-np', String(np), ...mpiArgs, ...node];
  const t0 = performance.now();
  // One thread a rank and in the single process: the machine is shared, and the runs compare alike.
  const child = spawn(cmd!, argv, { cwd: ROOT, env: { ...process.env, IGPT_THREADS: '1', IGPT_QUIET: '1', IGPT_DEBUG: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '', stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  onStart?.(child.pid!);
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr, seconds: (performance.now() - t0) / 1000 })));
}

interface TrainArgs { data?: string; batch?: number; objective?: string; steps?: number; every?: number; resume?: boolean; backend?: string }
const train = (out: string, o: TrainArgs = {}): string[] => [
  'pretrain', '--data', o.data ?? dataDir, '--out', out, '--preset', 'cpu-tiny', '--batch', String(o.batch ?? 8),
  '--steps', String(o.steps ?? STEPS), '--checkpoint-every', String(o.every ?? 3), '--eval-every', String(o.every ?? 3), '--eval-images', '20', '--seed', '1',
  '--objective', o.objective ?? 'ar', ...(o.resume ? ['--resume'] : []), ...(o.backend ? ['--backend', o.backend] : []),
];

const ok = (r: Exit, what: string): void => assert.equal(r.code, 0, `${what} failed:\n${r.stderr}`);
const history = (run: string): HistoryPoint[] => JSON.parse(readFileSync(join(run, 'history.json'), 'utf8')) as HistoryPoint[];

/** ‖a − b‖ / ‖b‖ over every parameter of two model folders. */
function weightDistance(a: string, b: string): number {
  const pa = loadModelFolder(a).params.data, pb = loadModelFolder(b).params.data;
  assert.equal(pa.length, pb.length);
  let diff = 0, norm = 0;
  for (let i = 0; i < pa.length; i++) { diff += (pa[i]! - pb[i]!) ** 2; norm += pb[i]! ** 2; }
  return Math.sqrt(diff / norm);
}

function assertSameHistory(got: HistoryPoint[], want: HistoryPoint[]): void {
  assert.equal(got.length, want.length);
  for (const [i, w] of want.entries()) {
    const g = got[i]!;
    assert.equal(g.step, w.step);
    for (const key of ['loss', 'valLoss', 'lr'] as const) {
      if (w[key] === undefined) continue;
      assert.ok(Math.abs(g[key]! - w[key]!) <= 1e-6 * Math.abs(w[key]!), `history[${i}].${key}: ${g[key]} vs ${w[key]}`);
    }
  }
}

/** A copy of a finished run cut back to its step-3 checkpoint, as if it had stopped there. */
function cutToStep3(run: string, copy: string): string {
  cpSync(run, copy, { recursive: true });
  rmSync(join(copy, 'checkpoints', 'step-000006'), { recursive: true });
  rmSync(join(copy, 'latest.json'));
  return copy;
}

before(async () => {
  if (skip) return;
  // Real digits, 8×8, 8 gray levels: a tiny model trains a step in milliseconds.
  const d = await buildTokenDataset('mnist', { side: 8, channels: 1, k: 8, maxTrain: 200, maxTest: 40 });
  saveTokenDataset(dataDir, d);
  saveTokenDataset(otherDataDir, { ...d, train: { ...d.train, count: d.train.count - 1, tokens: d.train.tokens.subarray(0, (d.train.count - 1) * 64), labels: d.train.labels.subarray(0, d.train.count - 1) } });
});

after(() => rmSync(root, { recursive: true, force: true }));

test('the collectives sum, broadcast and gather exactly over shared memory and over TCP loopback', { skip }, async () => {
  for (const btl of ['vader,self', 'tcp,self']) {
    const r = await run(2, COLLECTIVES, ['100003'], ['--mca', 'btl', btl]);
    ok(r, `collectives over ${btl}`);
    assert.match(r.stdout, /collectives ok on 2 ranks/);
  }
});

// BERT checks the loss averaging where the ranks' shares score different numbers of (masked) pixels.
for (const objective of ['ar', 'bert']) {
  const resumes = objective === 'ar';
  test(`${objective}: 2 ranks give the weights and loss history of 1 process at the same global batch${resumes ? '; resume 2 → 1 and 1 → 2' : ''}`, { skip }, async () => {
    const one = join(root, `${objective}-1`), two = join(root, `${objective}-2`);
    ok(await run(0, MAIN, train(one, { objective })), 'one process');
    ok(await run(2, MAIN, train(two, { objective })), 'two ranks');
    const final = (r: string): string => join(r, 'checkpoints', 'step-000006');
    const d = weightDistance(final(two), final(one));
    assert.ok(d < 1e-5, `weights differ by ${d} (relative)`);
    assertSameHistory(history(two), history(one));
    if (!resumes) return;

    // Resume across the number of ranks: the same weights as the uninterrupted run.
    const twoThenOne = cutToStep3(two, join(root, `${objective}-2-1`));
    ok(await run(0, MAIN, train(twoThenOne, { objective, resume: true })), 'resume 2 → 1');
    const oneThenTwo = cutToStep3(one, join(root, `${objective}-1-2`));
    ok(await run(2, MAIN, train(oneThenTwo, { objective, resume: true })), 'resume 1 → 2');
    for (const resumed of [twoThenOne, oneThenTwo]) {
      const dr = weightDistance(final(resumed), final(one));
      assert.ok(dr < 1e-5, `${resumed}: weights differ from the uninterrupted run by ${dr}`);
      assertSameHistory(history(resumed), history(one));
    }
  });
}

// Each rank on its own WebGPU device (SwiftShader here: slow, so 4 steps), the gradient summed on the host.
test('webgpu: 2 ranks give the weights and loss history of 1 process on webgpu', { skip: skip || swiftShaderMissing() || false }, async () => {
  const one = join(root, 'webgpu-1'), two = join(root, 'webgpu-2');
  const o = { backend: 'webgpu', steps: 4, every: 2 };
  ok(await run(0, MAIN, train(one, o)), 'one process on webgpu');
  ok(await run(2, MAIN, train(two, o)), 'two ranks on webgpu');
  const final = (r: string): string => join(r, 'checkpoints', 'step-000004');
  const d = weightDistance(final(two), final(one));
  assert.ok(d < 1e-5, `weights differ by ${d} (relative)`);
  assertSameHistory(history(two), history(one));
});

test('eval-nll, probe and finetune split over 2 ranks give the numbers and files of 1 process', { skip }, async () => {
  const model = join(root, 'ar-1', 'checkpoints', 'step-000006');
  if (!existsSync(model)) ok(await run(0, MAIN, train(join(root, 'ar-1'))), 'the model to evaluate');
  const nll = async (np: number): Promise<{ natsPerPixel: number; images: number }> => {
    const r = await run(np, MAIN, ['eval-nll', '--model', model, '--data', dataDir, '--batch', '4', '--json']);
    ok(r, `eval-nll on ${np || 1} rank(s)`);
    assert.equal(r.stdout.trim().split('\n').length, 1, 'one rank prints');
    return JSON.parse(r.stdout) as { natsPerPixel: number; images: number };
  };
  const [n1, n2] = [await nll(0), await nll(2)];
  assert.equal(n2.images, n1.images);
  assert.ok(Math.abs(n2.natsPerPixel - n1.natsPerPixel) <= 1e-9 * n1.natsPerPixel, `NLL ${n2.natsPerPixel} vs ${n1.natsPerPixel}`);

  // 7-image batches: the last batch is short, and the ranks get different numbers of batches.
  const probe = (np: number, out: string): Promise<Exit> => run(np, MAIN, ['probe', '--model', model, '--data', dataDir, '--batch', '7', '--out', out]);
  ok(await probe(0, join(root, 'probe-1')), 'probe, 1 process');
  ok(await probe(2, join(root, 'probe-2')), 'probe, 2 ranks');
  const report = (dir: string): unknown => JSON.parse(readFileSync(join(dir, 'probe.json'), 'utf8'));
  assert.deepEqual(report(join(root, 'probe-2')), report(join(root, 'probe-1')));
  assert.ok(existsSync(join(root, 'probe-2', 'depth.png')));

  const finetune = (np: number, out: string): Promise<Exit> => run(np, MAIN, ['finetune', '--model', model, '--data', dataDir, '--out', out,
    '--steps', '4', '--batch', '8', '--eval-every', '2', '--eval-images', '20', '--probe-head', '40', '--seed', '2']);
  ok(await finetune(0, join(root, 'ft-1')), 'finetune, 1 process');
  ok(await finetune(2, join(root, 'ft-2')), 'finetune, 2 ranks');
  const ft = (dir: string): { history: { valAccuracy: number }[]; testAccuracy: number } => JSON.parse(readFileSync(join(dir, 'finetune.json'), 'utf8'));
  assert.deepEqual(ft(join(root, 'ft-2')).history, ft(join(root, 'ft-1')).history);
  assert.equal(ft(join(root, 'ft-2')).testAccuracy, ft(join(root, 'ft-1')).testAccuracy);
  const dw = weightDistance(join(root, 'ft-2', 'model'), join(root, 'ft-1', 'model'));
  assert.ok(dw < 1e-5, `fine-tuned weights differ by ${dw}`);
});

test('probe-curve split over 2 ranks gives the curve of 1 process', { skip }, async () => {
  const runDir = join(root, 'ar-1');
  if (!existsSync(join(runDir, 'checkpoints', 'step-000006'))) ok(await run(0, MAIN, train(runDir)), 'the run to probe');
  const curve = async (np: number): Promise<unknown> => {
    const out = join(root, `curve-${np || 1}`);
    ok(await run(np, MAIN, ['probe-curve', '--run', runDir, '--data', dataDir, '--train', '100', '--val', '20', '--test', '40', '--out', out]),
       `probe-curve on ${np || 1} rank(s)`);
    assert.ok(existsSync(join(out, 'curve.png')));
    return JSON.parse(readFileSync(join(out, 'curve.json'), 'utf8'));
  };
  const [one, two] = [await curve(0), await curve(2)];
  assert.equal((one as { points: unknown[] }).points.length, 2, 'both kept checkpoints probed');
  assert.deepEqual(two, one);
});

test('sample and complete split over 2 ranks write the grids and ids of 1 process', { skip }, async () => {
  for (const objective of ['ar', 'bert']) {
    const model = join(root, `${objective}-1`, 'checkpoints', 'step-000006');
    if (!existsSync(model)) ok(await run(0, MAIN, train(join(root, `${objective}-1`), { objective })), `the ${objective} model`);
  }
  // 3 × 3 images: the ranks take 5 and 4, split inside an image's samples.
  const sample = async (np: number, model: string, out: string, data: string[]): Promise<{ png: Buffer; ids: number[] }> => {
    const r = await run(np, MAIN, ['sample', '--model', model, ...data, '--count', '3', '--samples', '3', '--seed', '5', '--out', out]);
    ok(r, `sample on ${np || 1} rank(s)`);
    assert.equal(r.stdout.trim().split('\n').length, 1, 'one rank prints');
    return { png: readFileSync(out), ids: (JSON.parse(readFileSync(out.replace(/\.png$/, '.json'), 'utf8')) as { completions: number[] }).completions };
  };
  const cases = [
    { name: 'ar-unconditional', model: 'ar-1', data: [] },
    { name: 'ar-completions', model: 'ar-1', data: ['--data', dataDir] },
    { name: 'bert-completions', model: 'bert-1', data: ['--data', dataDir, '--passes', '4'] },
  ];
  for (const c of cases) {
    const model = join(root, c.model, 'checkpoints', 'step-000006');
    const one = await sample(0, model, join(root, `${c.name}-1.png`), c.data);
    const two = await sample(2, model, join(root, `${c.name}-2.png`), c.data);
    assert.equal(one.ids.length, 9 * 64);
    assert.deepEqual(two.ids, one.ids, `${c.name}: the ids`);
    assert.ok(two.png.equals(one.png), `${c.name}: the grid PNGs differ`);
  }

  // igpt complete on image files: the grid, the ids and each completion's PNG.
  const images = join(root, 'images');
  mkdirSync(images, { recursive: true });
  const rng = new Rng(3);
  for (const name of ['a', 'b', 'c']) await writeImage(join(images, `${name}.png`), Uint8Array.from({ length: 64 }, () => rng.int(256)), 8, 8, 1);
  const model = join(root, 'ar-1', 'checkpoints', 'step-000006');
  const complete = async (np: number): Promise<{ dir: string; ids: number[] }> => {
    const dir = join(root, `complete-${np || 1}`);
    ok(await run(np, MAIN, ['complete', images, '--model', model, '--samples', '2', '--rows', '3', '--seed', '9',
                            '--out', join(dir, 'grid.png'), '--out-dir', join(dir, 'each')]), `complete on ${np || 1} rank(s)`);
    return { dir, ids: (JSON.parse(readFileSync(join(dir, 'grid.json'), 'utf8')) as { completions: number[] }).completions };
  };
  const [c1, c2] = [await complete(0), await complete(2)];
  assert.deepEqual(c2.ids, c1.ids);
  for (const file of ['grid.png', ...['a', 'b', 'c'].flatMap((n) => [`each/${n}-0.png`, `each/${n}-1.png`])]) {
    assert.ok(readFileSync(join(c2.dir, file)).equals(readFileSync(join(c1.dir, file))), `complete: ${file} differs`);
  }
});

test('experiment: the whole study on 2 ranks gives the numbers of 1 process; resumed on 2 ranks after 1 process\'s pretraining, the same files', { skip }, async () => {
  // A tiny study (ten steps: --budget 0) on the test dataset, given as the study's tokens.
  const study = async (np: number, out: string): Promise<void> => {
    if (!existsSync(join(out, 'tokens'))) cpSync(dataDir, join(out, 'tokens'), { recursive: true });
    ok(await run(np, MAIN, ['experiment', 'mnist', '--out', out, '--side', '8', '--preset', 'cpu-tiny', '--budget', '0',
                            '--finetune-minutes', '0', '--batch', '8', '--probe-train', '100', '--seed', '1']), `experiment on ${np || 1} rank(s)`);
    assert.ok(existsSync(join(out, 'RESULTS.md')), `${out}: no RESULTS.md`);
  };
  const json = (dir: string, file: string): Record<string, unknown> => JSON.parse(readFileSync(join(dir, file), 'utf8')) as Record<string, unknown>;
  const one = join(root, 'study-1'), two = join(root, 'study-2');
  await study(0, one);
  await study(2, two);
  // Every stage ran distributed. Pretraining sums gradients in another order, so the numbers agree
  // within that rounding; downstream classifiers (L-BFGS probes at tiny L2) can amplify it, and
  // are compared exactly below, from the same pretrained weights.
  assert.equal(json(two, 'study.json').steps, json(one, 'study.json').steps);
  const dw = weightDistance(join(two, 'pretrain', 'model'), join(one, 'pretrain', 'model'));
  assert.ok(dw < 1e-5, `pretrained weights differ by ${dw}`);
  const nll = (dir: string): number => json(dir, 'nll.json').natsPerPixel as number;
  assert.ok(Math.abs(nll(two) - nll(one)) <= 1e-6 * nll(one), `test NLL ${nll(two)} vs ${nll(one)}`);
  type Curve = { points: { step: number; testNll: number }[] };
  const [curve1, curve2] = [json(one, 'curve/curve.json') as unknown as Curve, json(two, 'curve/curve.json') as unknown as Curve];
  assert.deepEqual(curve2.points.map((p) => p.step), curve1.points.map((p) => p.step));
  for (const [i, p] of curve2.points.entries()) assert.ok(Math.abs(p.testNll - curve1.points[i]!.testNll) <= 1e-6 * p.testNll, `curve NLL at step ${p.step}`);

  // From 1 process's pretraining, the other stages on 2 ranks: the same numbers and files exactly.
  const resumed = join(root, 'study-1-2');
  mkdirSync(resumed);
  for (const part of ['tokens', 'pretrain', 'study.json']) cpSync(join(one, part), join(resumed, part), { recursive: true });
  await study(2, resumed);
  for (const file of ['nll.json', 'probe/probe.json', 'probe/lowdata.json', 'curve/curve.json', 'completions.png']) {
    assert.ok(readFileSync(join(resumed, file)).equals(readFileSync(join(one, file))), `${file} differs`);
  }
  const ft = (dir: string): unknown => ({ ...json(dir, 'finetune/finetune.json'), model: undefined, data: undefined, seconds: undefined });
  assert.deepEqual(ft(resumed), ft(one));
});

test('a global batch that does not divide by the ranks is refused at start, saying so', { skip }, async () => {
  const r = await run(2, MAIN, train(join(root, 'odd'), { batch: 7 }));
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /--batch 7 \(the global batch\) must divide by the 2 MPI ranks/);
  assert.equal(existsSync(join(root, 'odd', 'checkpoints')), false);
});

test('ranks that see different datasets are all stopped, with a message naming the difference', { skip }, async () => {
  const out = join(root, 'mismatch');
  const node = [process.execPath, '--import', 'tsx', MAIN];
  const t0 = performance.now();
  const res = await new Promise<Exit>((resolve) => {
    // MPMD: rank 0 trains on one dataset, rank 1 on another of the same shape.
    const child = spawn('mpirun', ['--allow-run-as-root', '--oversubscribe', '-np', '1', ...node, ...train(join(out, 'a')),
      ':', '-np', '1', ...node, ...train(join(out, 'a'), { data: otherDataDir })],
    { cwd: ROOT, env: { ...process.env, IGPT_THREADS: '1', IGPT_QUIET: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('close', (code) => resolve({ code, stdout, stderr, seconds: (performance.now() - t0) / 1000 }));
  });
  assert.notEqual(res.code, 0);
  assert.match(res.stderr, /the 2 ranks do not agree, so none starts/);
  assert.match(res.stderr, /dataset: rank 0 \(.*\) has 180\/20\/40 train\/val\/test images.*rank 1 \(.*\) has 179\/20\/40/);
  assert.equal(existsSync(join(out, 'a', 'checkpoints')), false, 'no rank trained');
});

test('a rank killed mid-run ends the job within seconds; the last checkpoint is intact and resumes', { skip }, async () => {
  const out = join(root, 'killed');
  let mpirunPid = 0;
  const done = run(2, MAIN, train(out, { steps: 100000, every: 2 }), [], (pid) => { mpirunPid = pid; });
  // Wait for a checkpoint, then SIGKILL rank 1 (a child of mpirun whose environment says rank 1).
  const deadline = Date.now() + 120_000;
  while (!existsSync(join(out, 'latest.json'))) {
    assert.ok(Date.now() < deadline, 'no checkpoint within two minutes');
    await new Promise((r) => setTimeout(r, 200));
  }
  const ranks = spawnSync('pgrep', ['-P', String(mpirunPid)], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number);
  const rank1 = ranks.find((pid) => readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes('OMPI_COMM_WORLD_RANK=1'));
  assert.ok(rank1, 'rank 1 found among mpirun\'s children');
  const killedAt = performance.now();
  process.kill(rank1, 'SIGKILL');
  const r = await done;
  const seconds = (performance.now() - killedAt) / 1000;
  assert.notEqual(r.code, 0);
  assert.ok(seconds < 15, `the job took ${seconds.toFixed(1)} s to end after the kill`);
  assert.match(r.stderr, /signal 9/);
  // Every rank is gone too (mpirun may exit a moment before the last one has died).
  while (ranks.some((pid) => existsSync(`/proc/${pid}`))) {
    assert.ok((performance.now() - killedAt) / 1000 < 15, 'a rank outlived the job by seconds');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  // The newest checkpoint loads, and the run resumes from it (one process, two more steps).
  const ckpt = loadLatestCheckpoint<{ step: number }>(out);
  assert.ok(ckpt && ckpt.state.step > 0 && ckpt.skipped?.length === 0, 'the latest checkpoint loads');
  const resumed = await run(0, MAIN, train(out, { steps: ckpt!.state.step + 2, every: 2, resume: true }));
  ok(resumed, 'resume after the kill');
  assert.equal(loadLatestCheckpoint<{ step: number }>(out)!.state.step, ckpt!.state.step + 2);
});

test('under mpirun without the MPI binding, igpt says how to install it; without mpirun nothing needs it', { skip: hasMpirun ? false : 'mpirun not found' }, async () => {
  const missing = '/nonexistent/igpt_mpi.node';
  const r = await run(2, MAIN, train(join(root, 'no-binding')), ['-x', `IGPT_MPI_ADDON=${missing}`]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /MPI binding is not built.*apt-get install -y openmpi-bin libopenmpi-dev/);
  const alone = await run(0, MAIN, train(join(root, 'no-binding-alone'), { steps: 2, every: 1 }), [], undefined, { IGPT_MPI_ADDON: missing });
  ok(alone, 'one process with the binding missing');
  assert.ok(existsSync(join(root, 'no-binding-alone', 'checkpoints', 'step-000002')));
});

test('a command that does not split its work refuses to run on 2 ranks, naming those that do', { skip }, async () => {
  const r = await run(2, MAIN, ['info', join(root, 'no-such-model')]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /igpt info does not split its work over MPI ranks; run it without mpirun \(under mpirun: .*sample.*\)/);
});
