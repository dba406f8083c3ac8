#!/usr/bin/env node
// The same-budget table of RESULTS.md, read from the runs' own files:
//   node scripts/budget-table.mjs results/fashion-mnist-budget-20min
// Each subfolder is one run: igpt's (its last checkpoint's trainer_state.json, and step.json: the step
// bench/igpt_step.ts timed alone to plan it) or the PyTorch peer's (history.json of
// bench/torch_pretrain.py, and train.log: its stderr, which names the step it planned with), with
// nll.txt (igpt eval-nll's output) and probe/probe.json (igpt probe). Rows in the order of runs.json,
// which says what each run is.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = process.argv[2];
if (!root) {
  console.error('usage: node scripts/budget-table.mjs <folder of runs>');
  process.exit(2);
}
const json = (path) => JSON.parse(readFileSync(path, 'utf8'));
const TRAIN_IMAGES = 54000; // Fashion-MNIST's training split after the 6,000 validation images

/** @type {{ name: string, about: string }[]} */
const runs = json(join(root, 'runs.json'));
const rows = runs.map(({ name, about }) => {
  const dir = join(root, name);
  const peer = existsSync(join(dir, 'history.json')) && !existsSync(join(dir, 'trainer_state.json'));
  let steps, seconds, batch, model, planned;
  if (peer) {
    const h = json(join(dir, 'history.json'));
    ({ steps, batch } = h);
    seconds = h.train_seconds;
    model = `d ${h.width}, ${h.layers} layers`;
    planned = Number(/steps of ~([0-9.]+) s/.exec(readFileSync(join(dir, 'train.log'), 'utf8'))?.[1]);
  } else {
    const state = json(join(dir, 'trainer_state.json'));
    steps = state.step;
    seconds = state.seconds;
    batch = state.options.batch;
    model = `d ${state.shape.nEmbd}, ${state.shape.nLayer} layers`;
    planned = json(join(dir, 'step.json')).min_s * 1.05; // as igpt experiment plans: the fastest of 3, plus 5%
  }
  const nll = /test: ([0-9.]+) nats\/pixel/.exec(readFileSync(join(dir, 'nll.txt'), 'utf8'))?.[1] ?? '–';
  const probe = json(join(dir, 'probe', 'probe.json'));
  const layers = probe.layers.length - 1;
  return [about, model, `${planned.toFixed(2)} s`, `${steps} × ${batch} (${((steps * batch) / TRAIN_IMAGES).toFixed(2)} epochs)`,
          `${(seconds / 60).toFixed(1)} min`, nll, `${(100 * probe.best.testAccuracy).toFixed(2)}% (layer ${probe.bestLayer} of ${layers})`];
});
const header = ['run', 'model', 'planned step', 'steps × images', 'training clock', 'test NLL (nats/pixel, 2,000 images)', 'linear probe, best layer (test)'];
console.log([header, header.map(() => '---'), ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n'));
