import type { TokenSplit } from '../data/tokens.js';
import type { ImageGPT } from '../model/model.js';
import { sosTokenOf } from '../model/config.js';
import { BatchBuilder, maskRngFor, type Objective } from './objectives.js';

export interface NllReport {
  /** Mean negative log-likelihood per scored pixel, in nats. */
  natsPerPixel: number;
  /** The same in bits per dimension (per channel value). */
  bitsPerDim: number;
  images: number;
}

/**
 * Mean NLL of a split (at most `maxImages` images) in inference mode. BERT uses fixed masks (a
 * seed), so the number is comparable across checkpoints.
 */
export function evaluateNll(model: ImageGPT, split: TokenSplit, objective: Objective, opts: {
  batch: number; maxImages?: number; channels?: number; maskProb?: number; seed?: number;
  onBatch?: (done: number, total: number) => void;
}): NllReport {
  const T = model.config.nPositions;
  const total = Math.min(split.count, opts.maxImages ?? split.count);
  if (total === 0) throw new Error('cannot evaluate NLL on an empty split');
  const builder = new BatchBuilder(opts.batch, T, objective, sosTokenOf(model.config), opts.maskProb);
  const indices = new Int32Array(opts.batch);
  let sum = 0, count = 0;
  for (let start = 0; start < total; start += opts.batch) {
    const n = Math.min(opts.batch, total - start);
    for (let b = 0; b < n; b++) indices[b] = start + b;
    const batch = builder.fill(split, indices.subarray(0, n), maskRngFor(opts.seed ?? 12345, start));
    const r = model.forward(batch, false);
    sum += r.genLoss * r.genCount;
    count += r.genCount;
    opts.onBatch?.(start + n, total);
  }
  const natsPerPixel = sum / Math.max(count, 1);
  return { natsPerPixel, bitsPerDim: natsPerPixel / Math.LN2 / (opts.channels ?? 1), images: total };
}
