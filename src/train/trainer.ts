/**
 * Generative pretraining: one Adam step at a time over a token dataset, with validation,
 * NaN/inf detection and state that resumes exactly (data order and masks are functions of
 * (seed, step); Adam moments are saved).
 */
import type { TokenDataset, TokenSplit } from '../data/tokens.js';
import type { DeviceArray, Kernels } from '../kernels/kernels.js';
import type { Batch, ForwardResult, ImageGPT } from '../model/model.js';
import { ParameterTensors, parametersToHost } from '../model/parameters.js';
import { Rng } from '../util/rng.js';
import { augmentImage } from './augment.js';
import { sosTokenOf } from '../model/config.js';
import { Adam } from './adam.js';
import { evaluateNll, type NllReport } from './evaluate.js';
import { BatchBuilder, DataOrder, maskRngFor, type Objective } from './objectives.js';
import { learningRateAt, type Schedule } from './schedule.js';
import type { Communicator } from '../parallel/communicator.js';
import { world } from '../parallel/world.js';
import { checkBatchDivides, shareOfBatch } from './data-parallel.js';

export interface PretrainOptions {
  objective: Objective;
  batch: number;
  lr: number;
  steps: number;
  /** Warmup steps (the paper: one epoch). */
  warmup: number;
  /** Cosine decay to 0 after warmup (pretraining); flat for fine-tuning. */
  cosine: boolean;
  /** With cosine: hold the peak rate until this fraction of the steps, then decay (default 0). */
  hold?: number;
  seed: number;
  /** BERT mask probability. */
  maskProb: number;
  /** Validate every this many steps (0: only at the end). */
  evalEvery: number;
  /** Validation images per evaluation (0: the whole split). */
  evalImages: number;
  /** Save a checkpoint every this many steps (0: only at the end). */
  checkpointEvery: number;
  /** Also keep, for good, every checkpoint whose step is a multiple of this (0: only the newest two). */
  keepEvery?: number;
  /**
   * Fine-tuning: train the class head too, with loss L_CLF + genWeight · L_GEN (genWeight 0:
   * the classification loss alone).
   */
  classify?: { genWeight: number; headLrScale: number };
  /** Augment training images (reflect-pad 4, random crop, horizontal flip), for color 32×32. */
  augment?: boolean;
  /** Recompute block activations in backward (less memory, about a third more time). */
  recompute?: boolean;
}

export interface HistoryPoint {
  step: number;
  /** Training loss of that step (nats/pixel). */
  loss?: number;
  /** Validation NLL (nats/pixel). */
  valLoss?: number;
  lr?: number;
  gradNorm?: number;
}

/** Everything besides parameters and Adam moments that a resumed run needs. */
export interface TrainerState {
  step: number;
  /** Seconds spent training, summed over resumed runs. */
  seconds: number;
  history: HistoryPoint[];
}

export interface StepReport {
  step: number;
  /** The generative loss (nats/pixel). */
  loss: number;
  /** The classification loss and batch accuracy, when fine-tuning. */
  clfLoss?: number;
  clfAccuracy?: number;
  lr: number;
  gradNorm: number;
  seconds: number;
}

/** Training stopped on a NaN or inf; names the step and the first tensor at fault. */
export class NumericalFault extends Error {
  constructor(readonly step: number, what: string) {
    super(`training stopped at step ${step}: ${what}; the last good checkpoint is kept`);
  }
}

/** A step recorded on the backend whose numbers the host has not read yet. */
interface StepInFlight {
  step: number;
  lr: number;
  /** Images in the global batch. */
  images: number;
  /** performance.now() when the step was recorded. */
  started: number;
  /** The step's numbers on the host, once the backend is done: see `slots`. */
  numbers: Promise<Float32Array>;
  /** This rank's losses from `numbers`. */
  decode: (numbers: Float32Array) => ForwardResult;
}

/**
 * How many steps may be left in flight between calls of `step` on a backend: on a GPU one, so that
 * the next step is recorded while the host waits for the last one's numbers and the GPU never waits
 * for the host; on the CPU none, since its numbers are there at once and a fault is then named
 * before the next step runs.
 */
export function stepsInFlightFor(kernels: Kernels<DeviceArray>): number {
  return kernels.name === 'webgpu' ? 1 : 0;
}

/**
 * Trains a model on any backend (`T`: its array handle). A step records the forward, backward,
 * the gradient's sum of squares and the Adam update on the backend (the update is skipped there
 * when that sum is NaN or inf) and reads back only a few numbers a step: the loss sums (and class
 * logits) and the sum of squares, for the report and the NaN check. Reports come through
 * `onReport`, in step order, up to `stepsInFlight` steps late; `settle` waits for all of them.
 */
