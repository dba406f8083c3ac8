/**
 * Fine-tuning (the paper's §3.4): the class head on mean-pooled ln_f output, loss
 * L_CLF + genWeight · L_GEN, Adam (flat after warmup, or decaying by a cosine), early stopping on
 * validation accuracy.
 * The head starts at zero (the paper) or from a linear probe on its own input.
 * BERT models are evaluated with several independent masks and the modal prediction.
 */
import { splitRows, type TokenDataset, type TokenSplit } from '../data/tokens.js';
import { sosTokenOf } from '../model/config.js';
import type { DeviceArray } from '../kernels/kernels.js';
import { hostKernelsBeside } from '../kernels/select.js';
import { argmax, type ImageGPT } from '../model/model.js';
import { BatchBuilder, maskRngFor, type Objective } from '../train/objectives.js';
import { Trainer, type PretrainOptions, type StepReport } from '../train/trainer.js';
import { world } from '../parallel/world.js';
import { requireRanksAgree } from '../train/data-parallel.js';
import { extractFeatures } from './features.js';
import { accuracy, type LabeledFeatures } from './logistic.js';
import { selectL2 } from './probe.js';

export interface FinetuneOptions {
  objective: Objective;
  lr: number;
  batch: number;
  /** Most steps; early stopping usually ends sooner. */
  steps: number;
  warmup: number;
  /** Decay the learning rate to 0 at `steps` by a cosine (the paper: flat). */
  cosine: boolean;
  /** Weight of L_GEN (0: classification loss alone). */
  genWeight: number;
  /**
   * The class head's learning rate relative to the body's: a zero head must grow to the scale of
   * the pooled features' small class differences while the body only adjusts.
   */
  headLrScale: number;
  /** Validate every this many steps; stop after `patience` validations without improvement. */
  evalEvery: number;
  patience: number;
  evalImages: number;
  augment: boolean;
  seed: number;
  maskProb: number;
  /** BERT: masks per image for the test accuracy (the paper: 5). */
  evalMasks: number;
  /** BERT: masks per image at each validation (fewer than evalMasks keeps early stopping affordable). */
  valMasks: number;
  /**
   * Fit the class head first by a linear probe on the pooled ln_f features of this many training
   * images (0: the paper's zero head). Fine-tuning then starts at probe accuracy, and its first
   * steps do not push the body's features around to suit a head that is still random.
   */
  probeHeadImages: number;
}

/**
 * Defaults for the two ways to start the head. Under a probe head the body takes small steps with
 * the head at the same rate, decaying by a cosine over the steps: larger or flat rates move the
 * features away from the head faster than they improve them (the trials are in RESULTS.md,
 * Fine-tuning). A zero head must first grow, at 10 times the body's rate, while the body adjusts;
 * that is the paper's setting (flat, early stopping).
 */
export const FINETUNE_DEFAULTS = {
  probeHead: { lr: 5e-5, headLrScale: 1, cosine: true },
  zeroHead: { lr: 3e-4, headLrScale: 10, cosine: false },
} as const;

/** How the class head was started by a probe. */
export interface ProbeHeadReport {
  images: number;
  l2: number;
  /** Validation images (after the ones fine-tuning validates on) that chose L2; 0: those same ones. */
  l2ChosenOn: number;
  /** The probe's accuracy on the validation images fine-tuning validates on. */
  valAccuracy: number;
}

export interface FinetuneHooks {
  onStep?(r: StepReport): void;
  onValidate?(accuracy: number, step: number, best: boolean): void;
  shouldStop?(): boolean;
}

export interface FinetuneResult {
  /** Validation accuracy before any step: the zero head's, or the probe head's. */
  initialValAccuracy: number;
  probeHead?: ProbeHeadReport;
  bestValAccuracy: number;
  bestStep: number;
  steps: number;
  testAccuracy: number;
  history: { step: number; valAccuracy: number }[];
  seconds: number;
}

/**
 * Accuracy of the class head; BERT: modal prediction over `masks` random masks. Under MPI the
 * ranks take turns batch by batch (the same batches and masks as one process) and sum the count.
 * On a GPU each batch's B × C class logits are read back (small).
 */
export async function classificationAccuracy<T extends DeviceArray>(model: ImageGPT<T>, split: TokenSplit, o: {
  objective: Objective; batch: number; maxImages?: number; masks?: number; maskProb?: number; seed?: number;
}): Promise<number> {
  const comm = world();
  const C = model.config.numLabels;
  if (C < 1) throw new Error('the model has no class head (numLabels is 0)');
  const count = Math.min(split.count, o.maxImages ?? split.count);
  if (count === 0) return NaN;
  const masks = o.objective === 'bert' ? Math.max(1, o.masks ?? 5) : 1;
  const builder = new BatchBuilder(o.batch, model.config.nPositions, o.objective, sosTokenOf(model.config), o.maskProb ?? 0.15);
  const indices = new Int32Array(o.batch);
  const votes = new Int32Array(o.batch * C);
  let correct = 0;
  for (let start = comm.rank * o.batch; start < count; start += comm.size * o.batch) {
    const B = Math.min(o.batch, count - start);
    for (let b = 0; b < B; b++) indices[b] = start + b;
    votes.fill(0);
    for (let m = 0; m < masks; m++) {
      const batch = builder.fill(split, indices.subarray(0, B), maskRngFor((o.seed ?? 0) + 101 * m, start), true);
      model.forward(batch, false);
      const logits = await model.kernels.read(model.activations.classLogits);
      for (let b = 0; b < B; b++) votes[b * C + argmax(logits, b * C, C)]++;
    }
    for (let b = 0; b < B; b++) {
      let best = 0;
      for (let c = 1; c < C; c++) if (votes[b * C + c] > votes[b * C + best]) best = c;
      if (best === split.labels[start + b]) correct++;
    }
  }
  const total = new Float64Array([correct]);
  comm.allReduce(total);
  return total[0]! / count;
}

