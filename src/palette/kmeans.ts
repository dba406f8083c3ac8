/**
 * k-means over pixel colors for the palette (the paper's 9-bit color palette, k = 512 RGB;
 * k = 16 for gray). Pixel bytes map to [-1, 1] as v / 127.5 - 1, the scale of OpenAI's and HF's
 * cluster files.
 *
 * Steps: sample pixels → collapse equal colors into weighted points (exact; gray has at most 256)
 * → weighted k-means++ init (on at most 32k of them, drawn by weight) → mini-batch updates
 * (Sculley 2010) over the sample, reseeding dead centers → a few exact weighted Lloyd passes.
 * When points × k is small, Lloyd runs to convergence directly (gray palettes always take this
 * path, which makes them fast and exact).
 */
import { Rng } from '../util/rng.js';
import { byteToUnit, type Palette } from './palette.js';
import { AxisSearch, ColorGrid } from './nearest.js';

export interface KMeansOptions {
  k: number;
  seed: number;
  /** Points per mini-batch. Default 4096. */
  batchSize?: number;
  /** Mini-batch steps; default: one pass over the sample, at most 1000. */
  miniBatchSteps?: number;
  /** Exact Lloyd passes after the mini-batches (default 5; when Lloyd runs alone, the cap, default 300). */
  lloydPasses?: number;
  /** Run plain Lloyd when unique points × k is at most this. Default 2^25. */
  lloydBudget?: number;
}

export interface KMeansResult {
  /** k × dims centers. */
  centers: Float32Array;
  /** Weighted mean squared distance of the points to their nearest center. */
  meanSquaredError: number;
  /** Centers reseeded because nothing was assigned to them. */
  reseeded: number;
}

/** Weighted points: n × dims coordinates and n weights. */
export interface WeightedPoints {
  dims: number;
  points: Float32Array;
  weights: Float64Array;
  /** When the points are byte colors (n × 3): the bytes, which let assignment use a color grid. */
  colorBytes?: Uint8Array;
}

/** Pixel bytes of any number of images, `channels` (gray or RGB) per pixel; an ImageSet is one. */
export interface PixelBytes {
  pixels: Uint8Array;
  channels: 1 | 3;
}

/**
 * `samples` random pixels (all pixels if there are fewer), collapsed to distinct colors with their
 * counts as weights.
 */
export function samplePixelColors(set: PixelBytes, samples: number, rng: Rng): WeightedPoints {
  const c = set.channels;
  const total = Math.floor(set.pixels.length / c);
  const n = Math.min(samples, total);
  const px = set.pixels;
  if (c === 1) {
    // Gray: a 256-bin histogram is the collapsed sample.
    const hist = new Float64Array(256);
    for (let i = 0; i < n; i++) hist[px[n === total ? i : rng.int(total)]]++;
    const levels = [...hist.keys()].filter((v) => hist[v] > 0);
    return { dims: 1, points: Float32Array.from(levels, byteToUnit), weights: Float64Array.from(levels, (v) => hist[v]) };
  }
  const codes = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const p = n === total ? i : rng.int(total);
    codes[i] = (px[3 * p] << 16) | (px[3 * p + 1] << 8) | px[3 * p + 2];
  }
  codes.sort();
  let unique = 0;
  for (let i = 0; i < n; i++) if (i === 0 || codes[i] !== codes[i - 1]) unique++;
  const points = new Float32Array(unique * 3);
  const colorBytes = new Uint8Array(unique * 3);
  const weights = new Float64Array(unique);
  let u = -1;
  for (let i = 0; i < n; i++) {
    if (i === 0 || codes[i] !== codes[i - 1]) {
      u++;
      const code = codes[i];
      colorBytes[3 * u] = code >>> 16;
      colorBytes[3 * u + 1] = (code >>> 8) & 255;
      colorBytes[3 * u + 2] = code & 255;
      for (let t = 0; t < 3; t++) points[3 * u + t] = byteToUnit(colorBytes[3 * u + t]);
    }
    weights[u]++;
  }
  return { dims: 3, points, weights, colorBytes };
}

/** Finds the nearest center (squared distance, ties → lowest index) to point i; `distance` holds its squared distance. */
interface CenterSearch { nearest(points: Float32Array, i: number): number; distance: number }

/**
 * A search over the current centers, all exact: a color grid when the points are byte colors
 * (pass `colorBytes` only for whole passes: the grid costs a little to build), else centers
 * sorted along an axis, else brute force.
 */
