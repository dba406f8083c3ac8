import type { Kernels } from '../kernels/kernels.js';

/** Adam with the paper's β1 0.9, β2 0.95, no weight decay; moments live in two flat buffers. */
export class Adam {
  readonly m: Float32Array;
  readonly v: Float32Array;
  /** Steps taken so far (bias correction uses step + 1 on the next update). */
  step = 0;

  constructor(readonly size: number, readonly beta1 = 0.9, readonly beta2 = 0.95, readonly eps = 1e-8) {
    this.m = new Float32Array(size);
    this.v = new Float32Array(size);
  }

  /**
   * One step with learning rate `lr`; parameters from `tail.start` on (the class head, which the
   * flat layout keeps last) use `tail.lr` instead.
   */
  update(kernels: Kernels, params: Float32Array, grads: Float32Array, lr: number, tail?: { start: number; lr: number }): void {
    this.step++;
    const end = tail ? tail.start : this.size;
    const range = (from: number, to: number, rate: number): void => {
      if (to <= from) return;
      kernels.adamUpdate(params.subarray(from, to), grads.subarray(from, to), this.m.subarray(from, to), this.v.subarray(from, to),
                   to - from, rate, this.beta1, this.beta2, this.eps, this.step);
    };
    range(0, end, lr);
    if (tail) range(tail.start, this.size, tail.lr);
  }
}

/** The global L2 norm of a gradient buffer (float64 accumulation). */
export function gradientNorm(g: Float32Array): number {
  let s = 0;
  for (let i = 0; i < g.length; i++) s += g[i] * g[i];
  return Math.sqrt(s);
}
