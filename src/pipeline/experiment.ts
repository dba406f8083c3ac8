/**
 * The paper's pipeline end to end within a time budget (`igpt experiment`), each stage resumable
 * (a finished stage's output is reused; pretraining resumes from its checkpoint), in this order:
 *   tokens → the plan (steps that fit the budget, study.json) → pretraining (six checkpoints kept)
 *   → test NLL, linear probe at every layer and low-data, from the same features
 *   → probe accuracy against pretraining time (the kept checkpoints) → fine-tuning → completions
 *   → RESULTS.md, written from the stages' own outputs.
 * Under mpirun every stage splits its work over the ranks; what a stage finds on disk (done
 * already, or not) is rank 0's view, shared with the others, and the study folder must be one
 * every rank reads (rank 0 alone writes, and the others wait at the end of each stage).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildTokenDataset } from '../data/build.js';
import { loadTokenDataset, saveTokenDataset, type TokenDataset } from '../data/tokens.js';
import type { FinetuneResult } from '../eval/finetune.js';
import type { LayerProbeReport } from '../eval/probe.js';
import type { DeviceArray, Kernels } from '../kernels/kernels.js';
import { hostKernelsBeside } from '../kernels/select.js';
import { makeConfig, type ModelShape } from '../model/config.js';
import { ImageGPT } from '../model/model.js';
import { initParameters, ParameterTensors, parametersOn } from '../model/parameters.js';
import type { NllReport } from '../train/evaluate.js';
import type { Objective } from '../train/objectives.js';
import { decidedByRoot, type Communicator } from '../parallel/communicator.js';
import { world } from '../parallel/world.js';
import { checkBatchDivides } from '../train/data-parallel.js';
import { writeRunFile } from '../util/fs.js';
import { imagesOfSplit, writeCompletions } from './completions.js';
import { finetuneOptions, runFinetuning } from './finetune.js';
import { runLowData } from './lowdata.js';
import { openModel, type OpenedModel } from './open.js';
import { featuresForProbe, probeAndReport, probeReportMarkdown } from './probe.js';
import { curveMarkdown, curveSizes, DEFAULT_CURVE_SIZES, probeCurve, type ProbeCurve } from './probe-curve.js';
import { pretrainOptions, pretrainSummary, runPretraining } from './pretrain.js';
import { readStudyState, writeStudyState, type StudyState } from './study.js';

export interface ExperimentOptions {
  /** Any backend, webgpu included. */
  kernels: Kernels<DeviceArray>;
  /** The dataset's name: fashion-mnist or mnist. */
  dataset: string;
  /** The study folder; running again with the same folder resumes. */
  outDir: string;
  budgetHours: number;
  finetuneMinutes: number;
  objective: Objective;
  shape: ModelShape;
  /** Images are side × side, 16 gray levels. */
  side: number;
  batch: number;
  lr: number;
  /** Hold the peak rate until this fraction of the steps, then cosine (see `igpt pretrain --hold`); default: cosine after warmup. */
  hold?: number;
  /** Training images whose features the probe uses; validation images that choose its layer and L2 (default all). */
  probeTrain: number;
  probeVal?: number;
  seed: number;
  /** The command line, recorded in study.json and RESULTS.md. */
  command: string;
  /** Where the stages say what they did (the command prints it). */
  log(line: string): void;
}

/** A study under way: what it was asked, its tokens, its state, and the folders of its stages. */
interface Study {
  o: ExperimentOptions;
  comm: Communicator;
  data: TokenDataset;
  tokensDir: string;
  state: StudyState;
  runDir: string;
  modelDir: string;
}

/** Runs (or resumes) the study; false when pretraining was interrupted (run again to resume). */
export async function runExperiment(o: ExperimentOptions): Promise<boolean> {
  const study = await planStudy(o);
  if (!(await pretrainStage(study))) return false;
  const opened = openModel(study.modelDir, o.kernels);
  const { nll, probe } = await probeStage(study, opened);
  const curve = await curveStage(study);
  const finetune = await finetuneStage(study, opened);
  await samplesStage(study, opened);
  if (study.comm.rank === 0) writeRunFile(o.outDir, 'RESULTS.md', resultsMarkdown(study, nll, probe, curve, finetune));
  o.log(`study done: ${join(o.outDir, 'RESULTS.md')}`);
  return true;
}

/**
 * Runs one stage and adds its seconds to study.json; under MPI the ranks then wait for each other,
 * so that what rank 0 wrote (a model, features, reports) is there before any rank reads it.
 */
async function timed<T>(study: Study, stage: string, work: () => Promise<T> | T): Promise<T> {
  const t0 = performance.now();
  const r = await work();
  study.state.stages[stage] = (study.state.stages[stage] ?? 0) + (performance.now() - t0) / 1000;
  writeStudyState(study.o.outDir, study.state);
  study.comm.barrier();
  return r;
}

