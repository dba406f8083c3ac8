/**
 * A user's own image files through a small trained model: completion, features, classification
 * (src/data/image-inputs.ts, src/sample/complete.ts, src/eval/image-files.ts, src/eval/classify.ts),
 * checked against the dataset path (image folder → encode → the probe's features, fine-tuning's
 * class head) on the same images.
 */
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { buildTokenDataset } from '../src/data/build.js';
import { readImageFolder } from '../src/data/folder.js';
import { listImageInputs, readImageBatches } from '../src/data/image-inputs.js';
import { encodeImages, splitRows, type TokenDataset } from '../src/data/tokens.js';
import { classifyFeatures, headClassifier, probeClassifier, probeClassifierJson, readProbeClassifier } from '../src/eval/classify.js';
import { extractFeatures } from '../src/eval/features.js';
import { classificationAccuracy, finetune } from '../src/eval/finetune.js';
import { classifyImageFiles, imageFileFeatures, writeFeatureFile } from '../src/eval/image-files.js';
import { predict } from '../src/eval/logistic.js';
import { probeLayers } from '../src/eval/probe.js';
import { readNpy } from '../src/io/npy.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { saveModelFolder } from '../src/io/hf.js';
import { loadKernels } from '../src/kernels/select.js';
import { argmax, ImageGPT } from '../src/model/model.js';
import { ParameterTensors } from '../src/model/parameters.js';
import { dequantize } from '../src/palette/quantize.js';
import { completeImageFiles } from '../src/sample/complete-files.js';
import { BatchBuilder } from '../src/train/objectives.js';
import { pretrain } from '../src/train/pretrain.js';

process.env.IGPT_QUIET = '1';
const kernels = loadKernels();
const SIDE = 14, T = SIDE * SIDE, IMAGES = 24;
const MAIN = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
let data: TokenDataset;
let runDir: string;
let pretrained: ImageGPT;
/** The first IMAGES test images as 14×14 gray PNGs (exactly their palette colors), in name order. */
let pngDir: string;
/** The same images in other forms: RGB, RGBA, JPEG, 28×28. */
let mixedDir: string;

/** Raw pixels as a sharp image; one channel is stored as a gray file (sharp would write RGB). */
const raw = (pixels: Uint8Array, side: number, channels: 1 | 3 | 4) => {
  const img = sharp(Buffer.from(pixels), { raw: { width: side, height: side, channels } });
  return channels === 1 ? img.toColourspace('b-w') : img;
};

before(async () => {
  data = await buildTokenDataset('mnist', { side: SIDE, channels: 1, k: 16, maxTrain: 1200, maxTest: 200 });
  runDir = mkdtempSync(join(tmpdir(), 'igpt-own-'));
  const r = await pretrain(kernels, data, 'mnist', join(runDir, 'pre'), { nEmbd: 32, nLayer: 2, nHead: 2 }, {
    objective: 'ar', batch: 16, lr: 0.01, steps: 60, warmup: 10, cosine: true, seed: 3, maskProb: 0.15,
    evalEvery: 0, evalImages: 0, checkpointEvery: 0,
  }, false);
  pretrained = r.model;
  pngDir = join(runDir, 'png');
  mixedDir = join(runDir, 'mixed');
  mkdirSync(pngDir);
  mkdirSync(mixedDir);
  for (let i = 0; i < IMAGES; i++) {
    const gray = dequantize(data.palette, data.test.tokens.subarray(i * T, (i + 1) * T));
    const name = `img${String(i).padStart(2, '0')}`;
    await raw(gray, SIDE, 1).png().toFile(join(pngDir, `${name}.png`));
    const rgb = new Uint8Array(3 * T), rgba = new Uint8Array(4 * T);
    for (let p = 0; p < T; p++) {
      rgb.fill(gray[p], 3 * p, 3 * p + 3);
      rgba.fill(gray[p], 4 * p, 4 * p + 3);
      rgba[4 * p + 3] = p % 3 === 0 ? 128 : 255;
    }
    const kind = i % 4;
    if (kind === 0) await raw(rgb, SIDE, 3).png().toFile(join(mixedDir, `${name}.png`));
    else if (kind === 1) await raw(rgba, SIDE, 4).png().toFile(join(mixedDir, `${name}.png`));
    else if (kind === 2) await raw(rgb, SIDE, 3).jpeg({ quality: 90 }).toFile(join(mixedDir, `${name}.jpg`));
    else await raw(gray, SIDE, 1).resize(28, 28, { kernel: 'nearest' }).png().toFile(join(mixedDir, `${name}.png`));
  }
});

