/**
 * Exact nearest-center search in color space (squared distance, ties → lowest center index, the
 * same answer as a brute-force scan). Two structures:
 *
 * - `ColorGrid`: the byte cube cut into 2^(3·bits) cells; each cell lists only the centers that can
 *   be nearest to some color inside it (min distance to the cell ≤ the smallest max distance of
 *   any center). Built once (cells × k work), then a lookup scans a handful of candidates.
 * - `AxisSearch`: centers sorted along one axis; a query walks outward from its position and
 *   stops when the gap along the axis alone exceeds the best distance. Cheap to rebuild, so it
 *   suits centers that move (k-means steps).
 */

/** Nearest of k 3-channel centers by brute force. */
export function bruteForceNearest3(x0: number, x1: number, x2: number, centers: ArrayLike<number>, k: number): number {
  let best = Infinity;
  let index = 0;
  for (let j = 0; j < k; j++) {
    const a = x0 - centers[3 * j], b = x1 - centers[3 * j + 1], c = x2 - centers[3 * j + 2];
    const d = a * a + b * b + c * c;
    if (d < best) { best = d; index = j; }
  }
  return index;
}

// Slack on the pruning test so float rounding can never drop the true nearest (or a tie).
const SLACK = 1e-9;

/** Candidate lists per cell of the RGB byte cube, for a fixed set of centers in [-1, 1]. */
export class ColorGrid {
  private readonly offsets: Int32Array;
  private readonly candidates: Uint16Array;
  private readonly centers: Float64Array;
  private readonly bits: number;
  private readonly shift: number;

  /** `bits` per axis: 5 (32³ cells) prunes best, 4 (16³) builds 8× faster. */
  constructor(centers: ArrayLike<number>, k: number, toUnit: (byte: number) => number, bits = 5) {
    const GRID_BITS = bits;
    const CELLS_PER_AXIS = 1 << bits;
    const CELL_WIDTH = 256 >> bits;
    this.bits = bits;
    this.shift = 8 - bits;
    this.centers = Float64Array.from({ length: 3 * k }, (_, i) => centers[i]);
    const cells = CELLS_PER_AXIS ** 3;
    const lo = new Float64Array(CELLS_PER_AXIS);
    const hi = new Float64Array(CELLS_PER_AXIS);
    for (let a = 0; a < CELLS_PER_AXIS; a++) { lo[a] = toUnit(a * CELL_WIDTH); hi[a] = toUnit(a * CELL_WIDTH + CELL_WIDTH - 1); }
    // Per axis and center: squared min and max distance from the center to each cell's interval.
    const minD = new Float64Array(3 * k * CELLS_PER_AXIS);
    const maxD = new Float64Array(3 * k * CELLS_PER_AXIS);
    for (let t = 0; t < 3; t++) for (let j = 0; j < k; j++) {
      const c = this.centers[3 * j + t];
      for (let a = 0; a < CELLS_PER_AXIS; a++) {
        const below = lo[a] - c, above = c - hi[a];
        const gap = below > 0 ? below : above > 0 ? above : 0;
        const far = Math.max(Math.abs(c - lo[a]), Math.abs(c - hi[a]));
        minD[(t * k + j) * CELLS_PER_AXIS + a] = gap * gap;
        maxD[(t * k + j) * CELLS_PER_AXIS + a] = far * far;
      }
    }
    const offsets = new Int32Array(cells + 1);
    let list = new Uint16Array(cells * 8);
    let used = 0;
    const cellMin = new Float64Array(k);
    for (let r = 0; r < CELLS_PER_AXIS; r++) for (let g = 0; g < CELLS_PER_AXIS; g++) for (let b = 0; b < CELLS_PER_AXIS; b++) {
      const cell = (r << (2 * GRID_BITS)) | (g << GRID_BITS) | b;
      let bound = Infinity;
      for (let j = 0; j < k; j++) {
        const m = (0 * k + j) * CELLS_PER_AXIS, n = (1 * k + j) * CELLS_PER_AXIS, o = (2 * k + j) * CELLS_PER_AXIS;
        cellMin[j] = minD[m + r] + minD[n + g] + minD[o + b];
        const far = maxD[m + r] + maxD[n + g] + maxD[o + b];
        if (far < bound) bound = far;
      }
      const limit = bound * (1 + SLACK) + SLACK;
      offsets[cell] = used;
      for (let j = 0; j < k; j++) {
        if (cellMin[j] > limit) continue;
        if (used === list.length) { const bigger = new Uint16Array(list.length * 2); bigger.set(list); list = bigger; }
        list[used++] = j;
      }
    }
    offsets[cells] = used;
    this.offsets = offsets;
    this.candidates = list.slice(0, used);
  }

