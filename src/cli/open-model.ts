/** Opening a model folder for commands: weights, palette, and the objective it was trained with. */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Kernels } from '../kernels/kernels.js';
import { loadModelFolder, resolveModelDir } from '../io/hf.js';
import { ImageGPT } from '../model/model.js';
import type { Palette } from '../palette/palette.js';
import type { TokenDataset } from '../data/tokens.js';
import type { Objective } from '../train/objectives.js';

export interface OpenedModel {
  dir: string;
  model: ImageGPT;
  palette: Palette | null;
  labels: string[] | null;
  /** From the run's trainer_state.json when present, else the flag, else 'ar'. */
  objective: Objective;
}

/** `model` is a folder, or an owner/name in the local Hugging Face cache. */
export function openModel(model: string, kernels: Kernels, objectiveFlag?: string): OpenedModel {
  const dir = resolveModelDir(model);
  const objective = modelObjective(dir, objectiveFlag);
  const loaded = loadModelFolder(dir);
  return { dir, model: new ImageGPT(kernels, loaded.config, loaded.params), palette: loaded.palette, labels: loaded.labels, objective };
}

/** The objective a model was trained with: the flag, else the run's trainer_state.json, else 'ar'. */
export function modelObjective(dir: string, objectiveFlag?: string): Objective {
  let objective: Objective = 'ar';
  const stateFile = join(dir, 'trainer_state.json');
  if (existsSync(stateFile)) {
    try {
      const s = JSON.parse(readFileSync(stateFile, 'utf8')) as { options?: { objective?: Objective } };
      if (s.options?.objective === 'bert') objective = 'bert';
    } catch { /* a model folder without readable training state is still a model */ }
  }
  if (objectiveFlag !== undefined) {
    if (objectiveFlag !== 'ar' && objectiveFlag !== 'bert') throw new Error(`--objective must be ar or bert, got "${objectiveFlag}"`);
    objective = objectiveFlag;
  }
  return objective;
}

/** Refuses a dataset the model cannot read: other sequence length or palette size, before any work. */
export function checkModelMatchesData(m: OpenedModel, data: TokenDataset, dataDir: string): void {
  const cfg = m.model.config;
  if (data.meta.pixels !== cfg.nPositions) {
    throw new Error(`${dataDir}: images of ${data.meta.pixels} pixels, but the model in ${m.dir} reads ${cfg.nPositions}`);
  }
  if (data.palette.k !== cfg.vocabSize - 1) {
    throw new Error(`${dataDir}: a ${data.palette.k}-color palette, but the model in ${m.dir} has ${cfg.vocabSize - 1} colors`);
  }
  if (m.palette && (m.palette.channels !== data.palette.channels ||
      m.palette.centers.some((c, i) => Math.abs(c - data.palette.centers[i]!) > 1e-4))) {
    throw new Error(`${dataDir}: its palette differs from the palette of the model in ${m.dir}; encode the data with the model's palette`);
  }
}
