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

  update(k: Kernels, params: Float32Array, grads: Float32Array, lr: number): void {
    this.step++;
    k.adamUpdate(params, grads, this.m, this.v, this.size, lr, this.beta1, this.beta2, this.eps, this.step);
  }
}

/** The global L2 norm of a gradient buffer (float64 accumulation). */
export function gradientNorm(g: Float32Array): number {
  let s = 0;
  for (let i = 0; i < g.length; i++) s += g[i]! * g[i]!;
  return Math.sqrt(s);
}
