/**
 * A study folder (made by `igpt experiment`): its state (study.json) and the outputs of its stages,
 * read back; studies side by side (the paper's Figure 4 compares AR and BERT pretraining by linear
 * probe and fine-tuning accuracy) as a table and the depth curves of all of them on one chart.
 * Pretraining runs (a study's or `igpt pretrain`'s) side by side: their loss curves on one chart.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { FinetuneResult } from '../eval/finetune.js';
import type { LayerProbeReport } from '../eval/probe.js';
import type { ModelShape } from '../model/config.js';
import type { Objective } from '../train/objectives.js';
import type { NllReport } from '../train/evaluate.js';
import { smoothedTrainingLoss } from '../train/pretrain.js';
import type { HistoryPoint } from '../train/trainer.js';
import { writeRunFile } from '../util/fs.js';
import { plotLines } from '../util/plot.js';
import type { LowDataReport } from './lowdata.js';

/** What the study decided and how long each stage took, kept across resumed invocations (study.json). */
export interface StudyState {
  command: string;
  objective: Objective;
  shape: ModelShape;
  side: number;
  batch: number;
  lr: number;
  steps: number;
  secondsPerStep: number;
  /** Seconds spent in each stage, summed over invocations. */
  stages: Record<string, number>;
}

export const STUDY_FILE = 'study.json';

/** The study's state in `dir`, or null when it has none yet. */
export function readStudyState(dir: string): StudyState | null {
  return readJson<StudyState>(join(dir, STUDY_FILE)) ?? null;
}

export function writeStudyState(dir: string, state: StudyState): void {
  writeRunFile(dir, STUDY_FILE, JSON.stringify(state, null, 1));
}

/** A JSON file's content, undefined when it does not exist; a clear error when it is not JSON. */
function readJson<T>(path: string): T | undefined {
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch (err) {
    throw new Error(`${path}: not readable JSON (${err instanceof Error ? err.message : String(err)})`);
  }
}

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

/** A study folder's outputs; a folder that is not a study is refused. */
export function readStudy(dir: string): StudyOutputs {
  const read = <T>(file: string): T | undefined => readJson<T>(join(dir, file));
  const state = read<StudyState>(STUDY_FILE);
  if (!state) throw new Error(`${dir}: not a study folder (no study.json; make one with igpt experiment)`);
  return {
    dir, name: `${state.objective.toUpperCase()} ${basename(dir)}`, state,
    nll: read('nll.json'), probe: read('probe/probe.json'), finetune: read('finetune/finetune.json'), lowdata: read('probe/lowdata.json'),
  };
}

/** The studies side by side: one column each, one row per measure. */
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

/** A pretraining run's history: a run folder of `igpt pretrain`, or a study's `pretrain/`. */
export interface RunHistory {
  dir: string;
  name: string;
  history: HistoryPoint[];
}

/** The pretraining history in `dir` (a run folder or a study folder); a clear error when it has none. */
export function readRunHistory(dir: string): RunHistory {
  const history = readJson<HistoryPoint[]>(join(dir, 'history.json')) ?? readJson<HistoryPoint[]>(join(dir, 'pretrain', 'history.json'));
  if (!history) throw new Error(`${dir}: neither a pretraining run nor a study folder (no history.json or pretrain/history.json)`);
  return { dir, name: basename(dir), history };
}

/**
 * The runs side by side: steps, the training loss over the last 5% of steps, the last validation
 * NLL, and each run's validation NLL relative to the first run's.
 */
export function runsMarkdown(runs: RunHistory[]): string {
  const lastValidation = (r: RunHistory): number | undefined => r.history.filter((h) => h.valLoss !== undefined).at(-1)?.valLoss;
  const finalTrainingLoss = (r: RunHistory): number | undefined => {
    const losses = r.history.flatMap((h) => (h.loss === undefined ? [] : [h.loss]));
    const tail = losses.slice(-Math.max(1, Math.ceil(losses.length / 20)));
    return tail.length > 0 ? tail.reduce((a, b) => a + b, 0) / tail.length : undefined;
  };
  const reference = lastValidation(runs[0]);
  const row = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  const fixed = (x: number | undefined): string => x?.toFixed(4) ?? '–';
  return [
    row(['run', 'steps', 'training loss, last 5% of steps', 'last validation NLL (nats/pixel)', `vs ${runs[0].name}`]),
    row(['---', '---:', '---:', '---:', '---:']),
    ...runs.map((r) => {
      const v = lastValidation(r);
      const relative = v !== undefined && reference !== undefined ? `${v >= reference ? '+' : ''}${(100 * (v / reference - 1)).toFixed(2)}%` : '–';
      return row([r.name, String(r.history.at(-1)?.step ?? 0), fixed(finalTrainingLoss(r)), fixed(v), relative]);
    }),
  ].join('\n') + '\n';
}

/** Every run's smoothed training loss and validation NLL against the step, on one chart. */
async function plotRuns(runs: RunHistory[], path: string): Promise<void> {
  await plotLines(path, {
    title: 'Pretraining loss', xLabel: 'step', yLabel: 'nats / pixel',
    series: runs.flatMap((r) => {
      const train = smoothedTrainingLoss(r.history);
      const val = r.history.filter((h): h is HistoryPoint & { valLoss: number } => h.valLoss !== undefined);
      return [
        { name: `${r.name} train`, x: train.steps, y: train.loss },
        { name: `${r.name} validation`, x: val.map((h) => h.step), y: val.map((h) => h.valLoss) },
      ];
    }),
  });
}

/** Writes runs.md and loss.png (the runs' loss curves on one chart) into `outDir`; returns the table and the files written. */
export async function writeRunComparison(runs: RunHistory[], outDir: string): Promise<{ table: string; files: string[] }> {
  const table = runsMarkdown(runs);
  const loss = join(outDir, 'loss.png');
  await plotRuns(runs, loss);
  return { table, files: [writeRunFile(outDir, 'runs.md', table), loss] };
}

/** Writes compare.md and (when any study has probed) depth.png into `outDir`; returns the table and the files written. */
export async function writeComparison(studies: StudyOutputs[], outDir: string): Promise<{ table: string; files: string[] }> {
  const table = comparisonMarkdown(studies);
  const files = [writeRunFile(outDir, 'compare.md', table)];
  const probed = studies.filter((s): s is StudyOutputs & { probe: LayerProbeReport } => s.probe !== undefined);
  if (probed.length > 0) {
    const depth = join(outDir, 'depth.png');
    await plotLines(depth, {
      title: 'Linear probe test accuracy vs depth', xLabel: 'layer', yLabel: 'accuracy (%)',
      series: probed.map((s) => ({ name: s.name, x: s.probe.layers.map((l) => l.layer), y: s.probe.layers.map((l) => 100 * l.testAccuracy) })),
    });
    files.push(depth);
  }
  return { table, files };
}
