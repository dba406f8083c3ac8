/** The dataset and palette-fitting options shared by `igpt palette` and `igpt encode`. */
import type { Command } from 'commander';
import { parseColor, type Rgb } from '../data/pixels.js';
import type { PrepareOptions } from '../data/prepare.js';
import { parseIntOption, parseOptionalInt } from './common.js';
import { DEFAULT_SAMPLE_PIXELS } from '../palette/kmeans.js';

export interface DataFlags {
  data: string; dataDir?: string; side?: string; channels?: string; cifar100Labels?: string; background: string; testFraction: string;
}

export function dataOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--data <name|dir>', 'fashion-mnist, mnist, cifar10, cifar100, stl10, or a dataset folder (IDX, CIFAR, STL-10 binaries or images)')
    .option('--data-dir <dir>', 'folder for cifar10/cifar100/stl10, or another place for fashion-mnist')
    .option('--side <n>', 'input resolution n: resize to n×n (shorter side, then center crop); default native side if ≤ 32, else 32')
    .option('--channels <c>', 'convert images to 1 (gray) or 3 (RGB) channels')
    .option('--cifar100-labels <kind>', 'CIFAR-100 labels: fine (100 classes) or coarse (20)', 'fine')
    .option('--background <color>', 'image files: color under transparent pixels (#rrggbb, white or black)', 'white')
    .option('--test-fraction <f>', 'share of the images held out as the test split when the source has none (by class when labeled; fixed by --seed)', '0.1');
}

export function parseDataOptions(flags: DataFlags): PrepareOptions {
  const channels = parseOptionalInt('--channels', flags.channels, 1, 3);
  if (channels === 2) throw new Error('--channels must be 1 or 3');
  const label = flags.cifar100Labels ?? 'fine';
  if (label !== 'fine' && label !== 'coarse') throw new Error(`--cifar100-labels must be fine or coarse, got "${label}"`);
  const testFraction = Number(flags.testFraction);
  if (!(testFraction >= 0 && testFraction < 1)) throw new Error(`--test-fraction must be in [0, 1), got "${flags.testFraction}"`);
  return {
    dir: flags.dataDir,
    side: parseOptionalInt('--side', flags.side, 1, 1024),
    channels: channels as 1 | 3 | undefined,
    cifar100Label: label,
    background: parseBackground(flags.background),
    testFraction,
  };
}

function parseBackground(value: string): Rgb {
  try {
    return parseColor(value);
  } catch (err) {
    throw new Error(`--background: ${(err as Error).message}`);
  }
}

export interface PaletteFitFlags { k?: string; samplePixels: string }

/** Declares how a palette is fitted: its size and the pixels sampled. */
export function paletteFitOptions(cmd: Command): Command {
  return cmd
    .option('--k <k>', 'palette size when fitting one (default 512 for RGB, 16 for gray)')
    .option('--sample-pixels <n>', 'pixels sampled from the training images when fitting a palette', String(DEFAULT_SAMPLE_PIXELS));
}

export function parsePaletteFit(flags: PaletteFitFlags): { k?: number; samplePixels: number } {
  return { k: parseOptionalInt('--k', flags.k, 1, 65535), samplePixels: parseIntOption('--sample-pixels', flags.samplePixels, 1) };
}
