/**
 * `igpt lr-sweep`: the paper's learning-rate search. Try 0.01, 0.003, 0.001, 0.0003, … in that
 * order with the same short budget; stop as soon as the final validation loss gets worse.
 */
import { join } from 'node:path';
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { loadTokenDataset } from '../data/tokens.js';
import { writeRunFile } from '../train/checkpoint.js';
import { kernelsFromFlags, lockRunFolder, parseIntOption, parseNumberOption } from './common.js';
import { parseTrainingOptions, runPretraining, trainingOptions, type TrainFlags } from './pretrain.js';

interface SweepFlags extends TrainFlags { start: string; maxTrials: string }

/** 0.01, 0.003, 0.001, 0.0003, …: alternately ÷3.33 and ÷3, as the paper lists them. */
export function sweepRates(start: number, count: number): number[] {
  const rates: number[] = [];
  for (let i = 0; i < count; i++) {
    const decade = Math.floor(i / 2);
    const r = start * 10 ** -decade * (i % 2 === 0 ? 1 : 0.3);
    rates.push(Number(r.toPrecision(3)));
  }
  return rates;
}

export const lrSweepCommand: CommandModule = {
  register(program: Command): void {
    trainingOptions(program.command('lr-sweep')
      .description('learning-rate sweep (0.01, 0.003, 0.001, …): short runs until validation loss gets worse'))
      .requiredOption('--out <dir>', 'folder for one run per rate, sweep.json and sweep.md')
      .option('--start <lr>', 'first (largest) rate', '0.01')
      .option('--max-trials <n>', 'at most this many rates', '6')
      .action(async (flags: SweepFlags) => {
        lockRunFolder(flags.out);
        const kernels = kernelsFromFlags(flags, flags.precision);
        const data = loadTokenDataset(flags.data);
        const base = parseTrainingOptions({ ...flags, steps: flags.steps ?? '200' }, data);
        const rates = sweepRates(parseNumberOption('--start', flags.start, 0), parseIntOption('--max-trials', flags.maxTrials, 1, 20));
        const rows: { lr: number; valLoss: number; seconds: number }[] = [];
        for (const lr of rates) {
          const options = { ...base, lr, evalEvery: 0, checkpointEvery: 0 };
          let valLoss = Infinity, seconds = 0, stopped = false;
          try {
            const r = await runPretraining(kernels, data, flags, options, join(flags.out, `lr-${lr}`), false, `lr ${lr}`);
            valLoss = r.finalValidation?.natsPerPixel ?? Infinity;
            seconds = r.state.seconds;
            stopped = r.stoppedEarly;
          } catch (err) {
            // A rate that diverges (NaN) is a result of the sweep, not the end of it.
            console.log(`lr ${lr}: ${err instanceof Error ? err.message : String(err)}`);
          }
          rows.push({ lr, valLoss, seconds });
          const prev = rows[rows.length - 2];
          if (stopped || (prev && Number.isFinite(prev.valLoss) && valLoss > prev.valLoss)) break;
        }
        const best = rows.reduce((a, b) => (b.valLoss < a.valLoss ? b : a));
        const table = ['| learning rate | validation NLL (nats/pixel) | seconds |', '|---|---|---|',
          ...rows.map((r) => `| ${r.lr} | ${r.valLoss.toFixed(4)}${r === best ? ' (best)' : ''} | ${r.seconds.toFixed(0)} |`)].join('\n');
        writeRunFile(flags.out, 'sweep.json', JSON.stringify({ steps: base.steps, batch: base.batch, rows, best: best.lr }, null, 1));
        writeRunFile(flags.out, 'sweep.md', table + '\n');
        console.log(table);
        console.log(`best learning rate: ${best.lr} (runs in ${flags.out})`);
      });
  },
};