function centerSearch(centers: Float32Array, k: number, dims: number, colorBytes?: Uint8Array): CenterSearch {
  if (dims === 3 && k > 16 && colorBytes) {
    const grid = new ColorGrid(centers, k, byteToUnit, 4);
    return {
      distance: 0,
      nearest(points: Float32Array, i: number): number {
        const x0 = points[3 * i], x1 = points[3 * i + 1], x2 = points[3 * i + 2];
        const id = grid.nearest(colorBytes[3 * i], colorBytes[3 * i + 1], colorBytes[3 * i + 2], x0, x1, x2);
        const a = x0 - centers[3 * id], b = x1 - centers[3 * id + 1], c = x2 - centers[3 * id + 2];
        this.distance = a * a + b * b + c * c;
        return id;
      },
    };
  }
  if (dims === 3 && k > 16) {
    const axis = new AxisSearch(centers, k);
    return {
      distance: 0,
      nearest(points: Float32Array, i: number): number {
        const id = axis.nearest(points[3 * i], points[3 * i + 1], points[3 * i + 2]);
        this.distance = axis.lastDistance;
        return id;
      },
    };
  }
  return {
    distance: 0,
    nearest(points: Float32Array, i: number): number {
      let best = Infinity;
      let index = 0;
      const o = i * dims;
      for (let j = 0; j < k; j++) {
        let d = 0;
        for (let t = 0; t < dims; t++) { const e = points[o + t] - centers[j * dims + t]; d += e * e; }
        if (d < best) { best = d; index = j; }
      }
      this.distance = best;
      return index;
    },
  };
}

/** Samples an index with probability proportional to `mass` (total `sum`). */
function sampleByMass(mass: Float64Array, sum: number, rng: Rng): number {
  let r = rng.next() * sum;
  for (let i = 0; i < mass.length; i++) {
    r -= mass[i];
    if (r < 0) return i;
  }
  for (let i = mass.length - 1; i >= 0; i--) if (mass[i] > 0) return i;
  return mass.length - 1;
}

/** Weighted k-means++: each next center drawn with probability ∝ weight · D². */
export function kmeansPlusPlus(data: WeightedPoints, k: number, rng: Rng): Float32Array {
  const { dims, points, weights } = data;
  const n = weights.length;
  const centers = new Float32Array(k * dims);
  const d2 = new Float64Array(n).fill(Infinity);
  const mass = new Float64Array(n);
  let totalWeight = 0;
  for (let i = 0; i < n; i++) totalWeight += weights[i];
  let chosen = sampleByMass(weights, totalWeight, rng);
  for (let j = 0; j < k; j++) {
    centers.set(points.subarray(chosen * dims, chosen * dims + dims), j * dims);
    let sum = 0;
    for (let i = 0; i < n; i++) {
      let dd = 0;
      for (let t = 0; t < dims; t++) { const d = points[i * dims + t] - centers[j * dims + t]; dd += d * d; }
      if (dd < d2[i]) d2[i] = dd;
      mass[i] = weights[i] * d2[i];
      sum += mass[i];
    }
    if (j + 1 < k) chosen = sum > 0 ? sampleByMass(mass, sum, rng) : rng.int(n);
  }
  return centers;
}

/** One exact weighted Lloyd pass: assign, recompute means, reseed empty centers. Returns MSE before the update and how many were reseeded. */
function lloydPass(data: WeightedPoints, centers: Float32Array, k: number, assign: Int32Array): { mse: number; changed: number; reseeded: number } {
  const { dims, points, weights } = data;
  const n = weights.length;
  const sums = new Float64Array(k * dims);
  const mass = new Float64Array(k);
  const dist = new Float64Array(n);
  let sse = 0;
  let total = 0;
  let changed = 0;
  const search = centerSearch(centers, k, dims, data.colorBytes);
  for (let i = 0; i < n; i++) {
    const index = search.nearest(points, i);
    const d = search.distance;
    if (assign[i] !== index) { changed++; assign[i] = index; }
    const w = weights[i];
    dist[i] = d;
    sse += w * d;
    total += w;
    mass[index] += w;
    for (let t = 0; t < dims; t++) sums[index * dims + t] += w * points[i * dims + t];
  }
  // Empty centers move to the points that cost most (largest weight · distance), one each.
  let reseeded = 0;
  for (let j = 0; j < k; j++) {
    if (mass[j] > 0) {
      for (let t = 0; t < dims; t++) centers[j * dims + t] = sums[j * dims + t] / mass[j];
      continue;
    }
    let worst = -1;
    let worstCost = 0;
    for (let i = 0; i < n; i++) {
      const cost = weights[i] * dist[i];
      if (cost > worstCost) { worstCost = cost; worst = i; }
    }
    if (worst < 0) continue; // every point already sits on a center
    centers.set(points.subarray(worst * dims, worst * dims + dims), j * dims);
    dist[worst] = 0;
    reseeded++;
    changed++;
  }
  return { mse: total > 0 ? sse / total : 0, changed, reseeded };
}

