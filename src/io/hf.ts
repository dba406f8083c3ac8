/**
 * Hugging Face ImageGPT model folders: `config.json` (ImageGPTConfig), `model.safetensors` (or a
 * sharded `model.safetensors.index.json`) with HF's tensor names in Conv1D layout [in, out], and
 * `preprocessor_config.json` holding the color palette as `clusters` in [-1, 1].
 *
 * The same folders load in Python with `ImageGPTForCausalImageModeling.from_pretrained(dir)`, and
 * the published OpenAI checkpoints (openai/imagegpt-small/-medium/-large) load here once their
 * `pytorch_model.bin` is converted to safetensors.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type ModelConfig, validateConfig } from '../model/config.js';
import { ParameterTensors, tensorLayout, type NamedTensor } from '../model/parameters.js';
import type { Palette } from '../palette/palette.js';
import {
  candidateNames, checkConfigFitsWeights, checkPaletteMatchesConfig, CONFIG_FILE, configFromHf, configToHf, fillParameters, MASK_BUFFER,
  paletteFromPreprocessor, PREPROCESSOR_FILE, preprocessorJson, PYTORCH_FILE, WEIGHTS_FILE, WEIGHTS_INDEX_FILE,
} from './hf-format.js';
import { OPENAI_CLUSTERS_FILE, readOpenAiClusters } from './openai.js';
import { SafetensorsReader, type TensorToWrite, writeAll, writeFileAtomic, encodeHeader, numel } from './safetensors.js';

export {
  CONFIG_FILE, configFromHf, configToHf, float32Json, PREPROCESSOR_FILE, preprocessorJson, PYTORCH_FILE,
  WEIGHTS_FILE, WEIGHTS_INDEX_FILE,
} from './hf-format.js';

/** Extra, optional content of a saved folder. */
export interface SaveModelOptions {
  /** Class names for `id2label` (length must equal numLabels); default `LABEL_i`. */
  labels?: string[];
  /** Image size written to preprocessor_config.json; default sqrt(nPositions) squared. */
  imageSize?: { height: number; width: number };
  /** Strings stored in the safetensors `__metadata__` (`format: pt` is always set). */
  metadata?: Record<string, string>;
}

export interface LoadModelOptions {
  /** Fill a missing `lm_head.weight` with zeros instead of failing (e.g. an ImageGPTForImageClassification folder). */
  allowMissingLmHead?: boolean;
}

export interface LoadedModel {
  config: ModelConfig;
  params: ParameterTensors;
  /** The palette from preprocessor_config.json, or null when the folder has none. */
  palette: Palette | null;
  /** Class names from `id2label`, or null when the config declares no labels. */
  labels: string[] | null;
  /** Tensors in the weights that the model does not use (besides HF's attention-mask buffers). */
  ignoredTensors: string[];
}

/** Reads the palette (`clusters`) from a preprocessor_config.json. */
export function readPreprocessorPalette(file: string): Palette {
  return paletteFromPreprocessor(readJson(file), file);
}

// ---------------------------------------------------------------------------------------------
// Saving

function readJson(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`);
  }
}

function writeTextAtomic(file: string, text: string): void {
  writeFileAtomic(file, (fd) => writeAll(fd, Buffer.from(text, 'utf8')));
}

function defaultImageSize(nPositions: number): { height: number; width: number } {
  const n = Math.round(Math.sqrt(nPositions));
  if (n * n !== nPositions) {
    throw new Error(`n_positions ${nPositions} is not a square image; pass imageSize to saveModelFolder`);
  }
  return { height: n, width: n };
}

/**
 * Writes a Hugging Face ImageGPT folder. Each file goes to a temp file in `dir` first; the renames
 * happen only once every file is complete, so a crash leaves either the old or the new files
 * (other files in `dir`, such as training state, are left alone).
 */
export function saveModelFolder(dir: string, params: ParameterTensors, palette: Palette | null,
                                extra: SaveModelOptions = {}): void {
  const config = params.config;
  validateConfig(config);
  if (palette && palette.k !== config.vocabSize - 1) {
    throw new Error(`palette has ${palette.k} colors but the model's vocabulary is ${config.vocabSize} (k + SOS)`);
  }
  const configText = JSON.stringify(configToHf(config, extra.labels), null, 2) + '\n';
  const preText = palette ? preprocessorJson(palette, extra.imageSize ?? defaultImageSize(config.nPositions)) : null;
  const tensors: TensorToWrite[] = params.layout.map((t: NamedTensor) => ({
    name: t.name, shape: t.shape, data: params.data.subarray(t.offset, t.offset + t.size),
  }));
  const metadata = { format: 'pt', ...extra.metadata };
  mkdirSync(dir, { recursive: true });

  // Weights first (the long write), then the small files; each write is itself atomic.
  const header = encodeHeader(tensors, metadata, join(dir, WEIGHTS_FILE));
  writeFileAtomic(join(dir, WEIGHTS_FILE), (fd) => {
    writeAll(fd, header);
    for (const t of tensors) writeAll(fd, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  });
  if (preText !== null) writeTextAtomic(join(dir, PREPROCESSOR_FILE), preText);
  writeTextAtomic(join(dir, CONFIG_FILE), configText);
}

