/** `igpt complete`: complete the bottom of the user's own images; a PNG grid, and each completion as a PNG. */
import { basename, dirname, extname, join } from 'node:path';
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { modelImageSide } from '../sample/complete.js';
import { completeImageFiles } from '../sample/complete-files.js';
import { writeCompletionGrid, writeCompletionImages } from '../sample/grid.js';
import { writeRunFile } from '../util/fs.js';
import { kernelsFromFlags, parseIntOption, parseNumberOption } from './common.js';
import { parseSampling, samplingOptions, type SamplingFlags } from './sampling-options.js';
import { imageInputOptions, openImageInputs, type ImageInputFlags } from './image-inputs.js';
import { createProgress } from '../util/progress.js';

interface Flags extends ImageInputFlags, SamplingFlags {
  rows?: string; fraction?: string; out: string; outDir?: string;
}

export const completeCommand: CommandModule = {
  register(program: Command): void {
    samplingOptions(imageInputOptions(program.command('complete')
      .description('complete the bottom of your own images (files or folders): a grid of input, completions and quantized original')
      .argument('<images...>', 'image files (PNG, JPEG, WebP) or folders of them'))
      .option('--rows <r>', 'rows kept from the top of each image')
      .option('--fraction <f>', 'share of the rows kept from the top (default 0.5; or give --rows)'))
      .requiredOption('--out <grid.png>', 'grid to write: per row the input with its hidden part, the completions, the quantized original; ids and file names in the same name with .json')
      .option('--out-dir <dir>', 'also write each completion as <image>-<s>.png here')
      .action(async (paths: string[], flags: Flags) => {
        if (flags.rows !== undefined && flags.fraction !== undefined) throw new Error('give --rows or --fraction, not both');
        const { kernels, opened, palette, files, input } = openImageInputs(paths, flags, await kernelsFromFlags(flags));
        const params = opened.model.params;
        const side = modelImageSide(params);
        const rows = flags.rows !== undefined ? parseIntOption('--rows', flags.rows, 0, side - 1)
          : Math.floor(side * parseNumberOption('--fraction', flags.fraction ?? '0.5', 0, 1 - 1e-9));
        const { sampling, samples, passes, scale } = parseSampling(flags);
        const bar = createProgress('complete', files.length * samples * params.config.nPositions, 'pixels');
        const t0 = performance.now();
        const { files: read, figure } = await completeImageFiles(kernels, params, palette, files, {
          ...sampling, ...input, objective: opened.objective, samples, rows,
          passes, onProgress: (done) => bar.update(done),
        });
        bar.stop();
        const seconds = (performance.now() - t0) / 1000;
        await writeCompletionGrid(flags.out, figure, palette, scale);
        const jsonName = basename(flags.out, extname(flags.out)) + '.json';
        writeRunFile(dirname(flags.out), jsonName, JSON.stringify({
          model: flags.model, objective: opened.objective, side, rows, samples, sampling, seconds, files: read,
          originals: Array.from(figure.originals ?? []), completions: Array.from(figure.completions),
        }));
        console.log(`${flags.out}: ${read.length} image(s) × ${samples} completions (top ${rows} of ${side} rows kept) in ${seconds.toFixed(1)} s; ` +
                    `ids in ${join(dirname(flags.out), jsonName)}`);
        if (flags.outDir) {
          const written = await writeCompletionImages(flags.outDir, figure, palette, uniqueStems(read));
          console.log(`${flags.outDir}: ${written.length} completion PNGs`);
        }
      });
  },
};

/** File names without folder and extension, numbered where two would clash. */
function uniqueStems(files: readonly string[]): string[] {
  const seen = new Map<string, number>();
  return files.map((f) => {
    const stem = basename(f, extname(f));
    const n = seen.get(stem) ?? 0;
    seen.set(stem, n + 1);
    return n === 0 ? stem : `${stem}~${n}`;
  });
}