  /** Nearest center to the byte color (r, g, b) whose unit coordinates are (x0, x1, x2). */
  nearest(r: number, g: number, b: number, x0: number, x1: number, x2: number): number {
    const shift = this.shift, bits = this.bits;
    const cell = ((r >> shift) << (2 * bits)) | ((g >> shift) << bits) | (b >> shift);
    const end = this.offsets[cell + 1];
    const cand = this.candidates, centers = this.centers;
    let best = Infinity;
    let index = 0;
    // Candidates are in increasing center order, so strict < keeps the lowest index on ties.
    for (let s = this.offsets[cell]; s < end; s++) {
      const j = cand[s];
      const a = x0 - centers[3 * j], e = x1 - centers[3 * j + 1], c = x2 - centers[3 * j + 2];
      const d = a * a + e * e + c * c;
      if (d < best) { best = d; index = j; }
    }
    return index;
  }

  /** Average candidates per cell (how well the grid prunes). */
  meanCandidates(): number { return this.candidates.length / (this.offsets.length - 1); }
}

/** Centers sorted along their principal axis, for exact searches over moving centers. */
export class AxisSearch {
  private readonly order: Int32Array;
  private readonly proj: Float64Array;
  private readonly sorted: Float64Array;
  private readonly a0: number;
  private readonly a1: number;
  private readonly a2: number;
  /** Squared distance of the last `nearest` answer. */
  lastDistance = 0;

  constructor(centers: ArrayLike<number>, k: number) {
    [this.a0, this.a1, this.a2] = principalAxis(centers, k);
    const proj = Array.from({ length: k }, (_, j) => centers[3 * j] * this.a0 + centers[3 * j + 1] * this.a1 + centers[3 * j + 2] * this.a2);
    this.order = Int32Array.from({ length: k }, (_, j) => j).sort((a, b) => proj[a] - proj[b] || a - b);
    this.proj = Float64Array.from(this.order, (j) => proj[j]);
    this.sorted = new Float64Array(3 * k);
    this.order.forEach((j, s) => { for (let t = 0; t < 3; t++) this.sorted[3 * s + t] = centers[3 * j + t]; });
  }

  nearest(x0: number, x1: number, x2: number): number {
    const p = x0 * this.a0 + x1 * this.a1 + x2 * this.a2;
    const proj = this.proj, sorted = this.sorted, order = this.order;
    const k = order.length;
    let lo = 0, hi = k;
    while (lo < hi) { const mid = (lo + hi) >>> 1; if (proj[mid] < p) lo = mid + 1; else hi = mid; }
    let best = Infinity;
    let bestId = 0;
    let up = lo, down = lo - 1;
    while (up < k || down >= 0) {
      const gapUp = up < k ? proj[up] - p : Infinity;
      const gapDown = down >= 0 ? p - proj[down] : Infinity;
      const gap = gapUp <= gapDown ? gapUp : gapDown;
      if (gap * gap > best * (1 + SLACK) + SLACK) break;
      const s = gapUp <= gapDown ? up++ : down--;
      const a = x0 - sorted[3 * s], b = x1 - sorted[3 * s + 1], c = x2 - sorted[3 * s + 2];
      const d = a * a + b * b + c * c;
      const id = order[s];
      if (d < best || (d === best && id < bestId)) { best = d; bestId = id; }
    }
    this.lastDistance = best;
    return bestId;
  }
}

/** Unit vector along which the centers spread most (power iteration on their covariance). */
function principalAxis(centers: ArrayLike<number>, k: number): [number, number, number] {
  const mean = [0, 0, 0];
  for (let j = 0; j < k; j++) for (let t = 0; t < 3; t++) mean[t] += centers[3 * j + t] / k;
  const cov = new Float64Array(9);
  for (let j = 0; j < k; j++) {
    for (let a = 0; a < 3; a++) for (let b = 0; b < 3; b++) cov[3 * a + b] += (centers[3 * j + a] - mean[a]) * (centers[3 * j + b] - mean[b]);
  }
  let v = [1, 1, 1].map((x) => x / Math.sqrt(3));
  for (let it = 0; it < 30; it++) {
    const w = [0, 1, 2].map((a) => cov[3 * a] * v[0] + cov[3 * a + 1] * v[1] + cov[3 * a + 2] * v[2]);
    const norm = Math.hypot(w[0], w[1], w[2]);
    if (!(norm > 0)) break;
    v = w.map((x) => x / norm);
  }
  return [v[0], v[1], v[2]];
}