// ---------------------------------------------------------------------------------------------
// Loading

/** The one-line conversion of a PyTorch checkpoint to safetensors, for error messages and docs. */
export function conversionCommand(dir: string): string {
  const bin = join(dir, PYTORCH_FILE), out = join(dir, WEIGHTS_FILE);
  return `python -c "import torch; from safetensors.torch import save_file; ` +
         `sd = torch.load('${bin}', map_location='cpu'); ` +
         `save_file({k: v.contiguous() for k, v in sd.items()}, '${out}', metadata={'format': 'pt'})"`;
}


/** Where each tensor lives: a single file, or the shards of an index. */
interface WeightSource {
  files: string[];
  /** Stored tensor name → file path. */
  locate: Map<string, string>;
}

function findWeights(dir: string): WeightSource {
  const single = join(dir, WEIGHTS_FILE);
  if (existsSync(single)) {
    const r = SafetensorsReader.open(single);
    const locate = new Map(r.entries.map((e) => [e.name, single]));
    r.close();
    return { files: [single], locate };
  }
  const indexFile = join(dir, WEIGHTS_INDEX_FILE);
  if (existsSync(indexFile)) {
    const index = readJson(indexFile) as Record<string, unknown>;
    const map = index.weight_map;
    if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new Error(`${indexFile}: "weight_map" must be an object`);
    const locate = new Map<string, string>();
    for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
      if (typeof shard !== 'string' || shard.includes('/') || shard.includes('\\')) {
        throw new Error(`${indexFile}: weight_map entry "${name}" must name a shard file in the folder`);
      }
      locate.set(name, join(dir, shard));
    }
    const files = [...new Set(locate.values())];
    for (const f of files) if (!existsSync(f)) throw new Error(`${indexFile}: shard ${f} is missing`);
    return { files, locate };
  }
  if (existsSync(join(dir, PYTORCH_FILE)) || existsSync(join(dir, 'pytorch_model.bin.index.json'))) {
    throw new Error(`${dir}: has only PyTorch weights (pytorch_model.bin), which cannot be read without Python. ` +
                    `Convert them once (needs the torch and safetensors Python packages; for a sharded ` +
                    `pytorch_model.bin.index.json, run it for each shard):\n  ${conversionCommand(dir)}`);
  }
  throw new Error(`${dir}: no ${WEIGHTS_FILE} or ${WEIGHTS_INDEX_FILE} found (is this an ImageGPT model folder?)`);
}

/** How many values the weight files hold (headers only). */
function storedValueCount(source: WeightSource): number {
  let n = 0;
  for (const file of source.files) {
    const r = SafetensorsReader.open(file);
    for (const e of r.entries) if (source.locate.get(e.name) === file) n += numel(e.shape);
    r.close();
  }
  return n;
}

