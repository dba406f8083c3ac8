/**
 * What sampling a model costs in memory, so that a model too big for the machine is refused from
 * its headers, before gigabytes are allocated (and the process is killed halfway).
 */
import { makeConfig, PRESETS, type ModelConfig } from '../model/config.js';
import { ImageGPT } from '../model/model.js';
import { parameterCount } from '../model/parameters.js';
import { availableMemoryBytes, gib } from '../util/memory.js';
import type { KvCachePrecision } from '../model/decode.js';

export interface SamplingMemory {
  total: number;
  /** The float32 parameters. */
  weights: number;
  /** AR: the blocks' matrices packed for decoding; BERT: the forward pass's activations. */
  working: number;
  /** AR: the key/value caches of the images decoded together. */
  caches: number;
}

/**
 * Bytes needed to sample `images` images decoded together (`group` at a time: the kernels' decode
 * group), in `precision` (AR) or by full forward passes (BERT).
 */
export function samplingMemory(cfg: ModelConfig, images: number, group: number, precision: KvCachePrecision,
                               objective: 'ar' | 'bert'): SamplingMemory {
  const { nEmbd: d, nLayer: L, nPositions: T } = cfg;
  const weights = 4 * parameterCount(cfg);
  if (objective === 'bert') {
    const working = ImageGPT.activationBytes(cfg, 1, T, 'inference');
    return { total: weights + working, weights, working, caches: 0 };
  }
  const bytes = precision === 'f16' ? 2 : 4;
  const B = Math.min(images, group);
  const working = 12 * d * d * L * bytes;
  const caches = 2 * L * B * T * d * bytes;
  return { total: weights + working + caches, weights, working, caches };
}

/**
 * Throws, naming the estimate and what would fit, when sampling `cfg` needs more memory than
 * `available` (this machine's, by default).
 */
export function checkSamplingFits(dir: string, cfg: ModelConfig, images: number, group: number, precision: KvCachePrecision,
                                  objective: 'ar' | 'bert', available = availableMemoryBytes()): void {
  const need = samplingMemory(cfg, images, group, precision, objective);
  if (need.total <= available) return;
  const parts = objective === 'ar'
    ? `${gib(need.weights)} of float32 weights, ${gib(need.working)} of packed ${precision} weights, ` +
      `${gib(need.caches)} of key/value caches for ${Math.min(images, group)} images at a time`
    : `${gib(need.weights)} of float32 weights, ${gib(need.working)} of activations`;
  const fits = Object.entries(PRESETS)
    .map(([name, shape]) => ({ name, cfg: makeConfig(shape, cfg.vocabSize - 1, cfg.nPositions, cfg.numLabels) }))
    .map((p) => ({ ...p, need: samplingMemory(p.cfg, images, group, precision, objective).total }))
    .filter((p) => p.need <= available)
    .sort((a, b) => b.need - a.need)[0];
  throw new Error(`${dir}: sampling this model (${(parameterCount(cfg) / 1e6).toFixed(0)}M parameters) needs about ${gib(need.total)} ` +
    `(${parts}) but only ${gib(available)} is available; ` +
    (fits ? `the largest preset that fits is ${fits.name} (${(parameterCount(fits.cfg) / 1e6).toFixed(0)}M parameters, about ${gib(fits.need)})`
          : 'not even the smallest preset fits') +
    (objective === 'ar' && precision === 'f32' ? '; --precision f16 halves the packed weights and caches' : ''));
}
