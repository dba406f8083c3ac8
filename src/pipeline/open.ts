/**
 * Opening what a command works on: a model folder (weights, palette, the objective it was trained
 * with) and a token dataset, checked to match before any work. Also the step counts every
 * training run derives from epochs.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadTokenDataset, type TokenDataset } from '../data/tokens.js';
import { loadModelFolder, resolveModelDir } from '../io/hf.js';
import type { DeviceArray, Kernels } from '../kernels/kernels.js';
import { ImageGPT } from '../model/model.js';
import { parametersOn } from '../model/parameters.js';
import type { Palette } from '../palette/palette.js';
import type { Objective } from '../train/objectives.js';

export interface OpenedModel<T extends DeviceArray = Float32Array> {
  /** The model's folder (an owner/name resolved in the Hugging Face cache). */
  dir: string;
  model: ImageGPT<T>;
  palette: Palette | null;
  labels: string[] | null;
  /** The `objective` asked for, else the run's trainer_state.json, else 'ar'. */
  objective: Objective;
}

/**
 * Loads a model onto `kernels`: `model` is a folder, or an owner/name in the local Hugging Face
 * cache; `objective` overrides the one recorded with the model.
 */
export function openModel<T extends DeviceArray>(model: string, kernels: Kernels<T>, objective?: Objective): OpenedModel<T> {
  const dir = resolveModelDir(model);
  const loaded = loadModelFolder(dir);
  return {
    dir, model: new ImageGPT(kernels, loaded.config, parametersOn(kernels, loaded.params)), palette: loaded.palette, labels: loaded.labels,
    objective: objective ?? recordedObjective(dir) ?? 'ar',
  };
}

/** The objective in the folder's trainer_state.json (a checkpoint of ours), or null. */
export function recordedObjective(dir: string): Objective | null {
  const stateFile = join(dir, 'trainer_state.json');
  if (!existsSync(stateFile)) return null;
  try {
    const s = JSON.parse(readFileSync(stateFile, 'utf8')) as { options?: { objective?: unknown } };
    const objective = s.options?.objective;
    return objective === 'ar' || objective === 'bert' ? objective : null;
  } catch {
    return null; // a model folder without readable training state is still a model
  }
}

/** Refuses a dataset the model cannot read: other sequence length or palette size, before any work. */
export function checkModelMatchesData(m: OpenedModel<DeviceArray>, data: TokenDataset, dataDir: string): void {
  const cfg = m.model.config;
  if (data.meta.pixels !== cfg.nPositions) {
    throw new Error(`${dataDir}: images of ${data.meta.pixels} pixels, but the model in ${m.dir} reads ${cfg.nPositions}`);
  }
  if (data.palette.k !== cfg.vocabSize - 1) {
    throw new Error(`${dataDir}: a ${data.palette.k}-color palette, but the model in ${m.dir} has ${cfg.vocabSize - 1} colors`);
  }
  if (m.palette && (m.palette.channels !== data.palette.channels ||
      m.palette.centers.some((c, i) => Math.abs(c - data.palette.centers[i]) > 1e-4))) {
    throw new Error(`${dataDir}: its palette differs from the palette of the model in ${m.dir}; encode the data with the model's palette`);
  }
}

export interface ModelAndData<T extends DeviceArray = Float32Array> {
  opened: OpenedModel<T>;
  data: TokenDataset;
  /** The folder `data` was read from (errors and cache keys name it). */
  dataDir: string;
}

/**
 * The model folder and the token dataset a command works on, checked to match. With `labelsFor`,
 * a dataset without classes is refused, naming the work that needs them.
 */
export function openModelAndData<T extends DeviceArray>(kernels: Kernels<T>,
                                                        o: { model: string; data: string; objective?: Objective; labelsFor?: string }): ModelAndData<T> {
  const data = loadTokenDataset(o.data);
  const opened = openModel(o.model, kernels, o.objective);
  checkModelMatchesData(opened, data, o.data);
  if (o.labelsFor !== undefined && data.meta.numClasses < 2) {
    throw new Error(`${o.data}: ${o.labelsFor} needs labelled data (found ${data.meta.numClasses} classes)`);
  }
  return { opened, data, dataDir: o.data };
}

/** Steps of `batch` images that make one pass over `images` (at least 1). */
export function stepsPerEpoch(images: number, batch: number): number {
  return Math.max(1, Math.ceil(images / batch));
}

/** Steps of `batch` images that make `epochs` passes over `images` (at least 1). */
export function stepsFromEpochs(epochs: number, images: number, batch: number): number {
  return Math.max(1, Math.round(epochs * stepsPerEpoch(images, batch)));
}
