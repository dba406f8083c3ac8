import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LayerProbeReport } from '../src/eval/probe.js';
import { comparisonMarkdown, readRunHistory, readStudy, runsMarkdown, writeRunComparison, type StudyState } from '../src/pipeline/study.js';
import type { HistoryPoint } from '../src/train/trainer.js';
import type { Objective } from '../src/train/objectives.js';

function writeStudy(root: string, name: string, objective: Objective, layerAccuracies: number[], bestLayer: number): string {
  const dir = join(root, name);
  mkdirSync(join(dir, 'probe'), { recursive: true });
  const state: StudyState = {
    command: 'igpt experiment', objective, shape: { nEmbd: 32, nLayer: layerAccuracies.length - 1, nHead: 2 },
    side: 28, batch: 8, lr: 0.002, steps: 100, secondsPerStep: 0.5, stages: { pretrain: 600 },
  };
  const probe: LayerProbeReport = {
    layers: layerAccuracies.map((a, layer) => ({ layer, l2: 1e-3, valAccuracy: a, testAccuracy: a - 0.01, sweep: [] })),
    bestLayer, best: { l2: 1e-3, valAccuracy: layerAccuracies[bestLayer], testAccuracy: layerAccuracies[bestLayer] - 0.01 },
  };
  writeFileSync(join(dir, 'study.json'), JSON.stringify(state));
  writeFileSync(join(dir, 'nll.json'), JSON.stringify({ natsPerPixel: 0.75, bitsPerDim: 0.75 / Math.LN2, images: 10 }));
  writeFileSync(join(dir, 'probe', 'probe.json'), JSON.stringify(probe));
  return dir;
}

test('compare: each study\'s own numbers in its column, stages not reached shown as –', () => {
  const root = mkdtempSync(join(tmpdir(), 'igpt-compare-'));
  const ar = readStudy(writeStudy(root, 'ar', 'ar', [0.7, 0.8, 0.85], 2));
  const bert = readStudy(writeStudy(root, 'bert', 'bert', [0.6, 0.75, 0.7], 1));
  const table = comparisonMarkdown([ar, bert]);
  assert.match(table, /\| linear probe, best layer \| 84\.00% \(layer 2 of 2\) \| 74\.00% \(layer 1 of 2\) \|/);
  assert.match(table, /\| fine-tuning \| – \| – \|/);
  assert.match(table, /\| pretraining \| 100 steps × 8 \(10 min\) \|/);
  assert.match(table, /\| objective \| AR \| BERT \|/);
});

test('compare: a folder that is not a study is named in the error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'igpt-compare-empty-'));
  assert.throws(() => readStudy(dir), new RegExp(`${dir}: not a study folder`));
});

/** A run folder whose training loss falls as `lossAt(step)`, validated every 10 steps. */
function writeRun(root: string, name: string, steps: number, lossAt: (step: number) => number): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  const history: HistoryPoint[] = [];
  for (let step = 1; step <= steps; step++) {
    history.push({ step, loss: lossAt(step), lr: 1e-3, gradNorm: 1 });
    if (step % 10 === 0) history.push({ step, valLoss: lossAt(step) + 0.1 });
  }
  writeFileSync(join(dir, 'history.json'), JSON.stringify(history));
  return dir;
}

test('compare: pretraining runs side by side, the last validation NLL relative to the first run\'s', async () => {
  const root = mkdtempSync(join(tmpdir(), 'igpt-compare-runs-'));
  const f32 = readRunHistory(writeRun(root, 'f32', 40, (s) => 2 - s / 40));      // last val 1.1
  const bf16 = readRunHistory(writeRun(root, 'bf16', 40, (s) => 2.011 - s / 40)); // last val 1.111
  const table = runsMarkdown([f32, bf16]);
  // training loss over the last 5% (2 steps): mean of 1.025 and 1.0 = 1.0125
  assert.match(table, /\| f32 \| 40 \| 1\.0125 \| 1\.1000 \| \+0\.00% \|/);
  assert.match(table, /\| bf16 \| 40 \| 1\.0235 \| 1\.1110 \| \+1\.00% \|/);
  const { files } = await writeRunComparison([f32, bf16], join(root, 'out'));
  assert.deepEqual(files.map((f) => f.slice(root.length)), ['/out/runs.md', '/out/loss.png']);
  assert.deepEqual([...readFileSync(files[1]).subarray(1, 4)], [...Buffer.from('PNG')]);
});

test('compare: a folder without a pretraining history is named in the error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'igpt-compare-norun-'));
  assert.throws(() => readRunHistory(dir), new RegExp(`${dir}: neither a pretraining run nor a study folder`));
});
