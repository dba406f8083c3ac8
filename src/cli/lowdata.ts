/**
 * `igpt lowdata`: the paper's low-data protocol (Table 4). A linear probe on N labels per class
 * of the training set, on S random subsets, mean ± std of test accuracy, next to the same
 * protocol on the pixels.
 */
import { join } from 'node:path';
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { bestProbeLayer, runLowData } from '../pipeline/lowdata.js';
import { defaultProbeDir, featuresForProbe } from '../pipeline/probe.js';
import { parseIntOption, parseOptionalInt } from './common.js';
import { featureOptions, openForFeatures, parseFeatureSettings, type FeatureFlags } from './probe.js';

interface Flags extends FeatureFlags { out?: string; labels: string; subsets: string; layer?: string; seed: string }

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
        const features = parseFeatureSettings(flags);
        const settings = {
          labelsPerClass: flags.labels.split(',').map((s) => parseIntOption('--labels', s.trim(), 1)),
          subsets: parseIntOption('--subsets', flags.subsets, 1),
          seed: parseIntOption('--seed', flags.seed, 0),
        };
        const { kernels, opened, data } = await openForFeatures(flags);
        const layerFlag = parseOptionalInt('--layer', flags.layer, 0, opened.model.config.nLayer);
        const outDir = flags.out ?? defaultProbeDir(flags.model);
        const extracted = await featuresForProbe(opened, data, flags.data, features, outDir);
        const layer = layerFlag ?? await bestProbeLayer(kernels, extracted, data.meta.numClasses, outDir, data.meta.classNames);
        console.log(runLowData(kernels, extracted, data, layer, settings, outDir));
        console.log(`mean ± std of test accuracy over ${settings.subsets} subsets (pixels: the images through the palette); ${join(outDir, 'lowdata.md')}`);
      });
  },
};