/** Reads config.json, the weights and the palette of a Hugging Face ImageGPT folder. */
export function loadModelFolder(dir: string, options: LoadModelOptions = {}): LoadedModel {
  if (!existsSync(dir)) throw new Error(`${dir}: model folder does not exist`);
  const configFile = join(dir, CONFIG_FILE);
  if (!existsSync(configFile)) throw new Error(`${dir}: no ${CONFIG_FILE} (is this an ImageGPT model folder?)`);
  const { config: declared, labels, declaredLabels } = configFromHf(readJson(configFile), configFile);
  const source = findWeights(dir);

  // A folder whose config declares no labels takes them from the `score` head, if it has one.
  const config = { ...declared };
  const scoreFile = source.locate.get('score.weight');
  if (!declaredLabels && scoreFile) {
    const r = SafetensorsReader.open(scoreFile);
    config.numLabels = r.entry('score.weight')!.shape[0] ?? 0;
    r.close();
  }
  const where = source.files.length === 1 ? source.files[0]! : join(dir, WEIGHTS_INDEX_FILE);
  checkConfigFitsWeights(config, storedValueCount(source), configFile, where);

  const params = new ParameterTensors(config);
  const readers = new Map<string, SafetensorsReader>();
  const reader = (file: string): SafetensorsReader => {
    let r = readers.get(file);
    if (!r) { r = SafetensorsReader.open(file); readers.set(file, r); }
    return r;
  };
  let used: Set<string>;
  try {
    used = fillParameters(params, {
      has: (name) => source.locate.has(name),
      readInto: (name, out, shape) => reader(source.locate.get(name)!).readInto(name, out, shape),
    }, where, options.allowMissingLmHead);
  } finally {
    for (const r of readers.values()) r.close();
  }
  const ignoredTensors = [...source.locate.keys()].filter((n) => !used.has(n) && !MASK_BUFFER.test(n));

  const palette = readFolderPalette(dir);
  if (palette) checkPaletteMatchesConfig(palette, config, dir, configFile);
  return { config, params, palette, labels, ignoredTensors };
}

/** The palette of a folder: preprocessor_config.json's `clusters`, else OpenAI's kmeans_centers.npy, else null. */
export function readFolderPalette(dir: string): Palette | null {
  const preFile = join(dir, PREPROCESSOR_FILE);
  if (existsSync(preFile)) return readPreprocessorPalette(preFile);
  const npyFile = join(dir, OPENAI_CLUSTERS_FILE);
  if (existsSync(npyFile)) return readOpenAiClusters(npyFile);
  return null;
}

// ---------------------------------------------------------------------------------------------
// Inspection (headers only: cheap for multi-GB folders)

export interface StoredTensor { name: string; shape: number[]; dtype: string; file: string }

export interface ModelFolderSummary {
  config: ModelConfig;
  labels: string[] | null;
  palette: Palette | null;
  /** Every tensor stored in the weight files, in file order. */
  tensors: StoredTensor[];
  /** Tensors the model needs that the files lack (score.weight is optional). */
  missing: string[];
  /** Stored tensors the model does not use (HF's attention-mask buffers excluded). */
  ignored: string[];
  weightFiles: string[];
}

/** Reads config.json, the palette, and the weight headers of a folder without loading any weights. */
export function inspectModelFolder(dir: string): ModelFolderSummary {
  if (!existsSync(dir)) throw new Error(`${dir}: model folder does not exist`);
  const configFile = join(dir, CONFIG_FILE);
  if (!existsSync(configFile)) throw new Error(`${dir}: no ${CONFIG_FILE} (is this an ImageGPT model folder?)`);
  const { config, labels, declaredLabels } = configFromHf(readJson(configFile), configFile);
  const source = findWeights(dir);
  const tensors: StoredTensor[] = [];
  for (const file of source.files) {
    const r = SafetensorsReader.open(file);
    for (const e of r.entries) {
      if (source.locate.get(e.name) === file) tensors.push({ name: e.name, shape: e.shape, dtype: e.dtype, file });
    }
    r.close();
  }
  const score = tensors.find((t) => t.name === 'score.weight');
  if (!declaredLabels && score) config.numLabels = score.shape[0] ?? 0;
  const where = source.files.length === 1 ? source.files[0]! : join(dir, WEIGHTS_INDEX_FILE);
  checkConfigFitsWeights(config, tensors.reduce((s, t) => s + numel(t.shape), 0), configFile, where);
  const stored = new Set(tensors.map((t) => t.name));
  const used = new Set<string>();
  const missing: string[] = [];
  for (const t of tensorLayout(config)) {
    const name = candidateNames(t.name).find((n) => stored.has(n));
    if (name) used.add(name);
    else if (t.name !== 'score.weight') missing.push(t.name);
  }
  const ignored = tensors.map((t) => t.name).filter((n) => !used.has(n) && !MASK_BUFFER.test(n));
  const palette = readFolderPalette(dir);
  return { config, labels, palette, tensors, missing, ignored, weightFiles: source.files };
}
