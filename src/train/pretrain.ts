/**
 * A pretraining run: creates or resumes a run folder, steps the trainer, validates, checkpoints,
 * and stops cleanly when asked (Ctrl-C) or on a numerical fault, keeping the last good checkpoint.
 */
import { join } from 'node:path';
import type { DeviceArray, Kernels } from '../kernels/kernels.js';
import type { TokenDataset } from '../data/tokens.js';
import { makeConfig, type ModelConfig, type ModelShape } from '../model/config.js';
import { ImageGPT } from '../model/model.js';
import { initParameters, ParameterTensors, parametersOn, parametersToHost } from '../model/parameters.js';
import { writeRunFile } from '../util/fs.js';
import { plotLines } from '../util/plot.js';
import { checkpointDir, loadLatestCheckpoint, saveCheckpoint } from './checkpoint.js';
import { requireRanksAgree } from './data-parallel.js';
import type { NllReport } from './evaluate.js';
import { firstNonFiniteTensor, NumericalFault, Trainer, type PretrainOptions, type HistoryPoint, type StepReport, type TrainerState } from './trainer.js';

/** What a run folder's trainer_state.json holds. */
export interface RunState extends TrainerState {
  options: PretrainOptions;
  shape: ModelShape;
  /** The token dataset the run trains on. */
  data: string;
}

export interface PretrainHooks {
  /** `skipped`: newer checkpoints that could not be loaded when resuming, with their errors. */
  onStart?(info: { resumedFrom: number; skipped: string[]; config: ModelConfig; params: number }): void;
  onStep?(r: StepReport): void;
  onValidate?(r: NllReport, step: number): void;
  onCheckpoint?(dir: string, step: number): void;
  /** Polled after every step; true ends the run after a checkpoint. */
  shouldStop?(): boolean;
}

export interface PretrainResult<T extends DeviceArray = Float32Array> {
  model: ImageGPT<T>;
  state: RunState;
  /** The latest checkpoint folder. */
  checkpoint: string;
  stoppedEarly: boolean;
  finalValidation: NllReport | null;
}

/**
 * Trains until `options.steps` (continuing a run found in `runDir` when `resume`) on any backend.
 * Data order, BERT masks and Adam state are restored exactly, so a resumed run matches an
 * uninterrupted one; checkpoints hold host arrays, so a run may resume on another backend.
 * Under MPI every rank runs this with the same arguments (checked at start) and reads the same
 * run folder; rank 0 alone writes to it. Resuming with another number of ranks continues exactly.
 */
