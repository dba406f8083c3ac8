/**
 * Probe features cached on disk (one safetensors file per split, one tensor per layer), keyed by
 * the model's weights file and the dataset, so probing again or the low-data protocol costs no
 * forward pass.
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { TokenSplit } from '../data/tokens.js';
import type { DeviceArray } from '../kernels/kernels.js';
import type { ImageGPT } from '../model/model.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { extractFeatures, pooledWidth, type ExtractedFeatures, type FeatureOptions } from './features.js';
import { world } from '../parallel/world.js';

/** What identifies a set of features: if any of it changes, they are computed again. */
export function featureCacheKey(modelDir: string, dataDir: string, split: string, o: FeatureOptions): string {
  const weights = join(modelDir, 'model.safetensors');
  const stamp = existsSync(weights) ? `${statSync(weights).size}:${statSync(weights).mtimeMs}` : 'unknown';
  return JSON.stringify({ weights: stamp, data: dataDir, split, objective: o.objective, pooling: o.pooling ?? 'mean', masks: o.masks ?? 1,
                          maskProb: o.maskProb ?? 0.15, seed: o.seed ?? 0, maxImages: o.maxImages ?? null });
}

/** Features of one split: from `cacheDir` when the key matches, else extracted and stored. */
export async function cachedFeatures<T extends DeviceArray>(model: ImageGPT<T>, split: TokenSplit, splitName: string, cacheDir: string,
                                                            key: string, o: FeatureOptions): Promise<ExtractedFeatures & { cached: boolean }> {
  const file = join(cacheDir, `features-${splitName}.safetensors`);
  const L = model.config.nLayer;
  // Features from bf16 products differ from float32 ones: the precision is part of the key.
  const stamp = `${key} precision:${model.precision}`;
  let hit: ExtractedFeatures | null = null;
  if (existsSync(file)) {
    try {
      const stored = readSafetensors(file);
      if (stored.metadata.key === stamp) {
        const layers = Array.from({ length: L + 1 }, (_, l) => stored.tensors.get(`layer.${l}`)?.data);
        if (layers.every((x): x is Float32Array => x !== undefined)) hit = { layers, natsPerPixel: Number(stored.metadata.natsPerPixel) };
      }
    } catch { /* a damaged cache is recomputed */ }
  }
  // Under MPI extraction is collective: the cache serves only if it serves every rank.
  const missed = new Int32Array([hit ? 0 : 1]);
  world().allReduce(missed, 'max');
  if (hit && missed[0] === 0) return { ...hit, cached: true };
  const extracted = await extractFeatures(model, split, o);
  if (world().rank !== 0) return { ...extracted, cached: false }; // under MPI, rank 0 alone writes
  mkdirSync(cacheDir, { recursive: true });
  const width = pooledWidth(model.config.nEmbd, o.pooling);
  const count = extracted.layers[0].length / width;
  writeSafetensors(file, extracted.layers.map((data, l) => ({ name: `layer.${l}`, shape: [count, width], data })),
                   { key: stamp, natsPerPixel: String(extracted.natsPerPixel) });
  return { ...extracted, cached: false };
}
