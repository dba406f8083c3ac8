/** `igpt classify`: what a fine-tuned model's class head (or a saved probe) says each image is. */
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { headClassifier, readProbeClassifier } from '../eval/classify.js';
import { classifyImageFiles } from '../eval/image-files.js';
import { hostKernelsBeside } from '../kernels/select.js';
import { kernelsFromFlags, parseIntOption } from './common.js';
import { imageInputOptions, openImageInputs, type ImageInputFlags } from './image-inputs.js';
import { createProgress } from '../util/progress.js';

interface Flags extends ImageInputFlags { probe?: string; json?: boolean; top: string; masks: string }

export const classifyCommand: CommandModule = {
  register(program: Command): void {
    imageInputOptions(program.command('classify')
      .description('classify your own images with a fine-tuned model\'s class head (id2label) or a probe saved by igpt probe')
      .argument('<images...>', 'image files (PNG, JPEG, WebP) or folders of them'))
      .option('--probe <probe.json>', 'classify with this linear probe (igpt probe\'s probe.json) instead of the class head')
      .option('--top <k>', 'how many likeliest classes to list', '3')
      .option('--masks <n>', 'BERT models: average over this many random masks', '1')
      .option('--json', 'print JSON instead of a table')
      .action(async (paths: string[], flags: Flags) => {
        const { kernels, opened, palette, files, input } = openImageInputs(paths, flags, await kernelsFromFlags(flags));
        const classifier = flags.probe ? readProbeClassifier(flags.probe, hostKernelsBeside(kernels)) : await headClassifier(opened.model, opened.labels, flags.model);
        const bar = createProgress('classify', files.length, 'images');
        const results = await classifyImageFiles(opened.model, palette, files, classifier, {
          ...input, objective: opened.objective, masks: parseIntOption('--masks', flags.masks, 1), top: parseIntOption('--top', flags.top, 1),
          onProgress: (done) => bar.update(done),
        });
        bar.stop();
        if (flags.json) {
          console.log(JSON.stringify(results, null, 1));
          return;
        }
        const pct = (p: number): string => `${(100 * p).toFixed(1)}%`;
        console.log('| file | class | probability | top |\n|---|---|---|---|');
        for (const r of results) {
          console.log(`| ${r.file} | ${r.name} | ${pct(r.probability)} | ${r.top.map((t) => `${t.name} ${pct(t.probability)}`).join(', ')} |`);
        }
      });
  },
};
