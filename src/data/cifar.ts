/**
 * CIFAR-10 and CIFAR-100 binary batches. Each record is the label byte(s) then 3072 pixel bytes:
 * 1024 red, 1024 green, 1024 blue, each 32×32 in row-major order (CHW). CIFAR-10 records carry
 * one label; CIFAR-100 records a coarse label then a fine label.
 */
import { readFileSync, existsSync } from 'node:fs';
import { readMaybeGzip } from './binary.js';
import type { ImageSet } from './images.js';
import { concatImages } from './images.js';

const SIDE = 32;
const PLANE = SIDE * SIDE;

export type Cifar100Label = 'fine' | 'coarse';

/** Reads CIFAR binary records with `labelBytes` label bytes each, keeping label byte `labelIndex`. */
function readCifarRecords(path: string, labelBytes: number, labelIndex: number, maxLabel: number): ImageSet {
  const bytes = readMaybeGzip(path);
  const recordSize = labelBytes + 3 * PLANE;
  if (bytes.length === 0 || bytes.length % recordSize !== 0) {
    throw new Error(`${path}: size ${bytes.length} is not a multiple of the ${recordSize}-byte CIFAR record (truncated or wrong format?)`);
  }
  const count = bytes.length / recordSize;
  const pixels = new Uint8Array(count * 3 * PLANE);
  const labels = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const rec = i * recordSize;
    const label = bytes[rec + labelIndex];
    if (label > maxLabel) throw new Error(`${path}: record ${i} has label ${label} > ${maxLabel} (wrong CIFAR variant?)`);
    labels[i] = label;
    const src = rec + labelBytes;
    const dst = i * 3 * PLANE;
    for (let p = 0; p < PLANE; p++) {
      pixels[dst + 3 * p] = bytes[src + p];
      pixels[dst + 3 * p + 1] = bytes[src + PLANE + p];
      pixels[dst + 3 * p + 2] = bytes[src + 2 * PLANE + p];
    }
  }
  return { count, height: SIDE, width: SIDE, channels: 3, pixels, labels };
}

/** One CIFAR-10 batch file (e.g. data_batch_1.bin, test_batch.bin). */
export function readCifar10Batch(path: string): ImageSet {
  return readCifarRecords(path, 1, 0, 9);
}

/** A CIFAR-100 file (train.bin, test.bin); fine labels (100 classes) by default. */
export function readCifar100File(path: string, label: Cifar100Label = 'fine'): ImageSet {
  return readCifarRecords(path, 2, label === 'fine' ? 1 : 0, label === 'fine' ? 99 : 19);
}

/** Class names from a text file of one name per line, if it exists. */
export function readClassNames(path: string): string[] | undefined {
  if (!existsSync(path)) return undefined;
  const names = readFileSync(path, 'utf8').split(/\r?\n/).map((s) => s.trim()).filter((s) => s.length > 0);
  return names.length > 0 ? names : undefined;
}

/** The CIFAR-10 binary folder (cifar-10-batches-bin): 5 training batches and the test batch. */
export function readCifar10Dir(dir: string): { train: ImageSet; test: ImageSet } {
  const classNames = readClassNames(`${dir}/batches.meta.txt`);
  const batches = [1, 2, 3, 4, 5].map((i) => readCifar10Batch(requireFile(dir, `data_batch_${i}.bin`, 'CIFAR-10')));
  const train = { ...concatImages(batches), classNames };
  const test = { ...readCifar10Batch(requireFile(dir, 'test_batch.bin', 'CIFAR-10')), classNames };
  return { train, test };
}

/** The CIFAR-100 binary folder (cifar-100-binary): train.bin and test.bin. */
export function readCifar100Dir(dir: string, label: Cifar100Label = 'fine'): { train: ImageSet; test: ImageSet } {
  const classNames = readClassNames(`${dir}/${label}_label_names.txt`);
  const train = { ...readCifar100File(requireFile(dir, 'train.bin', 'CIFAR-100'), label), classNames };
  const test = { ...readCifar100File(requireFile(dir, 'test.bin', 'CIFAR-100'), label), classNames };
  return { train, test };
}

export function requireFile(dir: string, name: string, what: string): string {
  const path = `${dir}/${name}`;
  if (existsSync(path)) return path;
  if (existsSync(`${path}.gz`)) return `${path}.gz`;
  throw new Error(`${what}: ${path} not found`);
}
