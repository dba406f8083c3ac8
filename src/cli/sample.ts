/** `igpt sample`: unconditional samples or completions of test images, as a PNG grid + JSON. */
import { basename, dirname, join } from 'node:path';
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { loadTokenDataset } from '../data/tokens.js';
import { imagesOfSplit, writeCompletions } from '../pipeline/completions.js';
import { inspectModelFolder } from '../io/hf.js';
import { checkModelMatchesData, openModel, recordedObjective } from '../pipeline/open.js';
import { checkSamplingFits } from '../sample/memory.js';
import { decodeGroupFor } from '../sample/sampler.js';
import { writeRunFile } from '../util/fs.js';
import {
  backendOption, kernelsFromFlags, parseChoice, parseIntOption, parseObjectiveOverride, parseOptionalInt, parseSplitOption, squareSide,
} from './common.js';
import { parseSampling, samplingOptions, type SamplingFlags } from './sampling-options.js';

interface Flags extends SamplingFlags {
  model: string; data?: string; split: string; count: string; rows?: string; out: string;
  objective?: string; order: string; backend?: string; first: string;
}

export const sampleCommand: CommandModule = {
  register(program: Command): void {
    samplingOptions(backendOption(program.command('sample')
      .description('sample images, or complete the bottom of test images (KV-cache decoding; BERT in-filling)')
      .requiredOption('--model <dir|owner/name>', 'model folder (HF ImageGPT: ours, or a published one), or owner/name in the Hugging Face cache')
      .option('--data <dir>', 'token dataset whose images are completed (omit for unconditional samples)')
      .option('--split <name>', 'split of --data to take images from', 'test')
      .option('--first <i>', 'index of the first image taken from the split', '0')
      .option('--count <n>', 'images (rows of the grid)', '8')
      .option('--rows <r>', 'rows kept from the top of each image (default: half)')
      .option('--objective <ar|bert>', 'override the objective recorded with the model')
      .option('--order <o>', 'BERT: confident (most confident pixels first) or random', 'confident'))
      .requiredOption('--out <file.png>', 'grid to write; the ids go to the same name with .json'))
      .action(async (flags: Flags) => {
        const count = parseIntOption('--count', flags.count, 1, 1024);
        const { sampling, samples, passes, scale } = parseSampling(flags);
        const order = parseChoice('--order', flags.order, ['confident', 'random'] as const);
        const kernels = await kernelsFromFlags(flags);
        const objective = parseObjectiveOverride(flags.objective);
        // From the headers alone: a model this machine cannot hold is refused before it is read.
        const stored = inspectModelFolder(flags.model);
        const decodePrecision = kernels.attentionDecodeHalf ? sampling.precision ?? 'f32' : 'f32';
        checkSamplingFits(stored.dir, stored.config, count * samples, decodeGroupFor(kernels, stored.config, decodePrecision),
                          decodePrecision, objective ?? recordedObjective(stored.dir) ?? 'ar');
        const m = openModel(flags.model, kernels, objective);
        const n = m.model.config.nPositions;
        const side = squareSide(n, flags.model);
        let palette = m.palette;
        let originals: Int32Array | null = null;
        let rows = 0;
        if (flags.data) {
          const data = loadTokenDataset(flags.data);
          checkModelMatchesData(m, data, flags.data);
          palette ??= data.palette;
          const splitName = parseSplitOption(flags.split);
          originals = imagesOfSplit(data[splitName], parseIntOption('--first', flags.first, 0), count, n, `${flags.data}: the ${splitName} split`);
          rows = parseOptionalInt('--rows', flags.rows, 0, side) ?? Math.floor(side / 2);
        }
        if (!palette) throw new Error(`${flags.model} has no palette (preprocessor_config.json clusters); pass --data to use a dataset's`);
        const { figure, seconds } = await writeCompletions(kernels, m.model.params, originals, {
          ...sampling, objective: m.objective, count, samples, rows, passes, order,
        }, palette, flags.out, scale);
        const knownPixels = rows * side;
        const jsonPath = join(dirname(flags.out), basename(flags.out).replace(/\.png$/i, '') + '.json');
        writeRunFile(dirname(jsonPath), basename(jsonPath), JSON.stringify({
          model: flags.model, objective: m.objective, side, count, samples, knownPixels, sampling, seconds,
          originals: originals ? Array.from(originals) : null, completions: Array.from(figure.completions),
        }));
        console.log(`${flags.out}: ${count} × ${samples} ${originals ? `completions (top ${rows} rows kept)` : 'samples'} in ${seconds.toFixed(1)} s; ids in ${jsonPath}`);
      });
  },
};
