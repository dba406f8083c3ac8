/**
 * The two pretraining objectives of the paper, as batch builders over a token split.
 *  AR:   inputs [SOS, x0 … x(n-2)], targets x0 … x(n-1), causal attention.
 *  BERT: each position masked with probability p; masked inputs lose their content embedding
 *        (id -1), targets only at masked positions, full attention.
 */
import type { Batch } from '../model/model.js';
import type { TokenSplit } from '../data/tokens.js';
import { Rng } from '../util/rng.js';

export type Objective = 'ar' | 'bert';

/** Reusable batch buffers for one (B, T); `fill` rewrites them without allocating. */
export class BatchBuilder {
  readonly inputs: Int32Array;
  readonly targets: Int32Array;
  readonly labels: Int32Array;

  constructor(readonly B: number, readonly T: number, readonly objective: Objective,
              readonly sos: number, readonly maskProb = 0.15) {
    this.inputs = new Int32Array(B * T);
    this.targets = new Int32Array(B * T);
    this.labels = new Int32Array(B);
  }

  /**
   * Images `indices` of `split` (at most B of them; a short last batch repeats nothing, it is
   * smaller). `maskRng` draws BERT masks.
   */
  fill(split: TokenSplit, indices: ArrayLike<number>, maskRng: Rng | null, withLabels = false): Batch {
    const { T, sos } = this;
    const B = Math.min(this.B, indices.length);
    for (let b = 0; b < B; b++) {
      const image = indices[b];
      const src = image * T;
      const row = b * T;
      this.labels[b] = split.labels[image];
      if (this.objective === 'ar') {
        this.inputs[row] = sos;
        for (let t = 0; t < T; t++) {
          const x = split.tokens[src + t];
          this.targets[row + t] = x;
          if (t + 1 < T) this.inputs[row + t + 1] = x;
        }
      } else {
        if (!maskRng) throw new Error('the BERT objective needs a mask RNG');
        for (let t = 0; t < T; t++) {
          const x = split.tokens[src + t];
          const masked = maskRng.next() < this.maskProb;
          this.inputs[row + t] = masked ? -1 : x;
          this.targets[row + t] = masked ? x : -1;
        }
      }
    }
    const n = B * T;
    return {
      B, T,
      inputs: this.inputs.subarray(0, n),
      targets: this.targets.subarray(0, n),
      labels: withLabels ? this.labels.subarray(0, B) : undefined,
      causal: this.objective === 'ar',
    };
  }
}

/**
 * The images of training step `step`: epochs are seeded permutations of the training set, so
 * the order is a pure function of (seed, step) and a resumed run sees exactly the same batches.
 */
export class DataOrder {
  private epoch = -1;
  private perm = new Int32Array(0);
  readonly out: Int32Array;

  constructor(readonly count: number, readonly batch: number, readonly seed: number) {
    if (count < 1) throw new Error('the training split is empty');
    this.out = new Int32Array(batch);
  }

  /** Step s covers positions s·B … s·B+B-1 of the concatenated epochs. */
  indices(step: number): Int32Array {
    for (let b = 0; b < this.batch; b++) {
      const pos = step * this.batch + b;
      const epoch = Math.floor(pos / this.count);
      if (epoch !== this.epoch) this.shuffleFor(epoch);
      this.out[b] = this.perm[pos - epoch * this.count];
    }
    return this.out;
  }

  epochOf(step: number): number { return (step * this.batch) / this.count; }

  private shuffleFor(epoch: number): void {
    this.epoch = epoch;
    this.perm = new Rng(this.seed * 1000003 + epoch).shuffle(Int32Array.from({ length: this.count }, (_, i) => i));
  }
}

/** The mask RNG of step `step`: also a pure function of (seed, step), for exact resume. */
export const maskRngFor = (seed: number, step: number): Rng => new Rng((seed * 7919 + step * 104729) >>> 0);