/** The dataset path: read the folder as `igpt encode` does, quantize with the model's palette. */
async function encodedFolder(dir: string) {
  const set = await readImageFolder(dir, { channels: 1, side: SIDE });
  return encodeImages(set, data.palette, SIDE);
}

describe('own images', () => {
  it('completion keeps every visible row exactly and completes the rest', async () => {
    const files = listImageInputs([pngDir]).slice(0, 4);
    const rows = 6;
    const { files: read, figure } = await completeImageFiles(kernels, pretrained.params, data.palette, files, {
      objective: 'ar', samples: 3, rows, temperature: 1, topK: 0, topP: 1, seed: 5, precision: 'f32',
    });
    assert.deepEqual(read, files);
    for (let i = 0; i < files.length; i++) {
      const original = Array.from(data.test.tokens.subarray(i * T, (i + 1) * T));
      assert.deepEqual(Array.from(figure.originals!).slice(i * T, (i + 1) * T), original, `image ${i} is quantized as encode does`);
      for (let s = 0; s < 3; s++) {
        const c = Array.from(figure.completions.subarray((i * 3 + s) * T, (i * 3 + s + 1) * T));
        assert.deepEqual(c.slice(0, rows * SIDE), original.slice(0, rows * SIDE), `image ${i} sample ${s}: visible rows kept`);
        assert.ok(c.every((id) => id >= 0 && id < data.palette.k), 'completions are palette colors');
      }
    }
    // Sampled at temperature 1, the three completions of an image do not all agree.
    const tail = (s: number) => Array.from(figure.completions.subarray(s * T + rows * SIDE, (s + 1) * T)).join();
    assert.notEqual(tail(0), tail(1));
  });

  it('features equal those of the same images through encode and the probe\'s feature path (PNG, RGB, RGBA, JPEG, other sizes)', async () => {
    for (const dir of [pngDir, mixedDir]) {
      const warnings: string[] = [];
      const r = await imageFileFeatures(pretrained, data.palette, listImageInputs([dir]), [0, 2, 1], {
        objective: 'ar', batch: 8, warn: (m) => warnings.push(m),
      });
      const encoded = await encodedFolder(dir);
      const reference = (await extractFeatures(pretrained, encoded, { batch: 8, objective: 'ar' })).layers;
      const d = pretrained.config.nEmbd;
      assert.equal(r.files.length, IMAGES);
      assert.equal(r.dim, 3 * d);
      for (let i = 0; i < IMAGES; i++) {
        [0, 2, 1].forEach((l, j) => assert.deepEqual(
          Array.from(r.features.subarray((i * 3 + j) * d, (i * 3 + j + 1) * d)),
          Array.from(reference[l].subarray(i * d, (i + 1) * d)), `${dir} image ${i} layer ${l}`));
      }
      // The color files are made gray (luma), said once.
      assert.equal(warnings.filter((w) => /converted to gray/.test(w)).length, dir === mixedDir ? 1 : 0, warnings.join('\n'));
    }
  });

  it('2x2 pooling: each quadrant is the mean of its own positions, and the four average to the paper\'s mean', async () => {
    const n = 3;
    const split = splitRows(data.test, 0, n, T);
    const { nEmbd: d, nLayer: L } = pretrained.config;
    const mean = (await extractFeatures(pretrained, split, { batch: 2, objective: 'ar' })).layers;
    const grid = (await extractFeatures(pretrained, split, { batch: 2, objective: 'ar', pooling: '2x2' })).layers;
    // Every position's own features (runs of one position), averaged here in float64, quadrant by quadrant.
    const perPosition = new Float32Array((L + 1) * n * T * d);
    pretrained.forward(new BatchBuilder(n, T, 'ar', data.palette.k).fill(split, [0, 1, 2], null), false, perPosition, T);
    const half = SIDE / 2;
    for (let l = 0; l <= L; l++) {
      assert.equal(grid[l].length, n * 4 * d);
      for (let i = 0; i < n; i++) {
        for (let q = 0; q < 4; q++) {
          for (let c = 0; c < d; c += 7) {
            let sum = 0;
            for (let y = 0; y < half; y++) {
              for (let x = 0; x < half; x++) {
                const t = (y + (q >> 1) * half) * SIDE + x + (q & 1) * half;
                sum += perPosition[((l * n + i) * T + t) * d + c];
              }
            }
            assert.ok(Math.abs(grid[l][(i * 4 + q) * d + c] - sum / (half * half)) < 1e-5, `layer ${l} image ${i} quadrant ${q} channel ${c}`);
          }
        }
        for (let c = 0; c < d; c++) {
          const ofQuadrants = [0, 1, 2, 3].reduce((a, q) => a + grid[l][(i * 4 + q) * d + c], 0) / 4;
          assert.ok(Math.abs(ofQuadrants - mean[l][i * d + c]) < 1e-5, `layer ${l} image ${i} channel ${c}`);
        }
      }
    }
    assert.throws(() => probeClassifier({ ...probeClassifierJson({
      dim: 2, numClasses: 2, l2: 0, weights: new Float32Array(4), bias: new Float32Array(2), mean: new Float32Array(2), invStd: new Float32Array(2).fill(1),
      loss: 0, iterations: 0, stop: 'gradient',
    }, 0, ['a', 'b']), pooling: '3x3' as '2x2' }, 'p.json'), /p\.json: the probe's pooling "3x3" is not one of mean, 2x2/);
  });

  it('features go to .npy and .safetensors with the file names beside them', async () => {
    const files = listImageInputs([pngDir]).slice(0, 5);
    const r = await imageFileFeatures(pretrained, data.palette, files, [1, 2], { objective: 'ar', batch: 2 });
    const d = pretrained.config.nEmbd;
    const npy = join(runDir, 'f.npy');
    writeFeatureFile(npy, r.features, r.files, [1, 2], d, { model: 'm' });
    const back = readNpy(npy);
    assert.deepEqual(back.shape, [5, 2, d]);
    assert.deepEqual(Array.from(back.data), Array.from(r.features));
    assert.deepEqual((JSON.parse(readFileSync(join(runDir, 'f.json'), 'utf8')) as { files: string[] }).files, files);
    const st = join(runDir, 'f.safetensors');
    writeFeatureFile(st, r.features, r.files, [1, 2], d);
    const tensors = readSafetensors(st).tensors;
    assert.deepEqual(tensors.get('layer.2')!.shape, [5, d]);
    assert.deepEqual(Array.from(tensors.get('layer.2')!.data.subarray(d, 2 * d)), Array.from(r.features.subarray(3 * d, 4 * d)));
    assert.throws(() => writeFeatureFile(join(runDir, 'f.csv'), r.features, r.files, [1, 2], d), /\.npy or \.safetensors/);
  });

  it('classify agrees with the fine-tuned model\'s own predictions and with a probe on the same images', async () => {
    const params = new ParameterTensors(pretrained.config); // a copy: fine-tuning changes it in place
    params.data.set(pretrained.params.data);
    const model = new ImageGPT(kernels, params.config, params);
    await finetune(model, data, {
      objective: 'ar', lr: 5e-5, batch: 16, steps: 10, warmup: 2, cosine: true, genWeight: 1, headLrScale: 1, evalEvery: 5, patience: 2,
      evalImages: 100, augment: false, seed: 0, maskProb: 0.15, evalMasks: 1, valMasks: 1, probeHeadImages: 500,
    });
    const modelDir = join(runDir, 'ft');
    const names = Array.from({ length: data.meta.numClasses }, (_, c) => `digit ${c}`);
    saveModelFolder(modelDir, model.params, data.palette, { labels: names });
    // Fine-tuning's own predictions: the class head on a forward pass with labels, as its test accuracy counts them.
    const builder = new BatchBuilder(IMAGES, T, 'ar', data.palette.k);
    model.forward(builder.fill(data.test, Array.from({ length: IMAGES }, (_, i) => i), null, true), false);
    const own = Array.from({ length: IMAGES }, (_, i) => argmax(model.activations.classLogits, i * 10, 10));
    const results = await classifyImageFiles(model, data.palette, listImageInputs([pngDir]), await headClassifier(model, names, modelDir), { objective: 'ar' });
    assert.deepEqual(results.map((r) => r.label), own);
    const correct = results.filter((r, i) => r.label === data.test.labels[i]).length;
    assert.equal(correct / IMAGES, await classificationAccuracy(model, splitRows(data.test, 0, IMAGES, T), { objective: 'ar', batch: 16 }),
      'the files score what fine-tuning\'s own accuracy gives the same test images');
    assert.ok(new Set(own).size > 2, `the head tells digits apart: ${own.join(',')}`);
    for (const r of results) {
      assert.equal(r.name, names[r.label]);
      assert.equal(r.top.length, 3);
      assert.equal(r.top[0].label, r.label);
      assert.ok(r.probability > 0 && r.probability <= 1 && r.top[1].probability <= r.probability);
    }

    // A probe: fitted on the dataset's features, saved as probe.json saves it, read back, classifies the files as it predicts.
    const feats = async (split: typeof data.train) => (await extractFeatures(pretrained, split, { batch: 32, objective: 'ar' })).layers;
    const train = await feats(splitRows(data.train, 0, 400, T)), val = await feats(data.val), test = await feats(data.test);
    const { report, bestModel } = probeLayers(train.map((t, l) => ({ train: t, val: val[l], test: test[l] })),
      { train: data.train.labels.subarray(0, 400), val: data.val.labels, test: data.test.labels }, { numClasses: 10, kernels, l2Grid: [1e-2, 1e-3] });
    const probePath = join(runDir, 'probe.json');
    writeFileSync(probePath, JSON.stringify({ ...report, classifier: probeClassifierJson(bestModel, report.bestLayer, names) }));
    const probe = readProbeClassifier(probePath, kernels);
    assert.equal(probe.layer, report.bestLayer);
    const expected = predict(bestModel, test[report.bestLayer].subarray(0, IMAGES * 32), IMAGES, kernels);
    const byProbe = await classifyImageFiles(pretrained, data.palette, listImageInputs([pngDir]), probe, { objective: 'ar' });
    assert.deepEqual(byProbe.map((r) => r.label), Array.from(expected));
    // The in-memory probe and the one read back from JSON are the same numbers.
    const direct = classifyFeatures(probeClassifier(probeClassifierJson(bestModel, report.bestLayer, names), 'mem'), test[report.bestLayer], data.test.count);
    assert.deepEqual(direct.slice(0, IMAGES).map((r) => r.label), Array.from(expected));

    // A 2x2-pooled probe (4d features) saved the same way: classify pools the files' features as the probe was fitted.
    const last = pretrained.config.nLayer;
    const pooled = async (split: typeof data.train) => (await extractFeatures(pretrained, split, { batch: 32, objective: 'ar', pooling: '2x2' })).layers[last];
    const pooledProbe = probeLayers([{ train: await pooled(splitRows(data.train, 0, 400, T)), val: await pooled(data.val), test: await pooled(data.test) }],
      { train: data.train.labels.subarray(0, 400), val: data.val.labels, test: data.test.labels }, { numClasses: 10, kernels, l2Grid: [1e-2] });
    writeFileSync(probePath, JSON.stringify({ classifier: probeClassifierJson(pooledProbe.bestModel, last, names, '2x2') }));
    const pooledClassifier = readProbeClassifier(probePath, kernels);
    assert.equal(pooledClassifier.dim, 4 * pretrained.config.nEmbd);
    const pooledExpected = predict(pooledProbe.bestModel, (await pooled(splitRows(data.test, 0, IMAGES, T))), IMAGES, kernels);
    const byPooled = await classifyImageFiles(pretrained, data.palette, listImageInputs([pngDir]), pooledClassifier, { objective: 'ar' });
    assert.deepEqual(byPooled.map((r) => r.label), Array.from(pooledExpected));
  });

  it('a model without a trained class head says so and points at finetune or a probe', async () => {
    await assert.rejects(headClassifier(pretrained, null, 'runs/x/model'), /no trained class head.*igpt finetune.*--probe/s);
  });

  it('an unreadable file is named and skipped with a warning, or stops the run with --strict; an empty folder is an error', async () => {
    const dir = join(runDir, 'broken');
    mkdirSync(dir);
    writeFileSync(join(dir, 'a-bad.png'), 'not a png');
    await raw(new Uint8Array(T).fill(200), SIDE, 1).png().toFile(join(dir, 'b-good.png'));
    const files = listImageInputs([dir, join(runDir, 'missing.png')]);
    const warnings: string[] = [];
    const batches = [];
    for await (const b of readImageBatches(files, { side: SIDE, channels: 1, batch: 2, warn: (m) => warnings.push(m) })) batches.push(b);
    assert.deepEqual(batches.flatMap((b) => b.files), [join(dir, 'b-good.png')]);
    assert.equal(warnings.length, 2);
    assert.match(warnings[0], /a-bad\.png: cannot read image .*skipped/);
    assert.match(warnings[1], /missing\.png: cannot read image \(ENOENT\)/);
    await assert.rejects(async () => { for await (const _ of readImageBatches(files, { side: SIDE, channels: 1, strict: true })) { /* reading */ } },
      /a-bad\.png: cannot read image/);
    const empty = join(runDir, 'empty');
    mkdirSync(join(empty, 'sub'), { recursive: true });
    assert.throws(() => listImageInputs([empty]), /empty: no PNG\/JPEG\/WebP images in this folder/);
    // Gray images for an RGB model are repeated into RGB, said once.
    const rgbWarnings: string[] = [];
    for await (const b of readImageBatches(listImageInputs([pngDir]).slice(0, 3), { side: SIDE, channels: 3, warn: (m) => rgbWarnings.push(m) })) {
      assert.equal(b.pixels.length, b.count * T * 3);
      assert.equal(b.pixels[0], b.pixels[1]);
    }
    assert.equal(rgbWarnings.length, 1);
    assert.match(rgbWarnings[0], /repeated into RGB/);
  });

  it('the commands: complete writes the grid and each completion, features the .npy and names, classify explains a missing head', () => {
    const model = join(runDir, 'pre', 'model');
    const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...args], { encoding: 'utf8', env: { ...process.env, IGPT_QUIET: '1' } });
    const files = listImageInputs([pngDir]).slice(0, 2);
    const grid = join(runDir, 'cli', 'grid.png');
    mkdirSync(join(runDir, 'cli'));
    const c = cli('complete', ...files, '--model', model, '--rows', '7', '--samples', '2', '--out', grid, '--out-dir', join(runDir, 'cli', 'each'));
    assert.equal(c.status, 0, c.stderr);
    assert.ok(existsSync(grid));
    assert.deepEqual(readdirSync(join(runDir, 'cli', 'each')).sort(), ['img00-0.png', 'img00-1.png', 'img01-0.png', 'img01-1.png']);
    const f = cli('features', pngDir, '--model', model, '--layers', 'all', '--out', join(runDir, 'cli', 'f.npy'));
    assert.equal(f.status, 0, f.stderr);
    assert.deepEqual(readNpy(join(runDir, 'cli', 'f.npy')).shape, [IMAGES, 3, 32]);
    const k = cli('classify', pngDir, '--model', model);
    assert.equal(k.status, 1);
    assert.match(k.stderr, /no trained class head.*igpt finetune/s);
    assert.doesNotMatch(k.stderr, /at .*\.ts:\d+/, 'no stack trace');
  });
});
