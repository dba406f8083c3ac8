/**
 * PyTorch checkpoints (pytorch_model.bin) and models by name from the Hugging Face cache:
 * checkpoints written by the installed torch.save load with exactly the weights (and logits) of
 * the same model saved as safetensors; hand-built archives cover views and dtypes without Python;
 * hostile pickles and broken archives are refused with errors naming the file.
 */
import { test, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCli } from './cli.js';
import { describeModelFolder, describeWeightFile } from '../src/pipeline/info.js';
import { convertModelFolder, inspectModelFolder, loadModelFolder, resolveModelDir, saveModelFolder } from '../src/io/hf.js';
import { hubCacheDir } from '../src/io/hf-cache.js';
import { ACCEPTED_OPCODES } from '../src/io/pickle.js';
import { float32ToBfloat16Bits, float32ToHalfBits, halfToFloat32, bfloat16ToFloat32 } from '../src/io/safetensors.js';
import { TORCH_GLOBALS, TorchCheckpoint } from '../src/io/torch-checkpoint.js';
import { createPortableKernels } from '../src/kernels/portable.js';
import { makeConfig, type ModelConfig } from '../src/model/config.js';
import { computeLogits, ImageGPT } from '../src/model/model.js';
import { loadTokenDataset, saveTokenDataset } from '../src/data/tokens.js';
import { evaluateNll } from '../src/train/evaluate.js';
import { initParameters, ParameterTensors } from '../src/model/parameters.js';
import type { Palette } from '../src/palette/palette.js';
import { Rng } from '../src/util/rng.js';
import { float32Checkpoint, PickleWriter, stateDictPickle, storedZip, torchArchive, type ArchiveTensor } from './torch-archive.js';

const PYTHON = '/usr/bin/python3';
const TORCH_SAVE_SCRIPT = fileURLToPath(new URL('./fixtures/torch_save.py', import.meta.url));
const TORCH_PRETRAIN_SCRIPT = fileURLToPath(new URL('../bench/torch_pretrain.py', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'igpt-torch-'));
after(() => rmSync(root, { recursive: true, force: true }));
let dirCount = 0;
const freshDir = (): string => { const d = join(root, `case-${dirCount++}`); mkdirSync(d); return d; };

/** k = 16 gray colors, 4×4 images, d 32, 2 layers, a 3-class head. */
const config: ModelConfig = makeConfig({ nEmbd: 32, nLayer: 2, nHead: 4 }, 16, 16, 3);
const palette: Palette = { k: 16, channels: 1, centers: Float32Array.from({ length: 16 }, (_, i) => -1 + (2 * i) / 15) };

/** Random values everywhere (gains and heads included: their init values would hide bugs). */
function randomParameters(seed: number): ParameterTensors {
  const p = new ParameterTensors(config);
  initParameters(p, seed);
  const rng = new Rng(seed);
  for (let i = 0; i < p.data.length; i++) p.data[i] = rng.normal() * 0.3;
  return p;
}

function rounded(p: ParameterTensors, dtype: 'F16' | 'BF16'): ParameterTensors {
  const out = new ParameterTensors(p.config);
  const bits = Uint16Array.from(p.data, dtype === 'F16' ? float32ToHalfBits : float32ToBfloat16Bits);
  (dtype === 'F16' ? halfToFloat32 : bfloat16ToFloat32)(out.data, bits);
  return out;
}

function logitsOf(params: ParameterTensors): Float32Array {
  const T = config.nPositions, B = 2, rng = new Rng(9);
  const tokens = Int32Array.from({ length: B * T }, (_, i) => (i % T === 0 ? config.vocabSize - 1 : rng.int(config.vocabSize - 1)));
  return computeLogits(createPortableKernels(), params, tokens, B, T);
}

// ---------------------------------------------------------------------------------------------
// Checkpoints written by PyTorch

