/**
 * The paper's low-data protocol (Table 4) on one layer's features and on the pixels: N labels per
 * class, S random subsets, mean ± std of test accuracy; lowdata.json and lowdata.md.
 */
import type { TokenDataset } from '../data/tokens.js';
import { lowDataProbe, paletteImageFeatures, type LowDataResult } from '../eval/lowdata.js';
import { DEFAULT_L2_GRID } from '../eval/probe.js';
import type { Kernels } from '../kernels/kernels.js';
import { writeRunFile } from '../util/fs.js';
import { probeAndReport, readProbeReport, type SplitFeatures } from './probe.js';

/** lowdata.json: the low-data table of one layer against raw pixels. */
export interface LowDataReport {
  layer: number;
  subsets: number;
  seed: number;
  rows: { labelsPerClass: number; model: LowDataResult; pixels: LowDataResult }[];
}

export interface LowDataSettings {
  /** Labels per class to try (those above the smallest class's size are skipped, with a warning). */
  labelsPerClass: number[];
  subsets: number;
  /** Seed of the subset draws. */
  seed: number;
}

/** The best layer of the probe in `probeDir` (probe.json), probing every layer first if it has not run. */
export async function bestProbeLayer(kernels: Kernels, features: SplitFeatures, numClasses: number, probeDir: string,
                                     classNames?: string[]): Promise<number> {
  return (readProbeReport(probeDir) ?? await probeAndReport(kernels, features, numClasses, probeDir, 0, classNames)).bestLayer;
}

/** The protocol for each N on one layer's features and on the pixels; writes lowdata.json/.md into `outDir`, returns the table. */
export function runLowData(kernels: Kernels, features: SplitFeatures, data: TokenDataset, layer: number,
                           s: LowDataSettings, outDir: string): string {
  const C = data.meta.numClasses;
  const trainCount = features.labels.train.length;
  const px = data.meta.pixels;
  const sets = {
    model: {
      train: { features: features.train[layer], labels: features.labels.train },
      val: { features: features.val[layer], labels: features.labels.val },
      test: { features: features.test[layer], labels: features.labels.test },
    },
    pixels: {
      train: { features: paletteImageFeatures(data.train, data.palette, px, trainCount), labels: features.labels.train },
      val: { features: paletteImageFeatures(data.val, data.palette, px), labels: data.val.labels },
      test: { features: paletteImageFeatures(data.test, data.palette, px), labels: data.test.labels },
    },
  };
  const perClassCounts = new Array<number>(C).fill(0);
  for (const y of features.labels.train) if (y >= 0 && y < C) perClassCounts[y]++;
  const fewest = Math.min(...perClassCounts);
  const skipped = s.labelsPerClass.filter((n) => n > fewest);
  if (skipped.length > 0) process.stderr.write(`lowdata: skipping ${skipped.join(', ')} labels per class: the smallest class has ${fewest} training images\n`);
  const rows: LowDataReport['rows'] = [];
  for (const n of s.labelsPerClass.filter((x) => x <= fewest)) {
    const run = (set: typeof sets.model): LowDataResult => lowDataProbe(set.train, set.test, {
      numClasses: C, labelsPerClass: n, subsets: s.subsets, seed: s.seed, l2: DEFAULT_L2_GRID, val: set.val, kernels,
    });
    const row = { labelsPerClass: n, model: run(sets.model), pixels: run(sets.pixels) };
    rows.push(row);
    process.stderr.write(`lowdata: ${n}/class: layer ${layer} ${meanStd(row.model)}, pixels ${meanStd(row.pixels)}\n`);
  }
  const table = [`| labels per class | iGPT layer ${layer} (%) | pixels (%) |`, '|---|---|---|',
    ...rows.map((r) => `| ${r.labelsPerClass} | ${meanStd(r.model)} | ${meanStd(r.pixels)} |`)].join('\n') + '\n';
  const report: LowDataReport = { layer, subsets: s.subsets, seed: s.seed, rows };
  writeRunFile(outDir, 'lowdata.json', JSON.stringify(report, null, 1));
  writeRunFile(outDir, 'lowdata.md', table);
  return table;
}

function meanStd(r: LowDataResult): string {
  return `${(100 * r.mean).toFixed(2)} ± ${(100 * r.std).toFixed(2)}`;
}
