/**
 * Probe features: for every layer l, f^l = mean over positions of norm(h^l) (the block's own
 * first norm; ln_f for the last), all layers from one forward pass per batch.
 */
import type { TokenSplit } from '../data/tokens.js';
import type { TokenArray } from '../palette/quantize.js';
import { sosTokenOf } from '../model/config.js';
import type { DeviceArray } from '../kernels/kernels.js';
import type { ImageGPT } from '../model/model.js';
import { BatchBuilder, maskRngFor, type Objective } from '../train/objectives.js';
import { world } from '../parallel/world.js';

export interface FeatureOptions {
  batch: number;
  objective: Objective;
  /** BERT: mask probability, and how many independent masks are averaged. */
  maskProb?: number;
  masks?: number;
  seed?: number;
  maxImages?: number;
  onBatch?: (done: number, total: number) => void;
}

export interface ExtractedFeatures {
  /** L+1 matrices [count, d], layer 0 = the embeddings' norm, layer L = ln_f. */
  layers: Float32Array[];
  /** The generative loss of the same passes (nats/pixel): the NLL comes free with the features. */
  natsPerPixel: number;
}

/**
 * Under MPI the ranks take turns batch by batch (the same batches and masks as one process), and
 * an all-reduce gives every rank every image's features. On any backend: each batch's features
 * are read back to the host (at once on the CPU).
 */
export async function extractFeatures<T extends DeviceArray>(model: ImageGPT<T>, split: TokenSplit, o: FeatureOptions): Promise<ExtractedFeatures> {
  const comm = world();
  const kernels = model.kernels;
  const { nEmbd: d, nLayer: L, nPositions: T } = model.config;
  const count = Math.min(split.count, o.maxImages ?? split.count);
  const masks = o.objective === 'bert' ? Math.max(1, o.masks ?? 1) : 1;
  const layers = Array.from({ length: L + 1 }, () => new Float32Array(count * d));
  const builder = new BatchBuilder(o.batch, T, o.objective, sosTokenOf(model.config), o.maskProb ?? 0.15);
  const perBatch = kernels.alloc((L + 1) * o.batch * d);
  const indices = new Int32Array(o.batch);
  let nllSum = 0, nllCount = 0;
  for (let start = comm.rank * o.batch; start < count; start += comm.size * o.batch) {
    const B = Math.min(o.batch, count - start);
    for (let b = 0; b < B; b++) indices[b] = start + b;
    for (let m = 0; m < masks; m++) {
      const batch = builder.fill(split, indices.subarray(0, B), maskRngFor((o.seed ?? 0) + 7 * m, start));
      model.forward(batch, false, kernels.view(perBatch, 0, (L + 1) * B * d));
      const r = await model.readResult();
      nllSum += r.genLoss * r.genCount;
      nllCount += r.genCount;
      const features = await kernels.read(kernels.view(perBatch, 0, (L + 1) * B * d));
      for (let l = 0; l <= L; l++) {
        const src = features.subarray(l * B * d, (l + 1) * B * d);
        const dst = layers[l].subarray(start * d, (start + B) * d);
        for (let i = 0; i < B * d; i++) dst[i] += src[i] / masks;
      }
    }
    o.onBatch?.(Math.min(count, start + B + (comm.size - 1 - comm.rank) * o.batch), count);
  }
  // Rows a rank did not compute are zeros there, so the sum is exact.
  for (const layer of layers) comm.allReduce(layer);
  const nll = new Float64Array([nllSum, nllCount]);
  comm.allReduce(nll);
  return { layers, natsPerPixel: nll[0]! / Math.max(nll[1]!, 1) };
}

/**
 * Features of `count` images given as palette ids (count × n², raster order): the chosen layers'
 * f^l side by side, [count, layers.length · d], through the same passes as extractFeatures.
 */
export async function tokenFeatures<T extends DeviceArray>(model: ImageGPT<T>, tokens: TokenArray, count: number, layers: readonly number[],
                                                          o: Omit<FeatureOptions, 'maxImages'>): Promise<Float32Array> {
  const { nEmbd: d, nLayer: L, nPositions: T } = model.config;
  for (const l of layers) if (!(Number.isInteger(l) && l >= 0 && l <= L)) throw new Error(`layer ${l} is not one of the model's 0..${L}`);
  if (tokens.length !== count * T) throw new Error(`${tokens.length} ids are not ${count} images of ${T} pixels`);
  const split: TokenSplit = { count, tokens, labels: new Int32Array(count).fill(-1) };
  const all = (await extractFeatures(model, split, o)).layers;
  const out = new Float32Array(count * layers.length * d);
  for (let i = 0; i < count; i++) {
    layers.forEach((l, j) => out.set(all[l].subarray(i * d, (i + 1) * d), (i * layers.length + j) * d));
  }
  return out;
}
