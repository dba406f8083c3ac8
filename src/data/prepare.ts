/**
 * Loading a dataset the way commands need it: chosen channels, resized to side × side, and a test
 * split even when the source has none (a plain image folder), so every later stage can score on
 * images it never trained on.
 */
import { loadImageDataset, type DatasetOptions, type LoadedDataset } from './datasets.js';
import { convertChannels, holdOut, type ImageSet } from './images.js';
import { resizeImageSet } from './resize.js';
import { Rng } from '../util/rng.js';

export interface PrepareOptions extends DatasetOptions {
  /** Input resolution n; default: the images' own side if square and ≤ 32, else 32. */
  side?: number;
  /** Share of the images held out as the test split when the source has none; default 0.1. */
  testFraction?: number;
  /** Seed of that test split (and, in `buildTokenDataset`, of the validation split); default 0. */
  seed?: number;
}

export const DEFAULT_TEST_FRACTION = 0.1;

/** How the test split was made when the source had none. */
export interface HeldOutTest {
  fraction: number;
  /** Drawn class by class (the source has labels). */
  byClass: boolean;
}

export interface PreparedDataset extends LoadedDataset {
  side: number;
  /** Set when the test split was held out of the source's images here; null when the source has its own (or the fraction is 0). */
  heldOutTest: HeldOutTest | null;
}

/** The side a dataset is encoded at when none is asked for. */
export function defaultSide(set: ImageSet): number {
  return set.height === set.width && set.height <= 32 ? set.height : 32;
}

/** Another stream than the validation split's for the same seed, so the two draws are unrelated. */
const TEST_SPLIT_STREAM = 0x7e57;

export async function prepareDataset(spec: string, opts: PrepareOptions = {}): Promise<PreparedDataset> {
  const loaded = await loadImageDataset(spec, opts);
  let { train, test } = loaded;
  let heldOutTest: HeldOutTest | null = null;
  const fraction = opts.testFraction ?? DEFAULT_TEST_FRACTION;
  if (!(fraction >= 0 && fraction < 1)) throw new Error(`test fraction must be in [0, 1), got ${fraction}`);
  if (test === null && fraction > 0) {
    const byClass = train.labels.some((l) => l >= 0);
    const split = holdOut(train, fraction, new Rng((opts.seed ?? 0) ^ TEST_SPLIT_STREAM), byClass);
    if (split.kept.count === 0) throw new Error(`${loaded.source}: holding out ${fraction} of ${train.count} images as the test split leaves none to train on`);
    ({ kept: train, held: test } = split);
    heldOutTest = { fraction, byClass };
  }
  const side = opts.side ?? defaultSide(train);
  const fix = async (set: ImageSet): Promise<ImageSet> => {
    const converted = opts.channels !== undefined ? convertChannels(set, opts.channels) : set;
    return resizeImageSet(converted, side);
  };
  return { source: loaded.source, side, train: await fix(train), test: test ? await fix(test) : null, heldOutTest };
}
