import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  bfloat16ToFloat32, encodeHeader, float32ToBfloat16Bits, float32ToHalfBits, halfToFloat32,
  readSafetensors, SafetensorsReader, writeSafetensors, type TensorToWrite,
} from '../src/io/safetensors.js';
import {
  configFromHf, float32Json, inspectModelFolder, loadModelFolder, saveModelFolder,
} from '../src/io/hf.js';
import { writeOpenAiClusters } from '../src/io/openai.js';
import { describeModelFolder } from '../src/pipeline/info.js';
import { makeConfig, type ModelConfig } from '../src/model/config.js';
import { initParameters, parameterCount, ParameterTensors, tensorLayout } from '../src/model/parameters.js';
import type { Palette } from '../src/palette/palette.js';
import type { Kernels } from '../src/kernels/kernels.js';
import { createPortableKernels } from '../src/kernels/portable.js';
import { loadKernels } from '../src/kernels/select.js';
import { computeLogits } from '../src/model/model.js';
import { Rng } from '../src/util/rng.js';

const PYTHON = '/usr/bin/python3';
const REFERENCE_SCRIPT = fileURLToPath(new URL('./fixtures/hf_reference.py', import.meta.url));

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'igpt-io-'));
}

function withTempDir(fn: (dir: string, t: TestContext) => void | Promise<void>): (t: TestContext) => Promise<void> {
  return async (t) => {
    const dir = tempDir();
    try { await fn(dir, t); } finally { rmSync(dir, { recursive: true, force: true }); }
  };
}

/** A safetensors file built by hand (not by our writer): header JSON as given, then raw data. */
function handmadeSafetensors(header: unknown, data: Uint8Array, lengthOverride?: bigint): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

/** A string matched literally inside a RegExp. */
const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const u16bytes = (values: number[]): Uint8Array => new Uint8Array(Uint16Array.from(values).buffer);
const f32bytes = (values: number[]): Uint8Array => new Uint8Array(Float32Array.from(values).buffer);

/** A tiny config with a classification head: k = 16 gray colors, 4×4 images. */
const tinyConfig: ModelConfig = makeConfig({ nEmbd: 32, nLayer: 2, nHead: 4 }, 16, 16, 3);

/** Random values in every tensor, heads and gains included (their init values would hide bugs). */
function randomParameters(cfg: ModelConfig, seed: number): ParameterTensors {
  const p = new ParameterTensors(cfg);
  initParameters(p, seed);
  const rng = new Rng(seed + 1000);
  const fill = (a: Float32Array, mean: number, std: number): void => {
    for (let i = 0; i < a.length; i++) a[i] = mean + rng.normal() * std;
  };
  for (const b of p.blocks) {
    fill(b.ln1, 1, 0.3); fill(b.ln2, 1, 0.3);
    fill(b.attnB, 0, 0.1); fill(b.attnProjB, 0, 0.1); fill(b.fcB, 0, 0.1); fill(b.mlpProjB, 0, 0.1);
  }
  fill(p.lnF, 1, 0.3);
  fill(p.lmHead, 0, 0.3);
  fill(p.score, 0, 0.3);
  return p;
}

function grayPalette(k: number, seed: number): Palette {
  const rng = new Rng(seed);
  return { k, channels: 1, centers: Float32Array.from({ length: k }, () => rng.next() * 2 - 1) };
}

// ---------------------------------------------------------------------------------------------
// safetensors

