/** `igpt pretrain`: generative pretraining (AR or BERT) on a token dataset, resumable. */
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { loadTokenDataset, type TokenDataset } from '../data/tokens.js';
import { makeConfig, presetShape, PRESETS, type ModelShape } from '../model/config.js';
import { ImageGPT } from '../model/model.js';
import { parameterCount } from '../model/parameters.js';
import { pretrain, type PretrainResult } from '../train/pretrain.js';
import { NumericalFault, type PretrainOptions } from '../train/trainer.js';
import type { Objective } from '../train/objectives.js';
import type { Kernels } from '../kernels/kernels.js';
import { backendOption, precisionOption, kernelsFromFlags, lockRunFolder, parseIntOption, parseNumberOption, stopOnInterrupt } from './common.js';
import { createProgress } from './progress.js';
import { availableMemoryBytes, gib } from '../util/memory.js';

export interface TrainFlags {
  data: string; out: string; objective: string; preset: string; d?: string; layers?: string; heads?: string;
  batch: string; lr: string; steps?: string; epochs?: string; warmup?: string; maskProb: string;
  evalEvery?: string; evalImages: string; checkpointEvery?: string; keepEvery?: string; seed: string; resume?: boolean; backend?: string; precision?: string;
  recompute?: boolean;
}

/** The options `pretrain` and `lr-sweep` share. */
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
    .option('--mask-prob <p>', 'BERT mask probability', '0.15')
    .option('--eval-images <n>', 'validation images per evaluation (0: all)', '1000')
    .option('--seed <n>', 'seed of the initialization, data order and masks', '0')
    .option('--recompute', 'recompute block activations in backward: much less memory, about a third more time')));
}

export function parseShape(flags: TrainFlags): ModelShape {
  const base = presetShape(flags.preset);
  return {
    nEmbd: flags.d ? parseIntOption('--d', flags.d, 1) : base.nEmbd,
    nLayer: flags.layers ? parseIntOption('--layers', flags.layers, 1) : base.nLayer,
    nHead: flags.heads ? parseIntOption('--heads', flags.heads, 1) : base.nHead,
  };
}

export function parseTrainingOptions(flags: TrainFlags, data: TokenDataset): PretrainOptions {
  const objective = flags.objective;
  if (objective !== 'ar' && objective !== 'bert') throw new Error(`--objective must be ar or bert, got "${objective}"`);
  const batch = parseIntOption('--batch', flags.batch, 1, 4096);
  const stepsPerEpoch = Math.max(1, Math.ceil(data.train.count / batch));
  const steps = flags.steps !== undefined ? parseIntOption('--steps', flags.steps, 1)
    : Math.max(1, Math.round(parseNumberOption('--epochs', flags.epochs ?? '1', 0) * stepsPerEpoch));
  const warmup = flags.warmup !== undefined ? parseIntOption('--warmup', flags.warmup, 0)
    : Math.min(stepsPerEpoch, Math.ceil(steps / 10));
  return {
    objective: objective as Objective, batch, steps, warmup, cosine: true,
    lr: parseNumberOption('--lr', flags.lr, 0),
    seed: parseIntOption('--seed', flags.seed, 0),
    maskProb: parseNumberOption('--mask-prob', flags.maskProb, 0, 1),
    evalEvery: flags.evalEvery !== undefined ? parseIntOption('--eval-every', flags.evalEvery, 0) : Math.max(1, Math.ceil(steps / 10)),
    evalImages: parseIntOption('--eval-images', flags.evalImages, 0),
    checkpointEvery: flags.checkpointEvery !== undefined ? parseIntOption('--checkpoint-every', flags.checkpointEvery, 0) : Math.max(1, Math.ceil(steps / 10)),
    keepEvery: flags.keepEvery !== undefined ? parseIntOption('--keep-every', flags.keepEvery, 0) : 0,
    recompute: flags.recompute === true,
  };
}

