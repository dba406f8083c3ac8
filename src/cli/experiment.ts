/**
 * `igpt experiment fashion-mnist`: the paper's pipeline end to end within a time budget, each
 * stage resumable (a finished stage's output is reused; pretraining resumes from its checkpoint):
 * tokens → pretraining → test NLL → linear probe at every layer → fine-tuning → low-data → samples,
 * then RESULTS.md written from the stages' own outputs.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { buildTokenDataset } from '../data/build.js';
import { loadTokenDataset, saveTokenDataset, type TokenDataset } from '../data/tokens.js';
import { FINETUNE_DEFAULTS, type FinetuneResult } from '../eval/finetune.js';
import type { LayerProbeReport } from '../eval/probe.js';
import type { Kernels } from '../kernels/kernels.js';
import { makeConfig, presetShape, type ModelShape } from '../model/config.js';
import { ImageGPT } from '../model/model.js';
import { initParameters, ParameterTensors } from '../model/parameters.js';
import { completeImages } from '../sample/complete.js';
import { writeCompletionGrid } from '../sample/grid.js';
import { writeRunFile } from '../train/checkpoint.js';
import type { NllReport } from '../train/evaluate.js';
import { backendOption, precisionOption, kernelsFromFlags, lockRunFolder, parseIntOption, parseNumberOption } from './common.js';
import { runFinetuning } from './finetune.js';
import { runLowData } from './lowdata.js';
import { openModel } from './open-model.js';
import { parseTrainingOptions, runPretraining, type TrainFlags } from './pretrain.js';
import { featuresForProbe, probeAndReport, probeReportMarkdown } from './probe.js';
import { curveMarkdown, DEFAULT_CURVE_SIZES, probeCurve, type ProbeCurve } from './probe-curve.js';

interface Flags {
  out: string; budget: string; finetuneMinutes: string; objective: string; preset: string; side: string;
  batch: string; lr: string; probeTrain: string; probeVal?: string; backend?: string; precision?: string; seed: string;
}


/** What the study decided and how long each stage took, kept across resumed invocations (study.json). */
export interface StudyState {
  command: string;
  objective: string;
  shape: ModelShape;
  side: number;
  batch: number;
  lr: number;
  steps: number;
  secondsPerStep: number;
  stages: Record<string, number>;
}

/** Seconds per training step of this model, measured on 3 steps of throwaway weights. */
function measureStep(kernels: Kernels, data: TokenDataset, shape: ModelShape, batch: number): number {
  const cfg = makeConfig(shape, data.palette.k, data.meta.pixels, data.meta.numClasses);
  const params = new ParameterTensors(cfg);
  initParameters(params, 1);
  const model = new ImageGPT(kernels, cfg, params);
  const T = cfg.nPositions;
  const inputs = Int32Array.from(data.train.tokens.subarray(0, batch * T));
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    model.zeroGrad();
    model.forward({ B: batch, T, inputs, targets: inputs, causal: true }, true);
    model.backward();
    times.push((performance.now() - t0) / 1000);
  }
  return Math.min(...times) * 1.05; // + Adam and data
}

