/**
 * Probe features: for every layer l, f^l = mean over positions of norm(h^l) (the block's own
 * first norm; ln_f for the last), all layers from one forward pass per batch. Beyond the paper,
 * '2x2' pooling keeps where things are: the mean over each quadrant of the image, side by side.
 */
import type { TokenSplit } from '../data/tokens.js';
import type { TokenArray } from '../palette/quantize.js';
import { sosTokenOf } from '../model/config.js';
import type { DeviceArray } from '../kernels/kernels.js';
import type { ImageGPT } from '../model/model.js';
import { BatchBuilder, maskRngFor, type Objective } from '../train/objectives.js';
import { world } from '../parallel/world.js';

/** How a layer's positions become one feature row: 'mean' (the paper's, d wide) or '2x2' (one mean per quadrant, 4d wide). */
export type Pooling = 'mean' | '2x2';
export const POOLINGS: readonly Pooling[] = ['mean', '2x2'];

/** The width of one layer's feature row under `pooling`. */
export function pooledWidth(d: number, pooling: Pooling = 'mean'): number {
  return pooling === '2x2' ? 4 * d : d;
}

/**
 * How pooling splits a sequence of T positions: into `segments` equal runs whose means the model
 * writes (a 2×2 grid: each image row's halves), and the region (quadrant) each run belongs to.
 */
function poolingSegments(pooling: Pooling, T: number): { segments: number; regionOf: Int32Array; regions: number } {
  if (pooling === 'mean') return { segments: 1, regionOf: new Int32Array(1), regions: 1 };
  const side = Math.round(Math.sqrt(T));
  if (side * side !== T || side % 2 !== 0) throw new Error(`2x2 pooling needs square images of even side; the model has ${T} positions`);
  const regionOf = new Int32Array(2 * side);
  for (let row = 0; row < side; row++) {
    for (let half = 0; half < 2; half++) regionOf[2 * row + half] = (row < side / 2 ? 0 : 2) + half;
  }
  return { segments: 2 * side, regionOf, regions: pooledWidth(1, pooling) };
}

export interface FeatureOptions {
  batch: number;
  objective: Objective;
  /** Default 'mean'. */
  pooling?: Pooling;
  /** BERT: mask probability, and how many independent masks are averaged. */
  maskProb?: number;
  masks?: number;
  seed?: number;
  maxImages?: number;
  onBatch?: (done: number, total: number) => void;
}

export interface ExtractedFeatures {
  /** L+1 matrices [count, width] (width: pooledWidth), layer 0 = the embeddings' norm, layer L = ln_f. */
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
  const { segments: S, regionOf, regions } = poolingSegments(o.pooling ?? 'mean', T);
  const width = regions * d;
  const layers = Array.from({ length: L + 1 }, () => new Float32Array(count * width));
  const builder = new BatchBuilder(o.batch, T, o.objective, sosTokenOf(model.config), o.maskProb ?? 0.15);
  const perBatch = kernels.alloc((L + 1) * o.batch * S * d);
  const indices = new Int32Array(o.batch);
  // A region's mean is the mean of its segments' means (each region has S / regions of them).
  const weight = regions / S / masks;
  let nllSum = 0, nllCount = 0;
  for (let start = comm.rank * o.batch; start < count; start += comm.size * o.batch) {
    const B = Math.min(o.batch, count - start);
    for (let b = 0; b < B; b++) indices[b] = start + b;
    for (let m = 0; m < masks; m++) {
      const batch = builder.fill(split, indices.subarray(0, B), maskRngFor((o.seed ?? 0) + 7 * m, start));
      const out = kernels.view(perBatch, 0, (L + 1) * B * S * d);
      model.forward(batch, false, out, S);
      const r = await model.readResult();
      nllSum += r.genLoss * r.genCount;
      nllCount += r.genCount;
      const features = await kernels.read(out);
      for (let l = 0; l <= L; l++) {
        for (let b = 0; b < B; b++) {
          for (let s = 0; s < S; s++) {
            const src = features.subarray(((l * B + b) * S + s) * d, ((l * B + b) * S + s + 1) * d);
            const dst = layers[l].subarray((start + b) * width + regionOf[s] * d, (start + b) * width + (regionOf[s] + 1) * d);
            for (let i = 0; i < d; i++) dst[i] += src[i] * weight;
          }
        }
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
 * f^l side by side, [count, layers.length · width], through the same passes as extractFeatures.
 */
export async function tokenFeatures<T extends DeviceArray>(model: ImageGPT<T>, tokens: TokenArray, count: number, layers: readonly number[],
                                                          o: Omit<FeatureOptions, 'maxImages'>): Promise<Float32Array> {
  const { nEmbd: d, nLayer: L, nPositions: T } = model.config;
  for (const l of layers) if (!(Number.isInteger(l) && l >= 0 && l <= L)) throw new Error(`layer ${l} is not one of the model's 0..${L}`);
  if (tokens.length !== count * T) throw new Error(`${tokens.length} ids are not ${count} images of ${T} pixels`);
  const split: TokenSplit = { count, tokens, labels: new Int32Array(count).fill(-1) };
  const all = (await extractFeatures(model, split, o)).layers;
  const width = pooledWidth(d, o.pooling);
  const out = new Float32Array(count * layers.length * width);
  for (let i = 0; i < count; i++) {
    layers.forEach((l, j) => out.set(all[l].subarray(i * width, (i + 1) * width), (i * layers.length + j) * width));
  }
  return out;
}
