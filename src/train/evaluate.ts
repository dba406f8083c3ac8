import type { TokenSplit } from '../data/tokens.js';
import type { DeviceArray } from '../kernels/kernels.js';
import type { ImageGPT } from '../model/model.js';
import { sosTokenOf } from '../model/config.js';
import { BatchBuilder, maskRngFor, type Objective } from './objectives.js';
import type { Communicator } from '../parallel/communicator.js';
import { world } from '../parallel/world.js';

export interface NllReport {
  /** Mean negative log-likelihood per scored pixel, in nats. */
  natsPerPixel: number;
  /** The same in bits per dimension (per channel value). */
  bitsPerDim: number;
  images: number;
}

/**
 * Mean NLL of a split (at most `maxImages` images) in inference mode. BERT uses fixed masks (a
 * seed), so the number is comparable across checkpoints. Under MPI (`comm`, the world by default)
 * the ranks take turns batch by batch and sum: the batches and masks, and so the number, are those
 * of one process, up to summation order.
 */
export async function evaluateNll<T extends DeviceArray>(model: ImageGPT<T>, split: TokenSplit, objective: Objective, opts: {
  batch: number; maxImages?: number; channels?: number; maskProb?: number; seed?: number;
  onBatch?: (done: number, total: number) => void; comm?: Communicator;
}): Promise<NllReport> {
  const comm = opts.comm ?? world();
  const T = model.config.nPositions;
  const total = Math.min(split.count, opts.maxImages ?? split.count);
  if (total === 0) throw new Error('cannot evaluate NLL on an empty split');
  const builder = new BatchBuilder(opts.batch, T, objective, sosTokenOf(model.config), opts.maskProb);
  const indices = new Int32Array(opts.batch);
  let sum = 0, count = 0;
  for (let start = comm.rank * opts.batch; start < total; start += comm.size * opts.batch) {
    const n = Math.min(opts.batch, total - start);
    for (let b = 0; b < n; b++) indices[b] = start + b;
    const batch = builder.fill(split, indices.subarray(0, n), maskRngFor(opts.seed ?? 12345, start));
    model.forward(batch, false);
    const r = await model.readResult();
    sum += r.genLoss * r.genCount;
    count += r.genCount;
    opts.onBatch?.(Math.min(total, start + n + (comm.size - 1 - comm.rank) * opts.batch), total);
  }
  const sums = new Float64Array([sum, count]);
  comm.allReduce(sums);
  [sum, count] = [sums[0]!, sums[1]!];
  const natsPerPixel = sum / Math.max(count, 1);
  return { natsPerPixel, bitsPerDim: natsPerPixel / Math.LN2 / (opts.channels ?? 1), images: total };
}
