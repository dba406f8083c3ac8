/**
 * A small, fast, seedable PRNG (xoshiro128**) whose whole state is four uint32 words, so training
 * state can save and restore it exactly.
 */
export class Rng {
  private s = new Uint32Array(4);
  private spare: number | null = null;

  constructor(seed: number) {
    // splitmix32 expands the seed into the state.
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      this.s[i] = fmix32(x);
    }
    if ((this.s[0] | this.s[1] | this.s[2] | this.s[3]) === 0) this.s[0] = 1;
  }

  /**
   * Stream `index` of `seed`: a generator of its own for one item of a set (an image), so that the
   * set draws the same numbers however its items are split up (decode groups, MPI ranks) or
   * ordered. Distinct indices of one seed get distinct seeds (fmix32 is a bijection).
   */
  static stream(seed: number, index: number): Rng {
    return new Rng(fmix32((fmix32((seed ^ STREAM_SALT) >>> 0) + index) >>> 0));
  }

  /** Uniform uint32. */
  nextU32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  next(): number { return this.nextU32() / 4294967296; }

  /** Uniform integer in [0, n). */
  int(n: number): number { return Math.floor(this.next() * n); }

  /** Standard normal (Box-Muller, caching the second value). */
  normal(): number {
    if (this.spare !== null) { const v = this.spare; this.spare = null; return v; }
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  fillNormal(out: Float32Array, std: number): void {
    for (let i = 0; i < out.length; i++) out[i] = this.normal() * std;
  }

  /** In-place Fisher-Yates shuffle. */
  shuffle<T extends { length: number; [i: number]: unknown }>(a: T): T {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = a[i]; a[i] = a[j]; a[j] = t;
    }
    return a;
  }

  /** The full state, for checkpoints. */
  getState(): number[] { return [...this.s, this.spare === null ? NaN : this.spare]; }
  setState(state: number[]): void {
    for (let i = 0; i < 4; i++) this.s[i] = state[i] >>> 0;
    const spare = state[4];
    this.spare = spare === undefined || Number.isNaN(spare) ? null : spare;
  }
}

/** Keeps stream(seed, i) apart from the plain generator of the same seed. */
const STREAM_SALT = 0x5bd1e995;

/** MurmurHash3's 32-bit finalizer: a bijection that spreads every input bit over the output. */
function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

function rotl(x: number, k: number): number { return ((x << k) | (x >>> (32 - k))) >>> 0; }
