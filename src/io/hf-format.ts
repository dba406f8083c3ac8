/**
 * Hugging Face ImageGPT folders without a file system: config.json ⇄ ModelConfig, the palette in
 * preprocessor_config.json, and filling a model's parameters from stored tensors by HF name.
 * No Node imports: hf.ts (folders on disk) and the browser demo (files fetched over HTTP) share it.
 */
import { type ModelConfig, validateConfig } from '../model/config.js';
import { ParameterTensors } from '../model/parameters.js';
import type { Palette } from '../palette/palette.js';
import { parseSafetensors } from './safetensors-format.js';

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';
export const WEIGHTS_INDEX_FILE = 'model.safetensors.index.json';
export const PREPROCESSOR_FILE = 'preprocessor_config.json';
export const PYTORCH_FILE = 'pytorch_model.bin';
export const PYTORCH_INDEX_FILE = 'pytorch_model.bin.index.json';

// ---------------------------------------------------------------------------------------------
// config.json

/**
 * Dropout is written as 0: the paper trains without dropout, and a folder should say how it was
 * trained, so that fine-tuning it in transformers continues the same regime. (HF's default is 0.1;
 * it only matters in train mode, never for inference.)
 */
const DROPOUT = 0;

/** The ImageGPTConfig JSON object for a model, keys sorted as transformers writes them. */
export function configToHf(config: ModelConfig, labels?: string[]): Record<string, unknown> {
  let names: string[] | null = null;
  if (config.numLabels > 0) {
    names = labels ?? Array.from({ length: config.numLabels }, (_, i) => `LABEL_${i}`);
    if (names.length !== config.numLabels) {
      throw new Error(`${names.length} label names given for ${config.numLabels} labels`);
    }
    if (new Set(names).size !== names.length) throw new Error('label names must be distinct');
  } else if (labels && labels.length > 0) {
    throw new Error(`${labels.length} label names given for a model without a class head (numLabels 0)`);
  }
  return {
    activation_function: 'quick_gelu',
    architectures: ['ImageGPTForCausalImageModeling'],
    attn_pdrop: DROPOUT,
    embd_pdrop: DROPOUT,
    ...(names && { id2label: Object.fromEntries(names.map((n, i) => [String(i), n])) }),
    initializer_range: 0.02,
    ...(names && { label2id: Object.fromEntries(names.map((n, i) => [n, i])) }),
    layer_norm_epsilon: config.layerNormEpsilon,
    model_type: 'imagegpt',
    n_embd: config.nEmbd,
    n_head: config.nHead,
    n_inner: null,
    n_layer: config.nLayer,
    n_positions: config.nPositions,
    reorder_and_upcast_attn: false,
    resid_pdrop: DROPOUT,
    scale_attn_by_inverse_layer_idx: false,
    scale_attn_weights: true,
    tie_word_embeddings: false,
    torch_dtype: 'float32',
    use_cache: true,
    vocab_size: config.vocabSize,
  };
}