export class Trainer<T extends DeviceArray = Float32Array> {
  readonly adam: Adam<T>;
  readonly state: TrainerState = { step: 0, seconds: 0, history: [] };
  private readonly order: DataOrder;
  private readonly builder: BatchBuilder;
  private readonly schedule: Schedule;
  /** Scratch for one augmented batch, and the indices 0..B-1 into it. */
  private readonly augmented: TokenSplit | null;
  private identity: Int32Array | null = null;
  /** Fine-tuning: where the class head starts in the flat buffer (kept last) and its rate scale. */
  private readonly classHead: { offset: number; lrScale: number } | null;
  /** A step's losses, summed over the ranks: generative, classification, correct predictions. */
  private readonly losses = new Float64Array(3);
  /**
   * A ring of stepsInFlight + 1 arrays on the backend, one a step in flight: its loss sums and
   * class logits (ImageGPT.copyResult), then the gradient's sum of squares, last.
   */
  private readonly slots: T[];
  private readonly inFlight: StepInFlight[] = [];
  /** When the last report came back (performance.now()): a step's time runs from it or its own start. */
  private lastReported = 0;
  /** Called with each step's report once its numbers are back, in step order. */
  onReport?: (r: StepReport) => void;

  /**
   * `comm`: the ranks that share each global batch of `opts.batch` images (one process by default);
   * `stepsInFlight`: see stepsInFlightFor.
   */
  constructor(readonly model: ImageGPT<T>, readonly data: TokenDataset, readonly opts: PretrainOptions,
              readonly comm: Communicator = world(), readonly stepsInFlight = stepsInFlightFor(model.kernels)) {
    const T = data.meta.pixels;
    if (T !== model.config.nPositions) {
      throw new Error(`the dataset has ${T} pixels per image but the model has ${model.config.nPositions} positions`);
    }
    if (data.palette.k !== model.config.vocabSize - 1) {
      throw new Error(`the dataset's palette has ${data.palette.k} colors but the model expects ${model.config.vocabSize - 1}`);
    }
    checkBatchDivides(opts.batch, comm);
    model.recompute = opts.recompute ?? false;
    const score = model.params.layout.find((t) => t.name === 'score.weight');
    this.classHead = opts.classify && score ? { offset: score.offset, lrScale: opts.classify.headLrScale } : null;
    this.adam = new Adam(model.kernels, model.params.count);
    const slotLength = model.resultLength(opts.batch / comm.size) + 1;
    this.slots = Array.from({ length: stepsInFlight + 1 }, () => model.kernels.alloc(slotLength));
    this.order = new DataOrder(data.train.count, opts.batch, opts.seed);
    this.builder = new BatchBuilder(opts.batch, T, opts.objective, sosTokenOf(model.config), opts.maskProb);
    this.schedule = { lr: opts.lr, warmup: opts.warmup, total: opts.steps, cosine: opts.cosine, hold: opts.hold };
    this.augmented = opts.augment ? {
      count: opts.batch, tokens: new (data.train.tokens.constructor as Uint8ArrayConstructor)(opts.batch * T),
      labels: new Int32Array(opts.batch),
    } : null;
  }

  get epoch(): number { return this.order.epochOf(this.state.step); }

  /**
   * Records one step: forward on this rank's share of the global batch, backward, gradients summed
   * over the ranks, their sum of squares, Adam (the same step on every rank). Then reports the
   * steps beyond `stepsInFlight` that are still in flight; throws NumericalFault for a step whose
   * loss or gradient is NaN or inf.
   */
  async step(): Promise<void> {
    const { model, state, comm } = this;
    const kernels = model.kernels;
    const step = state.step;
    const started = performance.now();
    const global = this.nextBatch(step);
    const batch = shareOfBatch(global, comm);
    const slot = this.slots[step % this.slots.length]!;
    const gradSquares = kernels.view(slot, slot.length - 1, 1);
    model.zeroGrad();
    model.forward(batch, true);
    const decode = model.copyResult(slot);
    model.backward();
    // One all-reduce of the flat gradient buffer: on the reference model it costs well under 1% of
    // a step (bench/parallel.ts, SCALING.md), so overlapping buckets with backward would not pay.
    if (comm.size > 1) {
      const grads = await kernels.read(model.grads.data);
      comm.allReduce(grads);
      kernels.upload(model.grads.data, grads);
    }
    // The norm is summed where the gradient lives: on a GPU one number comes back, not the gradient.
    kernels.sumOfSquares(gradSquares, model.grads.data);
    const lr = learningRateAt(this.schedule, step);
    const head = this.classHead;
    this.adam.update(model.params.data, model.grads.data, gradSquares, lr, head ? { start: head.offset, lr: lr * head.lrScale } : undefined);
    model.weightsChanged();
    this.inFlight.push({ step, lr, images: global.B, started, numbers: kernels.read(slot), decode });
    state.step++;
    while (this.inFlight.length > this.stepsInFlight) await this.report(this.inFlight.shift()!);
  }

