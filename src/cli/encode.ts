/** `igpt encode`: images → palette ids, split into train / validation / test, saved as a token dataset. */
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { buildTokenDataset } from '../data/build.js';
import { saveTokenDataset } from '../data/tokens.js';
import { paletteFromPath } from '../io/palette-files.js';
import { parseIntOption, parseOptionalInt } from './common.js';
import { dataOptions, paletteFitOptions, parseDataOptions, parsePaletteFit, type DataFlags, type PaletteFitFlags } from './data-options.js';

interface EncodeFlags extends DataFlags, PaletteFitFlags { palette?: string; valFraction: string; seed: string; maxTrain?: string; maxTest?: string; out: string }

export const encodeCommand: CommandModule = {
  register(program: Command): void {
    const cmd = program
      .command('encode')
      .description('quantize a dataset to palette ids and write a token dataset (train/val/test)');
    paletteFitOptions(dataOptions(cmd)
      .option('--palette <file>', 'palette: .json from `igpt palette`, kmeans_centers.npy, an HF preprocessor_config.json, a model folder or a cached owner/name; default: fit one on the training split'))
      .option('--val-fraction <f>', 'share of the training set held out for validation', '0.1')
      .option('--seed <seed>', 'seed of the validation split, of the test split a folder without one gets, and of palette fitting', '0')
      .option('--max-train <n>', 'keep only the first n training images (before the validation split)')
      .option('--max-test <n>', 'keep only the first n test images')
      .requiredOption('--out <dir>', 'folder to write (meta.json, {train,val,test}.{tokens,labels})')
      .action(async (flags: EncodeFlags) => {
        const started = Date.now();
        const valFraction = Number(flags.valFraction);
        if (!(valFraction >= 0 && valFraction < 1)) throw new Error(`--val-fraction must be in [0, 1), got "${flags.valFraction}"`);
        const ds = await buildTokenDataset(flags.data, {
          ...parseDataOptions(flags),
          palette: flags.palette ? paletteFromPath(flags.palette) : undefined,
          paletteSource: flags.palette,
          ...parsePaletteFit(flags),
          valFraction,
          seed: parseIntOption('--seed', flags.seed, 0),
          maxTrain: parseOptionalInt('--max-train', flags.maxTrain, 1),
          maxTest: parseOptionalInt('--max-test', flags.maxTest, 0),
        });
        if (ds.fittedPalette) console.log(`fitted a ${ds.palette.k}-color palette on the training split`);
        saveTokenDataset(flags.out, ds);
        const { side, pixels, numClasses } = ds.meta;
        const held = ds.heldOutTest;
        const testNote = held ? ` (${ds.test.count} held out of ${flags.data}: ${+(held.fraction * 100).toFixed(2)}%${held.byClass ? ' of each class' : ''}, seed ${ds.meta.splitSeed})` : '';
        console.log(`${flags.out}: ${ds.train.count} train, ${ds.val.count} val, ${ds.test.count} test images of ${side}×${side} ` +
          `(${pixels} tokens, vocabulary ${ds.palette.k}), ${numClasses} classes, ${((Date.now() - started) / 1000).toFixed(1)} s${testNote}`);
      });
  },
};
