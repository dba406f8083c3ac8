import type { Palette } from '../palette/palette.js';

/** One split of a token dataset: `count` images of `pixels` palette ids each, raster order. */
export interface TokenSplit {
  count: number;
  /** count × pixels palette ids (uint8 when k ≤ 256, else uint16). */
  tokens: Uint8Array | Uint16Array;
  /** count labels, -1 where unlabeled. */
  labels: Int32Array;
}

export interface TokenDatasetMeta {
  /** Where the images came from (dataset name or path). */
  source: string;
  /** Image side n: sequences are n² long. */
  side: number;
  pixels: number;
  channels: 1 | 3;
  numClasses: number;
  classNames?: string[];
  /** Seed of the train/validation split. */
  splitSeed: number;
}

/** What `igpt encode` writes and training, probes and sampling read. */
export interface TokenDataset {
  meta: TokenDatasetMeta;
  palette: Palette;
  train: TokenSplit;
  val: TokenSplit;
  test: TokenSplit;
}
