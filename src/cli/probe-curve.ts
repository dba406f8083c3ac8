/** `igpt probe-curve`: linear-probe accuracy against pretraining time, from the checkpoints a run kept. */
import { join } from 'node:path';
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { loadTokenDataset } from '../data/tokens.js';
import { curveMarkdown, curveSizes, DEFAULT_CURVE_SIZES, probeCurve } from '../pipeline/probe-curve.js';
import { backendOption, kernelsFromFlags, parseIntOption, precisionOption } from './common.js';

interface Flags { run: string; data: string; out?: string; train: string; val: string; test: string; backend?: string; precision?: string }

export const probeCurveCommand: CommandModule = {
  register(program: Command): void {
    precisionOption(backendOption(program.command('probe-curve')
      .description('linear-probe accuracy against pretraining time, from the checkpoints a run kept (pretrain --keep-every)')
      .requiredOption('--run <dir>', 'pretraining run folder')
      .requiredOption('--data <dir>', 'labelled token dataset the run was trained on')
      .option('--out <dir>', 'folder for curve.json, curve.md, curve.png (default: <run>/curve)')
      .option('--train <n>', 'training images per probe, at most (fewer than a few thousand measure the low-data regime)', String(DEFAULT_CURVE_SIZES.train))
      .option('--val <n>', 'validation images per probe, at most (choose the layer and L2)', String(DEFAULT_CURVE_SIZES.val))
      .option('--test <n>', 'test images per probe, at most', String(DEFAULT_CURVE_SIZES.test))))
      .action(async (flags: Flags) => {
        const kernels = await kernelsFromFlags(flags, flags.precision);
        const data = loadTokenDataset(flags.data);
        const sizes = curveSizes({
          train: parseIntOption('--train', flags.train, 10),
          val: parseIntOption('--val', flags.val, 10),
          test: parseIntOption('--test', flags.test, 10),
        }, data, flags.data);
        const out = flags.out ?? join(flags.run, 'curve');
        const curve = await probeCurve(kernels, data, flags.data, flags.run, out, sizes);
        console.log(curveMarkdown(curve));
        console.log(`written: ${join(out, 'curve.png')}`);
      });
  },
};
