/** `igpt eval-nll`: the generative loss of a checkpoint on a split (test by default). */
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { openModelAndData } from '../pipeline/open.js';
import { evaluateNll } from '../train/evaluate.js';
import { createProgress } from '../util/progress.js';
import {
  backendOption, kernelsFromFlags, parseIntOption, parseObjectiveOverride, parseOptionalInt, parseSplitOption, precisionOption,
} from './common.js';

interface Flags { model: string; data: string; split: string; batch: string; maxImages?: string; objective?: string; backend?: string; precision?: string; json?: boolean }

export const evalNllCommand: CommandModule = {
  register(program: Command): void {
    precisionOption(backendOption(program.command('eval-nll')
      .description('negative log-likelihood (nats/pixel, bits/dim) of a model on a token dataset split')
      .requiredOption('--model <dir|owner/name>', 'model folder (HF ImageGPT), or owner/name in the Hugging Face cache')
      .requiredOption('--data <dir>', 'token dataset folder')
      .option('--split <name>', 'train, val or test', 'test')
      .option('--batch <n>', 'images per forward pass', '16')
      .option('--max-images <n>', 'evaluate at most this many images')
      .option('--objective <ar|bert>', 'override the objective recorded with the model')
      .option('--json', 'print the result as JSON')))
      .action(async (flags: Flags) => {
        const splitName = parseSplitOption(flags.split);
        const batch = parseIntOption('--batch', flags.batch, 1);
        const maxImages = parseOptionalInt('--max-images', flags.maxImages, 1);
        const objective = parseObjectiveOverride(flags.objective);
        const kernels = await kernelsFromFlags(flags, flags.precision);
        const { opened: m, data } = openModelAndData(kernels, { model: flags.model, data: flags.data, objective });
        const split = data[splitName];
        const bar = createProgress('eval-nll', Math.min(split.count, maxImages ?? split.count), 'images');
        const r = await evaluateNll(m.model, split, m.objective, { batch, maxImages, channels: data.meta.channels, onBatch: (done) => bar.update(done) });
        bar.stop();
        if (flags.json) console.log(JSON.stringify({ model: flags.model, split: flags.split, objective: m.objective, ...r }));
        else console.log(`${flags.split}: ${r.natsPerPixel.toFixed(4)} nats/pixel, ${r.bitsPerDim.toFixed(4)} bits/dim over ${r.images} images (${m.objective.toUpperCase()})`);
      });
  },
};
