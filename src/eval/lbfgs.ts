/**
 * L-BFGS: a limited-memory quasi-Newton minimizer (Nocedal & Wright, "Numerical Optimization",
 * algorithms 7.4/7.5) with a strong-Wolfe line search (algorithms 3.5/3.6, cubic interpolation).
 *
 * Parameters may be Float32Array or Float64Array; they are updated in place. The history, search
 * direction and all dot products are kept in float64 so a float32 objective still gets a stable
 * quasi-Newton model.
 */

/** Writes the gradient at x into grad and returns the loss at x. */
export type Objective<T extends Float32Array | Float64Array> = (x: T, grad: T) => number;

export interface LbfgsOptions {
  /** Maximum iterations (line searches). Default 100. */
  maxIter?: number;
  /** History size m (pairs of s, y kept). Default 10. */
  history?: number;
  /** Stop when max |grad_i| <= gradTol. Default 1e-5. */
  gradTol?: number;
  /** Stop when (f_prev - f) / max(|f_prev|, |f|, 1) <= relTol. Default 1e-9. */
  relTol?: number;
  /** Maximum objective evaluations in one line search. Default 25. */
  maxLineSearch?: number;
  /** Called after every iteration; return `false` to stop early. */
  onIteration?: (iteration: number, loss: number, gradNorm: number) => boolean | void;
}

export type LbfgsStop = 'gradient' | 'relative-decrease' | 'max-iterations' | 'line-search' | 'callback';

export interface LbfgsResult {
  /** Loss at the returned x. */
  loss: number;
  iterations: number;
  /** Objective evaluations, including those inside line searches. */
  evaluations: number;
  /** Max-norm of the gradient at the returned x. */
  gradNorm: number;
  /** True when a tolerance (gradient or relative decrease) was reached. */
  converged: boolean;
  stop: LbfgsStop;
}

// Wolfe constants: sufficient decrease and curvature (the usual quasi-Newton choices).
const C1 = 1e-4;
const C2 = 0.9;
/** Hager-Zhang's delta for the approximate-Wolfe decrease test. */
const APPROX_DELTA = 0.1;

