/** Learning rate: linear warmup over `warmup` steps, then cosine to 0 at `total` (or flat). */
export interface Schedule { lr: number; warmup: number; total: number; cosine: boolean }

export function learningRateAt(s: Schedule, step: number): number {
  if (step < s.warmup) return s.lr * (step + 1) / s.warmup;
  if (!s.cosine) return s.lr;
  const progress = Math.min(1, (step - s.warmup) / Math.max(1, s.total - s.warmup));
  return s.lr * 0.5 * (1 + Math.cos(Math.PI * progress));
}
