/**
 * Data parallelism for training: every rank builds the same global batch (data order, BERT masks
 * and augmentation are functions of (seed, step), so the global batch does not depend on the
 * number of ranks), takes its contiguous share of the images, and normalizes its losses by the
 * global batch's counts; summing gradients and losses over the ranks then gives exactly the
 * global batch's, and every rank takes the same Adam step.
 */
import { createHash } from 'node:crypto';
import type { TokenDataset } from '../data/tokens.js';
import type { Batch } from '../model/model.js';
import type { Communicator } from '../parallel/communicator.js';
import { codeVersion } from '../parallel/code-version.js';
import { requireSameOnEveryRank } from '../parallel/communicator.js';

/** Refuses a global batch the ranks cannot share evenly. */
export function checkBatchDivides(batch: number, comm: Communicator): void {
  if (batch % comm.size !== 0) {
    throw new Error(`--batch ${batch} (the global batch) must divide by the ${comm.size} MPI ranks; ` +
      `try --batch ${Math.max(comm.size, Math.round(batch / comm.size) * comm.size)}`);
  }
}

/** Rank `comm.rank`'s share of a global batch (the batch itself in a world of one). */
export function shareOfBatch(batch: Batch, comm: Communicator): Batch {
  if (comm.size === 1) return batch;
  const { B, T } = batch;
  const per = B / comm.size;
  const from = comm.rank * per;
  let scored = 0;
  if (batch.targets) for (let i = 0; i < B * T; i++) if (batch.targets[i]! >= 0) scored++;
  return {
    ...batch,
    B: per,
    inputs: batch.inputs.subarray(from * T, (from + per) * T),
    targets: batch.targets?.subarray(from * T, (from + per) * T),
    labels: batch.labels?.subarray(from, from + per),
    globalCounts: { scored, images: B },
  };
}

/** A dataset's identity for the start-up check: its meta, sizes, palette and a sample of its tokens. */
export function datasetDigest(data: TokenDataset): string {
  const hash = createHash('sha256').update(JSON.stringify(data.meta)).update(JSON.stringify(data.palette));
  const sizes = [data.train, data.val, data.test].map((s) => s.count);
  hash.update(sizes.join(','));
  // The first and last megabyte of the training tokens: cheap, and catches same-shaped other data.
  const t = data.train.tokens;
  const bytes = new Uint8Array(t.buffer, t.byteOffset, t.byteLength);
  hash.update(bytes.subarray(0, 1 << 20)).update(bytes.subarray(Math.max(0, bytes.length - (1 << 20))));
  return `${sizes.join('/')} train/val/test images of ${data.meta.side}², ${data.meta.channels} channel(s), ` +
    `${data.palette.k} colors, digest ${hash.digest('hex').slice(0, 12)}`;
}

/**
 * Stops every rank, naming the difference, unless all see the same code, model, options, data and
 * starting step.
 */
export function requireRanksAgree(comm: Communicator, facts: { model: object; options: object; data: TokenDataset; step: number }): void {
  if (comm.size === 1) return;
  // One fact per field, so that a mismatch names the field ("option seed"), not a whole object.
  const fields = (what: string, o: object): Record<string, string> =>
    Object.fromEntries(Object.entries(o).map(([k, v]) => [`${what} ${k}`, JSON.stringify(v)]));
  requireSameOnEveryRank(comm, {
    'code version': codeVersion(),
    ...fields('model config', facts.model),
    ...fields('option', facts.options),
    'dataset': datasetDigest(facts.data),
    'starting step': String(facts.step),
  });
}