/** Mini-batch k-means steps (per-center learning rate 1 / count), reseeding dead centers. */
function miniBatch(data: WeightedPoints, centers: Float32Array, k: number, steps: number, batchSize: number, rng: Rng): number {
  const { dims, points, weights } = data;
  const n = weights.length;
  // Drawing points ∝ weight = drawing raw pixels uniformly: cumulative weights + binary search.
  const cumulative = new Float64Array(n);
  let acc = 0;
  for (let i = 0; i < n; i++) { acc += weights[i]; cumulative[i] = acc; }
  const draw = (): number => {
    const r = rng.next() * acc;
    let lo = 0, hi = n - 1;
    while (lo < hi) { const mid = (lo + hi) >>> 1; if (cumulative[mid] > r) hi = mid; else lo = mid + 1; }
    return lo;
  };
  const counts = new Float64Array(k);
  const recent = new Float64Array(k);
  const batch = new Int32Array(batchSize);
  const batchAssign = new Int32Array(batchSize);
  const batchDist = new Float64Array(batchSize);
  const reassignEvery = 10;
  let reseeded = 0;
  for (let step = 0; step < steps; step++) {
    const search = centerSearch(centers, k, dims);
    for (let b = 0; b < batchSize; b++) {
      batch[b] = draw();
      batchAssign[b] = search.nearest(points, batch[b]);
      batchDist[b] = search.distance;
    }
    for (let b = 0; b < batchSize; b++) {
      const j = batchAssign[b];
      counts[j]++;
      recent[j]++;
      const eta = 1 / counts[j];
      const o = batch[b] * dims;
      for (let t = 0; t < dims; t++) centers[j * dims + t] += eta * (points[o + t] - centers[j * dims + t]);
    }
    if ((step + 1) % reassignEvery === 0 && step + 1 < steps) {
      // Centers that won nothing lately jump to batch points far from their centers (∝ D²).
      let minLive = Infinity;
      for (let j = 0; j < k; j++) if (recent[j] > 0 && counts[j] < minLive) minLive = counts[j];
      let distSum = 0;
      for (let b = 0; b < batchSize; b++) distSum += batchDist[b];
      for (let j = 0; j < k; j++) {
        if (recent[j] > 0 || distSum <= 0) continue;
        const b = sampleByMass(batchDist, distSum, rng);
        centers.set(points.subarray(batch[b] * dims, batch[b] * dims + dims), j * dims);
        counts[j] = Number.isFinite(minLive) ? minLive : 1;
        distSum -= batchDist[b];
        batchDist[b] = 0;
        reseeded++;
      }
      recent.fill(0);
    }
  }
  return reseeded;
}

/** k-means++ costs k passes over its points: above this many distinct points it seeds from a subsample. */
const INIT_POINTS = 32768;

/** Up to `m` points drawn ∝ weight (with replacement, repeats merged into weights); all points if there are few. */
function initSubsample(data: WeightedPoints, m: number, rng: Rng): WeightedPoints {
  const n = data.weights.length;
  if (n <= m) return data;
  const cumulative = new Float64Array(n);
  let acc = 0;
  for (let i = 0; i < n; i++) { acc += data.weights[i]; cumulative[i] = acc; }
  const hits = new Map<number, number>();
  for (let s = 0; s < m; s++) {
    const r = rng.next() * acc;
    let lo = 0, hi = n - 1;
    while (lo < hi) { const mid = (lo + hi) >>> 1; if (cumulative[mid] > r) hi = mid; else lo = mid + 1; }
    hits.set(lo, (hits.get(lo) ?? 0) + 1);
  }
  const chosen = [...hits.keys()].sort((a, b) => a - b);
  const points = new Float32Array(chosen.length * data.dims);
  chosen.forEach((i, j) => points.set(data.points.subarray(i * data.dims, (i + 1) * data.dims), j * data.dims));
  return { dims: data.dims, points, weights: Float64Array.from(chosen, (i) => hits.get(i)!) };
}

