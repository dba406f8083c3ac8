/** `igpt probe`: linear probes on every layer's features; best layer, depth curve (Figure 2). */
import { join } from 'node:path';
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { loadTokenDataset, type TokenDataset, type TokenSplit } from '../data/tokens.js';
import { cachedFeatures, featureCacheKey } from '../eval/feature-cache.js';
import type { ExtractedFeatures } from '../eval/features.js';
import { probeClassifierJson } from '../eval/classify.js';
import { probeLayers, type LayerProbeReport } from '../eval/probe.js';
import type { Kernels } from '../kernels/kernels.js';
import { writeRunFile } from '../train/checkpoint.js';
import { plotLines } from '../util/plot.js';
import { backendOption, precisionOption, kernelsFromFlags, parseIntOption } from './common.js';
import { checkModelMatchesData, openModel, type OpenedModel } from './open-model.js';
import { createProgress } from './progress.js';

export interface FeatureFlags { batch: string; maxTrain?: string; maxVal?: string; masks: string; backend?: string; precision?: string; objective?: string }

/** Adds the options that feature extraction needs (shared by probe and lowdata). */
export function featureOptions(cmd: Command): Command {
  return precisionOption(backendOption(cmd
    .requiredOption('--model <dir|owner/name>', 'model folder (HF ImageGPT), or owner/name in the Hugging Face cache')
    .requiredOption('--data <dir>', 'labelled token dataset encoded with the model\'s palette')
    .option('--batch <n>', 'images per forward pass', '32')
    .option('--max-train <n>', 'use at most this many training images')
    .option('--max-val <n>', 'use at most this many validation images (they choose the layer and L2)')
    .option('--masks <n>', 'BERT models: average features over this many random masks', '1')
    .option('--objective <ar|bert>', 'override the objective recorded with the model')));
}

export interface SplitFeatures {
  train: Float32Array[]; val: Float32Array[]; test: Float32Array[];
  labels: { train: Int32Array; val: Int32Array; test: Int32Array };
  /** The test split's NLL (nats/pixel), computed in the same forward passes. */
  testNatsPerPixel: number;
}

/** Features of every layer for train (maybe capped), validation and test, with a progress bar and a cache. */
export function featuresForProbe(m: OpenedModel, data: TokenDataset, dataDir: string, flags: FeatureFlags, cacheDir: string): SplitFeatures {
  const batch = parseIntOption('--batch', flags.batch, 1);
  const maxTrain = flags.maxTrain ? parseIntOption('--max-train', flags.maxTrain, 1) : undefined;
  const maxVal = flags.maxVal ? parseIntOption('--max-val', flags.maxVal, 1) : undefined;
  const masks = parseIntOption('--masks', flags.masks, 1);
  const one = (name: 'train' | 'val' | 'test', split: TokenSplit, maxImages?: number): ExtractedFeatures => {
    const o = { batch, objective: m.objective, masks, maxImages };
    const key = featureCacheKey(m.dir, dataDir, name, o);
    const total = Math.min(split.count, maxImages ?? split.count);
    const bar = createProgress(`features ${name}`, total, 'images');
    const r = cachedFeatures(m.model, split, name, cacheDir, key, { ...o, onBatch: (done) => bar.update(done) });
    bar.stop();
    if (r.cached) process.stderr.write(`features ${name}: from the cache in ${cacheDir}\n`);
    return r;
  };
  const train = one('train', data.train, maxTrain).layers;
  const test = one('test', data.test);
  const val = one('val', data.val, maxVal).layers;
  const count = (f: Float32Array[]): number => f[0]!.length / m.model.config.nEmbd;
  return {
    train, val, test: test.layers, testNatsPerPixel: test.natsPerPixel,
    labels: { train: data.train.labels.subarray(0, count(train)), val: data.val.labels.subarray(0, count(val)), test: data.test.labels },
  };
}

export function probeReportMarkdown(r: LayerProbeReport): string {
  const pct = (x: number): string => (100 * x).toFixed(2);
  const rows = r.layers.map((l) => `| ${l.layer}${l.layer === r.bestLayer ? ' (best)' : ''} | ${pct(l.valAccuracy)} | ${pct(l.testAccuracy)} | ${l.l2} |`);
  const lines = ['| layer | validation accuracy (%) | test accuracy (%) | L2 |', '|---|---|---|---|', ...rows];
  if (r.concat) lines.push(`| ${r.concat.layers.join('+')} (concatenated) | ${pct(r.concat.valAccuracy)} | ${pct(r.concat.testAccuracy)} | ${r.concat.l2} |`);
  return lines.join('\n') + '\n';
}

/**
 * Runs the probe on every layer and writes probe.json (the report, and under `classifier` the best
 * layer's probe, which `igpt classify --probe` uses), probe.md and depth.png into `outDir`.
 */
export async function probeAndReport(kernels: Kernels, features: SplitFeatures, numClasses: number, outDir: string,
                                     concatLayers: number, classNames?: string[]): Promise<LayerProbeReport> {
  const layers = features.train.map((train, l) => ({ train, val: features.val[l]!, test: features.test[l]! }));
  const { report, bestModel } = probeLayers(layers, features.labels, {
    numClasses, kernels, concatLayers, log: (line) => process.stderr.write(`probe: ${line}\n`),
  });
  const names = classNames ?? Array.from({ length: numClasses }, (_, c) => `LABEL_${c}`);
  const classifier = probeClassifierJson(bestModel, report.bestLayer, names);
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

interface Flags extends FeatureFlags { model: string; data: string; out?: string; concat: string }

export const probeCommand: CommandModule = {
  register(program: Command): void {
    featureOptions(program.command('probe')
      .description('linear probe (L-BFGS logistic regression) on every layer; best layer and depth curve'))
      .option('--out <dir>', 'folder for probe.json, probe.md, depth.png and the feature cache (default: <model>-probe)')
      .option('--concat <k>', 'also probe k layers around the best, concatenated', '0')
      .action(async (flags: Flags) => {
        const kernels = kernelsFromFlags(flags, flags.precision);
        const data = loadTokenDataset(flags.data);
        const m = openModel(flags.model, kernels, flags.objective);
        checkModelMatchesData(m, data, flags.data);
        if (data.meta.numClasses < 2) throw new Error(`${flags.data}: probing needs labels (found ${data.meta.numClasses} classes)`);
        if (data.test.count === 0 || data.val.count === 0) throw new Error(`${flags.data}: probing needs validation and test splits`);
        const outDir = flags.out ?? `${flags.model.replace(/\/+$/, '')}-probe`;
        const features = featuresForProbe(m, data, flags.data, flags, outDir);
        const r = await probeAndReport(kernels, features, data.meta.numClasses, outDir, parseIntOption('--concat', flags.concat, 0),
                                     data.meta.classNames);
        console.log(probeReportMarkdown(r));
        console.log(`best layer ${r.bestLayer}: test accuracy ${(100 * r.best.testAccuracy).toFixed(2)}% ` +
          `(validation ${(100 * r.best.valAccuracy).toFixed(2)}%); ${join(outDir, 'probe.md')}, ${join(outDir, 'depth.png')}`);
      });
  },
};
