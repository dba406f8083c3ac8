/** Running a fine-tuning: options with their defaults, a progress bar, Ctrl-C, the best model saved. */
import { join } from 'node:path';
import type { TokenDataset } from '../data/tokens.js';
import { FINETUNE_DEFAULTS, finetune, type FinetuneOptions, type FinetuneResult } from '../eval/finetune.js';
import { saveModelFolder } from '../io/hf.js';
import type { DeviceArray, Kernels } from '../kernels/kernels.js';
import { ImageGPT } from '../model/model.js';
import { parametersOn, parametersToHost, withClassHead } from '../model/parameters.js';
import { world } from '../parallel/world.js';
import { writeRunFile } from '../util/fs.js';
import { stopOnInterrupt } from '../util/interrupt.js';
import { createProgress } from '../util/progress.js';
import type { OpenedModel } from './open.js';
import { stepsFromEpochs, stepsPerEpoch } from './open.js';

/** What a fine-tuning asks for; the fields left out take the defaults of `finetuneOptions`. */
export interface FinetuneSettings {
  batch: number;
  /** Default: `epochs` passes over the training split (one when neither is given). */
  steps?: number;
  epochs?: number;
  /** Default: 5% of the steps, at most 100. */
  warmup?: number;
  /** Default: FINETUNE_DEFAULTS for the way the head starts (a probe head or a zero head); likewise cosine, headLrScale. */
  lr?: number;
  cosine?: boolean;
  headLrScale?: number;
  genWeight: number;
  /** Default: 10 times per epoch. */
  evalEvery?: number;
  patience: number;
  evalImages: number;
  /** 'auto': on for color 32×32 images. */
  augment: boolean | 'auto';
  seed: number;
  evalMasks: number;
  valMasks: number;
  probeHeadImages: number;
}

/** The fine-tuning options for `data` and a model trained with `objective`, defaults filled in. */
export function finetuneOptions(s: FinetuneSettings, objective: FinetuneOptions['objective'], data: TokenDataset): FinetuneOptions {
  const steps = s.steps ?? stepsFromEpochs(s.epochs ?? 1, data.train.count, s.batch);
  const defaults = FINETUNE_DEFAULTS[s.probeHeadImages > 0 ? 'probeHead' : 'zeroHead'];
  return {
    objective, batch: s.batch, steps, lr: s.lr ?? defaults.lr, cosine: s.cosine ?? defaults.cosine,
    headLrScale: s.headLrScale ?? defaults.headLrScale, warmup: s.warmup ?? Math.min(100, Math.ceil(steps / 20)),
    genWeight: s.genWeight, evalEvery: s.evalEvery ?? Math.max(1, Math.ceil(stepsPerEpoch(data.train.count, s.batch) / 10)),
    patience: s.patience, evalImages: s.evalImages,
    augment: s.augment === 'auto' ? data.meta.channels === 3 && data.meta.side === 32 : s.augment,
    seed: s.seed, maskProb: 0.15, evalMasks: s.evalMasks, valMasks: s.valMasks, probeHeadImages: s.probeHeadImages,
  };
}

/**
 * Fine-tunes an opened model on `data` with a progress bar and Ctrl-C handling; saves the best
 * model to `<outDir>/model` and the results, with `about` (what was tuned on what), to
 * `<outDir>/finetune.json`.
 */
export async function runFinetuning<T extends DeviceArray>(kernels: Kernels<T>, opened: OpenedModel<T>, data: TokenDataset, options: FinetuneOptions,
                                                           outDir: string, about: Record<string, string>): Promise<FinetuneResult> {
  // The class head sized on the host (on the CPU these are the opened model's own arrays).
  const params = parametersOn(kernels, withClassHead(await parametersToHost(kernels, opened.model.params), data.meta.numClasses));
  const model = new ImageGPT(kernels, params.config, params);
  const interrupt = stopOnInterrupt('stopping; the best model so far is saved');
  if (options.probeHeadImages > 0) process.stderr.write(`finetune: fitting the class head by a linear probe on ${options.probeHeadImages} training images first\n`);
  const bar = createProgress('finetune', options.steps, 'steps', ['loss', 'clf', 'acc', 'val']);
  let val = '-';
  try {
    const r = await finetune(model, data, options, {
      onStep: (s) => bar.update(s.step, { loss: s.loss.toFixed(3), clf: (s.clfLoss ?? NaN).toFixed(3), acc: (s.clfAccuracy ?? NaN).toFixed(2), val }),
      onValidate: (acc, _step, best) => { val = `${(100 * acc).toFixed(2)}%${best ? '*' : ''}`; },
      shouldStop: interrupt.requested,
    });
    if (world().rank === 0) { // under MPI, rank 0 alone writes
      saveModelFolder(join(outDir, 'model'), await parametersToHost(kernels, model.params), opened.palette ?? data.palette, { labels: data.meta.classNames });
      writeRunFile(outDir, 'finetune.json', JSON.stringify({ ...about, options, ...r }, null, 1));
    }
    return r;
  } finally {
    bar.stop();
    interrupt.dispose();
  }
}