/** Refuses up front a model and batch that will not fit in memory, with the estimate. */
export function checkMemory(shape: ModelShape, data: TokenDataset, batch: number, recompute: boolean): void {
  const cfg = makeConfig(shape, data.palette.k, data.meta.pixels, data.meta.numClasses);
  const need = 4 * 4 * parameterCount(cfg) + ImageGPT.activationBytes(cfg, batch, cfg.nPositions, recompute ? 'recompute' : 'train');
  const limit = availableMemoryBytes();
  if (need > limit) {
    throw new Error(`this model and batch need about ${gib(need)} (parameters, gradients, Adam, activations) ` +
      `but only ${gib(limit)} is available; lower --batch, choose a smaller --preset${recompute ? '' : ' or add --recompute'}`);
  }
}

/** Runs `pretrain` with a progress bar, Ctrl-C handling and readable errors. */
export async function runPretraining(kernels: Kernels, data: TokenDataset, flags: TrainFlags, options: PretrainOptions,
                                     outDir: string, resume: boolean, label = 'pretrain'): Promise<PretrainResult> {
  const shape = parseShape(flags);
  checkMemory(shape, data, options.batch, options.recompute ?? false);
  const interrupt = stopOnInterrupt('stopping after this step and saving a checkpoint');
  const pixels = data.meta.pixels;
  let bar = createProgress(label, options.steps, 'steps', ['loss', 'lr', 'px/s', 'val']);
  let valText = '-';
  let lastCheckpoint = '';
  try {
    const result = await pretrain(kernels, data, flags.data, outDir, shape, options, resume, {
      onStart: ({ resumedFrom, skipped, config, params }) => {
        bar.stop();
        for (const e of skipped) process.stderr.write(`igpt: warning: skipped a newer checkpoint that does not load: ${e}\n`);
        process.stderr.write(`${label}: ${options.objective.toUpperCase()} objective, d ${config.nEmbd}, ${config.nLayer} layers, ` +
          `${config.nHead} heads, ${(params / 1e6).toFixed(2)}M parameters, ${data.train.count} training images, ` +
          `batch ${options.batch}, ${options.steps} steps${resumedFrom >= 0 ? `, resumed at step ${resumedFrom}` : ''}\n`);
        bar = createProgress(label, options.steps, 'steps', ['loss', 'lr', 'gnorm', 'px/s', 'val'], Math.max(0, resumedFrom));
      },
      onStep: (r) => bar.update(r.step, {
        loss: r.loss.toFixed(4), lr: r.lr.toExponential(2), gnorm: r.gradNorm.toFixed(2), 'px/s': Math.round((options.batch * pixels) / r.seconds), val: valText,
      }),
      onValidate: (r) => { valText = `${r.natsPerPixel.toFixed(4)} nats (${r.bitsPerDim.toFixed(3)} bpd)`; },
      onCheckpoint: (dir) => { lastCheckpoint = dir; },
      shouldStop: interrupt.requested,
    });
    bar.stop();
    const v = result.finalValidation;
    if (result.stoppedEarly) {
      console.log(`stopped at step ${result.state.step}; checkpoint ${result.checkpoint}. Resume with the same command and --resume.`);
    } else {
      console.log(`done: ${result.state.step} steps in ${result.state.seconds.toFixed(0)} s` +
        (v ? `; validation NLL ${v.natsPerPixel.toFixed(4)} nats/pixel (${v.bitsPerDim.toFixed(3)} bits/dim)` : ''));
      console.log(`model: ${outDir}/model  (checkpoint ${result.checkpoint}); loss curve: ${outDir}/loss.png`);
    }
    return result;
  } catch (err) {
    bar.stop();
    if (err instanceof NumericalFault) {
      throw new Error(`${err.message}${lastCheckpoint ? ` (${lastCheckpoint})` : ''}; try a lower --lr`);
    }
    throw err;
  } finally {
    interrupt.dispose();
  }
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
        const kernels = kernelsFromFlags(flags, flags.precision);
        const data = loadTokenDataset(flags.data);
        const result = await runPretraining(kernels, data, flags, parseTrainingOptions(flags, data), flags.out, flags.resume === true);
        // Stopped by Ctrl-C or SIGTERM: the checkpoint is saved, and the exit code says "interrupted" (128 + SIGINT).
        if (result.stoppedEarly) process.exitCode = 130;
      });
  },
};
