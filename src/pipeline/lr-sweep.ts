/**
 * The paper's learning-rate search: 0.01, 0.003, 0.001, 0.0003, … in that order with the same
 * short budget, stopping as soon as the final validation loss gets worse.
 */
import { join } from 'node:path';
import type { DeviceArray } from '../kernels/kernels.js';
import { writeRunFile } from '../util/fs.js';
import { pretrainSummary, runPretraining, type PretrainRun } from './pretrain.js';

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

export interface SweepRow { lr: number; valLoss: number; seconds: number }

export interface SweepResult { rows: SweepRow[]; best: SweepRow; table: string }

/**
 * One run per rate in `<outDir>/lr-<rate>` (`base` without its rate and folder), validated only
 * at the end; a rate that diverges is a result, not the end of the sweep. Writes sweep.json and
 * sweep.md into `base.outDir`.
 */
export async function runLrSweep<T extends DeviceArray>(base: Omit<PretrainRun<T>, 'resume' | 'label'>, rates: number[]): Promise<SweepResult> {
  const rows: SweepRow[] = [];
  for (const lr of rates) {
    const options = { ...base.options, lr, evalEvery: 0, checkpointEvery: 0 };
    const outDir = join(base.outDir, `lr-${lr}`);
    let valLoss = Infinity, seconds = 0, stopped = false;
    try {
      const r = await runPretraining({ ...base, options, outDir, resume: false, label: `lr ${lr}` });
      process.stderr.write(`${pretrainSummary(r, outDir)}\n`);
      valLoss = r.finalValidation?.natsPerPixel ?? Infinity;
      seconds = r.state.seconds;
      stopped = r.stoppedEarly;
    } catch (err) {
      process.stderr.write(`lr ${lr}: ${err instanceof Error ? err.message : String(err)}\n`);
    }
    rows.push({ lr, valLoss, seconds });
    const prev = rows[rows.length - 2];
    if (stopped || (prev && Number.isFinite(prev.valLoss) && valLoss > prev.valLoss)) break;
  }
  const best = rows.reduce((a, b) => (b.valLoss < a.valLoss ? b : a));
  const table = ['| learning rate | validation NLL (nats/pixel) | seconds |', '|---|---|---|',
    ...rows.map((r) => `| ${r.lr} | ${r.valLoss.toFixed(4)}${r === best ? ' (best)' : ''} | ${r.seconds.toFixed(0)} |`)].join('\n');
  writeRunFile(base.outDir, 'sweep.json', JSON.stringify({ steps: base.options.steps, batch: base.options.batch, rows, best: best.lr }, null, 1));
  writeRunFile(base.outDir, 'sweep.md', table + '\n');
  return { rows, best, table };
}