/**
 * Fine-tunes `model` in place; on return it holds the parameters of the best validation step. On
 * a GPU the host reads the parameters only when validation improves (to keep the best).
 */
export async function finetune<T extends DeviceArray>(model: ImageGPT<T>, data: TokenDataset, o: FinetuneOptions,
                               hooks: FinetuneHooks = {}): Promise<FinetuneResult> {
  if (model.config.numLabels < data.meta.numClasses) {
    throw new Error(`the model's class head has ${model.config.numLabels} outputs, the data has ${data.meta.numClasses} classes`);
  }
  const trainOptions: PretrainOptions = {
    objective: o.objective, batch: o.batch, lr: o.lr, steps: o.steps, warmup: o.warmup, cosine: o.cosine,
    seed: o.seed, maskProb: o.maskProb, evalEvery: o.evalEvery, evalImages: o.evalImages, checkpointEvery: 0,
    classify: { genWeight: o.genWeight, headLrScale: o.headLrScale }, augment: o.augment,
  };
  const probeHead = o.probeHeadImages > 0 ? await fitHeadByProbe(model, data, o) : undefined;
  const trainer = new Trainer(model, data, trainOptions);
  trainer.onReport = (r) => hooks.onStep?.(r);
  // Under MPI: every rank starts from rank 0's weights (a probe head fitted with another thread
  // count could differ in the last bits), and every step keeps them equal.
  requireRanksAgree(trainer.comm, { model: model.config, options: trainOptions, data, step: 0 });
  const kernels = model.kernels;
  if (trainer.comm.size > 1) {
    const weights = await kernels.read(model.params.data);
    trainer.comm.broadcast(weights);
    kernels.upload(model.params.data, weights);
    model.weightsChanged();
  }
  const validate = (): Promise<number> => classificationAccuracy(model, data.val, {
    objective: o.objective, batch: o.batch, maxImages: o.evalImages || undefined, masks: o.valMasks, maskProb: o.maskProb, seed: o.seed,
  });
  const initialValAccuracy = await validate();
  const history = [{ step: 0, valAccuracy: initialValAccuracy }];
  // A copy: on the CPU `read` hands back the parameters' own memory.
  const bestParams = async (): Promise<Float32Array> => (await kernels.read(model.params.data)).slice();
  let best = { accuracy: initialValAccuracy, step: 0, params: await bestParams() };
  let sinceBest = 0;
  while (trainer.state.step < o.steps && sinceBest < o.patience) {
    await trainer.step();
    const step = trainer.state.step;
    if (step % o.evalEvery === 0 || step === o.steps) {
      await trainer.settle(); // its reports, faults included, come before the validation's
      const accuracy = await validate();
      history.push({ step, valAccuracy: accuracy });
      const improved = accuracy > best.accuracy;
      if (improved) {
        best = { accuracy, step, params: await bestParams() };
        sinceBest = 0;
      } else {
        sinceBest++;
      }
      hooks.onValidate?.(accuracy, step, improved);
    }
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (hooks.shouldStop?.()) break;
  }
  await trainer.settle();
  kernels.upload(model.params.data, best.params);
  model.weightsChanged();
  const testAccuracy = await classificationAccuracy(model, data.test, {
    objective: o.objective, batch: o.batch, masks: o.evalMasks, maskProb: o.maskProb, seed: o.seed + 1,
  });
  return {
    initialValAccuracy, probeHead, bestValAccuracy: best.accuracy, bestStep: best.step, steps: trainer.state.step,
    testAccuracy, history, seconds: trainer.state.seconds,
  };
}

/**
 * Sets the class head to a bias-free logistic regression on its own input, the mean-pooled ln_f
 * output (the probe's last layer), fitted on raw features since the head reads them directly.
 * L2 is chosen on the validation images after the ones fine-tuning validates on (when the split
 * has them): chosen on the same images, the starting head would score higher there than it
 * deserves, and early stopping would hold every later step to that inflated mark.
 */
async function fitHeadByProbe<T extends DeviceArray>(model: ImageGPT<T>, data: TokenDataset, o: FinetuneOptions): Promise<ProbeHeadReport> {
  const { nEmbd: d, nLayer: L, numLabels: C, nPositions: T } = model.config;
  const lnfFeatures = async (split: TokenSplit): Promise<LabeledFeatures> => {
    const { layers } = await extractFeatures(model, split, { batch: o.batch, objective: o.objective, maskProb: o.maskProb, seed: o.seed });
    return { features: layers[L], labels: split.labels };
  };
  const validated = o.evalImages || data.val.count;
  const train = await lnfFeatures(splitRows(data.train, 0, o.probeHeadImages, T));
  const val = await lnfFeatures(splitRows(data.val, 0, validated, T));
  const heldOut = splitRows(data.val, validated, 2 * validated, T);
  const kernels = hostKernelsBeside(model.kernels);
  const fit = selectL2(train, heldOut.count > 0 ? await lnfFeatures(heldOut) : val, { numClasses: C, kernels, rawLinear: true });
  const weights = fit.model.weights; // [d, C]; the head is [C, d]
  const head = new Float32Array(C * d);
  for (let c = 0; c < C; c++) for (let j = 0; j < d; j++) head[c * d + j] = weights[j * C + c];
  model.kernels.upload(model.params.score, head);
  return { images: train.labels.length, l2: fit.l2, l2ChosenOn: heldOut.count > 0 ? heldOut.count : 0,
           valAccuracy: accuracy(fit.model, val.features, val.labels, kernels) };
}
