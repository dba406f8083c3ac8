/** `igpt palette`: fit a k-means color palette to a dataset's pixels. */
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { prepareDataset } from '../data/prepare.js';
import { savePalette } from '../io/palette-files.js';
import { fitPalette } from '../palette/kmeans.js';
import { parseIntOption } from './common.js';
import { dataOptions, paletteFitOptions, parseDataOptions, parsePaletteFit, type DataFlags, type PaletteFitFlags } from './data-options.js';

interface PaletteFlags extends DataFlags, PaletteFitFlags { seed: string; out: string }

export const paletteCommand: CommandModule = {
  register(program: Command): void {
    const cmd = program
      .command('palette')
      .description('fit a color palette (k-means on pixel values, centers in [-1, 1]) to a dataset');
    paletteFitOptions(dataOptions(cmd))
      .option('--seed <seed>', 'random seed (of k-means, and of the test split a folder without one gets: give encode the same)', '0')
      .requiredOption('--out <file>', 'palette file to write (.json, or .npy float32 [k, channels])')
      .action(async (flags: PaletteFlags) => {
        const started = Date.now();
        const fit = { ...parsePaletteFit(flags), seed: parseIntOption('--seed', flags.seed, 0) };
        const data = await prepareDataset(flags.data, { ...parseDataOptions(flags), seed: fit.seed });
        const palette = fitPalette(data.train, fit);
        savePalette(flags.out, palette);
        const rmse = Math.sqrt(palette.meanSquaredError / palette.channels) * 127.5;
        console.log(`${flags.out}: ${palette.k} ${palette.channels === 1 ? 'gray' : 'RGB'} colors from ${data.source} ` +
          `(${data.train.count} training images), RMS error ${rmse.toFixed(2)} levels per channel, ${((Date.now() - started) / 1000).toFixed(1)} s`);
      });
  },
};
