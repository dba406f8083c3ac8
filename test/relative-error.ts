import assert from 'node:assert/strict';

/** max|got - ref| / max|ref|, NaN-aware (a NaN anywhere in got makes the error infinite). */
export function relativeError(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  assert.equal(got.length, ref.length, 'length mismatch');
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(got[i] - ref[i]);
    if (Number.isNaN(d)) return Infinity;
    if (d > maxDiff) maxDiff = d;
    if (Math.abs(ref[i]) > maxRef) maxRef = Math.abs(ref[i]);
  }
  return maxDiff / Math.max(maxRef, 1e-30);
}