test('safetensors: write then read returns the tensors, order, metadata; header padded to 8', withTempDir((dir) => {
  const file = join(dir, 'a.safetensors');
  const tensors: TensorToWrite[] = [
    { name: 'z.first', shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, -6.5]) },
    { name: 'a.second', shape: [1], data: Float32Array.from([0.25]) },
    { name: 'scalar', shape: [], data: Float32Array.from([7]) },
    { name: 'empty', shape: [0, 4], data: new Float32Array(0) },
  ];
  writeSafetensors(file, tensors, { note: 'hi' });
  const bytes = readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  assert.equal(n % 8, 0);
  assert.equal(bytes.length, 8 + n + 4 * (6 + 1 + 1));
  const header = JSON.parse(bytes.toString('utf8', 8, 8 + n)) as Record<string, { data_offsets: number[] }>;
  assert.deepEqual(Object.keys(header), ['__metadata__', 'z.first', 'a.second', 'scalar', 'empty']);
  assert.deepEqual(header['z.first'].data_offsets, [0, 24]);
  assert.deepEqual(header['a.second'].data_offsets, [24, 28]);

  const r = SafetensorsReader.open(file);
  assert.deepEqual(r.metadata, { note: 'hi' });
  assert.deepEqual(r.entries.map((e) => e.name), ['z.first', 'a.second', 'scalar', 'empty']);
  assert.deepEqual([...r.read('z.first', [2, 3])], [1, 2, 3, 4, 5, -6.5]);
  assert.deepEqual([...r.read('scalar')], [7]);
  assert.equal(r.read('empty').length, 0);
  const into = new Float32Array(10);
  r.readInto('a.second', into.subarray(4, 5));
  assert.equal(into[4], 0.25);
  r.close();

  const whole = readSafetensors(file);
  const first = whole.tensors.get('z.first')!;
  assert.deepEqual([...first.data], [1, 2, 3, 4, 5, -6.5]);
  assert.ok(first.data.buffer.byteLength > first.data.byteLength, 'F32 tensors are views into the file buffer');
  assert.deepEqual(readdirSync(dir), ['a.safetensors'], 'no temp file left behind');
}));

test('safetensors: F16 and BF16 (hand-made bytes) are read as float32', withTempDir((dir) => {
  const half = [0x3c00, 0xc000, 0x7bff, 0x0001, 0x0400, 0x8000, 0x7c00, 0xfc00, 0x3555, 0x7e00];
  const halfValues = [1, -2, 65504, 2 ** -24, 2 ** -14, -0, Infinity, -Infinity, 0.333251953125, NaN];
  const bf = [0x3f80, 0xc040, 0x4049, 0x0000, 0x7f80, 0x3e20];
  const bfValues = [1, -3, 3.140625, 0, Infinity, 0.15625];
  const data = Buffer.concat([u16bytes(half), u16bytes(bf), f32bytes([1.5, -2.5])]);
  const header = {
    h: { dtype: 'F16', shape: [2, 5], data_offsets: [0, 20] },
    b: { dtype: 'BF16', shape: [6], data_offsets: [20, 32] },
    f: { dtype: 'F32', shape: [2], data_offsets: [32, 40] },
  };
  const file = join(dir, 'half.safetensors');
  writeFileSync(file, handmadeSafetensors(header, data));
  const r = SafetensorsReader.open(file);
  assert.deepEqual([...r.read('h', [2, 5])], halfValues);
  assert.deepEqual([...r.read('b')], bfValues);
  assert.deepEqual([...r.read('f')], [1.5, -2.5]);
  r.close();
  // Whole-file read: the header length (unpadded here) makes the F32 data unaligned, so it is copied.
  const whole = readSafetensors(file);
  assert.deepEqual([...whole.tensors.get('h')!.data], halfValues);
  assert.deepEqual([...whole.tensors.get('b')!.data], bfValues);
  assert.deepEqual([...whole.tensors.get('f')!.data], [1.5, -2.5]);
}));

test('safetensors: float16 conversion round-trips every half value and rounds to nearest even', () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const values = new Float32Array(65536);
  halfToFloat32(values, all);
  for (let h = 0; h < 65536; h++) {
    if (Number.isNaN(values[h])) { assert.ok(Number.isNaN(halfToFloat32Of(float32ToHalfBits(values[h])))); continue; }
    assert.equal(float32ToHalfBits(values[h]), h, `half 0x${h.toString(16)}`);
  }
  assert.equal(float32ToHalfBits(1 + 2 ** -11), 0x3c00);     // tie → even
  assert.equal(float32ToHalfBits(1 + 3 * 2 ** -11), 0x3c02); // tie → even (up)
  assert.equal(float32ToHalfBits(1 + 2 ** -11 + 2 ** -20), 0x3c01);
  assert.equal(float32ToHalfBits(65520), 0x7c00);            // overflow → inf
  assert.equal(float32ToHalfBits(2 ** -25), 0x0000);         // tie to even zero
  assert.equal(float32ToHalfBits(3 * 2 ** -26), 0x0001);
  assert.equal(float32ToHalfBits(-1e-10), 0x8000);
  assert.equal(float32ToBfloat16Bits(1), 0x3f80);
  assert.equal(float32ToBfloat16Bits(Math.fround(1 + 2 ** -8)), 0x3f80); // tie → even
  assert.equal(float32ToBfloat16Bits(Math.fround(1 + 3 * 2 ** -8)), 0x3f82);
  const out = new Float32Array(1);
  bfloat16ToFloat32(out, Uint16Array.from([float32ToBfloat16Bits(NaN)]));
  assert.ok(Number.isNaN(out[0]));
});

