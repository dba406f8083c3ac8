/**
 * Hugging Face ImageGPT model folders: `config.json` (ImageGPTConfig), `model.safetensors` (or a
 * sharded `model.safetensors.index.json`) with HF's tensor names in Conv1D layout [in, out], and
 * `preprocessor_config.json` holding the color palette as `clusters` in [-1, 1].
 *
 * The same folders load in Python with `ImageGPTForCausalImageModeling.from_pretrained(dir)`, and
 * the published OpenAI checkpoints (openai/imagegpt-small/-medium/-large) load here as they are:
 * their `pytorch_model.bin` is read by the restricted reader in torch-checkpoint.ts.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ModelConfig, validateConfig } from '../model/config.js';
import { ParameterTensors, tensorLayout, type NamedTensor } from '../model/parameters.js';
import type { Palette } from '../palette/palette.js';
import {
  candidateNames, checkConfigFitsWeights, checkPaletteMatchesConfig, CONFIG_FILE, configFromHf, configToHf, fillParameters, MASK_BUFFER,
  paletteFromPreprocessor, PREPROCESSOR_FILE, preprocessorJson, PYTORCH_FILE, PYTORCH_INDEX_FILE, WEIGHTS_FILE, WEIGHTS_INDEX_FILE,
} from './hf-format.js';
import { OPENAI_CLUSTERS_FILE, readOpenAiClusters } from './openai.js';
import { SafetensorsReader, type TensorToWrite, writeAll, writeFileAtomic, encodeHeader, numel } from './safetensors.js';
import { TorchCheckpoint } from './torch-checkpoint.js';
import { resolveModelDir } from './hf-cache.js';

export {
  CONFIG_FILE, configFromHf, configToHf, float32Json, PREPROCESSOR_FILE, preprocessorJson, PYTORCH_FILE,
  PYTORCH_INDEX_FILE, WEIGHTS_FILE, WEIGHTS_INDEX_FILE,
} from './hf-format.js';
export { isRepoId, resolveModelDir } from './hf-cache.js';

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
  }, tensors.reduce((n, t) => n + t.data.byteLength, header.length));
  if (preText !== null) writeTextAtomic(join(dir, PREPROCESSOR_FILE), preText);
  writeTextAtomic(join(dir, CONFIG_FILE), configText);
}

// ---------------------------------------------------------------------------------------------
// Loading

/** A weight file open for reading: a safetensors file, or a PyTorch checkpoint (pytorch_model.bin). */
interface WeightFile {
  readonly entries: readonly { name: string; dtype: string; shape: number[] }[];
  readInto(name: string, out: Float32Array, expectedShape?: readonly number[]): void;
  close(): void;
}

/** safetensors by its extension; anything else is taken for torch.save's format (pytorch_model.bin, *.pt). */
function openWeightFile(file: string): WeightFile {
  return file.endsWith('.safetensors') ? SafetensorsReader.open(file) : TorchCheckpoint.open(file);
}

/** The weight files of a folder, open, and where each stored tensor lives. */
interface Weights {
  /** The file or index named in errors. */
  where: string;
  files: Map<string, WeightFile>;
  /** Stored tensor name → file path. */
  locate: Map<string, string>;
  close(): void;
}

/** The formats a folder's weights may come in, preferred first: one file, or shards listed by an index. */
const WEIGHT_LAYOUTS = [
  { single: WEIGHTS_FILE, index: WEIGHTS_INDEX_FILE },
  { single: PYTORCH_FILE, index: PYTORCH_INDEX_FILE },
];

/** Opens the weights of a model folder: safetensors when present, else PyTorch's pytorch_model.bin. */
function openWeights(dir: string): Weights {
  const layout = WEIGHT_LAYOUTS.find((l) => existsSync(join(dir, l.single)) || existsSync(join(dir, l.index)));
  if (!layout) {
    throw new Error(`${dir}: no ${WEIGHTS_FILE}, ${PYTORCH_FILE} or their shard indexes found (is this an ImageGPT model folder?)`);
  }
  const single = join(dir, layout.single);
  let where = single;
  let shardOf: Map<string, string> | null = null;
  if (!existsSync(single)) {
    where = join(dir, layout.index);
    shardOf = readShardIndex(where, dir);
  }
  const files = new Map<string, WeightFile>();
  const close = (): void => { for (const f of files.values()) f.close(); };
  try {
    for (const file of shardOf ? new Set(shardOf.values()) : [single]) files.set(file, openWeightFile(file));
  } catch (err) {
    close();
    throw err;
  }
  const locate = shardOf ?? new Map(files.get(single)!.entries.map((e) => [e.name, single]));
  return { where, files, locate, close };
}

/** A shard index's weight_map: tensor name → shard path (shards must sit in the folder). */
function readShardIndex(indexFile: string, dir: string): Map<string, string> {
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
  for (const f of new Set(locate.values())) if (!existsSync(f)) throw new Error(`${indexFile}: shard ${f} is missing`);
  return locate;
}