  /** Reports every step still in flight. */
  async settle(): Promise<void> {
    while (this.inFlight.length > 0) await this.report(this.inFlight.shift()!);
  }

  private async report(s: StepInFlight): Promise<void> {
    const { model, state, losses } = this;
    const kernels = model.kernels;
    const numbers = await s.numbers;
    const r = s.decode(numbers);
    const gradSquares = numbers[numbers.length - 1]!; // the slot's last element (see `slots`)
    losses[0] = r.genCount > 0 ? r.genLoss : 0;
    losses[1] = this.opts.classify ? r.clfLoss : 0;
    losses[2] = r.clfCorrect;
    this.comm.allReduce(losses);
    const genLoss = losses[0]!, clfLoss = losses[1]!, clfCorrect = losses[2]!;
    const loss = genLoss + clfLoss;
    const gradNorm = Math.sqrt(gradSquares);
    if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
      this.inFlight.length = 0; // a fault ends the run: the steps after it are not reported
      if (!Number.isFinite(loss)) {
        // Usually a weight went bad (a poisoned checkpoint, an overflowing update): name it.
        const bad = firstNonFiniteTensor(await parametersToHost(kernels, model.params));
        throw new NumericalFault(s.step, `the loss is ${loss}${bad ? ` (parameter ${bad} holds NaN or inf)` : ''}`);
      }
      // The gradient on the backend is this step's unless a later one was recorded (on a GPU).
      const bad = firstNonFiniteTensor(new ParameterTensors(model.config, await kernels.read(model.grads.data))) ?? 'an unknown tensor';
      throw new NumericalFault(s.step, `the gradient of ${bad} is not finite`);
    }
    const now = performance.now();
    const seconds = (now - Math.max(s.started, this.lastReported)) / 1000;
    this.lastReported = now;
    state.seconds += seconds;
    state.history.push({ step: s.step + 1, loss: genLoss, lr: s.lr, gradNorm });
    const clf = this.opts.classify ? { clfLoss, clfAccuracy: clfCorrect / s.images } : {};
    this.onReport?.({ step: s.step + 1, loss: genLoss, lr: s.lr, gradNorm, seconds, ...clf });
  }

  /** The batch of a step: a pure function of (seed, step), also when augmenting. */
  private nextBatch(step: number): Batch {
    const indices = this.order.indices(step);
    const withLabels = this.opts.classify !== undefined;
    let split = this.data.train;
    let take: ArrayLike<number> = indices;
    if (this.augmented) {
      const rng = new Rng(this.opts.seed * 31 + step);
      const side = this.data.meta.side;
      for (let b = 0; b < indices.length; b++) {
        const i = indices[b];
        augmentImage(this.augmented.tokens.subarray(b * side * side, (b + 1) * side * side),
                     this.data.train.tokens.subarray(i * side * side, (i + 1) * side * side), side, rng);
        this.augmented.labels[b] = this.data.train.labels[i];
      }
      split = this.augmented;
      take = this.identity ??= Int32Array.from({ length: indices.length }, (_, b) => b);
    }
    const batch = this.builder.fill(split, take, maskRngFor(this.opts.seed, step), withLabels);
    if (this.opts.classify) batch.genWeight = this.opts.classify.genWeight;
    return batch;
  }

  /** Validation NLL, after the steps in flight; recorded in the history. */
  async validate(evalBatch = this.opts.batch): Promise<NllReport> {
    await this.settle();
    const report = await evaluateNll(this.model, this.data.val, this.opts.objective, {
      batch: evalBatch, maxImages: this.opts.evalImages || undefined, channels: this.data.meta.channels,
      maskProb: this.opts.maskProb, seed: this.opts.seed, comm: this.comm,
    });
    this.state.history.push({ step: this.state.step, valLoss: report.natsPerPixel });
    return report;
  }
}

/** The name of the first tensor holding a NaN or inf, or null when all values are finite. */
export function firstNonFiniteTensor(tensors: ParameterTensors): string | null {
  for (const t of tensors.layout) {
    for (let i = t.offset; i < t.offset + t.size; i++) if (!Number.isFinite(tensors.data[i])) return t.name;
  }
  return null;
}