/** Minimizes `objective` starting from x (overwritten with the minimizer). */
export function minimizeLbfgs<T extends Float32Array | Float64Array>(
  objective: Objective<T>, x: T, options: LbfgsOptions = {},
): LbfgsResult {
  const maxIter = options.maxIter ?? 100;
  const m = Math.max(1, options.history ?? 10);
  const gradTol = options.gradTol ?? 1e-5;
  const relTol = options.relTol ?? 1e-9;
  const maxLineSearch = options.maxLineSearch ?? 25;
  const n = x.length;
  const make = (): T => new (x.constructor as new (len: number) => T)(n);

  const g = make();
  const xTrial = make();
  const gTrial = make();
  const direction = new Float64Array(n);
  const sHistory = new Float64Array(m * n);
  const yHistory = new Float64Array(m * n);
  const rho = new Float64Array(m);
  const alpha = new Float64Array(m);
  let stored = 0; // pairs currently in the history
  let newest = -1; // slot of the newest pair (ring buffer)

  let evaluations = 1;
  let f = objective(x, g);
  if (!Number.isFinite(f)) throw new Error(`lbfgs: objective is not finite at the starting point (${f})`);
  let gNorm = maxAbs(g);
  let iterations = 0;
  let stop: LbfgsStop = 'max-iterations';
  if (gNorm <= gradTol) stop = 'gradient';

  while (stop === 'max-iterations' && iterations < maxIter) {
    computeDirection();
    let slope = dot(g, direction);
    if (!(slope < 0)) {
      // The quasi-Newton model went bad (rounding): restart from steepest descent.
      stored = 0;
      computeDirection();
      slope = dot(g, direction);
    }
    // The first step has no curvature information: take a step of unit length.
    const firstStep = stored === 0 ? Math.min(1, 1 / Math.sqrt(dot(direction, direction))) : 1;
    const search = lineSearch(f, slope, firstStep);
    if (search === null) {
      if (stored > 0) { stored = 0; continue; } // retry once from steepest descent
      stop = 'line-search';
      break;
    }
    // The new (s, y) pair comes from the values actually stored (x may be float32). Keep it only
    // if it carries positive curvature (keeps the inverse Hessian positive definite); a rejected
    // pair must not overwrite the oldest stored one.
    let sy = 0;
    let yy = 0;
    for (let i = 0; i < n; i++) {
      const s = xTrial[i] - x[i];
      const y = gTrial[i] - g[i];
      sy += s * y;
      yy += y * y;
    }
    if (sy > 1e-10 * yy && yy > 0) {
      const slot = (newest + 1) % m;
      const off = slot * n;
      for (let i = 0; i < n; i++) {
        sHistory[off + i] = xTrial[i] - x[i];
        yHistory[off + i] = gTrial[i] - g[i];
      }
      rho[slot] = 1 / sy;
      newest = slot;
      stored = Math.min(stored + 1, m);
    }
    x.set(xTrial);
    g.set(gTrial);
    const fPrev = f;
    f = search;
    gNorm = maxAbs(g);
    iterations++;
    if (options.onIteration?.(iterations, f, gNorm) === false) stop = 'callback';
    else if (gNorm <= gradTol) stop = 'gradient';
    else if ((fPrev - f) / Math.max(Math.abs(fPrev), Math.abs(f), 1) <= relTol) stop = 'relative-decrease';
  }

  return {
    loss: f, iterations, evaluations, gradNorm: gNorm,
    converged: stop === 'gradient' || stop === 'relative-decrease', stop,
  };

  /** direction = -H·g by the two-loop recursion over the stored pairs. */
  function computeDirection(): void {
    for (let i = 0; i < n; i++) direction[i] = -g[i];
    if (stored === 0) return;
    for (let j = 0; j < stored; j++) {
      const slot = (newest - j + m) % m;
      const a = rho[slot] * dotAt(sHistory, slot * n, direction);
      alpha[slot] = a;
      axpyAt(direction, -a, yHistory, slot * n);
    }
    // Initial Hessian scale gamma = s'y / y'y of the newest pair.
    const off = newest * n;
    let yy = 0;
    for (let i = 0; i < n; i++) yy += yHistory[off + i] * yHistory[off + i];
    const gamma = 1 / (rho[newest] * yy);
    for (let i = 0; i < n; i++) direction[i] *= gamma;
    for (let j = stored - 1; j >= 0; j--) {
      const slot = (newest - j + m) % m;
      const b = rho[slot] * dotAt(yHistory, slot * n, direction);
      axpyAt(direction, alpha[slot] - b, sHistory, slot * n);
    }
  }

  /** Loss and directional derivative at x + t·direction (left in xTrial, gTrial). */
  function evaluateAt(t: number): [number, number] {
    for (let i = 0; i < n; i++) xTrial[i] = x[i] + t * direction[i];
    evaluations++;
    const ft = objective(xTrial, gTrial);
    return [ft, dot(gTrial, direction)];
  }

  /**
   * Finds a step satisfying the strong Wolfe conditions. On success xTrial/gTrial hold the new
   * point and the new loss is returned; null when no acceptable step was found.
   */
  function lineSearch(f0: number, slope0: number, t0: number): number | null {
    let tPrev = 0;
    let fPrev = f0;
    let dPrev = slope0;
    let t = t0;
    let evals = 0;
    // Near the optimum, loss differences drown in rounding. Hager & Zhang's "approximate Wolfe"
    // test then judges sufficient decrease by the derivative: f barely above f0 is fine if the
    // slope at t is at most 0.8·|slope0| (exact for a quadratic).
    const fEps = 1e-10 * Math.abs(f0);
    const decreased = (ft: number, dt: number, t: number) =>
      ft <= f0 + C1 * t * slope0 || (ft <= f0 + fEps && dt <= -(1 - 2 * APPROX_DELTA) * slope0);
    while (evals < maxLineSearch) {
      const [ft, dt] = evaluateAt(t);
      evals++;
      if (!Number.isFinite(ft)) { t = (tPrev + t) / 2; continue; } // overflow: step back
      if (!decreased(ft, dt, t) || (evals > 1 && ft >= fPrev)) {
        return zoom(tPrev, fPrev, dPrev, t, ft, dt, maxLineSearch - evals);
      }
      if (Math.abs(dt) <= -C2 * slope0) return ft;
      if (dt >= 0) return zoom(t, ft, dt, tPrev, fPrev, dPrev, maxLineSearch - evals);
      // Still descending: extrapolate (cubic step, kept within [2t, 10t]).
      const next = cubicMinimizer(tPrev, fPrev, dPrev, t, ft, dt);
      tPrev = t; fPrev = ft; dPrev = dt;
      t = Number.isFinite(next) ? Math.min(Math.max(next, 2 * t), 10 * t) : 2 * t;
    }
    return null;

    function zoom(lo: number, fLo: number, dLo: number, hi: number, fHi: number, dHi: number,
                  budget: number): number | null {
      for (let k = 0; k < budget; k++) {
        const left = Math.min(lo, hi);
        const width = Math.abs(hi - lo);
        if (width <= 1e-12 * Math.max(1, Math.abs(lo))) break;
        // Cubic interpolation, safeguarded to stay inside the middle 80% of the bracket.
        let tz = cubicMinimizer(lo, fLo, dLo, hi, fHi, dHi);
        if (!Number.isFinite(tz) || tz < left + 0.1 * width || tz > left + 0.9 * width) tz = left + 0.5 * width;
        const [fz, dz] = evaluateAt(tz);
        if (!decreased(fz, dz, tz) || fz > fLo) {
          hi = tz; fHi = fz; dHi = dz;
        } else {
          if (Math.abs(dz) <= -C2 * slope0) return fz;
          if (dz * (hi - lo) >= 0) { hi = lo; fHi = fLo; dHi = dLo; }
          lo = tz; fLo = fz; dLo = dz;
        }
      }
      // Out of budget: settle for the best point with sufficient decrease, if any.
      if (lo > 0 && fLo < f0) {
        const [fl] = evaluateAt(lo);
        return fl;
      }
      return null;
    }
  }
}

/** Minimizer of the cubic interpolating (a, fa, da) and (b, fb, db); NaN when it has none. */
function cubicMinimizer(a: number, fa: number, da: number, b: number, fb: number, db: number): number {
  const d1 = da + db - 3 * (fa - fb) / (a - b);
  const disc = d1 * d1 - da * db;
  if (disc < 0) return NaN;
  const d2 = Math.sign(b - a) * Math.sqrt(disc);
  return b - (b - a) * (db + d2 - d1) / (db - da + 2 * d2);
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function dotAt(a: Float64Array, offset: number, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < b.length; i++) s += a[offset + i] * b[i];
  return s;
}

/** y += alpha·x[offset..offset+y.length]. */
function axpyAt(y: Float64Array, alpha: number, x: Float64Array, offset: number): void {
  for (let i = 0; i < y.length; i++) y[i] += alpha * x[offset + i];
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) { const v = Math.abs(a[i]); if (v > m) m = v; }
  return m;
}