function halfToFloat32Of(bits: number): number {
  const out = new Float32Array(1);
  halfToFloat32(out, Uint16Array.from([bits]));
  return out[0];
}

test('safetensors: the writer stores F16/BF16 that the reader reads back', withTempDir((dir) => {
  const file = join(dir, 'mixed.safetensors');
  const values = Float32Array.from([0.1, -1.75, 1000, 3e-6]);
  writeSafetensors(file, [
    { name: 'a', shape: [4], data: values, dtype: 'F16' },
    { name: 'b', shape: [2, 2], data: values, dtype: 'BF16' },
  ]);
  const r = SafetensorsReader.open(file);
  assert.deepEqual(r.entries.map((e) => [e.dtype, e.begin, e.end]), [['F16', 0, 8], ['BF16', 8, 16]]);
  const a = r.read('a'), b = r.read('b');
  for (let i = 0; i < 4; i++) {
    assert.ok(Math.abs(a[i] - values[i]) <= Math.abs(values[i]) * 2 ** -11 + 2 ** -25, `f16 ${values[i]} → ${a[i]}`);
    assert.ok(Math.abs(b[i] - values[i]) <= Math.abs(values[i]) * 2 ** -8, `bf16 ${values[i]} → ${b[i]}`);
  }
  r.close();
}));