/** Maps an ImageGPTConfig JSON object to our ModelConfig; refuses what our model cannot compute. */
export function configFromHf(json: unknown, file: string): { config: ModelConfig; labels: string[] | null; declaredLabels: boolean } {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${file}: expected a JSON object`);
  const hf = json as Record<string, unknown>;
  if (hf.model_type !== undefined && hf.model_type !== 'imagegpt') {
    throw new Error(`${file}: model_type is ${JSON.stringify(hf.model_type)}, expected "imagegpt" (iGPT's norm and ` +
                    'activation differ from GPT-2, so other model types cannot be loaded)');
  }
  const int = (key: string, fallback?: string): number => {
    const v = hf[key] ?? (fallback ? hf[fallback] : undefined);
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new Error(`${file}: "${key}" must be an integer, got ${JSON.stringify(v)}`);
    return v;
  };
  const activation = hf.activation_function ?? 'quick_gelu';
  if (activation !== 'quick_gelu') {
    throw new Error(`${file}: activation_function ${JSON.stringify(activation)} is not supported; iGPT uses ` +
                    '"quick_gelu" (x·sigmoid(1.702x)) and so does this implementation');
  }
  const flag = (key: string, want: boolean): void => {
    if (hf[key] !== undefined && hf[key] !== want) {
      throw new Error(`${file}: ${key} = ${JSON.stringify(hf[key])} is not supported (expected ${want})`);
    }
  };
  flag('scale_attn_weights', true);
  flag('scale_attn_by_inverse_layer_idx', false);
  const nEmbd = int('n_embd');
  if (hf.n_inner !== undefined && hf.n_inner !== null && hf.n_inner !== 4 * nEmbd) {
    throw new Error(`${file}: n_inner = ${JSON.stringify(hf.n_inner)} is not supported (the MLP width must be 4·n_embd = ${4 * nEmbd})`);
  }
  const eps = hf.layer_norm_epsilon ?? 1e-5;
  if (typeof eps !== 'number' || !(eps > 0)) throw new Error(`${file}: layer_norm_epsilon must be a positive number`);

  let labels: string[] | null = null;
  let numLabels = 0;
  let declaredLabels = false;
  if (hf.id2label !== undefined) {
    if (typeof hf.id2label !== 'object' || hf.id2label === null) throw new Error(`${file}: id2label must be an object`);
    const entries = Object.entries(hf.id2label as Record<string, unknown>);
    labels = [];
    for (let i = 0; i < entries.length; i++) {
      const name = (hf.id2label as Record<string, unknown>)[String(i)];
      if (typeof name !== 'string') throw new Error(`${file}: id2label must map "0".."${entries.length - 1}" to names`);
      labels.push(name);
    }
    numLabels = labels.length;
    declaredLabels = true;
  } else if (hf.num_labels !== undefined) {
    numLabels = int('num_labels');
    declaredLabels = true;
  }
  const config: ModelConfig = {
    vocabSize: int('vocab_size'),
    nPositions: int('n_positions', 'n_ctx'),
    nEmbd,
    nLayer: int('n_layer'),
    nHead: int('n_head'),
    numLabels,
    layerNormEpsilon: eps,
  };
  try {
    validateConfig(config);
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`);
  }
  return { config, labels, declaredLabels };
}

// ---------------------------------------------------------------------------------------------
// preprocessor_config.json

/** The shortest decimal that reads back as the same float32 (so `clusters` stay legible). */
export function float32Json(v: number): string {
  if (!Number.isFinite(v)) throw new Error(`cannot write ${v} to JSON`);
  const f = Math.fround(v);
  for (let p = 1; p < 9; p++) {
    const s = Number(f.toPrecision(p));
    if (Math.fround(s) === f) return JSON.stringify(s);
  }
  return JSON.stringify(Number(f.toPrecision(9)));
}

/** preprocessor_config.json text: HF ImageGPTImageProcessor fields, one palette color a line. */
export function preprocessorJson(palette: Palette, size: { height: number; width: number }): string {
  const rows: string[] = [];
  for (let i = 0; i < palette.k; i++) {
    const row: string[] = [];
    for (let c = 0; c < palette.channels; c++) row.push(float32Json(palette.centers[i * palette.channels + c]));
    rows.push(`    [${row.join(', ')}]`);
  }
  return [
    '{',
    `  "clusters": [\n${rows.join(',\n')}\n  ],`,
    '  "do_color_quantize": true,',
    '  "do_normalize": true,',
    '  "do_resize": true,',
    '  "image_processor_type": "ImageGPTImageProcessor",',
    '  "resample": 2,',
    `  "size": { "height": ${size.height}, "width": ${size.width} }`,
    '}',
    '',
  ].join('\n');
}

/** The palette (`clusters`) of a parsed preprocessor_config.json; `file` names it in errors. */
export function paletteFromPreprocessor(json: unknown, file: string): Palette {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${file}: expected a JSON object`);
  const clusters = (json as Record<string, unknown>).clusters;
  if (!Array.isArray(clusters) || clusters.length === 0) throw new Error(`${file}: "clusters" must be a non-empty list of colors`);
  const first = clusters[0];
  const channels = Array.isArray(first) ? first.length : 0;
  if (channels !== 1 && channels !== 3) throw new Error(`${file}: each cluster must hold 1 (gray) or 3 (RGB) values, got ${channels}`);
  const centers = new Float32Array(clusters.length * channels);
  clusters.forEach((row: unknown, i) => {
    if (!Array.isArray(row) || row.length !== channels || !row.every((v) => typeof v === 'number' && Number.isFinite(v))) {
      throw new Error(`${file}: cluster ${i} is not a list of ${channels} numbers`);
    }
    for (let c = 0; c < channels; c++) centers[i * channels + c] = row[c] as number;
  });
  return { k: clusters.length, channels, centers };
}

// ---------------------------------------------------------------------------------------------
// Parameters from stored tensors

/** HF's causal-mask buffers (`attn.bias`, `attn.masked_bias`), present in older checkpoints. */
export const MASK_BUFFER = /(^|\.)h\.\d+\.attn\.(bias|masked_bias)$/;

/** The names a tensor may carry in a file: ours, and without `transformer.` (HF's ImageGPTModel). */
export function candidateNames(name: string): string[] {
  return name.startsWith('transformer.') ? [name, name.slice('transformer.'.length)] : [name];
}