/** Tokens, then the plan: the pretraining step count is fixed once, from a measured step, and kept in study.json. */
async function planStudy(o: ExperimentOptions): Promise<Study> {
  const comm = world();
  checkBatchDivides(o.batch, comm);
  const tokensDir = join(o.outDir, 'tokens');
  let tokenSeconds = 0;
  if (!decidedByRoot(comm, () => existsSync(join(tokensDir, 'meta.json')))) {
    // Rank 0 alone builds them (k-means once); every rank then reads what it wrote.
    const t0 = performance.now();
    if (comm.rank === 0) {
      o.log(`tokens: ${o.dataset} at ${o.side}×${o.side}, 16 gray levels`);
      saveTokenDataset(tokensDir, await buildTokenDataset(o.dataset, { side: o.side, channels: 1, k: 16, seed: o.seed }));
    }
    comm.barrier();
    tokenSeconds = (performance.now() - t0) / 1000;
  }
  if (!existsSync(join(tokensDir, 'meta.json'))) {
    throw new Error(`${tokensDir}: rank 0 has the study's tokens, rank ${comm.rank} (${comm.host}) does not see them; ` +
      'under mpirun the study folder must be on a filesystem every rank shares');
  }
  const data = loadTokenDataset(tokensDir);
  // A new study's plan is rank 0's: it times one rank's share of a batch (awaited: on a GPU the
  // step runs on the device), then writes the plan every rank reads.
  const secondsPerStep = comm.rank === 0 && readStudyState(o.outDir) === null ? await measureStep(o.kernels, data, o.shape, o.batch / comm.size) : 0;
  const state = decidedByRoot(comm, () => readStudyState(o.outDir) ?? planSteps(o, tokenSeconds, secondsPerStep));
  const runDir = join(o.outDir, 'pretrain');
  return { o, comm, data, tokensDir, state, runDir, modelDir: join(runDir, 'model') };
}

/** The plan of a new study (written to study.json): the steps that fit the budget at the measured speed of a step. */
function planSteps(o: ExperimentOptions, tokenSeconds: number, secondsPerStep: number): StudyState {
  const state: StudyState = {
    command: o.command, objective: o.objective, shape: o.shape, side: o.side, batch: o.batch, lr: o.lr,
    steps: Math.max(10, Math.floor((o.budgetHours * 3600) / secondsPerStep)), secondsPerStep, stages: { tokens: tokenSeconds },
  };
  writeStudyState(o.outDir, state);
  return state;
}

/** Seconds per training step of this model, measured on 3 steps of throwaway weights. */
async function measureStep<T extends DeviceArray>(kernels: Kernels<T>, data: TokenDataset, shape: ModelShape, batch: number): Promise<number> {
  const cfg = makeConfig(shape, data.palette.k, data.meta.pixels, data.meta.numClasses);
  const params = new ParameterTensors(cfg);
  initParameters(params, 1);
  const model = new ImageGPT(kernels, cfg, parametersOn(kernels, params));
  const T = cfg.nPositions;
  const inputs = Int32Array.from(data.train.tokens.subarray(0, batch * T));
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    model.zeroGrad();
    model.forward({ B: batch, T, inputs, targets: inputs, causal: true }, true);
    model.backward();
    await model.readResult(); // on a GPU: waits for the step's work
    times.push((performance.now() - t0) / 1000);
  }
  return Math.min(...times) * 1.05; // + Adam and data
}

/** Pretraining to the planned step, resumed from its checkpoint; false when interrupted. */
async function pretrainStage(study: Study): Promise<boolean> {
  const { o, state, runDir } = study;
  const latest = join(runDir, 'latest.json');
  const done = (): boolean => existsSync(latest) && (JSON.parse(readFileSync(latest, 'utf8')) as { step: number }).step >= state.steps;
  if (decidedByRoot(study.comm, done)) return true;
  // Six checkpoints are kept along the way, for the probe-against-pretraining-time curve.
  const checkpointEvery = Math.max(1, Math.ceil(state.steps / 12));
  const options = pretrainOptions({
    objective: state.objective, batch: state.batch, lr: state.lr, steps: state.steps, seed: o.seed, maskProb: 0.15,
    evalImages: 1000, checkpointEvery, keepEvery: 2 * checkpointEvery, hold: o.hold,
  }, study.data.train.count);
  o.log(`pretraining: ${state.steps} steps of ~${state.secondsPerStep.toFixed(2)} s (budget ${o.budgetHours} h)`);
  const r = await timed(study, 'pretrain', () => runPretraining({
    kernels: o.kernels, data: study.data, dataDir: study.tokensDir, outDir: runDir, shape: state.shape, options, resume: true,
  }));
  o.log(pretrainSummary(r, runDir));
  return !r.stoppedEarly;
}