export async function pretrain<T extends DeviceArray>(kernels: Kernels<T>, data: TokenDataset, dataPath: string, runDir: string,
                                                     shape: ModelShape, options: PretrainOptions, resume: boolean,
                                                     hooks: PretrainHooks = {}): Promise<PretrainResult<T>> {
  const ckpt = resume ? loadLatestCheckpoint<RunState>(runDir) : null;
  let model: ImageGPT<T>;
  let state: RunState;
  if (ckpt) {
    model = new ImageGPT(kernels, ckpt.config, parametersOn(kernels, ckpt.params));
    state = ckpt.state;
    // The run's own options win, except the step budget, which a resume may extend, and how
    // memory is traded for time, which does not change the results.
    options = { ...ckpt.state.options, steps: options.steps, recompute: options.recompute };
    state.options = options;
  } else {
    const config = makeConfig(shape, data.palette.k, data.meta.pixels, data.meta.numClasses);
    const params = new ParameterTensors(config);
    initParameters(params, options.seed);
    model = new ImageGPT(kernels, config, parametersOn(kernels, params));
    state = { step: 0, seconds: 0, history: [], options, shape, data: dataPath };
  }
  const trainer = new Trainer(model, data, options);
  trainer.onReport = (r) => hooks.onStep?.(r);
  const comm = trainer.comm;
  const writer = comm.rank === 0;
  requireRanksAgree(comm, { model: model.config, options, data, step: state.step });
  Object.assign(trainer.state, { step: state.step, seconds: state.seconds, history: state.history });
  if (ckpt) {
    kernels.upload(trainer.adam.m, ckpt.adamM);
    kernels.upload(trainer.adam.v, ckpt.adamV);
    trainer.adam.step = ckpt.adamStep;
  }
  hooks.onStart?.({ resumedFrom: ckpt ? state.step : -1, skipped: ckpt?.skipped ?? [], config: model.config, params: model.params.count });
  // history.json and loss.png are written after latest.json: a crash in between leaves them behind
  // the checkpoint, so a resumed run rewrites them from the checkpoint's own history.
  if (ckpt && writer) await writeLossCurve(runDir, state);

  const snapshot = (): RunState => ({ ...state, ...trainer.state });
  const checkpoint = async (): Promise<string> => {
    await trainer.settle(); // every step saved is a step checked
    // Never replace the last good checkpoint with weights an update has broken.
    const params = await parametersToHost(kernels, model.params);
    const bad = firstNonFiniteTensor(params);
    if (bad) throw new NumericalFault(trainer.state.step - 1, `the update made parameter ${bad} NaN or inf`);
    if (!writer) return checkpointDir(runDir, trainer.state.step);
    const { adam } = trainer;
    const moments = { size: adam.size, step: adam.step, m: await kernels.read(adam.m), v: await kernels.read(adam.v) };
    const dir = saveCheckpoint(runDir, trainer.state.step, params, data.palette, moments, snapshot(), data.meta.classNames, options.keepEvery ?? 0);
    await writeLossCurve(runDir, snapshot());
    hooks.onCheckpoint?.(dir, trainer.state.step);
    return dir;
  };
  let last = ckpt?.dir ?? '';
  let stoppedEarly = false;
  const stopFlag = new Int32Array(1);
  while (trainer.state.step < options.steps) {
    await trainer.step();
    const step = trainer.state.step;
    if (options.evalEvery > 0 && step % options.evalEvery === 0 && step < options.steps) {
      const report = await trainer.validate(); // outside `onValidate?.(…)`, which would skip it without a hook
      hooks.onValidate?.(report, step);
    }
    if (options.checkpointEvery > 0 && step % options.checkpointEvery === 0 && step < options.steps) last = await checkpoint();
    // Yield to the event loop so that signals (Ctrl-C) are delivered between steps.
    await new Promise<void>((resolve) => setImmediate(resolve));
    // Every rank stops after the same step when any was asked to.
    stopFlag[0] = hooks.shouldStop?.() ? 1 : 0;
    comm.allReduce(stopFlag, 'max');
    if (stopFlag[0]) { stoppedEarly = true; break; }
  }
  let finalValidation: NllReport | null = null;
  if (!stoppedEarly) {
    finalValidation = await trainer.validate();
    hooks.onValidate?.(finalValidation, trainer.state.step);
  }
  if (trainer.state.step !== Number(last.match(/step-(\d+)$/)?.[1] ?? -1)) last = await checkpoint();
  return { model, state: snapshot(), checkpoint: last, stoppedEarly, finalValidation };
}

/**
 * The training loss against the step, as a running mean over a window of 1/50 of the run (a
 * single step's loss is one batch's: too noisy to read a curve from).
 */
export function smoothedTrainingLoss(history: HistoryPoint[]): { steps: number[]; loss: number[] } {
  const train = history.filter((h): h is HistoryPoint & { loss: number } => h.loss !== undefined);
  const window = Math.max(1, Math.floor(train.length / 50));
  const loss = train.map((_, i) => {
    const from = Math.max(0, i - window + 1);
    let s = 0;
    for (let j = from; j <= i; j++) s += train[j].loss;
    return s / (i - from + 1);
  });
  return { steps: train.map((h) => h.step), loss };
}

/** loss.png: training loss (smoothed) and validation NLL against the step. */
export async function writeLossCurve(runDir: string, state: TrainerState): Promise<string> {
  const train = smoothedTrainingLoss(state.history);
  const val = state.history.filter((h) => h.valLoss !== undefined);
  const path = join(runDir, 'loss.png');
  await plotLines(path, {
    title: 'Pretraining loss', xLabel: 'step', yLabel: 'nats / pixel',
    series: [
      { name: 'train', x: train.steps, y: train.loss },
      { name: 'validation', x: val.map((h) => h.step), y: val.map((h) => h.valLoss!) },
    ],
  });
  writeRunFile(runDir, 'history.json', JSON.stringify(state.history));
  return path;
}
