/**
 * Models of the paper's sizes. iGPT-L (1.4 B parameters, 5.6 GB of float32) is written as a sparse
 * file (its header real, its data holes that read as zeros), so the default suite checks in
 * seconds that `igpt info` reads headers only and that sampling a model too big for the machine is
 * refused from its headers, before any allocation.
 *
 * With IGPT_BIG_TESTS=1 (minutes, ~10 GB of memory): iGPT-L is loaded and its decoder built,
 * with no file read of more than 2 GiB in one call (fs caps a read at 2 GiB); a file over 2 GiB
 * goes through the whole-file reader; and iGPT-M (455 M, random weights) samples two 32×32 images
 * through `igpt sample`, timed.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs, { closeSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { totalmem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeModelFolder } from '../src/pipeline/info.js';
import { CONFIG_FILE, configToHf, inspectModelFolder, loadModelFolder, PREPROCESSOR_FILE, preprocessorJson, saveModelFolder, WEIGHTS_FILE } from '../src/io/hf.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { loadKernels } from '../src/kernels/select.js';
import { makeConfig, presetShape, type ModelConfig, type ModelShape } from '../src/model/config.js';
import { KvDecoder } from '../src/model/decode.js';
import { initParameters, parameterCount, ParameterTensors, tensorLayout } from '../src/model/parameters.js';
import type { Palette } from '../src/palette/palette.js';
import { checkSamplingFits, samplingMemory } from '../src/sample/memory.js';
import { Rng } from '../src/util/rng.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
const BIG = process.env.IGPT_BIG_TESTS === '1';
const root = mkdtempSync(join(tmpdir(), 'igpt-big-'));
after(() => rmSync(root, { recursive: true, force: true }));

const GiB = 2 ** 30;

function rgbPalette(k: number): Palette {
  const rng = new Rng(1);
  return { k, channels: 3, centers: Float32Array.from({ length: k * 3 }, () => 2 * rng.next() - 1) };
}

/** The paper's 32×32 RGB setting: 512 colors + SOS, 1024 positions, no class head. */
const imageGptConfig = (shape: ModelShape): ModelConfig => makeConfig(shape, 512, 1024, 0);

/**
 * An HF folder of `cfg` whose model.safetensors has a real header and sparse data (zeros, no disk
 * blocks): the layout our writer produces, written here from the format's definition.
 */
function writeSparseModel(dir: string, cfg: ModelConfig): number {
  mkdirSync(dir, { recursive: true });
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const t of tensorLayout(cfg)) {
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + 4 * t.size] };
    offset += 4 * t.size;
  }
  const json = Buffer.from(JSON.stringify(header));
  const padded = Buffer.alloc(Math.ceil(json.length / 8) * 8, 0x20);
  json.copy(padded);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(padded.length));
  const fd = openSync(join(dir, WEIGHTS_FILE), 'w');
  writeSync(fd, length);
  writeSync(fd, padded);
  ftruncateSync(fd, 8 + padded.length + offset);
  closeSync(fd);
  fs.writeFileSync(join(dir, CONFIG_FILE), JSON.stringify(configToHf(cfg)));
  fs.writeFileSync(join(dir, PREPROCESSOR_FILE), preprocessorJson(rgbPalette(512), { height: 32, width: 32 }));
  return 8 + padded.length + offset;
}

const igptL = imageGptConfig(presetShape('igpt-l'));
const igptM = imageGptConfig(presetShape('igpt-m'));
const largeDir = join(root, 'igpt-l');
const largeBytes = writeSparseModel(largeDir, igptL);

/** Runs igpt; `peakBytes` is the process's peak resident memory (Linux /proc, polled). */
function igpt(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; ms: number; peakBytes: number }> {
  const t0 = performance.now();
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '', stderr = '', peakBytes = 0;
  const poll = setInterval(() => {
    try {
      const kib = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1];
      if (kib) peakBytes = Math.max(peakBytes, Number(kib) * 1024);
    } catch { /* ended */ }
  }, 200);
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  return new Promise((resolve) => child.on('close', (code) => {
    clearInterval(poll);
    resolve({ code, stdout, stderr, ms: performance.now() - t0, peakBytes });
  }));
}

