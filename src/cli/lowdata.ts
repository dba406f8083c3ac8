/**
 * `igpt lowdata`: the paper's low-data protocol (Table 4). A linear probe on N labels per class
 * of the training set, on S random subsets, mean ± std of test accuracy, next to the same
 * protocol on the pixels.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { loadTokenDataset, type TokenDataset, type TokenSplit } from '../data/tokens.js';
import type { Kernels } from '../kernels/kernels.js';
import { lowDataProbe, pixelFeatures, type LowDataResult } from '../eval/lowdata.js';
import { DEFAULT_L2_GRID, type LayerProbeReport } from '../eval/probe.js';
import type { Palette } from '../palette/palette.js';
import { dequantize } from '../palette/quantize.js';
import { writeRunFile } from '../train/checkpoint.js';
import { kernelsFromFlags, parseIntOption } from './common.js';
import { checkModelMatchesData, openModel } from './open-model.js';
import { featureOptions, featuresForProbe, probeAndReport, type FeatureFlags, type SplitFeatures } from './probe.js';

interface Flags extends FeatureFlags { model: string; data: string; out?: string; labels: string; subsets: string; layer?: string; seed: string }

/** The split's images through the palette, as [0, 1] features (the raw-pixel baseline). */
export function paletteImageFeatures(split: TokenSplit, palette: Palette, pixels: number, count = split.count): Float32Array {
  const bytes = dequantize(palette, split.tokens.subarray(0, count * pixels));
  return pixelFeatures(bytes, count, pixels * palette.channels);
}

export const lowdataCommand: CommandModule = {
  register(program: Command): void {
    featureOptions(program.command('lowdata')
      .description('low-data linear probes: N labels per class, S random subsets, mean ± std; vs pixels'))
      .option('--out <dir>', 'folder for lowdata.json, lowdata.md and the feature cache (default: <model>-probe)')
      .option('--labels <list>', 'labels per class to try', '1,4,10,25,100')
      .option('--subsets <n>', 'random subsets per N', '5')
      .option('--layer <n>', 'layer whose features are used (default: the best layer of igpt probe, run if needed)')
      .option('--seed <n>', 'seed of the subset draws', '0')
      .action(async (flags: Flags) => {
        const kernels = kernelsFromFlags(flags, flags.precision);
        const data = loadTokenDataset(flags.data);
        const m = openModel(flags.model, kernels, flags.objective);
        checkModelMatchesData(m, data, flags.data);
        const outDir = flags.out ?? `${flags.model.replace(/\/+$/, '')}-probe`;
        const features = featuresForProbe(m, data, flags.data, flags, outDir);
        let layer: number;
        if (flags.layer !== undefined) {
          layer = parseIntOption('--layer', flags.layer, 0, m.model.config.nLayer);
        } else if (existsSync(join(outDir, 'probe.json'))) {
          layer = (JSON.parse(readFileSync(join(outDir, 'probe.json'), 'utf8')) as LayerProbeReport).bestLayer;
        } else {
          layer = (await probeAndReport(kernels, features, data.meta.numClasses, outDir, 0, data.meta.classNames)).bestLayer;
        }
        const perClass = flags.labels.split(',').map((s) => parseIntOption('--labels', s.trim(), 1));
        const table = runLowData(kernels, features, data, layer, perClass, parseIntOption('--subsets', flags.subsets, 1),
                                 parseIntOption('--seed', flags.seed, 0), outDir);
        console.log(table);
        console.log(`mean ± std of test accuracy over ${flags.subsets} subsets (pixels: the images through the palette); ${join(outDir, 'lowdata.md')}`);
      });
  },
};

/** lowdata.json: the low-data table of one layer against raw pixels. */
export interface LowDataReport {
  layer: number;
  subsets: number;
  seed: number;
  rows: { labelsPerClass: number; model: LowDataResult; pixels: LowDataResult }[];
}

/** The protocol for each N on one layer's features and on the pixels; writes lowdata.json/.md, returns the table. */
export function runLowData(kernels: Kernels, features: SplitFeatures, data: TokenDataset, layer: number,
                           perClass: number[], subsets: number, seed: number, outDir: string): string {
  const C = data.meta.numClasses;
  const trainCount = features.labels.train.length;
  const px = data.meta.pixels;
  const sets = {
    model: {
      train: { features: features.train[layer]!, labels: features.labels.train },
      val: { features: features.val[layer]!, labels: features.labels.val },
      test: { features: features.test[layer]!, labels: features.labels.test },
    },
    pixels: {
      train: { features: paletteImageFeatures(data.train, data.palette, px, trainCount), labels: features.labels.train },
      val: { features: paletteImageFeatures(data.val, data.palette, px), labels: data.val.labels },
      test: { features: paletteImageFeatures(data.test, data.palette, px), labels: data.test.labels },
    },
  };
  const perClassCounts = new Array<number>(C).fill(0);
  for (const y of features.labels.train) if (y >= 0 && y < C) perClassCounts[y]!++;
  const fewest = Math.min(...perClassCounts);
  const skipped = perClass.filter((n) => n > fewest);
  if (skipped.length > 0) process.stderr.write(`lowdata: skipping ${skipped.join(', ')} labels per class: the smallest class has ${fewest} training images\n`);
  const rows: LowDataReport['rows'] = [];
  for (const n of perClass.filter((x) => x <= fewest)) {
    const run = (s: typeof sets.model): LowDataResult => lowDataProbe(s.train, s.test, {
      numClasses: C, labelsPerClass: n, subsets, seed, l2: DEFAULT_L2_GRID, val: s.val, kernels,
    });
    const row = { labelsPerClass: n, model: run(sets.model), pixels: run(sets.pixels) };
    rows.push(row);
    process.stderr.write(`lowdata: ${n}/class: layer ${layer} ${fmt(row.model)}, pixels ${fmt(row.pixels)}\n`);
  }
  const table = [`| labels per class | iGPT layer ${layer} (%) | pixels (%) |`, '|---|---|---|',
    ...rows.map((r) => `| ${r.labelsPerClass} | ${fmt(r.model)} | ${fmt(r.pixels)} |`)].join('\n') + '\n';
  writeRunFile(outDir, 'lowdata.json', JSON.stringify({ layer, subsets, seed, rows } satisfies LowDataReport, null, 1));
  writeRunFile(outDir, 'lowdata.md', table);
  return table;
}

function fmt(r: LowDataResult): string {
  return `${(100 * r.mean).toFixed(2)} ± ${(100 * r.std).toFixed(2)}`;
}