/** Where the stored tensors come from: a name lookup and a reader into a parameter view. */
export interface StoredTensors {
  has(name: string): boolean;
  /** Copies stored tensor `name` (checked to have `shape`) into `out`. */
  readInto(name: string, out: Float32Array, shape: readonly number[]): void;
}

/**
 * Fills every parameter of `params` from `source` (under its HF name or the bare-model name).
 * A missing `score.weight` (and `lm_head.weight` when allowed) stays zero, as OpenAI's init leaves
 * a fresh head; any other missing tensor is an error naming `where`. Returns the stored names used.
 */
export function fillParameters(params: ParameterTensors, source: StoredTensors, where: string,
                               allowMissingLmHead = false): Set<string> {
  const used = new Set<string>();
  for (const t of params.layout) {
    const stored = candidateNames(t.name).find((n) => source.has(n));
    if (stored === undefined) {
      const optional = t.name === 'score.weight' || (t.name === 'lm_head.weight' && allowMissingLmHead);
      if (optional) continue;
      const also = candidateNames(t.name).slice(1).map((n) => ` or "${n}"`).join('');
      const hint = t.name === 'lm_head.weight'
        ? ' (a bare ImageGPTModel or ImageGPTForImageClassification checkpoint has no LM head)' : '';
      throw new Error(`${where}: missing tensor "${t.name}"${also}${hint}`);
    }
    used.add(stored);
    source.readInto(stored, params.data.subarray(t.offset, t.offset + t.size), t.shape);
  }
  return used;
}

/** The number of parameters of a config, by formula (no layout is built: the config may be forged). */
export function parameterCountOf(c: ModelConfig): number {
  const d = c.nEmbd;
  return (2 * c.vocabSize - 1 + c.nPositions + c.numLabels + 1) * d + c.nLayer * (12 * d * d + 11 * d);
}

/**
 * Refuses, before anything is allocated, a config.json that describes a far bigger model than the
 * weights hold: a corrupt or forged n_layer or n_embd would otherwise ask for terabytes. Folders
 * that merely lack a few tensors pass here and get the precise "missing tensor" error later.
 */
export function checkConfigFitsWeights(config: ModelConfig, storedValues: number, configFile: string, where: string): void {
  const count = parameterCountOf(config);
  if (count > 2 * storedValues + 1024) {
    throw new Error(`${configFile}: describes a model of ${count} parameters, but ${where} holds only ${storedValues} ` +
                    'values (the config does not belong to these weights, or one of them is corrupt)');
  }
}

/** Throws unless the palette fits the model's vocabulary (k colors + SOS). */
export function checkPaletteMatchesConfig(palette: Palette, config: ModelConfig, where: string,
                                          configFile: string): void {
  if (palette.k !== config.vocabSize - 1) {
    throw new Error(`${where}: the palette has ${palette.k} colors, but ${configFile} has vocab_size ` +
                    `${config.vocabSize} (expected ${config.vocabSize - 1} colors + SOS)`);
  }
}

/** A model read from the bytes of a folder's files (e.g. fetched over HTTP in the browser). */
export interface ModelFromFiles {
  config: ModelConfig;
  params: ParameterTensors;
  palette: Palette | null;
  labels: string[] | null;
}

/**
 * Builds a model from a folder's file contents: config.json (parsed JSON), model.safetensors
 * (bytes) and, when present, preprocessor_config.json (parsed JSON). `folder` names the source in
 * errors (a directory or a URL).
 */
export function modelFromFiles(folder: string, configJson: unknown, weights: Uint8Array,
                               preprocessorJson: unknown | null): ModelFromFiles {
  const configFile = `${folder}/${CONFIG_FILE}`, weightsFile = `${folder}/${WEIGHTS_FILE}`;
  const { config: declared, labels, declaredLabels } = configFromHf(configJson, configFile);
  const { tensors } = parseSafetensors(weights, weightsFile);
  const config = { ...declared };
  const score = tensors.get('score.weight');
  if (!declaredLabels && score) config.numLabels = score.shape[0] ?? 0;
  let stored = 0;
  for (const t of tensors.values()) stored += t.data.length;
  checkConfigFitsWeights(config, stored, configFile, weightsFile);
  const params = new ParameterTensors(config);
  fillParameters(params, {
    has: (name) => tensors.has(name),
    readInto: (name, out, shape) => {
      const t = tensors.get(name)!;
      if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
        throw new Error(`${weightsFile}: tensor "${name}" has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
      }
      out.set(t.data);
    },
  }, weightsFile);
  const palette = preprocessorJson === null ? null
    : paletteFromPreprocessor(preprocessorJson, `${folder}/${PREPROCESSOR_FILE}`);
  if (palette) checkPaletteMatchesConfig(palette, config, folder, configFile);
  return { config, params, palette, labels };
}