test('torch.save checkpoints (float32, float16, bfloat16, views of shared storages) load with the weights and logits of their safetensors twins', (t: TestContext) => {
  const dir = freshDir();
  const params = randomParameters(1);
  const ours = join(dir, 'ours');
  saveModelFolder(ours, params, palette);
  const r = spawnSync(PYTHON, [TORCH_SAVE_SCRIPT, ours, dir], { encoding: 'utf8' });
  if (r.error || /No module named '(torch|numpy)'/.test(r.stderr ?? '')) {
    t.skip(`${PYTHON} cannot import torch: checkpoints written by torch.save not tested`);
    return;
  }
  assert.equal(r.status, 0, r.stderr);
  const expected = { f32: params, views: params, f16: rounded(params, 'F16'), bf16: rounded(params, 'BF16') };
  for (const [variant, want] of Object.entries(expected)) {
    const folder = join(dir, variant);
    assert.ok(!existsSync(join(folder, 'model.safetensors')));
    const loaded = loadModelFolder(folder);
    assert.deepEqual(loaded.config, config, variant);
    assert.deepEqual(loaded.ignoredTensors, [], `${variant}: HF's mask buffers are skipped silently`);
    assert.equal(loaded.palette?.k, 16);
    assert.deepEqual(loaded.params.data, want.data, `${variant}: weights differ`);
    if (variant === 'f16') assert.notDeepEqual(want.data, params.data, 'float16 rounding changes the weights');
    // The same weights through our safetensors writer and reader give the same logits.
    const twin = join(dir, `${variant}-safetensors`);
    saveModelFolder(twin, want, palette);
    assert.deepEqual(logitsOf(loaded.params), logitsOf(loadModelFolder(twin).params), `${variant}: logits differ`);
  }
  const summary = inspectModelFolder(join(dir, 'f16'));
  assert.equal(summary.tensors.find((x) => x.name === 'transformer.wte.weight')?.dtype, 'F16');
  assert.equal(summary.tensors.find((x) => x.name === 'transformer.h.0.attn.bias')?.dtype, 'BOOL');
  assert.deepEqual(summary.missing, []);
  assert.match(describeModelFolder(join(dir, 'views'), false), /weights: pytorch_model\.bin/);
  assert.match(describeWeightFile(join(dir, 'f16', 'pytorch_model.bin'), false), /transformer\.h\.1\.attn\.bias\s+\[1, 1, 16, 16\]\s+BOOL/);

  // Converted once, the folder reads as safetensors with the same weights, palette and labels.
  const converted = join(dir, 'converted');
  convertModelFolder(join(dir, 'f16'), converted);
  const back = loadModelFolder(converted);
  assert.deepEqual(back.params.data, expected.f16.data);
  assert.deepEqual(back.palette, loadModelFolder(ours).palette);
  assert.deepEqual(back.labels, ['LABEL_0', 'LABEL_1', 'LABEL_2']);
  assert.ok(existsSync(join(converted, 'model.safetensors')));
});

test('the PyTorch pretraining peer (bench/torch_pretrain.py) saves a folder igpt reads, whose test NLL igpt computes as PyTorch did', async (t: TestContext) => {
  const dir = freshDir();
  const rng = new Rng(5);
  const split = (count: number) => ({
    count, tokens: Uint8Array.from({ length: count * 16 }, (_, i) => (i % 4 === 0 ? rng.int(4) : rng.int(16))),
    labels: Int32Array.from({ length: count }, () => rng.int(3)),
  });
  const tokensDir = join(dir, 'tokens');
  saveTokenDataset(tokensDir, {
    meta: { source: 'generated', side: 4, pixels: 16, channels: 1, numClasses: 3, splitSeed: 0 }, palette,
    train: split(40), val: split(8), test: split(12),
  });
  const out = join(dir, 'torch');
  const r = spawnSync(PYTHON, [TORCH_PRETRAIN_SCRIPT, '--data', tokensDir, '--out', out, '--steps', '6', '--width', '16', '--layers', '2',
    '--heads', '2', '--batch', '4', '--lr', '0.01', '--test-images', '12'], { encoding: 'utf8' });
  if (r.error || /No module named '(torch|numpy)'/.test(r.stderr ?? '')) {
    t.skip(`${PYTHON} cannot import torch: the PyTorch pretraining peer not tested`);
    return;
  }
  assert.equal(r.status, 0, r.stderr);
  const result = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { steps: number; test_nll: number };
  assert.equal(result.steps, 6);
  const loaded = loadModelFolder(join(out, 'model'));
  assert.deepEqual(loaded.config, makeConfig({ nEmbd: 16, nLayer: 2, nHead: 2 }, 16, 16, 0));
  assert.deepEqual(loaded.palette, palette);
  assert.ok(loaded.params.lmHead.some((w) => w !== 0), 'trained: the zero-initialized head moved');
  const model = new ImageGPT(createPortableKernels(), loaded.config, loaded.params);
  const ours = await evaluateNll(model, loadTokenDataset(tokensDir).test, 'ar', { batch: 5 });
  assert.ok(Math.abs(ours.natsPerPixel - result.test_nll) < 1e-5, `igpt ${ours.natsPerPixel} vs PyTorch ${result.test_nll}`);
  assert.ok(result.test_nll < Math.log(16), 'below the uniform guess');
});

