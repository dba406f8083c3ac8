import type { DeviceArray, Kernels } from '../kernels/kernels.js';

/**
 * Adam with the paper's β1 0.9, β2 0.95, no weight decay; moments live in two flat arrays on the
 * kernels' backend, beside the parameters.
 */
export class Adam<T extends DeviceArray = Float32Array> {
  readonly m: T;
  readonly v: T;
  /** Steps taken so far (bias correction uses step + 1 on the next update). */
  step = 0;

  constructor(readonly kernels: Kernels<T>, readonly size: number, readonly beta1 = 0.9, readonly beta2 = 0.95,
              readonly eps = 1e-8) {
    this.m = kernels.alloc(size);
    this.v = kernels.alloc(size);
  }

  /**
   * One step with learning rate `lr`; parameters from `tail.start` on (the class head, which the
   * flat layout keeps last) use `tail.lr` instead. Skipped on the backend when `gradSquares[0]` is
   * NaN or inf.
   */
  update(params: T, grads: T, gradSquares: T, lr: number, tail?: { start: number; lr: number }): void {
    this.step++;
    const k = this.kernels;
    const end = tail ? tail.start : this.size;
    const range = (from: number, to: number, rate: number): void => {
      if (to <= from) return;
      const n = to - from;
      k.adamUpdate(k.view(params, from, n), k.view(grads, from, n), k.view(this.m, from, n), k.view(this.v, from, n),
                   n, rate, this.beta1, this.beta2, this.eps, this.step, gradSquares);
    };
    range(0, end, lr);
    if (tail) range(tail.start, this.size, tail.lr);
  }
}
