/** `igpt pretrain`: generative pretraining (AR or BERT) on a token dataset, resumable. */
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { loadTokenDataset } from '../data/tokens.js';
import { presetShape, PRESETS, type ModelShape } from '../model/config.js';
import { pretrainOptions, pretrainSummary, runPretraining, type PretrainSettings } from '../pipeline/pretrain.js';
import {
  backendOption, kernelsFromFlags, lockRunFolder, parseIntOption, parseNumberOption, parseObjective, parseOptionalInt, parseOptionalNumber, HOLD_HELP,
  precisionOption,
} from './common.js';

/** The flags `pretrain` and `lr-sweep` share (as commander hands them over: text). */
export interface TrainFlags {
  data: string; out: string; objective: string; preset: string; d?: string; layers?: string; heads?: string;
  batch: string; lr: string; steps?: string; epochs?: string; warmup?: string; hold?: string; maskProb: string;
  evalEvery?: string; evalImages: string; checkpointEvery?: string; keepEvery?: string; seed: string; backend?: string; precision?: string;
  recompute?: boolean; resume?: boolean;
}

/** Declares the options `pretrain` and `lr-sweep` share. */
export function trainingOptions(cmd: Command): Command {
  return precisionOption(backendOption(cmd
    .requiredOption('--data <dir>', 'token dataset folder (from igpt encode)')
    .option('--objective <ar|bert>', 'auto-regressive or BERT (masked) objective', 'ar')
    .option('--preset <name>', `model size: ${Object.keys(PRESETS).join(', ')}`, 'cpu-xs')
    .option('--d <n>', 'embedding width (overrides the preset)')
    .option('--layers <n>', 'number of blocks (overrides the preset)')
    .option('--heads <n>', 'attention heads (overrides the preset)')
    .option('--batch <n>', 'images per step', '8')
    .option('--lr <x>', 'peak learning rate (Adam, β 0.9/0.95)', '0.002')
    .option('--steps <n>', 'training steps (default: --epochs 1)')
    .option('--epochs <x>', 'passes over the training split (alternative to --steps)')
    .option('--warmup <n>', 'linear warmup steps (default: one epoch, at most 10% of the steps)')
    .option('--hold <fraction>', HOLD_HELP)
    .option('--mask-prob <p>', 'BERT mask probability', '0.15')
    .option('--eval-images <n>', 'validation images per evaluation (0: all)', '1000')
    .option('--seed <n>', 'seed of the initialization, data order and masks', '0')
    .option('--recompute', 'recompute block activations in backward: much less memory, about a third more time')));
}

export function parseShape(flags: TrainFlags): ModelShape {
  const base = presetShape(flags.preset);
  return {
    nEmbd: parseOptionalInt('--d', flags.d, 1) ?? base.nEmbd,
    nLayer: parseOptionalInt('--layers', flags.layers, 1) ?? base.nLayer,
    nHead: parseOptionalInt('--heads', flags.heads, 1) ?? base.nHead,
  };
}

export function parseTrainingSettings(flags: TrainFlags): PretrainSettings {
  return {
    objective: parseObjective(flags.objective),
    batch: parseIntOption('--batch', flags.batch, 1, 4096),
    lr: parseNumberOption('--lr', flags.lr, 0),
    seed: parseIntOption('--seed', flags.seed, 0),
    maskProb: parseNumberOption('--mask-prob', flags.maskProb, 0, 1),
    evalImages: parseIntOption('--eval-images', flags.evalImages, 0),
    steps: parseOptionalInt('--steps', flags.steps, 1),
    epochs: parseOptionalNumber('--epochs', flags.epochs, 0),
    warmup: parseOptionalInt('--warmup', flags.warmup, 0),
    hold: parseOptionalNumber('--hold', flags.hold, 0, 0.99),
    evalEvery: parseOptionalInt('--eval-every', flags.evalEvery, 0),
    checkpointEvery: parseOptionalInt('--checkpoint-every', flags.checkpointEvery, 0),
    keepEvery: parseOptionalInt('--keep-every', flags.keepEvery, 0),
    recompute: flags.recompute === true,
  };
}

export const pretrainCommand: CommandModule = {
  register(program: Command): void {
    trainingOptions(program.command('pretrain')
      .description('pretrain an iGPT model on a token dataset (auto-regressive or BERT objective)'))
      .requiredOption('--out <dir>', 'run folder: checkpoints, model (an HF ImageGPT folder), loss.png')
      .option('--eval-every <n>', 'validate every n steps (default: 10 times per run)')
      .option('--checkpoint-every <n>', 'checkpoint every n steps (default: 10 times per run)')
      .option('--keep-every <n>', 'also keep every checkpoint whose step is a multiple of n (default: only the newest two)')
      .option('--resume', 'continue the run in --out from its latest checkpoint')
      .action(async (flags: TrainFlags) => {
        lockRunFolder(flags.out);
        const kernels = await kernelsFromFlags(flags, flags.precision);
        const settings = parseTrainingSettings(flags);
        const shape = parseShape(flags);
        const data = loadTokenDataset(flags.data);
        const result = await runPretraining({
          kernels, data, dataDir: flags.data, outDir: flags.out, shape, options: pretrainOptions(settings, data.train.count), resume: flags.resume === true,
        });
        console.log(pretrainSummary(result, flags.out));
        // Stopped by Ctrl-C or SIGTERM: the checkpoint is saved, and the exit code says "interrupted" (128 + SIGINT).
        if (result.stoppedEarly) process.exitCode = 130;
      });
  },
};