test('igpt convert writes a safetensors folder from a pytorch_model.bin folder', async () => {
  const dir = freshDir();
  const params = randomParameters(2);
  const src = join(dir, 'src');
  saveModelFolder(src, params, palette);
  writeFileSync(join(src, 'pytorch_model.bin'), float32Checkpoint(params.layout.map((x) => ({
    name: x.name, shape: x.shape, data: params.data.subarray(x.offset, x.offset + x.size),
  }))));
  rmSync(join(src, 'model.safetensors'));
  assert.match(await runCli(['convert', src, '--out', join(dir, 'out')]), /26,976 parameters/);
  assert.deepEqual(loadModelFolder(join(dir, 'out')).params.data, params.data);
});

test('a sharded pytorch_model.bin.index.json folder loads', () => {
  const dir = freshDir();
  const params = randomParameters(5);
  saveModelFolder(dir, params, palette);
  rmSync(join(dir, 'model.safetensors'));
  const tensors = params.layout.map((x) => ({ name: x.name, shape: x.shape, data: params.data.subarray(x.offset, x.offset + x.size) }));
  const half = Math.floor(tensors.length / 2);
  const shards = [tensors.slice(0, half), tensors.slice(half)];
  const weightMap: Record<string, string> = {};
  shards.forEach((shard, i) => {
    const name = `pytorch_model-0000${i + 1}-of-00002.bin`;
    writeFileSync(join(dir, name), float32Checkpoint(shard));
    for (const x of shard) weightMap[x.name] = name;
  });
  writeFileSync(join(dir, 'pytorch_model.bin.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  assert.deepEqual(loadModelFolder(dir).params.data, params.data);
  assert.equal(inspectModelFolder(dir).weightFiles.length, 2);
});

// ---------------------------------------------------------------------------------------------
// Hand-built archives: views, dtypes, names

const f32 = (values: number[]): Uint8Array => new Uint8Array(Float32Array.from(values).buffer);
const u16 = (values: number[]): Uint8Array => new Uint8Array(Uint16Array.from(values).buffer);
const view = (name: string, key: string, storageSize: number, offset: number, shape: number[], stride: number[],
              storageType = 'FloatStorage'): ArchiveTensor => ({ name, storageType, key, storageSize, offset, shape, stride });

function writeArchive(tensors: ArchiveTensor[], storages: [string, Uint8Array][], top = 'archive', zip64 = false): string {
  const file = join(freshDir(), 'pytorch_model.bin');
  writeFileSync(file, torchArchive(stateDictPickle(tensors), new Map(storages), top, zip64));
  return file;
}

function readAll(file: string): Map<string, number[]> {
  const c = TorchCheckpoint.open(file);
  try {
    return new Map(c.entries.map((e) => [e.name, [...c.read(e.name)]]));
  } finally {
    c.close();
  }
}

test('torch checkpoint: strided views, offsets and shared storages are made contiguous', () => {
  const storage = Array.from({ length: 12 }, (_, i) => i);
  const file = writeArchive([
    view('a', '0', 12, 0, [3, 4], [4, 1]),
    view('transposed', '0', 12, 0, [4, 3], [1, 4]),
    view('rows-1-2', '0', 12, 4, [2, 4], [4, 1]),
    view('column-2', '0', 12, 2, [3], [4]),
    view('every-other-of-transposed', '0', 12, 1, [2, 3], [2, 4]),
    view('broadcast', '0', 12, 5, [2, 3], [0, 1]),
    view('scalar', '0', 12, 11, [], []),
    view('empty', '0', 12, 0, [0, 4], [4, 1]),
  ], [['0', f32(storage)]], 'some_name');
  const t = readAll(file);
  // The same archive in zip64 form (as files over 4 GiB are written) reads the same.
  const zip64 = writeArchive([view('a', '0', 12, 0, [3, 4], [4, 1]), view('transposed', '0', 12, 0, [4, 3], [1, 4])],
    [['0', f32(storage)]], 'some_name', true);
  assert.deepEqual(readAll(zip64), new Map([['a', t.get('a')], ['transposed', t.get('transposed')]]));
  assert.deepEqual(t.get('a'), storage);
  assert.deepEqual(t.get('transposed'), [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
  assert.deepEqual(t.get('rows-1-2'), [4, 5, 6, 7, 8, 9, 10, 11]);
  assert.deepEqual(t.get('column-2'), [2, 6, 10]);
  assert.deepEqual(t.get('every-other-of-transposed'), [1, 5, 9, 3, 7, 11]);
  assert.deepEqual(t.get('broadcast'), [5, 6, 7, 5, 6, 7]);
  assert.deepEqual(t.get('scalar'), [11]);
  assert.deepEqual(t.get('empty'), []);
});

test('torch checkpoint: float16, bfloat16 and float64 storages read as float32; integer ones are listed, not read', () => {
  const file = writeArchive([
    view('half', 'h', 3, 0, [3], [1], 'HalfStorage'),
    view('bf', 'b', 2, 1, [1], [1], 'BFloat16Storage'),
    view('double', 'd', 2, 0, [2], [1], 'DoubleStorage'),
    view('mask', 'm', 4, 0, [1, 1, 2, 2], [4, 4, 2, 1], 'BoolStorage'),
  ], [['h', u16([0x3c00, 0xc000, 0x3555])], ['b', u16([0x3f80, 0x4049])],
      ['d', new Uint8Array(Float64Array.from([0.25, -3]).buffer)], ['m', Uint8Array.from([1, 0, 1, 1])]]);
  const c = TorchCheckpoint.open(file);
  try {
    assert.deepEqual(c.entries.map((e) => e.dtype), ['F16', 'BF16', 'F64', 'BOOL']);
    assert.deepEqual([...c.read('half')], [1, -2, Math.fround(0.333251953125)]);
    assert.deepEqual([...c.read('bf')], [3.140625]);
    assert.deepEqual([...c.read('double')], [0.25, -3]);
    assert.throws(() => c.read('mask'), (e: Error) => e.message.includes(file) && /"mask" has dtype BOOL/.test(e.message));
    assert.throws(() => c.read('half', [4]), /has shape \[3\], expected \[4\]/);
  } finally {
    c.close();
  }
});

// ---------------------------------------------------------------------------------------------
// Hostile and broken files

/** Writes `pickle` as the data.pkl of an archive with one 12-value float storage "0"; returns the file. */
function archiveWithPickle(pickle: Uint8Array, storages: [string, Uint8Array][] = [['0', f32(Array(12).fill(1))]]): string {
  const file = join(freshDir(), 'pytorch_model.bin');
  writeFileSync(file, torchArchive(pickle, new Map(storages)));
  return file;
}

/** Asserts that opening `file` fails with an error that names it and matches `why`. */
function refused(file: string, why: RegExp): void {
  assert.throws(() => TorchCheckpoint.open(file), (e: Error) => {
    assert.ok(e.message.includes(file), `the error does not name ${file}: ${e.message}`);
    assert.match(e.message, why);
    return true;
  });
}

test('torch checkpoint: pickles that would run code are refused, naming the file and the global', () => {
  const dir = freshDir();
  const marker = join(dir, 'pwned');
  const call = (module: string, name: string, arg: string): Uint8Array =>
    new PickleWriter().proto().global(module, name).str(arg).op(0x85).reduce().stop().bytes();
  refused(archiveWithPickle(call('os', 'system', `touch ${marker}`)), /refused global os\.system/);
  refused(archiveWithPickle(call('posix', 'system', `touch ${marker}`)), /refused global posix\.system/);
  refused(archiveWithPickle(call('builtins', 'eval', `open('${marker}', 'w')`)), /refused global builtins\.eval/);
  refused(archiveWithPickle(call('torch', 'load', marker)), /refused global torch\.load/);
  // STACK_GLOBAL (protocol 4) names its global with strings from the stack.
  const stackGlobal = new PickleWriter().proto().str('builtins').str('exec').op(0x93).str('1').op(0x85).reduce().stop().bytes();
  refused(archiveWithPickle(stackGlobal), /refused global builtins\.exec/);
  // REDUCE on something that is not an allowed callable.
  refused(archiveWithPickle(new PickleWriter().proto().global('torch', 'FloatStorage').emptyTuple().reduce().stop().bytes()),
    /REDUCE on torch\.FloatStorage/);
  refused(archiveWithPickle(new PickleWriter().proto().str('os.system').str('ls').op(0x85).reduce().stop().bytes()),
    /REDUCE on the string "os\.system"/);
  // Opcodes a state dict never uses: INST and OBJ (old-style calls), BUILD on a non-dict.
  refused(archiveWithPickle(Uint8Array.from([0x80, 2, ...Buffer.from('ios\nsystem\n'), 0x2e])), /refused opcode 0x69/);
  refused(archiveWithPickle(new PickleWriter().proto().mark().global('collections', 'OrderedDict').op(0x6f).stop().bytes()), /refused opcode 0x6f/);
  refused(archiveWithPickle(new PickleWriter().proto().emptyTuple().emptyDict().op(0x62).stop().bytes()), /BUILD on a tuple/);
  assert.ok(!existsSync(marker), 'nothing ran');
  // The allowlist is exactly what a state dict needs.
  assert.deepEqual([...TORCH_GLOBALS.keys()].filter((g) => !g.endsWith('Storage')).sort(),
    ['collections.OrderedDict', 'torch._utils._rebuild_parameter', 'torch._utils._rebuild_parameter_with_state', 'torch._utils._rebuild_tensor_v2']);
  assert.ok(ACCEPTED_OPCODES.includes('BINPERSID') && !ACCEPTED_OPCODES.includes('INST'));
});

test('torch checkpoint: truncated archives, short storages and forged sizes are refused clearly', () => {
  const good = float32Checkpoint([{ name: 'w', shape: [3, 4], data: Float32Array.from({ length: 12 }, (_, i) => i) }]);
  const cut = (n: number): string => { const f = join(freshDir(), 'pytorch_model.bin'); writeFileSync(f, good.subarray(0, n)); return f; };
  refused(cut(good.length - 30), /not a zip archive, or a truncated one/);
  refused(cut(good.length / 2), /truncated/);
  refused(cut(0), /not a zip archive/);
  const wt = (t: Partial<ArchiveTensor>): ArchiveTensor => ({ ...view('w', '0', 12, 0, [3, 4], [4, 1]), ...t });
  const file = (tensors: ArchiveTensor[], storages: [string, Uint8Array][] = [['0', f32(Array(12).fill(1))]]): string =>
    archiveWithPickle(stateDictPickle(tensors), storages);
  // A storage shorter than declared, a tensor reaching past its storage.
  refused(file([wt({})], [['0', f32(Array(8).fill(1))]]), /declares 12 values of F32 \(48 bytes\), but archive\/data\/0 holds 32 bytes/);
  refused(file([wt({ shape: [4, 4] })]), /reaches element 15 of storage "0", which holds 12/);
  refused(file([wt({ offset: 1 })]), /reaches element 12/);
  refused(file([wt({ stride: [5, 1] })]), /reaches element 13/);
  // Forged sizes: huge storages, shapes, offsets; missing storages; odd keys and types.
  refused(file([wt({ storageSize: 2 ** 40 })]), /declares 1099511627776 values/);
  refused(file([wt({ shape: [2 ** 31, 2 ** 31], stride: [0, 0] })]), /implausibly large/);
  refused(file([wt({ shape: [65536, 65536], stride: [1, 1] })]), /reaches element 131070/);
  refused(file([wt({ offset: 2 ** 31 })]), /reaches element/);
  refused(file([wt({ key: '1' })]), /storage "1" has no entry archive\/data\/1/);
  refused(file([wt({ key: '../../etc/passwd' })]), /storage key/);
  refused(file([wt({ storageType: 'IntStorage' }), wt({ name: 'v' })]), /storage "0" is declared twice, differently/);
  refused(file([wt({ storageType: 'QUInt8Storage' })]), /refused global torch\.QUInt8Storage/);
  refused(file([wt({ shape: [3, 4], stride: [4] })]), /differ in rank/);
  // Pickles that are cut, or that build something other than a state dict.
  const pickle = stateDictPickle([wt({})]);
  refused(archiveWithPickle(pickle.subarray(0, pickle.length - 5)), /truncated pickle/);
  refused(archiveWithPickle(new PickleWriter().proto().op(0x5d).stop().bytes()), /expected a state dict .* a list of 0/);
  refused(archiveWithPickle(new PickleWriter().proto().op(0x68, 7).stop().bytes()), /memo entry 7 read before it was written/);
  refused(archiveWithPickle(new PickleWriter().proto().op(0x8a, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9).stop().bytes()), /LONG1 of 9 bytes/);
  refused(archiveWithPickle(new PickleWriter().proto().op(0x58, 0xff, 0xff, 0xff, 0x7f).stop().bytes()), /truncated pickle/);
  // Archives that are not torch.save's.
  const noPickle = join(freshDir(), 'x.bin');
  writeFileSync(noPickle, storedZip([['a/b', Uint8Array.from([1])]]));
  refused(noPickle, /without <folder>\/data\.pkl/);
  const legacy = join(freshDir(), 'old.bin');
  writeFileSync(legacy, Uint8Array.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]));
  refused(legacy, /PyTorch older than 1\.6/);
});

test('model folders: a broken pytorch_model.bin is named in the error', () => {
  const dir = freshDir();
  saveModelFolder(dir, randomParameters(3), palette);
  rmSync(join(dir, 'model.safetensors'));
  writeFileSync(join(dir, 'pytorch_model.bin'), 'not really');
  assert.throws(() => loadModelFolder(dir), (e: Error) => e.message.includes(join(dir, 'pytorch_model.bin')) && /not a zip archive/.test(e.message));
});

// ---------------------------------------------------------------------------------------------
// Models by name from the Hugging Face cache

test('owner/name resolves in the Hugging Face cache (HF_HUB_CACHE, HF_HOME, ~/.cache), and an absent model says how to fetch it', () => {
  const hub = join(freshDir(), 'hub');
  const repo = join(hub, 'models--someone--tiny-igpt');
  const revision = 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678';
  const snapshot = join(repo, 'snapshots', revision);
  const params = randomParameters(4);
  // As huggingface_hub lays it out: files in blobs/, the snapshot holding symlinks to them.
  const staging = join(hub, 'staging');
  saveModelFolder(staging, params, palette);
  mkdirSync(join(repo, 'blobs'), { recursive: true });
  mkdirSync(snapshot, { recursive: true });
  mkdirSync(join(repo, 'refs'));
  for (const [i, f] of ['config.json', 'model.safetensors', 'preprocessor_config.json'].entries()) {
    writeFileSync(join(repo, 'blobs', `blob${i}`), readFileSync(join(staging, f)));
    symlinkSync(join('..', '..', 'blobs', `blob${i}`), join(snapshot, f));
  }
  writeFileSync(join(repo, 'refs', 'main'), revision);

  assert.equal(resolveModelDir('someone/tiny-igpt', { HF_HUB_CACHE: hub }), snapshot);
  assert.equal(resolveModelDir('someone/tiny-igpt', { HF_HOME: join(hub, '..') }), snapshot);
  assert.equal(hubCacheDir({}), join(homedir(), '.cache', 'huggingface', 'hub'));
  assert.equal(hubCacheDir({ HF_HUB_CACHE: '/x', HF_HOME: '/y' }), '/x');
  const saved = process.env.HF_HUB_CACHE;
  process.env.HF_HUB_CACHE = hub;
  try {
    assert.deepEqual(loadModelFolder('someone/tiny-igpt').params.data, params.data);
    assert.match(describeModelFolder('someone/tiny-igpt', false), new RegExp(`model folder: ${snapshot} \\(someone/tiny-igpt\\)`));
    assert.throws(() => loadModelFolder('someone/absent'), (e: Error) =>
      e.message.includes(join(hub, 'models--someone--absent')) && e.message.includes('huggingface-cli download someone/absent'));
    // Without refs/main, the one snapshot there is; a dangling ref is named.
    rmSync(join(repo, 'refs', 'main'));
    assert.equal(resolveModelDir('someone/tiny-igpt'), snapshot);
    writeFileSync(join(repo, 'refs', 'main'), 'ffff');
    assert.throws(() => resolveModelDir('someone/tiny-igpt'), /revision ffff, but .* is missing/);
  } finally {
    if (saved === undefined) delete process.env.HF_HUB_CACHE;
    else process.env.HF_HUB_CACHE = saved;
  }
  // Paths are never taken for names.
  assert.throws(() => resolveModelDir('./someone/tiny-igpt', { HF_HUB_CACHE: hub }), /model folder does not exist/);
  assert.throws(() => resolveModelDir('/abs/path', { HF_HUB_CACHE: hub }), /model folder does not exist/);
});
