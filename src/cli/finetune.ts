/** `igpt finetune`: class head + L_CLF + L_GEN, early stopping, best model saved. */
import { join } from 'node:path';
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { loadTokenDataset } from '../data/tokens.js';
import { FINETUNE_DEFAULTS, finetune, type FinetuneOptions, type FinetuneResult } from '../eval/finetune.js';
import type { TokenDataset } from '../data/tokens.js';
import type { Kernels } from '../kernels/kernels.js';
import { saveModelFolder } from '../io/hf.js';
import { ImageGPT } from '../model/model.js';
import { withClassHead } from '../model/parameters.js';
import { writeRunFile } from '../train/checkpoint.js';
import { backendOption, precisionOption, kernelsFromFlags, lockRunFolder, parseIntOption, parseNumberOption, stopOnInterrupt } from './common.js';
import { checkModelMatchesData, openModel, type OpenedModel } from './open-model.js';
import { createProgress } from './progress.js';
import { world } from '../parallel/world.js';

interface Flags {
  model: string; data: string; out: string; lr?: string; batch: string; steps?: string; epochs: string;
  genWeight: string; headLrScale?: string; schedule?: string; evalEvery?: string; patience: string; evalImages: string; augment: string;
  seed: string; objective?: string; evalMasks: string; valMasks: string; probeHead: string; backend?: string; precision?: string;
}

export const finetuneCommand: CommandModule = {
  register(program: Command): void {
    precisionOption(backendOption(program.command('finetune')
      .description('fine-tune a pretrained model for classification (L_CLF + L_GEN, early stopping)')
      .requiredOption('--model <dir|owner/name>', 'pretrained model folder, or owner/name in the Hugging Face cache')
      .requiredOption('--data <dir>', 'labelled token dataset (same palette and size)')
      .requiredOption('--out <dir>', 'folder for the fine-tuned model (HF ImageGPT with score head) and finetune.json')
      .option('--lr <x>', 'Adam learning rate of the body after warmup (default: 0.00005 with a probe head, 0.0003 with a zero head)')
      .option('--schedule <s>', 'learning rate after warmup: cosine (to 0 at the last step) or flat (default: cosine with a probe head, flat with a zero head)')
      .option('--batch <n>', 'images per step', '16')
      .option('--steps <n>', 'at most this many steps (default: --epochs)')
      .option('--epochs <x>', 'at most this many passes over the training split', '3')
      .option('--gen-weight <w>', 'weight of the generative loss L_GEN (0: L_CLF alone)', '1')
      .option('--head-lr-scale <x>', 'class head learning rate relative to --lr (default: 1 with a probe head, 10 with a zero head)')
      .option('--eval-every <n>', 'validate every n steps (default: 10 times per epoch)')
      .option('--patience <n>', 'stop after this many validations without improvement', '5')
      .option('--eval-images <n>', 'validation images per evaluation (0: all)', '2000')
      .option('--augment <mode>', 'auto (on for color 32×32), on, off', 'auto')
      .option('--probe-head <n>', 'start the class head from a linear probe on n training images (0: zero head, the paper)', '5000')
      .option('--eval-masks <n>', 'BERT: masks per test image (modal prediction)', '5')
      .option('--val-masks <n>', 'BERT: masks per validation image', '1')
      .option('--objective <ar|bert>', 'override the objective recorded with the model')
      .option('--seed <n>', 'seed', '0')))
      .action(async (flags: Flags) => {
        lockRunFolder(flags.out);
        const kernels = kernelsFromFlags(flags, flags.precision);
        const data = loadTokenDataset(flags.data);
        const opened = openModel(flags.model, kernels, flags.objective);
        checkModelMatchesData(opened, data, flags.data);
        if (data.meta.numClasses < 2) throw new Error(`${flags.data}: fine-tuning needs labelled data (found ${data.meta.numClasses} classes)`);
        const batch = parseIntOption('--batch', flags.batch, 1);
        const stepsPerEpoch = Math.ceil(data.train.count / batch);
        const steps = flags.steps ? parseIntOption('--steps', flags.steps, 1) : Math.max(1, Math.round(parseNumberOption('--epochs', flags.epochs, 0) * stepsPerEpoch));
        const augment = flags.augment === 'on' || (flags.augment === 'auto' && data.meta.channels === 3 && data.meta.side === 32);
        if (!['auto', 'on', 'off'].includes(flags.augment)) throw new Error(`--augment must be auto, on or off, got "${flags.augment}"`);
        const probeHeadImages = parseIntOption('--probe-head', flags.probeHead, 0);
        const defaults = FINETUNE_DEFAULTS[probeHeadImages > 0 ? 'probeHead' : 'zeroHead'];
        if (flags.schedule !== undefined && flags.schedule !== 'cosine' && flags.schedule !== 'flat') {
          throw new Error(`--schedule must be cosine or flat, got "${flags.schedule}"`);
        }
        const options = {
          objective: opened.objective, lr: flags.lr ? parseNumberOption('--lr', flags.lr, 0) : defaults.lr, batch, steps,
          warmup: Math.min(100, Math.ceil(steps / 20)), cosine: flags.schedule === undefined ? defaults.cosine : flags.schedule === 'cosine',
          genWeight: parseNumberOption('--gen-weight', flags.genWeight, 0),
          headLrScale: flags.headLrScale ? parseNumberOption('--head-lr-scale', flags.headLrScale, 0) : defaults.headLrScale,
          evalEvery: flags.evalEvery ? parseIntOption('--eval-every', flags.evalEvery, 1) : Math.max(1, Math.ceil(stepsPerEpoch / 10)),
          patience: parseIntOption('--patience', flags.patience, 1), evalImages: parseIntOption('--eval-images', flags.evalImages, 0),
          augment, seed: parseIntOption('--seed', flags.seed, 0), maskProb: 0.15, evalMasks: parseIntOption('--eval-masks', flags.evalMasks, 1),
          valMasks: parseIntOption('--val-masks', flags.valMasks, 1), probeHeadImages,
        };
        const r = await runFinetuning(kernels, opened, data, options, flags.out, { model: flags.model, data: flags.data });
        console.log(`validation accuracy ${(100 * r.initialValAccuracy).toFixed(2)}% (${r.probeHead ? 'probe' : 'zero'} head) → ${(100 * r.bestValAccuracy).toFixed(2)}% at step ${r.bestStep}; ` +
          `test accuracy ${(100 * r.testAccuracy).toFixed(2)}%; ${r.steps} steps in ${r.seconds.toFixed(0)} s`);
        console.log(`model: ${join(flags.out, 'model')}; results: ${join(flags.out, 'finetune.json')}`);
      });
  },
};