test('igpt info on an iGPT-L-shaped folder (1.4 B parameters, 5.6 GB) reads its headers only, in milliseconds', async () => {
  assert.ok(parameterCount(igptL) > 1.3e9 && largeBytes > 5.2e9, `${parameterCount(igptL)} parameters, ${largeBytes} bytes`);
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    describeModelFolder(largeDir, false);
    times.push(performance.now() - t0);
  }
  const summary = inspectModelFolder(largeDir);
  const text = describeModelFolder(largeDir, false);
  const ms = Math.min(...times);
  console.log(`# iGPT-L (${parameterCount(igptL).toLocaleString('en-US')} parameters, ${(largeBytes / 1e9).toFixed(2)} GB): ` +
              `described from its headers in ${ms.toFixed(1)} ms (best of 5; first call ${times[0].toFixed(1)} ms)`);
  assert.equal(summary.tensors.length, tensorLayout(igptL).length);
  assert.deepEqual(summary.missing, []);
  assert.match(text, new RegExp(`parameters: ${parameterCount(igptL).toLocaleString('en-US')} \\(5\\.\\d\\d GiB as float32\\)`));
  assert.match(text, /d 1536, layers 48, heads 16/);
  assert.ok(ms < 500, `took ${ms} ms`);

  const cli = await igpt(['info', largeDir]);
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(cli.stdout, /d 1536, layers 48, heads 16/);
  console.log(`# igpt info (the whole command, Node start-up included): ${cli.ms.toFixed(0)} ms`);
});

test('the sampling memory estimate: iGPT-L fits in 24 GiB, not in 8 GiB, where iGPT-M is named as the largest that fits', () => {
  const need = samplingMemory(igptL, 8, 8, 'f16', 'ar');
  assert.equal(need.weights, 4 * parameterCount(igptL));
  assert.ok(need.total > 8 * GiB && need.total < 16 * GiB, `${need.total}`);
  assert.doesNotThrow(() => checkSamplingFits(largeDir, igptL, 8, 8, 'f16', 'ar', 24 * GiB));
  assert.throws(() => checkSamplingFits(largeDir, igptL, 8, 8, 'f16', 'ar', 8 * GiB), new RegExp(
    `${largeDir}: sampling this model \\(1\\d{3}M parameters\\) needs about \\d+\\.\\d GiB \\(5\\.\\d GiB of float32 weights, ` +
    `2\\.\\d GiB of packed f16 weights, \\d\\.\\d GiB of key/value caches for 8 images at a time\\) but only 8\\.0 GiB is available; ` +
    `the largest preset that fits is igpt-m \\(45\\dM parameters, about \\d\\.\\d GiB\\)`));
  assert.throws(() => checkSamplingFits(largeDir, igptL, 8, 8, 'f32', 'ar', 8 * GiB), /--precision f16 halves/);
});

test('igpt sample on a model larger than this machine is refused from its headers, before allocating, with the estimate', async () => {
  // d 4096: 201 M parameters a layer; enough layers for twice this machine's memory (a sparse file).
  const layers = Math.ceil((2 * totalmem()) / (4 * 12 * 4096 * 4096));
  const giant = imageGptConfig({ nEmbd: 4096, nLayer: layers, nHead: 32 });
  const dir = join(root, 'giant');
  writeSparseModel(dir, giant);
  const r = await igpt(['sample', '--model', dir, '--count', '2', '--samples', '1', '--out', join(root, 'giant.png')]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`igpt: ${dir}: sampling this model \\(\\d+M parameters\\) needs about \\d+\\.\\d GiB \\(.*\\) ` +
                                    `but only \\d+\\.\\d GiB is available; the largest preset that fits is igpt-`));
  assert.ok(r.ms < 30_000, `${r.ms} ms`);
});

/** Runs `work` while recording the largest length passed to fs.readSync (ESM imports see the patch). */
function largestRead<T>(work: () => T): { result: T; largest: number } {
  const original = fs.readSync;
  let largest = 0;
  (fs as { readSync: unknown }).readSync = (...args: unknown[]): number => {
    const length = typeof args[3] === 'number' ? args[3] : (args[1] as Uint8Array).byteLength;
    largest = Math.max(largest, length);
    return (original as (...a: unknown[]) => number)(...args);
  };
  syncBuiltinESMExports();
  try {
    return { result: work(), largest };
  } finally {
    fs.readSync = original;
    syncBuiltinESMExports();
  }
}