/** Every tensor the weight files hold (as the index assigns them), in file order. */
function storedTensors(w: Weights): StoredTensor[] {
  const tensors: StoredTensor[] = [];
  for (const [file, f] of w.files) {
    for (const e of f.entries) if (w.locate.get(e.name) === file) tensors.push({ name: e.name, shape: e.shape, dtype: e.dtype, file });
  }
  return tensors;
}

/** A folder's config.json, read before its weights so that a broken config is reported first. */
function readFolderConfig(dir: string): { config: ModelConfig; labels: string[] | null; declaredLabels: boolean; configFile: string } {
  const configFile = join(dir, CONFIG_FILE);
  if (!existsSync(configFile)) throw new Error(`${dir}: no ${CONFIG_FILE} (is this an ImageGPT model folder?)`);
  return { ...configFromHf(readJson(configFile), configFile), configFile };
}

/** A config that declares no labels takes their number from the `score` head, if the weights have one. */
function withScoreLabels(c: { config: ModelConfig; declaredLabels: boolean }, tensors: readonly StoredTensor[]): ModelConfig {
  const score = tensors.find((t) => t.name === 'score.weight');
  return !c.declaredLabels && score ? { ...c.config, numLabels: score.shape[0] ?? 0 } : { ...c.config };
}

/** A model folder with its config read, its weights open (the caller closes them) and the two checked against each other. */
interface OpenFolder {
  dir: string;
  config: ModelConfig;
  labels: string[] | null;
  configFile: string;
  weights: Weights;
  tensors: StoredTensor[];
}

function openFolder(model: string): OpenFolder {
  const dir = resolveModelDir(model);
  const declared = readFolderConfig(dir);
  const weights = openWeights(dir);
  try {
    const tensors = storedTensors(weights);
    const config = withScoreLabels(declared, tensors);
    checkConfigFitsWeights(config, tensors.reduce((s, t) => s + numel(t.shape), 0), declared.configFile, weights.where);
    return { dir, config, labels: declared.labels, configFile: declared.configFile, weights, tensors };
  } catch (err) {
    weights.close();
    throw err;
  }
}

/**
 * Reads config.json, the weights (model.safetensors, or PyTorch's pytorch_model.bin; sharded or
 * not) and the palette of a Hugging Face ImageGPT folder. `model` is a folder, or an `owner/name`
 * in the local Hugging Face cache.
 */
export function loadModelFolder(model: string, options: LoadModelOptions = {}): LoadedModel {
  const { dir, config, labels, configFile, weights } = openFolder(model);
  try {
    const params = new ParameterTensors(config);
    const used = fillParameters(params, {
      has: (name) => weights.locate.has(name),
      readInto: (name, out, shape) => weights.files.get(weights.locate.get(name)!)!.readInto(name, out, shape),
    }, weights.where, options.allowMissingLmHead);
    const ignoredTensors = [...weights.locate.keys()].filter((n) => !used.has(n) && !MASK_BUFFER.test(n));
    const palette = readFolderPalette(dir);
    if (palette) checkPaletteMatchesConfig(palette, config, dir, configFile);
    return { config, params, palette, labels, ignoredTensors };
  } finally {
    weights.close();
  }
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
  /** The folder read (a cached snapshot when a model name was given). */
  dir: string;
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

/** Reads config.json, the palette, and the weight headers of a folder (or cached `owner/name`) without loading any weights. */
export function inspectModelFolder(model: string): ModelFolderSummary {
  const { dir, config, labels, weights, tensors } = openFolder(model);
  weights.close();
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
  return { dir, config, labels, palette, tensors, missing, ignored, weightFiles: [...weights.files.keys()] };
}

// ---------------------------------------------------------------------------------------------
// Conversion

/**
 * Writes the model of folder `from` (e.g. OpenAI's published pytorch_model.bin) as a safetensors
 * folder `to`: config.json, model.safetensors (float32) and preprocessor_config.json. Reading
 * safetensors afterwards is faster and is what the browser demo fetches.
 */
export function convertModelFolder(from: string, to: string): LoadedModel {
  const loaded = loadModelFolder(from);
  saveModelFolder(to, loaded.params, loaded.palette, { labels: loaded.labels ?? undefined, metadata: { source: PYTORCH_FILE } });
  return loaded;
}

/**
 * A folder whose weights are a single model.safetensors (what the browser demo fetches): `model`
 * itself when it has one, else a converted copy in a new temporary folder (`temporary` true: the
 * caller removes it).
 */
export function safetensorsFolder(model: string): { dir: string; temporary: boolean } {
  const dir = resolveModelDir(model);
  if (existsSync(join(dir, WEIGHTS_FILE)) || !existsSync(join(dir, PYTORCH_FILE))) return { dir, temporary: false };
  const copy = mkdtempSync(join(tmpdir(), 'igpt-converted-'));
  try {
    convertModelFolder(dir, copy);
  } catch (err) {
    rmSync(copy, { recursive: true, force: true });
    throw err;
  }
  return { dir: copy, temporary: true };
}
