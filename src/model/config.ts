/** Model shape: the fields of Hugging Face's ImageGPTConfig that matter, in our names. */
export interface ModelConfig {
  /** The palette size V + 1: V colors and the SOS token (id V). The LM head has V outputs. */
  vocabSize: number;
  /** Sequence length n² (pixels per image). */
  nPositions: number;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  /** Classes of the `score` head (fine-tuning); 0 for none. */
  numLabels: number;
  layerNormEpsilon: number;
}

/** Model sizes without the data-dependent fields (vocabulary, positions, labels). */
export interface ModelShape { nEmbd: number; nLayer: number; nHead: number }

/**
 * The paper's sizes, and CPU-sized ones. `cpu-m` is the reference config of the benchmarks
 * (d 256, 8 layers, 8 heads).
 */
export const PRESETS: Readonly<Record<string, ModelShape & { about: string }>> = {
  'cpu-tiny': { nEmbd: 32, nLayer: 2, nHead: 2, about: 'tests and smoke runs' },
  'cpu-xs': { nEmbd: 64, nLayer: 4, nHead: 2, about: 'the demo: minutes on 2 cores' },
  'cpu-s': { nEmbd: 128, nLayer: 6, nHead: 4, about: 'an hour on 2 cores' },
  'cpu-m': { nEmbd: 256, nLayer: 8, nHead: 8, about: 'the benchmark reference config' },
  'igpt-s': { nEmbd: 512, nLayer: 24, nHead: 8, about: 'iGPT-S, 76M parameters' },
  'igpt-m': { nEmbd: 1024, nLayer: 36, nHead: 8, about: 'iGPT-M, 455M parameters' },
  'igpt-l': { nEmbd: 1536, nLayer: 48, nHead: 16, about: 'iGPT-L, 1.4B parameters' },
};

export function presetShape(name: string): ModelShape {
  const p = PRESETS[name];
  if (!p) throw new Error(`unknown preset "${name}"; choose one of: ${Object.keys(PRESETS).join(', ')}`);
  return { nEmbd: p.nEmbd, nLayer: p.nLayer, nHead: p.nHead };
}

export function makeConfig(shape: ModelShape, paletteSize: number, pixels: number,
                           numLabels = 10): ModelConfig {
  const cfg: ModelConfig = { ...shape, vocabSize: paletteSize + 1, nPositions: pixels, numLabels,
                             layerNormEpsilon: 1e-5 };
  validateConfig(cfg);
  return cfg;
}

export function validateConfig(cfg: ModelConfig): void {
  const ints: (keyof ModelConfig)[] = ['vocabSize', 'nPositions', 'nEmbd', 'nLayer', 'nHead', 'numLabels'];
  for (const key of ints) {
    const v = cfg[key];
    if (!Number.isInteger(v) || v < (key === 'numLabels' ? 0 : 1)) {
      throw new Error(`model config: ${key} must be a positive integer, got ${v}`);
    }
  }
  if (cfg.vocabSize < 2) throw new Error('model config: vocabSize must be at least 2 (one color + SOS)');
  if (cfg.nEmbd % cfg.nHead !== 0) {
    throw new Error(`model config: nEmbd ${cfg.nEmbd} is not divisible by nHead ${cfg.nHead}`);
  }
}

/** The palette size V: logits per position. */
export const paletteSizeOf = (cfg: ModelConfig): number => cfg.vocabSize - 1;
/** The SOS token id. */
export const sosTokenOf = (cfg: ModelConfig): number => cfg.vocabSize - 1;
