/**
 * Classifying images with what the paper trains on top of the features: a fine-tuned model's class
 * head (`score`, on the mean-pooled ln_f output) or a linear probe saved by `igpt probe` (one
 * layer's features, standardized, then logistic regression). Both read f^l of one layer, so the
 * images go through the probe's feature path either way.
 */
import { readFileSync } from 'node:fs';
import type { DeviceArray, Kernels } from '../kernels/kernels.js';
import { hostKernelsBeside } from '../kernels/select.js';
import { headForward } from '../model/layers.js';
import type { ImageGPT } from '../model/model.js';
import { POOLINGS, type Pooling } from './features.js';
import { predictLogits, type LogisticModel } from './logistic.js';

export interface Classifier {
  /** The feature layer it reads (the model's last, L, is the pooled ln_f output). */
  layer: number;
  /** Features a row it reads: the model's width d, times 4 with 2x2 pooling. */
  dim: number;
  /** How the layer's positions were pooled into the row it reads. */
  pooling: Pooling;
  classNames: string[];
  /** Class scores [n, C] of n rows of that layer's features. */
  logits(features: Float32Array, n: number): Float32Array;
}

/**
 * The model's own class head; a clear error when it has none (or only the zero head pretraining
 * leaves). It scores features on the host: on a GPU backend its weights are read back once.
 */
export async function headClassifier<T extends DeviceArray>(model: ImageGPT<T>, classNames: string[] | null, where: string): Promise<Classifier> {
  const { numLabels: C, nEmbd: d, nLayer: L } = model.config;
  const score = await model.kernels.read(model.params.score);
  if (C === 0 || score.every((w) => w === 0)) {
    throw new Error(`${where} has no trained class head${C === 0 ? '' : ` (its ${C}-class score head is all zeros, as pretraining leaves it)`}: ` +
      'fine-tune it with `igpt finetune`, or fit a linear probe with `igpt probe` and pass --probe <dir>/probe.json');
  }
  const host = hostKernelsBeside(model.kernels);
  return {
    layer: L,
    dim: d,
    pooling: 'mean',
    classNames: classNames ?? Array.from({ length: C }, (_, c) => `LABEL_${c}`),
    logits(features, n) {
      const out = new Float32Array(n * C);
      headForward(host, out, features, score, n, d, C);
      return out;
    },
  };
}

/** What `igpt probe` saves in probe.json under `classifier`: the best layer's probe, refitted on train + val. */
export interface ProbeClassifierJson {
  layer: number;
  classNames: string[];
  dim: number;
  /** Absent in probes written before pooling could be chosen: 'mean'. */
  pooling?: Pooling;
  numClasses: number;
  l2: number;
  /** Standardization of the training features: z = (x − mean) · invStd. */
  mean: number[];
  invStd: number[];
  /** [dim, numClasses], row-major, acting on z; then + bias. */
  weights: number[];
  bias: number[];
}

export function probeClassifierJson(model: LogisticModel, layer: number, classNames: string[], pooling: Pooling = 'mean'): ProbeClassifierJson {
  return {
    layer, classNames, dim: model.dim, pooling, numClasses: model.numClasses, l2: model.l2,
    mean: Array.from(model.mean), invStd: Array.from(model.invStd), weights: Array.from(model.weights), bias: Array.from(model.bias),
  };
}

/** A probe as a classifier (checked: sizes agree, numbers finite). */
export function probeClassifier(json: ProbeClassifierJson, where: string, kernels?: Kernels): Classifier {
  const { dim, numClasses: C } = json;
  const sizes: [string, number[] | string[] | undefined, number][] = [
    ['mean', json.mean, dim], ['invStd', json.invStd, dim], ['weights', json.weights, dim * C], ['bias', json.bias, C], ['classNames', json.classNames, C],
  ];
  if (!(Number.isInteger(dim) && dim > 0 && Number.isInteger(C) && C > 1 && Number.isInteger(json.layer) && json.layer >= 0)) {
    throw new Error(`${where}: the probe's layer, dim and numClasses must be integers (dim ≥ 1, numClasses ≥ 2)`);
  }
  for (const [name, values, n] of sizes) {
    if (!Array.isArray(values) || values.length !== n) throw new Error(`${where}: the probe's ${name} should hold ${n} entries`);
  }
  const model: LogisticModel = {
    dim, numClasses: C, l2: json.l2, weights: Float32Array.from(json.weights), bias: Float32Array.from(json.bias),
    mean: Float32Array.from(json.mean), invStd: Float32Array.from(json.invStd), loss: NaN, iterations: 0, stop: 'gradient',
  };
  for (const [name, a] of [['weights', model.weights], ['bias', model.bias], ['mean', model.mean], ['invStd', model.invStd]] as const) {
    if (!a.every(Number.isFinite)) throw new Error(`${where}: the probe's ${name} are not all finite numbers`);
  }
  const pooling = json.pooling ?? 'mean';
  if (!POOLINGS.includes(pooling)) throw new Error(`${where}: the probe's pooling "${String(pooling)}" is not one of ${POOLINGS.join(', ')}`);
  return { layer: json.layer, dim, pooling, classNames: json.classNames, logits: (features, n) => predictLogits(model, features, n, kernels) };
}

/** The probe in a probe.json written by `igpt probe`. */
export function readProbeClassifier(path: string, kernels?: Kernels): Classifier {
  let parsed: { classifier?: ProbeClassifierJson };
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8')) as { classifier?: ProbeClassifierJson };
  } catch (err) {
    throw new Error(`${path}: cannot read the probe (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  if (!parsed.classifier) throw new Error(`${path}: holds no probe weights (written by an older igpt probe?); run \`igpt probe\` again`);
  return probeClassifier(parsed.classifier, path, kernels);
}

export interface Classification {
  /** The likeliest class, its name and probability. */
  label: number;
  name: string;
  probability: number;
  /** The `top` likeliest classes, likeliest first. */
  top: { label: number; name: string; probability: number }[];
}

/** Softmax over each row of the classifier's scores; the likeliest class and the top few. */
export function classifyFeatures(classifier: Classifier, features: Float32Array, n: number, top = 3): Classification[] {
  const logits = classifier.logits(features, n);
  const C = classifier.classNames.length;
  if (logits.length !== n * C) throw new Error(`the classifier gave ${logits.length / n} scores a row for ${C} classes`);
  const out: Classification[] = [];
  for (let r = 0; r < n; r++) {
    const row = logits.subarray(r * C, (r + 1) * C);
    const max = row.reduce((a, b) => Math.max(a, b), -Infinity);
    const exp = Array.from(row, (v) => Math.exp(v - max));
    const sum = exp.reduce((a, b) => a + b, 0);
    const ranked = exp.map((e, label) => ({ label, name: classifier.classNames[label], probability: e / sum }))
      .sort((a, b) => b.probability - a.probability || a.label - b.label);
    out.push({ ...ranked[0], top: ranked.slice(0, Math.min(top, C)) });
  }
  return out;
}
