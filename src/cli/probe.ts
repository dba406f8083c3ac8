/** `igpt probe`: linear probes on every layer's features; best layer, depth curve (Figure 2). */
import { join } from 'node:path';
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import type { DeviceArray, Kernels } from '../kernels/kernels.js';
import { openModelAndData, type ModelAndData } from '../pipeline/open.js';
import { defaultProbeDir, featuresForProbe, probeAndReport, probeReportMarkdown, type FeatureSettings } from '../pipeline/probe.js';
import { hostKernelsBeside } from '../kernels/select.js';
import { POOLINGS } from '../eval/features.js';
import { backendOption, kernelsFromFlags, parseChoice, parseIntOption, parseObjectiveOverride, parseOptionalInt, precisionOption } from './common.js';

/** The flags of feature extraction (shared by probe and lowdata). */
export interface FeatureFlags {
  model: string; data: string; batch: string; maxTrain?: string; maxVal?: string; masks: string; pooling: string; backend?: string; precision?: string; objective?: string;
}

/** Declares the options that feature extraction needs (shared by probe and lowdata). */
export function featureOptions(cmd: Command): Command {
  return precisionOption(backendOption(cmd
    .requiredOption('--model <dir|owner/name>', 'model folder (HF ImageGPT), or owner/name in the Hugging Face cache')
    .requiredOption('--data <dir>', 'labelled token dataset encoded with the model\'s palette')
    .option('--batch <n>', 'images per forward pass', '32')
    .option('--max-train <n>', 'use at most this many training images')
    .option('--max-val <n>', 'use at most this many validation images (they choose the layer and L2)')
    .option('--masks <n>', 'BERT models: average features over this many random masks', '1')
    .option('--pooling <mean|2x2>', 'mean over all positions (the paper\'s), or over each quadrant of the image, side by side (4× wider)', 'mean')
    .option('--objective <ar|bert>', 'override the objective recorded with the model')));
}

export function parseFeatureSettings(flags: FeatureFlags): FeatureSettings {
  return {
    batch: parseIntOption('--batch', flags.batch, 1),
    maxTrain: parseOptionalInt('--max-train', flags.maxTrain, 1),
    maxVal: parseOptionalInt('--max-val', flags.maxVal, 1),
    masks: parseIntOption('--masks', flags.masks, 1),
    pooling: parseChoice('--pooling', flags.pooling, POOLINGS),
  };
}

/**
 * Model and dataset of a feature command, checked to match and to have labels; the model on any
 * backend (the features are read back per batch), `kernels` the CPU's for the probes.
 */
export async function openForFeatures(flags: FeatureFlags): Promise<ModelAndData<DeviceArray> & { kernels: Kernels }> {
  const modelKernels = await kernelsFromFlags(flags, flags.precision);
  const objective = parseObjectiveOverride(flags.objective);
  const opened = openModelAndData(modelKernels, { model: flags.model, data: flags.data, objective, labelsFor: 'probing' });
  return { kernels: hostKernelsBeside(modelKernels), ...opened };
}

interface Flags extends FeatureFlags { out?: string; concat: string }

export const probeCommand: CommandModule = {
  register(program: Command): void {
    featureOptions(program.command('probe')
      .description('linear probe (L-BFGS logistic regression) on every layer; best layer and depth curve'))
      .option('--out <dir>', 'folder for probe.json, probe.md, depth.png and the feature cache (default: <model>-probe)')
      .option('--concat <k>', 'also probe k layers around the best, concatenated', '0')
      .action(async (flags: Flags) => {
        const settings = parseFeatureSettings(flags);
        const concat = parseIntOption('--concat', flags.concat, 0);
        const { kernels, opened, data } = await openForFeatures(flags);
        if (data.test.count === 0 || data.val.count === 0) throw new Error(`${flags.data}: probing needs validation and test splits`);
        const outDir = flags.out ?? defaultProbeDir(flags.model);
        const features = await featuresForProbe(opened, data, flags.data, settings, outDir);
        const r = await probeAndReport(kernels, features, data.meta.numClasses, outDir, concat, data.meta.classNames);
        console.log(probeReportMarkdown(r));
        console.log(`best layer ${r.bestLayer}: test accuracy ${(100 * r.best.testAccuracy).toFixed(2)}% ` +
          `(validation ${(100 * r.best.valAccuracy).toFixed(2)}%); ${join(outDir, 'probe.md')}, ${join(outDir, 'depth.png')}`);
      });
  },
};
