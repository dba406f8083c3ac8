/**
 * Probing a model: features of every layer for the three splits (one forward pass per batch,
 * cached on disk), a linear probe at every layer, and its reports (probe.json, probe.md, depth.png).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TokenDataset, TokenSplit } from '../data/tokens.js';
import { cachedFeatures, featureCacheKey } from '../eval/feature-cache.js';
import { probeClassifierJson } from '../eval/classify.js';
import { pooledWidth, type ExtractedFeatures, type Pooling } from '../eval/features.js';
import { probeLayers, type LayerProbeReport } from '../eval/probe.js';
import type { DeviceArray, Kernels } from '../kernels/kernels.js';
import { writeRunFile } from '../util/fs.js';
import { plotLines } from '../util/plot.js';
import { createProgress } from '../util/progress.js';
import type { OpenedModel } from './open.js';

export interface FeatureSettings {
  /** Images per forward pass. */
  batch: number;
  /** Use at most this many training (validation) images; default all. */
  maxTrain?: number;
  maxVal?: number;
  /** BERT models: average the features over this many random masks. */
  masks: number;
  /** Default 'mean' (the paper's). */
  pooling?: Pooling;
}

export interface SplitFeatures {
  train: Float32Array[]; val: Float32Array[]; test: Float32Array[];
  labels: { train: Int32Array; val: Int32Array; test: Int32Array };
  /** The test split's NLL (nats/pixel), computed in the same forward passes. */
  testNatsPerPixel: number;
  pooling: Pooling;
}

/** Where probe, lowdata and their feature cache go unless told: `<model>-probe`. */
export function defaultProbeDir(modelDir: string): string {
  return `${modelDir.replace(/\/+$/, '')}-probe`;
}

/** Features of every layer for train (maybe capped), validation and test, with a progress bar and a cache in `cacheDir`. */
export async function featuresForProbe<T extends DeviceArray>(m: OpenedModel<T>, data: TokenDataset, dataDir: string, s: FeatureSettings,
                                                             cacheDir: string): Promise<SplitFeatures> {
  const one = async (name: 'train' | 'val' | 'test', split: TokenSplit, maxImages?: number): Promise<ExtractedFeatures> => {
    const o = { batch: s.batch, objective: m.objective, masks: s.masks, pooling: s.pooling, maxImages };
    const key = featureCacheKey(m.dir, dataDir, name, o);
    const total = Math.min(split.count, maxImages ?? split.count);
    const bar = createProgress(`features ${name}`, total, 'images');
    const r = await cachedFeatures(m.model, split, name, cacheDir, key, { ...o, onBatch: (done) => bar.update(done) });
    bar.stop();
    if (r.cached) process.stderr.write(`features ${name}: from the cache in ${cacheDir}\n`);
    return r;
  };
  const train = (await one('train', data.train, s.maxTrain)).layers;
  const test = await one('test', data.test);
  const val = (await one('val', data.val, s.maxVal)).layers;
  const pooling = s.pooling ?? 'mean';
  const count = (f: Float32Array[]): number => f[0].length / pooledWidth(m.model.config.nEmbd, pooling);
  return {
    train, val, test: test.layers, testNatsPerPixel: test.natsPerPixel, pooling,
    labels: { train: data.train.labels.subarray(0, count(train)), val: data.val.labels.subarray(0, count(val)), test: data.test.labels },
  };
}

/** The probe's table: every layer's validation and test accuracy and L2, the best marked. */
export function probeReportMarkdown(r: LayerProbeReport): string {
  const pct = (x: number): string => (100 * x).toFixed(2);
  const rows = r.layers.map((l) => `| ${l.layer}${l.layer === r.bestLayer ? ' (best)' : ''} | ${pct(l.valAccuracy)} | ${pct(l.testAccuracy)} | ${l.l2} |`);
  const lines = ['| layer | validation accuracy (%) | test accuracy (%) | L2 |', '|---|---|---|---|', ...rows];
  if (r.concat) lines.push(`| ${r.concat.layers.join('+')} (concatenated) | ${pct(r.concat.valAccuracy)} | ${pct(r.concat.testAccuracy)} | ${r.concat.l2} |`);
  return lines.join('\n') + '\n';
}

/**
 * Probes every layer (and `concatLayers` layers around the best, concatenated, when > 0) and
 * writes probe.json (the report, and under `classifier` the best layer's probe, which
 * `igpt classify --probe` uses), probe.md and depth.png into `outDir`.
 */
export async function probeAndReport(kernels: Kernels, features: SplitFeatures, numClasses: number, outDir: string,
                                     concatLayers: number, classNames?: string[]): Promise<LayerProbeReport> {
  const layers = features.train.map((train, l) => ({ train, val: features.val[l], test: features.test[l] }));
  const { report, bestModel } = probeLayers(layers, features.labels, {
    numClasses, kernels, concatLayers, log: (line) => process.stderr.write(`probe: ${line}\n`),
  });
  const names = classNames ?? Array.from({ length: numClasses }, (_, c) => `LABEL_${c}`);
  const classifier = probeClassifierJson(bestModel, report.bestLayer, names, features.pooling);
  writeRunFile(outDir, 'probe.json', JSON.stringify({ ...report, classifier }, null, 1));
  writeRunFile(outDir, 'probe.md', probeReportMarkdown(report));
  await plotLines(join(outDir, 'depth.png'), {
    title: 'Linear probe accuracy vs depth', xLabel: 'layer', yLabel: 'accuracy (%)',
    series: [
      { name: 'validation', x: report.layers.map((l) => l.layer), y: report.layers.map((l) => 100 * l.valAccuracy) },
      { name: 'test', x: report.layers.map((l) => l.layer), y: report.layers.map((l) => 100 * l.testAccuracy) },
    ],
  });
  return report;
}

/** The probe report in `dir` (probe.json), or null when there is none. */
export function readProbeReport(dir: string): LayerProbeReport | null {
  const path = join(dir, 'probe.json');
  return existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) as LayerProbeReport : null;
}
