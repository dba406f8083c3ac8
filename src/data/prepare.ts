/** Loading a dataset the way commands need it: chosen channels, resized to side × side. */
import { loadImageDataset, type DatasetOptions, type LoadedDataset } from './datasets.js';
import { convertChannels, type ImageSet } from './images.js';
import { resizeImageSet } from './resize.js';

export interface PrepareOptions extends DatasetOptions {
  /** Input resolution n; default: the images' own side if square and ≤ 32, else 32. */
  side?: number;
}

/** The side a dataset is encoded at when none is asked for. */
export function defaultSide(set: ImageSet): number {
  return set.height === set.width && set.height <= 32 ? set.height : 32;
}

export async function prepareDataset(spec: string, opts: PrepareOptions = {}): Promise<LoadedDataset & { side: number }> {
  const loaded = await loadImageDataset(spec, opts);
  const side = opts.side ?? defaultSide(loaded.train);
  const fix = async (set: ImageSet): Promise<ImageSet> => {
    const converted = opts.channels !== undefined ? convertChannels(set, opts.channels) : set;
    return resizeImageSet(converted, side);
  };
  return { source: loaded.source, side, train: await fix(loaded.train), test: loaded.test ? await fix(loaded.test) : null };
}
