/**
 * `igpt compare`: studies side by side (the paper's Figure 4 compares AR and BERT pretraining by
 * linear probe and fine-tuning accuracy). Reads each study folder's own outputs, writes a table
 * and the depth curves of all studies on one chart.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import type { FinetuneResult } from '../eval/finetune.js';
import type { LayerProbeReport } from '../eval/probe.js';
import type { NllReport } from '../train/evaluate.js';
import { writeRunFile } from '../train/checkpoint.js';
import { plotLines } from '../util/plot.js';
import type { StudyState } from './experiment.js';
import type { LowDataReport } from './lowdata.js';

/** One study folder's outputs; stages it has not reached are absent. */
export interface StudyOutputs {
  dir: string;
  name: string;
  state: StudyState;
  nll?: NllReport;
  probe?: LayerProbeReport;
  finetune?: FinetuneResult;
  lowdata?: LowDataReport;
}

export function readStudy(dir: string): StudyOutputs {
  const read = <T>(file: string): T | undefined => {
    const path = join(dir, file);
    if (!existsSync(path)) return undefined;
    try {
      return JSON.parse(readFileSync(path, 'utf8')) as T;
    } catch (err) {
      throw new Error(`${path}: not readable JSON (${err instanceof Error ? err.message : String(err)})`);
    }
  };
  const state = read<StudyState>('study.json');
  if (!state) throw new Error(`${dir}: not a study folder (no study.json; make one with igpt experiment)`);
  return {
    dir, name: `${state.objective.toUpperCase()} ${basename(dir)}`, state,
    nll: read('nll.json'), probe: read('probe/probe.json'), finetune: read('finetune/finetune.json'), lowdata: read('probe/lowdata.json'),
  };
}

export function comparisonMarkdown(studies: StudyOutputs[]): string {
  const pct = (x: number | undefined): string => (x === undefined ? '–' : `${(100 * x).toFixed(2)}%`);
  const minutes = (s: StudyOutputs): string => ((s.state.stages.pretrain ?? 0) / 60).toFixed(0);
  const row = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  const lines = [
    row(['', ...studies.map((s) => s.name)]),
    row(['---', ...studies.map(() => '---')]),
    row(['objective', ...studies.map((s) => s.state.objective.toUpperCase())]),
    row(['model', ...studies.map((s) => `d ${s.state.shape.nEmbd}, ${s.state.shape.nLayer} layers`)]),
    row(['pretraining', ...studies.map((s) => `${s.state.steps} steps × ${s.state.batch} (${minutes(s)} min)`)]),
    row(['test NLL (nats/pixel)¹', ...studies.map((s) => s.nll?.natsPerPixel.toFixed(4) ?? '–')]),
    row(['linear probe, best layer', ...studies.map((s) => (s.probe ? `${pct(s.probe.best.testAccuracy)} (layer ${s.probe.bestLayer} of ${s.probe.layers.length - 1})` : '–'))]),
    row(['linear probe, layers concatenated', ...studies.map((s) => (s.probe?.concat ? `${pct(s.probe.concat.testAccuracy)} (${s.probe.concat.layers.join('+')})` : '–'))]),
    row(['fine-tuning', ...studies.map((s) => pct(s.finetune?.testAccuracy))]),
  ];
  const perClass = [...new Set(studies.flatMap((s) => s.lowdata?.rows.map((r) => r.labelsPerClass) ?? []))].sort((a, b) => a - b);
  for (const n of perClass) {
    lines.push(row([`probe with ${n} label${n === 1 ? '' : 's'} per class`, ...studies.map((s) => {
      const r = s.lowdata?.rows.find((x) => x.labelsPerClass === n);
      return r ? `${pct(r.model.mean)} (pixels ${pct(r.pixels.mean)})` : '–';
    })]));
  }
  return `${lines.join('\n')}\n\n¹ AR: every pixel given the ones before it; BERT: the masked pixels given the rest (not comparable).\n`;
}

export const compareCommand: CommandModule = {
  register(program: Command): void {
    program.command('compare')
      .argument('<studies...>', 'study folders made by igpt experiment (e.g. an AR and a BERT run)')
      .description('studies side by side: NLL, probe, fine-tuning, low-data; depth curves on one chart')
      .requiredOption('--out <dir>', 'folder for compare.md and depth.png')
      .action(async (dirs: string[], flags: { out: string }) => {
        const studies = dirs.map(readStudy);
        const table = comparisonMarkdown(studies);
        writeRunFile(flags.out, 'compare.md', table);
        const probed = studies.filter((s): s is StudyOutputs & { probe: LayerProbeReport } => s.probe !== undefined);
        if (probed.length > 0) {
          await plotLines(join(flags.out, 'depth.png'), {
            title: 'Linear probe test accuracy vs depth', xLabel: 'layer', yLabel: 'accuracy (%)',
            series: probed.map((s) => ({ name: s.name, x: s.probe.layers.map((l) => l.layer), y: s.probe.layers.map((l) => 100 * l.testAccuracy) })),
          });
        }
        console.log(table);
        console.log(`${join(flags.out, 'compare.md')}${probed.length > 0 ? `, ${join(flags.out, 'depth.png')}` : ''}`);
      });
  },
};
