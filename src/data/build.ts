/**
 * Images → token dataset, the whole of `igpt encode` as a function: load and resize (holding out a
 * test split when the source has none), split off validation, fit (or check) the palette on the
 * training split, quantize every split.
 */
import { numClasses, splitTrainVal, type ImageSet } from './images.js';
import { prepareDataset, type HeldOutTest, type PrepareOptions } from './prepare.js';
import { emptySplit, encodeImages, type TokenDataset } from './tokens.js';
import { fitPalette } from '../palette/kmeans.js';
import type { Palette } from '../palette/palette.js';
import { Rng } from '../util/rng.js';

export interface BuildOptions extends PrepareOptions {
  /** A palette to use; without one, k colors are fitted on the training split. */
  palette?: Palette;
  /** Where the palette came from, for error messages. */
  paletteSource?: string;
  k?: number;
  samplePixels?: number;
  valFraction?: number;
  /** Keep at most this many training (before the validation split) and test images. */
  maxTrain?: number;
  maxTest?: number;
}

export interface BuiltTokenDataset extends TokenDataset {
  fittedPalette: boolean;
  /** How the test split was held out of the source's images; null when the source had one. */
  heldOutTest: HeldOutTest | null;
}

export async function buildTokenDataset(spec: string, o: BuildOptions = {}): Promise<BuiltTokenDataset> {
  const seed = o.seed ?? 0;
  let palette = o.palette ?? null;
  const where = o.paletteSource ?? 'palette';
  // A palette decides the channels unless --channels says otherwise (then they must agree).
  if (palette && o.channels !== undefined && o.channels !== palette.channels) {
    throw new Error(`${where}: palette has ${palette.channels} channels but ${o.channels} were asked for`);
  }
  const data = await prepareDataset(spec, { ...o, seed, channels: o.channels ?? palette?.channels });
  if (palette && palette.channels !== data.train.channels) {
    throw new Error(`${where}: palette has ${palette.channels} channel(s) but ${data.source} images have ${data.train.channels}; pass --channels ${palette.channels} to convert them`);
  }
  const all = o.maxTrain !== undefined ? takeFirst(data.train, o.maxTrain) : data.train;
  const { train, val } = splitTrainVal(all, o.valFraction ?? 0.1, new Rng(seed));
  const fittedPalette = !palette;
  palette ??= fitPalette(train, { k: o.k, samplePixels: o.samplePixels, seed });
  const test = data.test ? (o.maxTest !== undefined ? takeFirst(data.test, o.maxTest) : data.test) : null;
  const side = data.side;
  return {
    meta: {
      source: data.source, side, pixels: side * side, channels: data.train.channels,
      numClasses: numClasses(data.train), classNames: data.train.classNames, splitSeed: seed,
      ...(data.heldOutTest ? { testFraction: data.heldOutTest.fraction } : {}),
    },
    palette: { k: palette.k, channels: palette.channels, centers: palette.centers },
    train: encodeImages(train, palette, side),
    val: encodeImages(val, palette, side),
    test: test ? encodeImages(test, palette, side) : emptySplit(palette.k),
    fittedPalette,
    heldOutTest: data.heldOutTest,
  };
}

/** The first n images of a set (a view, no copy). */
function takeFirst(set: ImageSet, n: number): ImageSet {
  const count = Math.min(n, set.count);
  const per = set.height * set.width * set.channels;
  return { ...set, count, pixels: set.pixels.subarray(0, count * per), labels: set.labels.subarray(0, count) };
}
