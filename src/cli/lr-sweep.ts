/** `igpt lr-sweep`: the paper's learning-rate search, short runs until validation loss gets worse. */
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { loadTokenDataset } from '../data/tokens.js';
import { runLrSweep, sweepRates } from '../pipeline/lr-sweep.js';
import { pretrainOptions } from '../pipeline/pretrain.js';
import { kernelsFromFlags, lockRunFolder, parseIntOption, parseNumberOption } from './common.js';
import { parseShape, parseTrainingSettings, trainingOptions, type TrainFlags } from './pretrain.js';

interface SweepFlags extends TrainFlags { start: string; maxTrials: string }

export const lrSweepCommand: CommandModule = {
  register(program: Command): void {
    trainingOptions(program.command('lr-sweep')
      .description('learning-rate sweep (0.01, 0.003, 0.001, …): short runs until validation loss gets worse'))
      .requiredOption('--out <dir>', 'folder for one run per rate, sweep.json and sweep.md')
      .option('--start <lr>', 'first (largest) rate', '0.01')
      .option('--max-trials <n>', 'at most this many rates', '6')
      .action(async (flags: SweepFlags) => {
        lockRunFolder(flags.out);
        const kernels = await kernelsFromFlags(flags, flags.precision);
        const settings = parseTrainingSettings({ ...flags, steps: flags.steps ?? '200' });
        const rates = sweepRates(parseNumberOption('--start', flags.start, 0), parseIntOption('--max-trials', flags.maxTrials, 1, 20));
        const shape = parseShape(flags);
        const data = loadTokenDataset(flags.data);
        const sweep = await runLrSweep({
          kernels, data, dataDir: flags.data, outDir: flags.out, shape, options: pretrainOptions(settings, data.train.count),
        }, rates);
        console.log(sweep.table);
        console.log(`best learning rate: ${sweep.best.lr} (runs in ${flags.out})`);
      });
  },
};
