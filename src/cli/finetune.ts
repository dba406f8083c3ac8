/** `igpt finetune`: class head + L_CLF + L_GEN, early stopping, best model saved. */
import { join } from 'node:path';
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { finetuneOptions, runFinetuning, type FinetuneSettings } from '../pipeline/finetune.js';
import { openModelAndData } from '../pipeline/open.js';
import {
  backendOption, kernelsFromFlags, lockRunFolder, parseChoice, parseIntOption, parseNumberOption, parseObjectiveOverride, parseOptionalInt, parseOptionalNumber,
  precisionOption,
} from './common.js';

interface Flags {
  model: string; data: string; out: string; lr?: string; batch: string; steps?: string; epochs: string;
  genWeight: string; headLrScale?: string; schedule?: string; evalEvery?: string; patience: string; evalImages: string; augment: string;
  seed: string; objective?: string; evalMasks: string; valMasks: string; probeHead: string; backend?: string; precision?: string;
}

function parseFinetuneSettings(flags: Flags): FinetuneSettings {
  const augment = parseChoice('--augment', flags.augment, ['auto', 'on', 'off'] as const);
  const schedule = flags.schedule === undefined ? undefined : parseChoice('--schedule', flags.schedule, ['cosine', 'flat'] as const);
  return {
    batch: parseIntOption('--batch', flags.batch, 1),
    steps: parseOptionalInt('--steps', flags.steps, 1),
    epochs: parseNumberOption('--epochs', flags.epochs, 0),
    lr: parseOptionalNumber('--lr', flags.lr, 0),
    cosine: schedule === undefined ? undefined : schedule === 'cosine',
    headLrScale: parseOptionalNumber('--head-lr-scale', flags.headLrScale, 0),
    genWeight: parseNumberOption('--gen-weight', flags.genWeight, 0),
    evalEvery: parseOptionalInt('--eval-every', flags.evalEvery, 1),
    patience: parseIntOption('--patience', flags.patience, 1),
    evalImages: parseIntOption('--eval-images', flags.evalImages, 0),
    augment: augment === 'auto' ? 'auto' : augment === 'on',
    seed: parseIntOption('--seed', flags.seed, 0),
    evalMasks: parseIntOption('--eval-masks', flags.evalMasks, 1),
    valMasks: parseIntOption('--val-masks', flags.valMasks, 1),
    probeHeadImages: parseIntOption('--probe-head', flags.probeHead, 0),
  };
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
        const settings = parseFinetuneSettings(flags);
        const kernels = await kernelsFromFlags(flags, flags.precision);
        const objective = parseObjectiveOverride(flags.objective);
        const { opened, data } = openModelAndData(kernels, { model: flags.model, data: flags.data, objective, labelsFor: 'fine-tuning' });
        const options = finetuneOptions(settings, opened.objective, data);
        const r = await runFinetuning(kernels, opened, data, options, flags.out, { model: flags.model, data: flags.data });
        console.log(`validation accuracy ${(100 * r.initialValAccuracy).toFixed(2)}% (${r.probeHead ? 'probe' : 'zero'} head) → ${(100 * r.bestValAccuracy).toFixed(2)}% at step ${r.bestStep}; ` +
          `test accuracy ${(100 * r.testAccuracy).toFixed(2)}%; ${r.steps} steps in ${r.seconds.toFixed(0)} s`);
        console.log(`model: ${join(flags.out, 'model')}; results: ${join(flags.out, 'finetune.json')}`);
      });
  },
};
