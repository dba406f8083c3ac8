/**
 * Features and classes of a user's image files: decoded and quantized with the model's palette a
 * batch at a time (src/data/image-inputs.ts), through the probe's feature path, so a folder of any
 * size needs memory for one batch of images and the feature rows only.
 */
import { basename, dirname, extname, join } from 'node:path';
import { readImageTokenBatches, type ImageInputOptions } from '../data/image-inputs.js';
import { writeNpy } from '../io/npy.js';
import { writeSafetensors } from '../io/safetensors.js';
import { writeFileAtomic } from '../util/fs.js';
import type { DeviceArray } from '../kernels/kernels.js';
import type { ImageGPT } from '../model/model.js';
import type { Palette } from '../palette/palette.js';
import type { Objective } from '../train/objectives.js';
import { classifyFeatures, type Classification, type Classifier } from './classify.js';
import { pooledWidth, tokenFeatures, type Pooling } from './features.js';

export interface ImageFileFeatureOptions extends Omit<ImageInputOptions, 'side' | 'channels'> {
  objective: Objective;
  /** BERT: average over this many random masks (default 1). */
  masks?: number;
  /** Default 'mean' (the paper's). */
  pooling?: Pooling;
  seed?: number;
  /** Files handled so far (read or skipped) of all. */
  onProgress?: (done: number, total: number) => void;
}

export interface ImageFileFeatures {
  /** The files that could be read, in the order of the rows. */
  files: string[];
  /** [files.length, layers.length · width]: each image's f^l of the chosen layers side by side. */
  features: Float32Array;
  dim: number;
}

function modelSide(model: ImageGPT<DeviceArray>): number {
  const side = Math.round(Math.sqrt(model.config.nPositions));
  if (side * side !== model.config.nPositions) throw new Error(`a model of ${model.config.nPositions} positions does not read square images`);
  return side;
}

/** f^l = mean_i norm(h_i^l) (per quadrant with 2x2 pooling) of each image file at `layers` (0 = embeddings' norm … L = ln_f). */
export async function imageFileFeatures<T extends DeviceArray>(model: ImageGPT<T>, palette: Palette, files: readonly string[], layers: readonly number[],
                                        o: ImageFileFeatureOptions): Promise<ImageFileFeatures> {
  const dim = layers.length * pooledWidth(model.config.nEmbd, o.pooling);
  const batch = o.batch ?? 32;
  let features = new Float32Array(files.length * dim);
  const read: string[] = [];
  for await (const b of readImageTokenBatches(files, palette, modelSide(model), o)) {
    const rows = await tokenFeatures(model, b.tokens, b.count, layers, { batch, objective: o.objective, masks: o.masks, pooling: o.pooling, seed: o.seed });
    features.set(rows, read.length * dim);
    read.push(...b.files);
    o.onProgress?.(b.handled, files.length);
  }
  if (read.length === 0) throw new Error(`none of the ${files.length} image files could be read`);
  if (read.length < files.length) features = features.slice(0, read.length * dim);
  return { files: read, features, dim };
}

/** Each readable image file's class by `classifier`, its probability and the `top` likeliest (default 3). */
export async function classifyImageFiles<T extends DeviceArray>(model: ImageGPT<T>, palette: Palette, files: readonly string[], classifier: Classifier,
                                         o: ImageFileFeatureOptions & { top?: number }): Promise<({ file: string } & Classification)[]> {
  const { nEmbd: d, nLayer: L } = model.config;
  const width = pooledWidth(d, classifier.pooling);
  if (classifier.layer > L || classifier.dim !== width) {
    throw new Error(`the classifier reads layer ${classifier.layer} of width ${classifier.dim}, the model has layers 0..${L} of width ${width}` +
      `${classifier.pooling === 'mean' ? '' : ` (${classifier.pooling} pooling)`}`);
  }
  const { files: read, features } = await imageFileFeatures(model, palette, files, [classifier.layer], { ...o, pooling: classifier.pooling });
  return classifyFeatures(classifier, features, read.length, o.top).map((c, i) => ({ file: read[i], ...c }));
}

/**
 * Writes features [count, layers.length · d] as `.npy` (float32, [count, d] for one layer,
 * [count, layers, d] for several) or `.safetensors` (one [count, d] tensor `layer.<l>` per layer),
 * and the row names in order beside it (same name, `.json`). Both files are written atomically.
 */
export function writeFeatureFile(path: string, features: Float32Array, rowNames: readonly string[], layers: readonly number[],
                                 d: number, about: Record<string, string> = {}): { path: string; namesPath: string } {
  const count = rowNames.length;
  if (features.length !== count * layers.length * d) throw new Error(`${features.length} feature values are not ${count} rows of ${layers.length} × ${d}`);
  const ext = extname(path).toLowerCase();
  if (ext === '.npy') {
    writeNpy(path, features, layers.length === 1 ? [count, d] : [count, layers.length, d]);
  } else if (ext === '.safetensors') {
    const tensors = layers.map((l, j) => {
      const data = new Float32Array(count * d);
      for (let i = 0; i < count; i++) data.set(features.subarray((i * layers.length + j) * d, (i * layers.length + j + 1) * d), i * d);
      return { name: `layer.${l}`, shape: [count, d], data };
    });
    writeSafetensors(path, tensors, { ...about, layers: layers.join(',') });
  } else {
    throw new Error(`${path}: features are written as .npy or .safetensors`);
  }
  const namesPath = join(dirname(path), basename(path, extname(path)) + '.json');
  writeFileAtomic(namesPath, JSON.stringify({ ...about, layers, dim: d, rows: count, files: rowNames }, null, 1) + '\n');
  return { path, namesPath };
}
