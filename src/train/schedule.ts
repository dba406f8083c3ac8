/**
 * Learning rate: linear warmup over `warmup` steps, then cosine to 0 at `total` (or flat). With
 * `hold` (a fraction of `total`), the peak rate holds until that step and the cosine runs over the
 * rest: a schedule that does not start decaying early.
 */
export interface Schedule { lr: number; warmup: number; total: number; cosine: boolean; hold?: number }

export function learningRateAt(s: Schedule, step: number): number {
  if (step < s.warmup) return s.lr * (step + 1) / s.warmup;
  if (!s.cosine) return s.lr;
  const start = Math.max(s.warmup, Math.round((s.hold ?? 0) * s.total));
  if (step < start) return s.lr;
  const progress = Math.min(1, (step - start) / Math.max(1, s.total - start));
  return s.lr * 0.5 * (1 + Math.cos(Math.PI * progress));
}
