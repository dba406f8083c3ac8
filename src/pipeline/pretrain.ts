/** Running a pretraining: options with their defaults, a memory check, a progress bar, Ctrl-C. */
import type { TokenDataset } from '../data/tokens.js';
import type { DeviceArray, Kernels } from '../kernels/kernels.js';
import { makeConfig, type ModelShape } from '../model/config.js';
import { ImageGPT } from '../model/model.js';
import { parameterCount } from '../model/parameters.js';
import type { Objective } from '../train/objectives.js';
import { pretrain, type PretrainResult } from '../train/pretrain.js';
import { NumericalFault, type PretrainOptions } from '../train/trainer.js';
import { stopOnInterrupt } from '../util/interrupt.js';
import { availableMemoryBytes, gib } from '../util/memory.js';
import { createProgress } from '../util/progress.js';
import { stepsFromEpochs, stepsPerEpoch } from './open.js';

/** What a pretraining asks for; the fields left out take the defaults of `pretrainOptions`. */
export interface PretrainSettings {
  objective: Objective;
  batch: number;
  lr: number;
  seed: number;
  maskProb: number;
  evalImages: number;
  /** Default: `epochs` passes over the training split, one when neither is given. */
  steps?: number;
  epochs?: number;
  /** Default: one epoch, at most 10% of the steps. */
  warmup?: number;
  /** Hold the peak rate until this fraction of the steps before the cosine (default 0). */
  hold?: number;
  /** Default: 10 times per run (likewise checkpointEvery). */
  evalEvery?: number;
  checkpointEvery?: number;
  /** Default 0: only the newest two checkpoints are kept. */
  keepEvery?: number;
  recompute?: boolean;
}

/** The trainer's options for `trainImages` training images, defaults filled in. */
export function pretrainOptions(s: PretrainSettings, trainImages: number): PretrainOptions {
  const steps = s.steps ?? stepsFromEpochs(s.epochs ?? 1, trainImages, s.batch);
  const tenTimes = Math.max(1, Math.ceil(steps / 10));
  return {
    objective: s.objective, batch: s.batch, steps, cosine: true, lr: s.lr, seed: s.seed, maskProb: s.maskProb,
    warmup: s.warmup ?? Math.min(stepsPerEpoch(trainImages, s.batch), Math.ceil(steps / 10)),
    evalEvery: s.evalEvery ?? tenTimes, evalImages: s.evalImages,
    checkpointEvery: s.checkpointEvery ?? tenTimes, keepEvery: s.keepEvery ?? 0, recompute: s.recompute === true,
    ...(s.hold ? { hold: s.hold } : {}),
  };
}

/**
 * Refuses up front a model and batch that will not fit in memory, with the estimate: the host's
 * memory on the CPU; on a GPU (`kernels.maxArrayBytes`), whose free memory WebGPU does not tell,
 * the largest array (the flat parameters, or one activation) against the adapter's largest buffer.
 */
export function checkMemory(shape: ModelShape, data: TokenDataset, batch: number, recompute: boolean,
                            kernels?: Pick<Kernels<DeviceArray>, 'maxArrayBytes' | 'attentionStateLength'>): void {
  const cfg = makeConfig(shape, data.palette.k, data.meta.pixels, data.meta.numClasses);
  const T = cfg.nPositions;
  const attention = kernels?.attentionStateLength(batch, T, cfg.nHead);
  const need = 4 * 4 * parameterCount(cfg) + ImageGPT.activationBytes(cfg, batch, T, recompute ? 'recompute' : 'train', attention);
  const maxArray = kernels?.maxArrayBytes;
  if (maxArray !== undefined) {
    const largest = 4 * Math.max(parameterCount(cfg), batch * T * Math.max(4 * cfg.nEmbd, cfg.vocabSize), attention ?? 0);
    if (largest > maxArray) {
      throw new Error(`this model and batch need about ${gib(need)} of GPU memory (parameters, gradients, Adam, activations), ` +
        `with one array of ${gib(largest)}, but the GPU allocates at most ${gib(maxArray)} at once; lower --batch or choose a smaller --preset`);
    }
    process.stderr.write(`igpt: this model and batch need about ${gib(need)} of GPU memory\n`);
    return;
  }
  const limit = availableMemoryBytes();
  if (need > limit) {
    throw new Error(`this model and batch need about ${gib(need)} (parameters, gradients, Adam, activations) ` +
      `but only ${gib(limit)} is available; lower --batch, choose a smaller --preset${recompute ? '' : ' or add --recompute'}`);
  }
}

export interface PretrainRun<T extends DeviceArray = Float32Array> {
  kernels: Kernels<T>;
  data: TokenDataset;
  /** The folder `data` was read from (recorded in the run's state). */
  dataDir: string;
  /** The run folder: checkpoints, model, loss.png, history.json. */
  outDir: string;
  shape: ModelShape;
  options: PretrainOptions;
  /** Continue the run in `outDir` from its latest checkpoint. */
  resume: boolean;
  /** Names the progress bar (default 'pretrain'). */
  label?: string;
}

/**
 * Pretrains with a progress bar on stderr; Ctrl-C (or SIGTERM) stops after the current step and
 * saves a checkpoint. A numerical fault names the last checkpoint.
 */
export async function runPretraining<T extends DeviceArray>(run: PretrainRun<T>): Promise<PretrainResult<T>> {
  const { data, options } = run;
  const label = run.label ?? 'pretrain';
  checkMemory(run.shape, data, options.batch, options.recompute ?? false, run.kernels);
  const interrupt = stopOnInterrupt('stopping after this step and saving a checkpoint');
  const pixels = data.meta.pixels;
  let bar = createProgress(label, options.steps, 'steps', ['loss', 'lr', 'px/s', 'val']);
  let valText = '-';
  let lastCheckpoint = '';
  try {
    const result = await pretrain(run.kernels, data, run.dataDir, run.outDir, run.shape, options, run.resume, {
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

/** What a finished (or interrupted) run says: steps, validation NLL, where the model is. */
export function pretrainSummary(result: PretrainResult<DeviceArray>, outDir: string): string {
  if (result.stoppedEarly) {
    return `stopped at step ${result.state.step}; checkpoint ${result.checkpoint}. Resume with the same command and --resume.`;
  }
  const v = result.finalValidation;
  return `done: ${result.state.step} steps in ${result.state.seconds.toFixed(0)} s` +
    (v ? `; validation NLL ${v.natsPerPixel.toFixed(4)} nats/pixel (${v.bitsPerDim.toFixed(3)} bits/dim)` : '') +
    `\nmodel: ${outDir}/model  (checkpoint ${result.checkpoint}); loss curve: ${outDir}/loss.png`;
}