test('safetensors: malformed files fail with a message naming the file and the problem', withTempDir((dir) => {
  const good = { t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  const data = f32bytes([1, 2]);
  const cases: [string, Buffer, RegExp][] = [
    ['tiny', Buffer.from([1, 2, 3]), /no header/],
    ['huge-length', handmadeSafetensors(good, data, 1n << 40n), /header length .* exceeds the file size/],
    ['bad-json', Buffer.concat([Buffer.from([5, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{"t":')]), /not valid JSON/],
    ['array', handmadeSafetensors([1, 2], data), /expected a JSON object/],
    ['dtype', handmadeSafetensors({ t: { ...good.t, dtype: 'F99' } }, data), /tensor "t" has unknown dtype "F99"/],
    ['shape', handmadeSafetensors({ t: { ...good.t, shape: [2, -1] } }, data), /tensor "t" has an invalid shape/],
    ['beyond', handmadeSafetensors({ t: { ...good.t, data_offsets: [0, 12] } }, data), /outside the 8 data bytes/],
    ['size', handmadeSafetensors({ t: { ...good.t, shape: [3] } }, data), /holds 8 bytes, but F32 \[3\] needs 12/],
    ['overlap', handmadeSafetensors({ t: good.t, u: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, data),
      /tensors "t" and "u" overlap/],
    ['metadata', handmadeSafetensors({ ...good, __metadata__: { a: 1 } }, data), /__metadata__\.a must be a string/],
  ];
  for (const [name, bytes, pattern] of cases) {
    const file = join(dir, `${name}.safetensors`);
    writeFileSync(file, bytes);
    assert.throws(() => SafetensorsReader.open(file), (err: Error) => {
      assert.ok(err.message.startsWith(file + ':'), `${name}: message names the file: ${err.message}`);
      assert.match(err.message, pattern, name);
      return true;
    });
    assert.throws(() => readSafetensors(file), pattern, `${name} (whole-file reader)`);
  }
  assert.throws(() => SafetensorsReader.open(join(dir, 'nope.safetensors')), /nope\.safetensors: cannot open .*ENOENT/);
}));

test('safetensors: missing tensor, shape mismatch and wrong dtype name the file and tensor', withTempDir((dir) => {
  const file = join(dir, 'x.safetensors');
  const ints = new Uint8Array(Int32Array.from([1, 2, 3]).buffer);
  writeFileSync(file, handmadeSafetensors({
    w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] },
    ids: { dtype: 'I32', shape: [3], data_offsets: [16, 28] },
  }, Buffer.concat([f32bytes([1, 2, 3, 4]), ints])));
  const r = SafetensorsReader.open(file);
  assert.throws(() => r.read('nope'), new RegExp(`${escape(file)}: missing tensor "nope"$`));
  assert.throws(() => r.read('w', [4]), /tensor "w" has shape \[2, 2\], expected \[4\]/);
  assert.throws(() => r.readInto('w', new Float32Array(3)), /has 4 values \[2, 2\], the destination holds 3/);
  assert.throws(() => r.read('ids'), /tensor "ids" has dtype I32; expected one of F32/);
  assert.deepEqual([...new Int32Array(r.readBytes('ids').buffer)], [1, 2, 3]);
  r.close();
  assert.throws(() => writeSafetensors(join(dir, 'bad.safetensors'), [{ name: 'a', shape: [3], data: new Float32Array(2) }]),
    /tensor "a" has 2 values, shape \[3\] needs 3/);
  assert.throws(() => encodeHeader([{ name: 'a', shape: [1], data: new Float32Array(1) },
    { name: 'a', shape: [1], data: new Float32Array(1) }]), /tensor "a" given twice/);
}));

// ---------------------------------------------------------------------------------------------
// Hugging Face folders

test('hf: save → load → save gives identical bytes and identical parameters', withTempDir((dir) => {
  const params = randomParameters(tinyConfig, 3);
  const palette = grayPalette(16, 4);
  const a = join(dir, 'a'), b = join(dir, 'b');
  saveModelFolder(a, params, palette, { labels: ['cat', 'dog', 'bird'] });
  const loaded = loadModelFolder(a);
  assert.deepEqual(loaded.config, tinyConfig);
  assert.deepEqual(loaded.params.data, params.data);
  assert.deepEqual(loaded.palette, palette);
  assert.deepEqual(loaded.labels, ['cat', 'dog', 'bird']);
  assert.deepEqual(loaded.ignoredTensors, []);
  saveModelFolder(b, loaded.params, loaded.palette, { labels: loaded.labels ?? undefined });
  const files = ['config.json', 'model.safetensors', 'preprocessor_config.json'];
  assert.deepEqual(readdirSync(a).sort(), files, 'exactly the three files, no temp files');
  for (const f of files) assert.ok(readFileSync(join(a, f)).equals(readFileSync(join(b, f))), `${f} differs`);
}));

test('hf: config.json and preprocessor_config.json carry the HF ImageGPT fields', withTempDir((dir) => {
  saveModelFolder(dir, randomParameters(tinyConfig, 5), grayPalette(16, 6));
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(cfg.model_type, 'imagegpt');
  assert.deepEqual(cfg.architectures, ['ImageGPTForCausalImageModeling']);
  assert.equal(cfg.activation_function, 'quick_gelu');
  assert.deepEqual([cfg.vocab_size, cfg.n_positions, cfg.n_embd, cfg.n_layer, cfg.n_head], [17, 16, 32, 2, 4]);
  assert.equal(cfg.n_inner, null);
  assert.equal(cfg.layer_norm_epsilon, 1e-5);
  assert.equal(cfg.tie_word_embeddings, false);
  assert.equal(cfg.scale_attn_weights, true);
  assert.deepEqual(cfg.id2label, { 0: 'LABEL_0', 1: 'LABEL_1', 2: 'LABEL_2' });
  assert.deepEqual(cfg.label2id, { LABEL_0: 0, LABEL_1: 1, LABEL_2: 2 });
  const pre = JSON.parse(readFileSync(join(dir, 'preprocessor_config.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(pre.image_processor_type, 'ImageGPTImageProcessor');
  assert.deepEqual(pre.size, { height: 4, width: 4 });
  assert.equal(pre.do_normalize, true);
  const clusters = pre.clusters as number[][];
  assert.equal(clusters.length, 16);
  assert.ok(clusters.every((c) => c.length === 1 && c[0] >= -1 && c[0] <= 1));
  // Names in the weights are exactly tensorLayout's, in its order.
  const r = SafetensorsReader.open(join(dir, 'model.safetensors'));
  assert.deepEqual(r.entries.map((e) => e.name), tensorLayout(tinyConfig).map((t) => t.name));
  assert.deepEqual(r.entry('transformer.h.0.attn.c_attn.weight')!.shape, [32, 96]);
  assert.deepEqual(r.entry('lm_head.weight')!.shape, [16, 32]);
  assert.equal(r.metadata.format, 'pt');
  r.close();
  assert.equal(float32Json(Math.fround(0.1)), '0.1');
  assert.equal(float32Json(-0.5), '-0.5');
}));

/** Writes the parameters under other names / into several files, as other tools would. */
function writeWeightsAs(dir: string, params: ParameterTensors, rename: (n: string) => string | null,
                        shards = 1): void {
  const tensors = params.layout
    .map((t) => ({ name: rename(t.name), shape: t.shape, data: params.data.subarray(t.offset, t.offset + t.size) }))
    .filter((t): t is TensorToWrite => t.name !== null);
  if (shards === 1) { writeSafetensors(join(dir, 'model.safetensors'), tensors); return; }
  const weightMap: Record<string, string> = {};
  const per = Math.ceil(tensors.length / shards);
  for (let s = 0; s < shards; s++) {
    const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part = tensors.slice(s * per, (s + 1) * per);
    writeSafetensors(join(dir, file), part);
    for (const t of part) weightMap[t.name] = file;
  }
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
}

function writeConfigOnly(dir: string, cfg: ModelConfig, patch: Record<string, unknown> = {}): void {
  const scratch = join(dir, '.scratch');
  saveModelFolder(scratch, new ParameterTensors(cfg), null);
  const json = JSON.parse(readFileSync(join(scratch, 'config.json'), 'utf8')) as Record<string, unknown>;
  rmSync(scratch, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...json, ...patch }));
}

test('hf: names without the "transformer." prefix (HF ImageGPTModel) load the same', withTempDir((dir) => {
  const params = randomParameters(tinyConfig, 7);
  writeConfigOnly(dir, tinyConfig);
  writeWeightsAs(dir, params, (n) => n.replace(/^transformer\./, ''));
  assert.deepEqual(loadModelFolder(dir).params.data, params.data);
}));

test('hf: a sharded model.safetensors.index.json loads the same', withTempDir((dir) => {
  const params = randomParameters(tinyConfig, 8);
  writeConfigOnly(dir, tinyConfig);
  writeWeightsAs(dir, params, (n) => n, 3);
  const loaded = loadModelFolder(dir);
  assert.deepEqual(loaded.params.data, params.data);
  assert.equal(inspectModelFolder(dir).weightFiles.length, 3);
  rmSync(join(dir, 'model-00002-of-00003.safetensors'));
  assert.throws(() => loadModelFolder(dir), /model\.safetensors\.index\.json: shard .*model-00002-of-00003\.safetensors is missing/);
}));

test('hf: missing score.weight is zero, missing lm_head.weight is an error, mask buffers are ignored', withTempDir((dir) => {
  const params = randomParameters(tinyConfig, 9);
  writeConfigOnly(dir, tinyConfig);
  const tensors: TensorToWrite[] = params.layout.filter((t) => t.name !== 'score.weight')
    .map((t) => ({ name: t.name, shape: t.shape, data: params.data.subarray(t.offset, t.offset + t.size) }));
  // HF's older checkpoints carry causal-mask buffers; written here as the converter writes them (BOOL, F32).
  const file = join(dir, 'model.safetensors');
  writeSafetensors(file, [...tensors, { name: 'extra.weight', shape: [1], data: Float32Array.from([1]) }]);
  const loaded = loadModelFolder(dir);
  assert.equal(loaded.config.numLabels, 3);
  assert.deepEqual([...loaded.params.score], new Array(3 * 32).fill(0));
  assert.deepEqual(loaded.params.lmHead, params.lmHead);
  assert.deepEqual(loaded.ignoredTensors, ['extra.weight']);

  writeSafetensors(file, tensors.filter((t) => t.name !== 'lm_head.weight'));
  assert.throws(() => loadModelFolder(dir), new RegExp(`${escape(file)}: missing tensor "lm_head.weight"`));
  assert.equal(loadModelFolder(dir, { allowMissingLmHead: true }).params.lmHead.every((v) => v === 0), true);
  writeSafetensors(file, tensors.filter((t) => t.name !== 'transformer.h.1.mlp.c_fc.bias'));
  assert.throws(() => loadModelFolder(dir), /missing tensor "transformer\.h\.1\.mlp\.c_fc\.bias" or "h\.1\.mlp\.c_fc\.bias"/);
  writeSafetensors(file, tensors.map((t) => (t.name === 'transformer.ln_f.weight' ? { ...t, shape: [1, 32] } : t)));
  assert.throws(() => loadModelFolder(dir), /tensor "transformer\.ln_f\.weight" has shape \[1, 32\], expected \[32\]/);
}));

test('hf: HF mask buffers (BOOL attn.bias, scalar masked_bias) are skipped', withTempDir((dir) => {
  const cfg = makeConfig({ nEmbd: 8, nLayer: 1, nHead: 2 }, 4, 4, 0);
  const params = randomParameters(cfg, 10);
  writeConfigOnly(dir, cfg);
  const parts: { name: string; dtype: string; shape: number[]; bytes: Uint8Array }[] = params.layout.map((t) => ({
    name: t.name, dtype: 'F32', shape: t.shape,
    bytes: new Uint8Array(params.data.buffer, params.data.byteOffset + 4 * t.offset, 4 * t.size),
  }));
  parts.push({ name: 'transformer.h.0.attn.bias', dtype: 'BOOL', shape: [1, 1, 4, 4], bytes: new Uint8Array(16).fill(1) });
  parts.push({ name: 'transformer.h.0.attn.masked_bias', dtype: 'F32', shape: [], bytes: f32bytes([-1e4]) });
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const p of parts) { header[p.name] = { dtype: p.dtype, shape: p.shape, data_offsets: [offset, offset + p.bytes.length] }; offset += p.bytes.length; }
  writeFileSync(join(dir, 'model.safetensors'), handmadeSafetensors(header, Buffer.concat(parts.map((p) => p.bytes))));
  const loaded = loadModelFolder(dir);
  assert.deepEqual(loaded.params.data, params.data);
  assert.deepEqual(loaded.ignoredTensors, []);
  assert.equal(loaded.config.numLabels, 0);
  const info = describeModelFolder(dir, false);
  assert.match(info, /transformer\.h\.0\.attn\.bias\s+\[1, 1, 4, 4\]\s+BOOL/);
}));

test('hf: a folder without weights, or a missing folder, is refused clearly', withTempDir((dir) => {
  writeConfigOnly(dir, tinyConfig);
  assert.throws(() => loadModelFolder(dir), /no model\.safetensors, pytorch_model\.bin or their shard indexes found/);
  assert.throws(() => loadModelFolder(join(dir, 'absent')), /model folder does not exist/);
}));

test('hf: configs the model cannot compute are refused clearly', withTempDir((dir) => {
  const f = 'x/config.json';
  const base = { model_type: 'imagegpt', vocab_size: 17, n_positions: 16, n_embd: 32, n_layer: 2, n_head: 4 };
  assert.throws(() => configFromHf({ ...base, activation_function: 'gelu' }, f),
    /x\/config\.json: activation_function "gelu" is not supported; iGPT uses "quick_gelu"/);
  assert.throws(() => configFromHf({ ...base, model_type: 'gpt2' }, f), /model_type is "gpt2", expected "imagegpt"/);
  assert.throws(() => configFromHf({ ...base, n_inner: 37 }, f), /n_inner = 37 is not supported/);
  assert.throws(() => configFromHf({ ...base, n_head: 5 }, f), /not divisible by nHead 5/);
  assert.throws(() => configFromHf({ ...base, n_layer: 'two' }, f), /"n_layer" must be an integer/);
  writeFileSync(join(dir, 'config.json'), '{ nope');
  assert.throws(() => loadModelFolder(dir), /config\.json: not valid JSON/);
}));

test('hf: the published iGPT-S/M/L configs map to the paper sizes', () => {
  // Fields as in openai/imagegpt-{small,medium,large}/config.json on the Hugging Face hub.
  const published = (n_embd: number, n_layer: number, n_head: number): Record<string, unknown> => ({
    activation_function: 'quick_gelu', attn_pdrop: 0.1, embd_pdrop: 0.1, initializer_range: 0.02,
    layer_norm_epsilon: 1e-05, model_type: 'imagegpt', n_embd, n_head, n_inner: null, n_layer,
    n_positions: 1024, reorder_and_upcast_attn: false, resid_pdrop: 0.1, scale_attn_by_inverse_layer_idx: false,
    scale_attn_weights: true, tie_word_embeddings: false, transformers_version: '4.13.0.dev0', use_cache: true,
    vocab_size: 513,
  });
  const sizes: [number, number, number, number][] = [[512, 24, 8, 76e6], [1024, 36, 8, 455e6], [1536, 48, 16, 1.4e9]];
  for (const [d, L, h, approx] of sizes) {
    const { config } = configFromHf(published(d, L, h), 'config.json');
    assert.deepEqual(config, { vocabSize: 513, nPositions: 1024, nEmbd: d, nLayer: L, nHead: h, numLabels: 0, layerNormEpsilon: 1e-5 });
    const count = parameterCount(config);
    assert.ok(Math.abs(count - approx) / approx < 0.05, `${count} parameters, paper says ${approx}`);
    const layout = tensorLayout(config);
    assert.deepEqual(layout.find((t) => t.name === 'lm_head.weight')!.shape, [512, d]);
    assert.deepEqual(layout.find((t) => t.name === 'transformer.wte.weight')!.shape, [513, d]);
  }
});

test('hf: the palette falls back to OpenAI\'s kmeans_centers.npy; size mismatch is an error', withTempDir((dir) => {
  const params = randomParameters(tinyConfig, 11);
  saveModelFolder(dir, params, null);
  const palette = grayPalette(16, 12);
  writeOpenAiClusters(join(dir, 'kmeans_centers.npy'), palette);
  assert.deepEqual(loadModelFolder(dir).palette, palette);
  writeOpenAiClusters(join(dir, 'kmeans_centers.npy'), grayPalette(8, 12));
  assert.throws(() => loadModelFolder(dir), /the palette has 8 colors, but .*vocab_size 17/);
}));

test('info: lists config, parameter count, palette and tensors', withTempDir((dir) => {
  const params = randomParameters(tinyConfig, 13);
  saveModelFolder(dir, params, grayPalette(16, 14));
  const text = describeModelFolder(dir, false);
  assert.match(text, /vocab 17 \(16 colors \+ SOS\), positions 16 \(4×4\), d 32, layers 2, heads 4, labels 3, eps 1e-5/);
  assert.match(text, new RegExp(`parameters: ${parameterCount(tinyConfig).toLocaleString('en-US')} `));
  assert.match(text, /palette: 16 colors, gray/);
  assert.match(text, /tensors \(25\):/);
  assert.match(text, /transformer\.h\.1\.mlp\.c_proj\.weight\s+\[128, 32\]\s+F32/);
  const json = JSON.parse(describeModelFolder(dir, true)) as { parameters: number; tensors: unknown[]; missing: string[] };
  assert.equal(json.parameters, params.count);
  assert.equal(json.tensors.length, 25);
  assert.deepEqual(json.missing, []);
}));

// ---------------------------------------------------------------------------------------------
// Against an independent PyTorch implementation of HF ImageGPT

/** The backend the CLI would pick, and the portable one too when that is native. */
function testBackends(): Kernels[] {
  const chosen = loadKernels();
  return chosen.name === 'portable' ? [chosen] : [chosen, createPortableKernels()];
}

/** Runs the reference script's jobs in one Python process (torch imports once). */
function runPythonJobs(dir: string, jobs: unknown[]): 'ok' | 'no-torch' {
  const jobsFile = join(dir, 'jobs.json');
  writeFileSync(jobsFile, JSON.stringify(jobs));
  const r = spawnSync(PYTHON, [REFERENCE_SCRIPT, '--jobs', jobsFile], { encoding: 'utf8' });
  if (r.status === 0) return 'ok';
  if (r.error || /No module named '(torch|numpy)'/.test(r.stderr)) return 'no-torch';
  throw new Error(`${REFERENCE_SCRIPT} failed:\n${r.stderr}`);
}

/** B rows of [SOS, random colors…]. */
function randomInputs(cfg: ModelConfig, B: number, T: number, seed: number): Int32Array {
  const k = cfg.vocabSize - 1, rng = new Rng(seed);
  return Int32Array.from({ length: B * T }, (_, i) => (i % T === 0 ? k : rng.int(k)));
}

function readLogits(file: string): Float32Array {
  const raw = readFileSync(file);
  return new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length));
}

function assertLogitsClose(ours: Float32Array, ref: Float32Array, what: string): void {
  assert.equal(ours.length, ref.length);
  let maxDiff = 0, maxRef = 0;
  for (let i = 0; i < ref.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(ours[i] - ref[i]));
    maxRef = Math.max(maxRef, Math.abs(ref[i]));
  }
  assert.ok(maxRef > 0.5, `${what}: reference logits are not trivial (max |logit| ${maxRef})`);
  assert.ok(maxDiff <= 1e-4 * maxRef, `${what}: max |ours - torch| = ${maxDiff} vs max |logit| ${maxRef}`);
}

test('hf: logits agree with an independent PyTorch implementation of HF ImageGPT', withTempDir(async (dir, t) => {
  // Three folders: one we write (Python reads it), two Python writes (we read them), one of
  // them with a bare ImageGPTModel's names. Python also computes every folder's logits.
  const ours = join(dir, 'ours'), py = join(dir, 'python'), bare = join(dir, 'python-bare');
  const params = randomParameters(tinyConfig, 21);
  saveModelFolder(ours, params, grayPalette(16, 22));
  const pythonConfig: ModelConfig = { vocabSize: 17, nPositions: 16, nEmbd: 24, nLayer: 2, nHead: 3, numLabels: 0, layerNormEpsilon: 1e-5 };
  const cases = [
    { dir: ours, cfg: tinyConfig, B: 3 },
    { dir: py, cfg: pythonConfig, B: 2 },
    { dir: bare, cfg: pythonConfig, B: 2 },
  ].map((c, i) => {
    const T = c.cfg.nPositions;
    const tokens = randomInputs(c.cfg, c.B, T, 30 + i);
    const tokensFile = join(dir, `tokens-${i}.json`);
    writeFileSync(tokensFile, JSON.stringify({ B: c.B, T, ids: [...tokens] }));
    return { ...c, T, tokens, tokensFile, out: join(dir, `logits-${i}.bin`) };
  });
  const status = runPythonJobs(dir, [
    { make: [py, 41, false] }, { make: [bare, 42, true] },
    ...cases.map((c) => ({ logits: [c.dir, c.tokensFile, c.out] })),
  ]);
  if (status === 'no-torch') {
    t.skip(`${PYTHON} cannot import torch: PyTorch comparison skipped`);
    return;
  }
  for (const [i, c] of cases.entries()) {
    const loaded = loadModelFolder(c.dir);
    assert.deepEqual(loaded.config, c.cfg, `case ${i}`);
    assert.deepEqual(loaded.ignoredTensors, [], `case ${i}: HF's mask buffers are skipped silently`);
    if (i === 0) assert.deepEqual(loaded.params.data, params.data);
    for (const kernels of testBackends()) {
      const logits = computeLogits(kernels, loaded.params, c.tokens, c.B, c.T);
      assert.equal(logits.length, c.B * c.T * (c.cfg.vocabSize - 1));
      assertLogitsClose(logits, readLogits(c.out), `case ${i}, ${kernels.name} kernels`);
    }
  }
}));
