/** `igpt show`: a PNG grid of decoded images from a token dataset. */
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { parseIntOption, parseSplitOption } from './common.js';
import { loadTokenDataset } from '../data/tokens.js';
import { dequantize } from '../palette/quantize.js';
import { writeImageGrid } from '../util/image.js';

interface ShowFlags { tokens: string; split: string; count: string; start: string; cols?: string; scale: string; labels?: boolean; out: string }

export const showCommand: CommandModule = {
  register(program: Command): void {
    program
      .command('show')
      .description('render images of a token dataset (decoded through its palette) as a PNG grid')
      .requiredOption('--tokens <dir>', 'token dataset folder (from `igpt encode`)')
      .option('--split <split>', 'train, val or test', 'train')
      .option('--count <n>', 'number of images', '64')
      .option('--start <i>', 'index of the first image', '0')
      .option('--cols <n>', 'images per row (default: a square grid)')
      .option('--scale <s>', 'upscale factor (nearest neighbour)', '4')
      .option('--labels', 'write each image\'s class under it')
      .requiredOption('--out <file>', 'PNG file to write')
      .action(async (flags: ShowFlags) => {
        const ds = loadTokenDataset(flags.tokens);
        const split = ds[parseSplitOption(flags.split)];
        const start = parseIntOption('--start', flags.start, 0);
        const count = Math.min(parseIntOption('--count', flags.count, 1), split.count - start);
        if (count <= 0) throw new Error(`${flags.tokens}: the ${flags.split} split has ${split.count} images, nothing from index ${start}`);
        const { side, pixels, channels, classNames } = ds.meta;
        const images: Uint8Array[] = [];
        const captions: string[] = [];
        for (let i = start; i < start + count; i++) {
          images.push(dequantize(ds.palette, split.tokens.subarray(i * pixels, (i + 1) * pixels)));
          const label = split.labels[i];
          captions.push(label < 0 ? '' : classNames?.[label] ?? String(label));
        }
        const cols = flags.cols === undefined ? Math.ceil(Math.sqrt(count)) : parseIntOption('--cols', flags.cols, 1);
        const scale = parseIntOption('--scale', flags.scale, 1, 64);
        await writeImageGrid(flags.out, images, side, side, channels, cols, scale, { captions: flags.labels ? captions : undefined });
        console.log(`${flags.out}: ${count} ${flags.split} images from ${flags.tokens}`);
      });
  },
};
