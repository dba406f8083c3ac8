/**
 * `igpt experiment fashion-mnist`: the paper's pipeline end to end within a time budget, resumable:
 * tokens → pretraining → test NLL, probe at every layer, low-data → probe accuracy against
 * pretraining time → fine-tuning → completions → RESULTS.md (the stages: src/pipeline/experiment.ts).
 */
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { presetShape } from '../model/config.js';
import { runExperiment } from '../pipeline/experiment.js';
import { join } from 'node:path';
import {
  backendOption, kernelsFromFlags, lockRunFolder, parseIntOption, parseNumberOption, parseObjective, parseOptionalInt, parseOptionalNumber, HOLD_HELP, precisionOption,
} from './common.js';

interface Flags {
  out: string; budget: string; finetuneMinutes: string; objective: string; preset: string; side: string;
  batch: string; lr: string; hold?: string; probeTrain: string; probeVal?: string; backend?: string; precision?: string; seed: string;
}

export const experimentCommand: CommandModule = {
  register(program: Command): void {
    precisionOption(backendOption(program.command('experiment')
      .argument('<dataset>', 'fashion-mnist (or mnist)')
      .description('the whole study within a time budget: pretrain, NLL, probe, low-data, probe curve, fine-tune, samples, RESULTS.md')
      .option('--out <dir>', 'study folder (rerun the same command to resume)', 'study')
      .option('--budget <hours>', 'pretraining time budget', '1')
      .option('--finetune-minutes <m>', 'fine-tuning time budget', '15')
      .option('--objective <ar|bert>', 'pretraining objective', 'ar')
      .option('--preset <name>', 'model size', 'cpu-s')
      .option('--side <n>', 'input resolution', '28')
      .option('--batch <n>', 'images per step', '16')
      .option('--lr <x>', 'peak learning rate', '0.002')
      .option('--hold <fraction>', HOLD_HELP)
      .option('--probe-train <n>', 'training images whose features the probe uses', '10000')
      .option('--probe-val <n>', 'validation images that choose the probe\'s layer and L2 (default: all)')
      .option('--seed <n>', 'seed', '0')))
      .action(async (dataset: string, flags: Flags) => {
        // The study's own pretraining run folder too: `igpt pretrain --out <study>/pretrain` must wait.
        lockRunFolder(flags.out);
        lockRunFolder(join(flags.out, 'pretrain'));
        await runExperiment({
          kernels: await kernelsFromFlags(flags, flags.precision), dataset, outDir: flags.out,
          budgetHours: parseNumberOption('--budget', flags.budget, 0),
          finetuneMinutes: parseNumberOption('--finetune-minutes', flags.finetuneMinutes, 0),
          objective: parseObjective(flags.objective), shape: presetShape(flags.preset),
          side: parseIntOption('--side', flags.side, 4, 64), batch: parseIntOption('--batch', flags.batch, 1),
          lr: parseNumberOption('--lr', flags.lr, 0), hold: parseOptionalNumber('--hold', flags.hold, 0, 0.99),
          probeTrain: parseIntOption('--probe-train', flags.probeTrain, 1), probeVal: parseOptionalInt('--probe-val', flags.probeVal, 1),
          seed: parseIntOption('--seed', flags.seed, 0),
          command: `igpt ${process.argv.slice(2).join(' ')}`, log: (line) => console.log(line),
        });
      });
  },
};
