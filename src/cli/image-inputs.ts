/** What `igpt complete`, `features` and `classify` share: a model and the user's image files. */
import type { Command } from 'commander';
import { listImageInputs } from '../data/image-inputs.js';
import { parseColor, type Rgb } from '../data/pixels.js';
import type { DeviceArray, Kernels } from '../kernels/kernels.js';
import type { Palette } from '../palette/palette.js';
import { backendOption, parseIntOption, parseObjectiveOverride } from './common.js';
import { openModel, type OpenedModel } from '../pipeline/open.js';

export interface ImageInputFlags { model: string; background: string; strict?: boolean; batch: string; backend?: string; objective?: string }

/** The options of commands that read a user's images, --backend included. */
export function imageInputOptions(cmd: Command): Command {
  return backendOption(cmd
    .requiredOption('--model <dir|owner/name>', 'model folder (HF ImageGPT: ours, or a published one), or owner/name in the Hugging Face cache')
    .option('--background <color>', 'color under transparent pixels (#rrggbb, white or black)', 'white')
    .option('--strict', 'stop at an unreadable image file instead of skipping it with a warning')
    .option('--batch <n>', 'images decoded and run per batch', '32')
    .option('--objective <ar|bert>', 'override the objective recorded with the model'));
}

export interface ImageInputs<T extends DeviceArray = Float32Array> {
  kernels: Kernels<T>;
  opened: OpenedModel<T>;
  palette: Palette;
  files: string[];
  input: { background: Rgb; strict: boolean; batch: number; warn: (message: string) => void };
}

/** Opens the model (it must carry its palette) on `kernels` and lists the image files of `paths`. */
export function openImageInputs<T extends DeviceArray>(paths: string[], flags: ImageInputFlags, kernels: Kernels<T>): ImageInputs<T> {
  let background: Rgb;
  try { background = parseColor(flags.background); } catch (err) { throw new Error(`--background: ${(err as Error).message}`); }
  const batch = parseIntOption('--batch', flags.batch, 1, 4096);
  const files = listImageInputs(paths);
  const opened = openModel(flags.model, kernels, parseObjectiveOverride(flags.objective));
  if (!opened.palette) throw new Error(`${flags.model} has no palette (preprocessor_config.json clusters), so images cannot be turned into its tokens`);
  return {
    kernels, opened, palette: opened.palette, files,
    input: { background, strict: flags.strict === true, batch, warn: (message) => process.stderr.write(`igpt: warning: ${message}\n`) },
  };
}