/**
 * Fine-tunes an opened model on `data` with a progress bar and Ctrl-C handling; saves the best
 * model to `<outDir>/model` and the results to `<outDir>/finetune.json`.
 */
export async function runFinetuning(kernels: Kernels, opened: OpenedModel, data: TokenDataset, options: FinetuneOptions,
                                    outDir: string, about: Record<string, string>): Promise<FinetuneResult> {
  const params = withClassHead(opened.model.params, data.meta.numClasses);
  const model = new ImageGPT(kernels, params.config, params);
  const interrupt = stopOnInterrupt('stopping; the best model so far is saved');
  const bar = createProgress('finetune', options.steps, 'steps', ['loss', 'clf', 'acc', 'val']);
  let val = '-';
  if (options.probeHeadImages > 0) console.log(`fitting the class head by a linear probe on ${options.probeHeadImages} training images first`);
  try {
    const r = await finetune(model, data, options, {
      onStep: (s) => bar.update(s.step, { loss: s.loss.toFixed(3), clf: (s.clfLoss ?? NaN).toFixed(3), acc: (s.clfAccuracy ?? NaN).toFixed(2), val }),
      onValidate: (acc, _step, best) => { val = `${(100 * acc).toFixed(2)}%${best ? '*' : ''}`; },
      shouldStop: interrupt.requested,
    });
    if (world().rank === 0) { // under MPI, rank 0 alone writes
      saveModelFolder(join(outDir, 'model'), model.params, opened.palette ?? data.palette, { labels: data.meta.classNames });
      writeRunFile(outDir, 'finetune.json', JSON.stringify({ ...about, options, ...r }, null, 1));
    }
    return r;
  } finally {
    bar.stop();
    interrupt.dispose();
  }
}