export const experimentCommand: CommandModule = {
  register(program: Command): void {
    precisionOption(backendOption(program.command('experiment')
      .argument('<dataset>', 'fashion-mnist (or mnist)')
      .description('the whole study within a time budget: pretrain, NLL, probe, fine-tune, low-data, samples, RESULTS.md')
      .option('--out <dir>', 'study folder (rerun the same command to resume)', 'study')
      .option('--budget <hours>', 'pretraining time budget', '1')
      .option('--finetune-minutes <m>', 'fine-tuning time budget', '15')
      .option('--objective <ar|bert>', 'pretraining objective', 'ar')
      .option('--preset <name>', 'model size', 'cpu-s')
      .option('--side <n>', 'input resolution', '28')
      .option('--batch <n>', 'images per step', '16')
      .option('--lr <x>', 'peak learning rate', '0.002')
      .option('--probe-train <n>', 'training images whose features the probe uses', '10000')
      .option('--probe-val <n>', 'validation images that choose the probe\'s layer and L2 (default: all)')
      .option('--seed <n>', 'seed', '0')))
      .action(async (dataset: string, flags: Flags) => {
        // The study's own pretraining run folder too: `igpt pretrain --out <study>/pretrain` must wait.
        lockRunFolder(flags.out);
        lockRunFolder(join(flags.out, 'pretrain'));
        const kernels = kernelsFromFlags(flags, flags.precision);
        const out = flags.out;
        const statePath = join(out, 'study.json');
        const tokensDir = join(out, 'tokens');
        const timed = async <T>(stage: string, state: StudyState | null, work: () => Promise<T> | T): Promise<T> => {
          const t0 = performance.now();
          const r = await work();
          if (state) {
            state.stages[stage] = (state.stages[stage] ?? 0) + (performance.now() - t0) / 1000;
            writeRunFile(out, 'study.json', JSON.stringify(state, null, 1));
          }
          return r;
        };

        // 1. Tokens.
        const side = parseIntOption('--side', flags.side, 4, 64);
        let data: TokenDataset;
        let tokenSeconds = 0;
        if (existsSync(join(tokensDir, 'meta.json'))) {
          data = loadTokenDataset(tokensDir);
        } else {
          const t0 = performance.now();
          console.log(`tokens: ${dataset} at ${side}×${side}, 16 gray levels`);
          data = await buildTokenDataset(dataset, { side, channels: 1, k: 16, seed: parseIntOption('--seed', flags.seed, 0) });
          saveTokenDataset(tokensDir, data);
          tokenSeconds = (performance.now() - t0) / 1000;
        }

        // 2. Pretraining within the budget: the step count is fixed once, from a measured step.
        let state: StudyState;
        if (existsSync(statePath)) {
          state = JSON.parse(readFileSync(statePath, 'utf8')) as StudyState;
        } else {
          const shape = presetShape(flags.preset);
          const batch = parseIntOption('--batch', flags.batch, 1);
          const secondsPerStep = measureStep(kernels, data, shape, batch);
          const budget = parseNumberOption('--budget', flags.budget, 0) * 3600;
          state = {
            command: `igpt ${process.argv.slice(2).join(' ')}`, objective: flags.objective, shape, side, batch,
            lr: parseNumberOption('--lr', flags.lr, 0), steps: Math.max(10, Math.floor(budget / secondsPerStep)),
            secondsPerStep, stages: { tokens: tokenSeconds },
          };
          writeRunFile(out, 'study.json', JSON.stringify(state, null, 1));
        }
        const runDir = join(out, 'pretrain');
        const modelDir = join(runDir, 'model');
        // Six checkpoints are kept along the way, for the probe-against-pretraining-time curve.
        const checkpointEvery = Math.max(1, Math.ceil(state.steps / 12));
        const trainFlags: TrainFlags = {
          data: tokensDir, out: runDir, objective: state.objective, preset: flags.preset, d: String(state.shape.nEmbd),
          layers: String(state.shape.nLayer), heads: String(state.shape.nHead), batch: String(state.batch), lr: String(state.lr),
          steps: String(state.steps), maskProb: '0.15', evalImages: '1000', seed: flags.seed,
          checkpointEvery: String(checkpointEvery), keepEvery: String(2 * checkpointEvery),
        };
        const finished = (() => {
          try { return (JSON.parse(readFileSync(join(runDir, 'latest.json'), 'utf8')) as { step: number }).step >= state.steps; } catch { return false; }
        })();
        if (!finished) {
          console.log(`pretraining: ${state.steps} steps of ~${state.secondsPerStep.toFixed(2)} s (budget ${flags.budget} h)`);
          const r = await timed('pretrain', state, () => runPretraining(kernels, data, trainFlags, parseTrainingOptions(trainFlags, data), runDir, true));
          if (r.stoppedEarly) return;
        }
        const opened = openModel(modelDir, kernels);

        // 3. Features of every layer; the test NLL comes from the same forward passes.
        // 4. Linear probe at every layer, 5. low-data on the best layer.
        const probeDir = join(out, 'probe');
        const nllPath = join(out, 'nll.json');
        let probe: LayerProbeReport;
        let nll: NllReport;
        if ([join(probeDir, 'probe.json'), join(probeDir, 'lowdata.json'), nllPath].every((f) => existsSync(f))) {
          probe = JSON.parse(readFileSync(join(probeDir, 'probe.json'), 'utf8')) as LayerProbeReport;
          nll = JSON.parse(readFileSync(nllPath, 'utf8')) as NllReport;
        } else {
          [probe, nll] = await timed('probe', state, async () => {
            const features = featuresForProbe(opened, data, tokensDir, { batch: '32', masks: '1', maxTrain: flags.probeTrain, maxVal: flags.probeVal, backend: flags.backend }, probeDir);
            const testNll: NllReport = { natsPerPixel: features.testNatsPerPixel, bitsPerDim: features.testNatsPerPixel / Math.LN2, images: data.test.count };
            writeRunFile(out, 'nll.json', JSON.stringify(testNll));
            const report = await probeAndReport(kernels, features, data.meta.numClasses, probeDir, 3, data.meta.classNames);
            runLowData(kernels, features, data, report.bestLayer, [1, 4, 10, 25, 100], 5, 0, probeDir);
            return [report, testNll] as const;
          });
        }
        console.log(`test NLL ${nll.natsPerPixel.toFixed(4)} nats/pixel (${nll.bitsPerDim.toFixed(3)} bits/dim)`);
        console.log(probeReportMarkdown(probe));

        // 5b. Probe accuracy against pretraining time, from the checkpoints kept along the way.
        const curveDir = join(out, 'curve');
        const curve = existsSync(join(curveDir, 'curve.md'))
          ? JSON.parse(readFileSync(join(curveDir, 'curve.json'), 'utf8')) as ProbeCurve
          : await timed('curve', state, () => probeCurve(kernels, data, tokensDir, runDir, curveDir, DEFAULT_CURVE_SIZES));

        // 6. Fine-tuning within its budget (early stopping may end it sooner).
        const ftDir = join(out, 'finetune');
        const ft: FinetuneResult = existsSync(join(ftDir, 'finetune.json'))
          ? JSON.parse(readFileSync(join(ftDir, 'finetune.json'), 'utf8')) as FinetuneResult
          : await timed('finetune', state, () => {
            const steps = Math.max(10, Math.floor((parseNumberOption('--finetune-minutes', flags.finetuneMinutes, 0) * 60) / (state.secondsPerStep * 1.15)));
            const evalEvery = Math.max(10, Math.ceil(steps / 12));
            return runFinetuning(kernels, openModel(modelDir, kernels), data, {
              objective: opened.objective, ...FINETUNE_DEFAULTS.probeHead, batch: state.batch, steps, warmup: Math.min(50, Math.ceil(steps / 20)),
              // The whole budget is run (the cosine's low end is where it gains); the best validation step is kept.
              genWeight: 1, evalEvery, patience: Math.ceil(steps / evalEvery), evalImages: 1000, augment: false,
              seed: 0, maskProb: 0.15, evalMasks: 5, valMasks: 1, probeHeadImages: 5000,
            }, ftDir, { model: modelDir, data: tokensDir });
          });
        console.log(`fine-tuning: test accuracy ${(100 * ft.testAccuracy).toFixed(2)}%`);

        // 7. Samples: completions of test images.
        const gridPath = join(out, 'completions.png');
        if (!existsSync(gridPath)) {
          await timed('samples', state, async () => {
            const count = 10, samples = 5;
            const originals = Int32Array.from(data.test.tokens.subarray(0, count * data.meta.pixels));
            const fig = completeImages(kernels, opened.model.params, originals, {
              temperature: 1, topK: 0, topP: 1, seed: 0, precision: 'f16', objective: opened.objective, count, samples, rows: Math.floor(side / 2),
            });
            await writeCompletionGrid(gridPath, fig, data.palette, 4);
          });
        }
        writeRunFile(out, 'RESULTS.md', resultsMarkdown(out, state, data, nll, probe, curve, ft));
        console.log(`study done: ${join(out, 'RESULTS.md')}`);
      });
  },
};

