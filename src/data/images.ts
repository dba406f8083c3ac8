/** The in-memory image set every reader returns, and small operations on it. */
import type { Rng } from '../util/rng.js';
import { convertPixelChannels } from './pixels.js';

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
  const used = set.pixels.subarray(0, set.count * imageSize(set));
  return { ...set, channels, pixels: convertPixelChannels(used, set.channels, channels) };
}

/**
 * Holds out a `fraction` share of the images, chosen by `rng`; both parts keep the original order.
 * Plain: round(count · fraction) images drawn from all. By class: every class (unlabeled images
 * count as one more) gives its share, rounded so the total is still round(count · fraction) (the
 * largest remainders get the extra images), so a small split keeps the classes' proportions.
 * Validation and test splits are both carved here.
 */
export function holdOut(set: ImageSet, fraction: number, rng: Rng, byClass = false): { kept: ImageSet; held: ImageSet } {
  if (!(fraction >= 0 && fraction < 1)) throw new Error(`held-out fraction must be in [0, 1), got ${fraction}`);
  const indices = (): Int32Array => Int32Array.from({ length: set.count }, (_, i) => i);
  let held: Int32Array;
  if (!byClass) {
    held = rng.shuffle(indices()).slice(0, Math.round(set.count * fraction));
  } else {
    const groups = new Map<number, number[]>();
    for (const i of indices()) {
      const members = groups.get(set.labels[i]);
      if (members) members.push(i); else groups.set(set.labels[i], [i]);
    }
    const classes = [...groups.keys()].sort((a, b) => a - b);
    const exact = classes.map((c) => groups.get(c)!.length * fraction);
    const quota = exact.map(Math.floor);
    let extra = Math.round(set.count * fraction) - quota.reduce((a, b) => a + b, 0);
    const byRemainder = classes.map((_, j) => j).sort((a, b) => (exact[b] - quota[b]) - (exact[a] - quota[a]) || a - b);
    for (const j of byRemainder) if (extra-- > 0) quota[j]++;
    held = Int32Array.from(classes.flatMap((c, j) => [...rng.shuffle(groups.get(c)!).slice(0, quota[j])]));
  }
  held.sort();
  const isHeld = new Uint8Array(set.count);
  for (const i of held) isHeld[i] = 1;
  return { kept: selectImages(set, indices().filter((i) => !isHeld[i])), held: selectImages(set, held) };
}

/** Splits off a validation set: a `valFraction` share of the images, chosen by `rng` from all. */
export function splitTrainVal(set: ImageSet, valFraction: number, rng: Rng): { train: ImageSet; val: ImageSet } {
  const { kept, held } = holdOut(set, valFraction, rng);
  return { train: kept, val: held };
}