/** Features of every layer; the test NLL from the same forward passes, the probe at every layer, low-data on the best layer. */
async function probeStage(study: Study, opened: OpenedModel<DeviceArray>): Promise<{ nll: NllReport; probe: LayerProbeReport }> {
  const { o, data } = study;
  const probeDir = join(o.outDir, 'probe');
  const nllPath = join(o.outDir, 'nll.json');
  let probe: LayerProbeReport;
  let nll: NllReport;
  const done = decidedByRoot(study.comm, () => [join(probeDir, 'probe.json'), join(probeDir, 'lowdata.json'), nllPath].every((f) => existsSync(f))
    ? { probe: readJson<LayerProbeReport>(join(probeDir, 'probe.json')), nll: readJson<NllReport>(nllPath) } : null);
  if (done) {
    ({ probe, nll } = done);
  } else {
    [probe, nll] = await timed(study, 'probe', async () => {
      const features = await featuresForProbe(opened, data, study.tokensDir, { batch: 32, masks: 1, maxTrain: o.probeTrain, maxVal: o.probeVal }, probeDir);
      const testNll: NllReport = { natsPerPixel: features.testNatsPerPixel, bitsPerDim: features.testNatsPerPixel / Math.LN2, images: data.test.count };
      writeRunFile(o.outDir, 'nll.json', JSON.stringify(testNll));
      const host = hostKernelsBeside(o.kernels); // the probes' regressions, on host arrays
      const report = await probeAndReport(host, features, data.meta.numClasses, probeDir, 3, data.meta.classNames);
      runLowData(host, features, data, report.bestLayer, { labelsPerClass: [1, 4, 10, 25, 100], subsets: 5, seed: 0 }, probeDir);
      return [report, testNll] as const;
    });
  }
  o.log(`test NLL ${nll.natsPerPixel.toFixed(4)} nats/pixel (${nll.bitsPerDim.toFixed(3)} bits/dim)`);
  o.log(probeReportMarkdown(probe));
  return { nll, probe };
}

/** Probe accuracy against pretraining time, from the checkpoints kept along the way. */
async function curveStage(study: Study): Promise<ProbeCurve> {
  const curveDir = join(study.o.outDir, 'curve');
  const done = decidedByRoot(study.comm, () => (existsSync(join(curveDir, 'curve.md')) ? readJson<ProbeCurve>(join(curveDir, 'curve.json')) : null));
  if (done) return done;
  const sizes = curveSizes(DEFAULT_CURVE_SIZES, study.data, study.tokensDir);
  return timed(study, 'curve', () => probeCurve(study.o.kernels, study.data, study.tokensDir, study.runDir, curveDir, sizes));
}

/** Fine-tuning within its budget: the whole budget is run (the cosine's low end is where it gains), the best validation step kept. */
async function finetuneStage(study: Study, opened: OpenedModel<DeviceArray>): Promise<FinetuneResult> {
  const { o, state, data } = study;
  const ftDir = join(o.outDir, 'finetune');
  const done = decidedByRoot(study.comm, () => (existsSync(join(ftDir, 'finetune.json')) ? readJson<FinetuneResult>(join(ftDir, 'finetune.json')) : null));
  const ft = done ?? await timed(study, 'finetune', () => {
    const steps = Math.max(10, Math.floor((o.finetuneMinutes * 60) / (state.secondsPerStep * 1.15)));
    const evalEvery = Math.max(10, Math.ceil(steps / 12));
    const options = finetuneOptions({
      batch: state.batch, steps, warmup: Math.min(50, Math.ceil(steps / 20)), genWeight: 1, evalEvery,
      patience: Math.ceil(steps / evalEvery), evalImages: 1000, augment: false, seed: 0, evalMasks: 5, valMasks: 1,
      probeHeadImages: 5000,
    }, opened.objective, data);
    return runFinetuning(o.kernels, openModel(study.modelDir, o.kernels), data, options, ftDir, { model: study.modelDir, data: study.tokensDir });
  });
  o.log(`fine-tuning: test accuracy ${(100 * ft.testAccuracy).toFixed(2)}%`);
  return ft;
}

/** Completions of the first test images, their bottom half hidden. */
async function samplesStage(study: Study, opened: OpenedModel<DeviceArray>): Promise<void> {
  const { o, data } = study;
  const gridPath = join(o.outDir, 'completions.png');
  if (decidedByRoot(study.comm, () => existsSync(gridPath))) return;
  await timed(study, 'samples', async () => {
    const count = 10, samples = 5;
    await writeCompletions(o.kernels, opened.model.params, imagesOfSplit(data.test, 0, count, data.meta.pixels, 'the test split'), {
      temperature: 1, topK: 0, topP: 1, seed: 0, precision: 'f16', objective: opened.objective, count, samples, rows: Math.floor(o.side / 2),
    }, data.palette, gridPath, 4);
  });
}

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}

function resultsMarkdown(study: Study, nll: NllReport, probe: LayerProbeReport, curve: ProbeCurve, ft: FinetuneResult): string {
  const { state: s, data } = study;
  const out = study.o.outDir;
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