function resultsMarkdown(out: string, s: StudyState, data: TokenDataset, nll: NllReport, probe: LayerProbeReport,
                         curve: ProbeCurve, ft: FinetuneResult): string {
  const pct = (x: number): string => (100 * x).toFixed(2);
  const lowdata = readFileSync(join(out, 'probe', 'lowdata.md'), 'utf8');
  const minutes = (k: string): string => ((s.stages[k] ?? 0) / 60).toFixed(1);
  const cfg = `d ${s.shape.nEmbd}, ${s.shape.nLayer} layers, ${s.shape.nHead} heads`;
  return `# Study: ${data.meta.source}, ${s.objective.toUpperCase()} objective

Command: \`${s.command}\` (generated by the run; numbers below are read from its outputs).

Model ${cfg}; input ${s.side}×${s.side}, 16 gray levels (vocabulary 16 + SOS); batch ${s.batch}, peak lr ${s.lr},
${s.steps} pretraining steps (${(s.steps * s.batch / data.train.count).toFixed(2)} epochs of ${data.train.count} training images).

| stage | minutes |
|---|---|
${Object.keys(s.stages).map((k) => `| ${k} | ${minutes(k)} |`).join('\n')}

## Results on the test set

| measure | ours | target |
|---|---|---|
| test NLL | ${nll.natsPerPixel.toFixed(4)} nats/pixel (${nll.bitsPerDim.toFixed(3)} bits/dim) | ≤ 0.70 nats/pixel |
| linear probe, best layer (${probe.bestLayer} of ${probe.layers.length - 1}) | ${pct(probe.best.testAccuracy)}% | ≥ 90% |
${probe.concat ? `| linear probe, layers ${probe.concat.layers.join('+')} concatenated | ${pct(probe.concat.testAccuracy)}% | |\n` : ''}| fine-tuning (L_CLF + L_GEN, best of ${ft.steps} steps) | ${pct(ft.testAccuracy)}% | ≥ 93% |

Fine-tuning raised validation accuracy from ${pct(ft.initialValAccuracy)}% (${ft.probeHead ? `the class head fitted by a probe on ${ft.probeHead.images} training images` : 'zero-initialized head'}) to ${pct(ft.bestValAccuracy)}% (step ${ft.bestStep}).

## Linear probe at every layer (the paper's Figure 2)

![depth curve](probe/depth.png)

${probeReportMarkdown(probe)}
## Probe accuracy against pretraining time

Every kept checkpoint, probed at every layer on small subsets (so below the full probe above);
what more pretraining buys.

![probe accuracy vs pretraining time](curve/curve.png)

${curveMarkdown(curve)}
## Low-data (the paper's Table 4 protocol, 5 random subsets)

${lowdata}
## Pretraining loss and samples

![loss curve](pretrain/loss.png)

![completions](completions.png)

Each row: a test image with its bottom half hidden, five completions, the original.
`;
}