test('iGPT-L loads for sampling within memory, no read over 2 GiB in one call (IGPT_BIG_TESTS=1)', { skip: !BIG }, () => {
  const t0 = performance.now();
  const { result: loaded, largest } = largestRead(() => loadModelFolder(largeDir));
  const loadSeconds = (performance.now() - t0) / 1000;
  assert.equal(loaded.params.count, parameterCount(igptL));
  assert.ok(largest > 0 && largest < 2 * GiB, `largest read ${largest}`);
  const kernels = loadKernels();
  const t1 = performance.now();
  const decoder = new KvDecoder(kernels, loaded.params, 1, igptL.nPositions, 'f16');
  for (let t = 0; t < 4; t++) decoder.feed(Int32Array.of(t === 0 ? 512 : 0));
  const decodeSeconds = (performance.now() - t1) / 1000;
  const rss = process.memoryUsage().rss;
  console.log(`# iGPT-L: loaded ${(largeBytes / 1e9).toFixed(2)} GB in ${loadSeconds.toFixed(1)} s (largest single read ` +
              `${(largest / 2 ** 20).toFixed(0)} MiB); decoder (${decoder.precision}) built and 4 pixels fed in ${decodeSeconds.toFixed(1)} s; ` +
              `resident memory ${(rss / GiB).toFixed(1)} GiB (estimate for 1 image: ${(samplingMemory(igptL, 1, 1, 'f16', 'ar').total / GiB).toFixed(1)} GiB)`);
  assert.ok(decoder.logits.every(Number.isFinite));
});

test('a safetensors file over 2 GiB is read tensor by tensor (IGPT_BIG_TESTS=1)', { skip: !BIG }, () => {
  const dir = join(root, 'adam');
  const values = 640 * 2 ** 20; // 2.5 GiB of float32, one tensor
  mkdirSync(dir);
  const file = join(dir, 'optimizer.safetensors');
  const json = Buffer.from(JSON.stringify({ 'adam.m': { dtype: 'F32', shape: [values], data_offsets: [0, 4 * values] } }).padEnd(64));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  const fd = openSync(file, 'w');
  writeSync(fd, length);
  writeSync(fd, json);
  const mark = Buffer.alloc(4);
  mark.writeFloatLE(1.5);
  writeSync(fd, mark, 0, 4, 8 + json.length + 4 * (values - 1)); // the last value
  closeSync(fd);
  assert.throws(() => readFileSync(file), /ERR_FS_FILE_TOO_LARGE|greater than 2 GiB/, 'a whole-file read would fail');
  const { result, largest } = largestRead(() => readSafetensors(file));
  const m = result.tensors.get('adam.m')!.data;
  assert.equal(m.length, values);
  assert.equal(m[values - 1], 1.5);
  assert.ok(largest < 2 * GiB);
});

test('iGPT-M (455 M parameters, random weights) samples two 32×32 images with igpt sample (IGPT_BIG_TESTS=1)', { skip: !BIG }, async () => {
  const dir = join(root, 'igpt-m');
  const params = new ParameterTensors(igptM);
  initParameters(params, 0);
  const t0 = performance.now();
  saveModelFolder(dir, params, rgbPalette(512));
  const saveSeconds = (performance.now() - t0) / 1000;
  const out = join(root, 'igpt-m.png');
  const r = await igpt(['sample', '--model', dir, '--count', '2', '--samples', '1', '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  const ids = JSON.parse(readFileSync(out.replace(/\.png$/, '.json'), 'utf8')) as { completions: number[]; seconds: number };
  assert.equal(ids.completions.length, 2 * 1024);
  assert.ok(ids.completions.every((v) => v >= 0 && v < 512));
  console.log(`# iGPT-M: ${parameterCount(igptM).toLocaleString('en-US')} parameters written in ${saveSeconds.toFixed(1)} s; ` +
              `2 images of 32×32 sampled in ${ids.seconds.toFixed(1)} s (the command: ${(r.ms / 1000).toFixed(1)} s, ` +
              `peak resident memory ${(r.peakBytes / GiB).toFixed(1)} GiB; estimate ${(samplingMemory(igptM, 2, 8, 'f16', 'ar').total / GiB).toFixed(1)} GiB)`);
  assert.ok(r.peakBytes < 24 * GiB);
});
