/** The in-memory image set every reader returns, and small operations on it. */
import type { Rng } from '../util/rng.js';

/** `count` images of height × width × channels bytes each, HWC order, one after another. */
export interface ImageSet {
  count: number;
  height: number;
  width: number;
  channels: 1 | 3;
  /** count · height · width · channels bytes. */
  pixels: Uint8Array;
  /** count labels, -1 where unlabeled. */
  labels: Int32Array;
  classNames?: string[];
}

/** Bytes per image. */
export function imageSize(set: ImageSet): number {
  return set.height * set.width * set.channels;
}

/** A view of image i (no copy). */
export function imageAt(set: ImageSet, i: number): Uint8Array {
  const size = imageSize(set);
  return set.pixels.subarray(i * size, (i + 1) * size);
}

/** Number of classes: the class names if known, else max label + 1 (0 when unlabeled). */
export function numClasses(set: ImageSet): number {
  if (set.classNames) return set.classNames.length;
  let max = -1;
  for (const l of set.labels) if (l > max) max = l;
  return max + 1;
}

/** The images at `indices`, in that order (copied). */
export function selectImages(set: ImageSet, indices: ArrayLike<number>): ImageSet {
  const size = imageSize(set);
  const pixels = new Uint8Array(indices.length * size);
  const labels = new Int32Array(indices.length);
  for (let j = 0; j < indices.length; j++) {
    const i = indices[j];
    pixels.set(set.pixels.subarray(i * size, (i + 1) * size), j * size);
    labels[j] = set.labels[i];
  }
  return { ...set, count: indices.length, pixels, labels };
}

/** The sets one after another; all must have the same shape. */
export function concatImages(sets: ImageSet[]): ImageSet {
  if (sets.length === 0) throw new Error('concatImages: no image sets given');
  const first = sets[0];
  for (const s of sets) {
    if (s.height !== first.height || s.width !== first.width || s.channels !== first.channels) {
      throw new Error(`concatImages: shapes differ (${first.height}×${first.width}×${first.channels} vs ${s.height}×${s.width}×${s.channels})`);
    }
  }
  const count = sets.reduce((n, s) => n + s.count, 0);
  const pixels = new Uint8Array(count * imageSize(first));
  const labels = new Int32Array(count);
  let at = 0;
  for (const s of sets) {
    pixels.set(s.pixels, at * imageSize(first));
    labels.set(s.labels, at);
    at += s.count;
  }
  return { ...first, count, pixels, labels };
}

/** Converts to 1 channel (ITU-R BT.601 luma) or to 3 channels (gray repeated). */
export function convertChannels(set: ImageSet, channels: 1 | 3): ImageSet {
  if (set.channels === channels) return set;
  const n = set.count * set.height * set.width;
  const src = set.pixels;
  const pixels = new Uint8Array(n * channels);
  if (channels === 1) {
    for (let p = 0; p < n; p++) {
      pixels[p] = Math.round(0.299 * src[3 * p] + 0.587 * src[3 * p + 1] + 0.114 * src[3 * p + 2]);
    }
  } else {
    for (let p = 0; p < n; p++) pixels[3 * p] = pixels[3 * p + 1] = pixels[3 * p + 2] = src[p];
  }
  return { ...set, channels, pixels };
}

/** Splits off a validation set: a `valFraction` share of the images, chosen by `rng`. Both keep the original order. */
export function splitTrainVal(set: ImageSet, valFraction: number, rng: Rng): { train: ImageSet; val: ImageSet } {
  if (!(valFraction >= 0 && valFraction < 1)) throw new Error(`validation fraction must be in [0, 1), got ${valFraction}`);
  const order = rng.shuffle(Int32Array.from({ length: set.count }, (_, i) => i));
  const nVal = Math.round(set.count * valFraction);
  const val = order.slice(0, nVal).sort();
  const train = order.slice(nVal).sort();
  return { train: selectImages(set, train), val: selectImages(set, val) };
}