/** Weighted k-means on the given points. */
export function kmeans(data: WeightedPoints, opts: KMeansOptions): KMeansResult {
  const { k } = opts;
  const { dims } = data;
  const n = data.weights.length;
  if (!Number.isInteger(k) || k < 1) throw new Error(`k must be a positive integer, got ${k}`);
  if (n === 0) throw new Error('k-means: no points');
  const rng = new Rng(opts.seed);
  if (n <= k) {
    // Fewer distinct colors than centers: each color is a center; the rest repeat the last one.
    const centers = new Float32Array(k * dims);
    for (let j = 0; j < k; j++) centers.set(data.points.subarray(Math.min(j, n - 1) * dims, Math.min(j, n - 1) * dims + dims), j * dims);
    return { centers, meanSquaredError: 0, reseeded: 0 };
  }
  const centers = kmeansPlusPlus(initSubsample(data, INIT_POINTS, rng), k, rng);
  const assign = new Int32Array(n).fill(-1);
  let reseeded = 0;
  const budget = opts.lloydBudget ?? 2 ** 25;
  let passes: number;
  if (n * k <= budget) {
    passes = opts.lloydPasses ?? 300;
  } else {
    const batchSize = opts.batchSize ?? 4096;
    let sampleSize = 0;
    for (const w of data.weights) sampleSize += w;
    const steps = opts.miniBatchSteps ?? Math.min(1000, Math.ceil(sampleSize / batchSize));
    reseeded += miniBatch(data, centers, k, steps, batchSize, rng);
    passes = opts.lloydPasses ?? 5;
  }
  for (let pass = 0; pass < passes; pass++) {
    const r = lloydPass(data, centers, k, assign);
    reseeded += r.reseeded;
    if (r.changed === 0) break;
  }
  return { centers, meanSquaredError: meanSquaredError(data, centers, k), reseeded };
}

/** Weighted mean squared distance of the points to their nearest center. */
export function meanSquaredError(data: WeightedPoints, centers: Float32Array, k: number): number {
  let sse = 0;
  let total = 0;
  const search = centerSearch(centers, k, data.dims, data.colorBytes);
  for (let i = 0; i < data.weights.length; i++) {
    search.nearest(data.points, i);
    sse += data.weights[i] * search.distance;
    total += data.weights[i];
  }
  return total > 0 ? sse / total : 0;
}

export interface FitPaletteOptions {
  /** Default 512 for RGB, 16 for gray. */
  k?: number;
  /** Pixels sampled from the images. Default 1,000,000. */
  samplePixels?: number;
  seed?: number;
  batchSize?: number;
  miniBatchSteps?: number;
  lloydPasses?: number;
}

export const DEFAULT_K = { 1: 16, 3: 512 } as const;
export const DEFAULT_SAMPLE_PIXELS = 1_000_000;

/** Fits a palette to the colors of the pixels (an ImageSet's, for one). */
export function fitPalette(set: PixelBytes, opts: FitPaletteOptions = {}): Palette & { meanSquaredError: number } {
  const k = opts.k ?? DEFAULT_K[set.channels];
  const seed = opts.seed ?? 0;
  const data = samplePixelColors(set, opts.samplePixels ?? DEFAULT_SAMPLE_PIXELS, new Rng(seed));
  const result = kmeans(data, { k, seed: seed + 1, batchSize: opts.batchSize, miniBatchSteps: opts.miniBatchSteps, lloydPasses: opts.lloydPasses });
  return { k, channels: set.channels, centers: sortCenters(result.centers, set.channels), meanSquaredError: result.meanSquaredError };
}

/** Orders centers by brightness (sum of channels), so palettes read dark → light. */
export function sortCenters(centers: Float32Array, channels: number): Float32Array {
  const k = centers.length / channels;
  const key = (j: number): number => { let s = 0; for (let t = 0; t < channels; t++) s += centers[j * channels + t]; return s; };
  const order = Array.from({ length: k }, (_, j) => j).sort((a, b) => key(a) - key(b) || a - b);
  const out = new Float32Array(centers.length);
  order.forEach((j, i) => out.set(centers.subarray(j * channels, (j + 1) * channels), i * channels));
  return out;
}
