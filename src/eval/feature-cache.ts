/**
 * Probe features cached on disk (one safetensors file per split, one tensor per layer), keyed by
 * the model's weights file and the dataset, so probing again or the low-data protocol costs no
 * forward pass.
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { TokenSplit } from '../data/tokens.js';
import type { ImageGPT } from '../model/model.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { extractFeatures, type ExtractedFeatures, type FeatureOptions } from './features.js';

/** What identifies a set of features: if any of it changes, they are computed again. */
export function featureCacheKey(modelDir: string, dataDir: string, split: string, o: FeatureOptions): string {
  const weights = join(modelDir, 'model.safetensors');
  const stamp = existsSync(weights) ? `${statSync(weights).size}:${statSync(weights).mtimeMs}` : 'unknown';
  return JSON.stringify({ weights: stamp, data: dataDir, split, objective: o.objective, masks: o.masks ?? 1,
                          maskProb: o.maskProb ?? 0.15, seed: o.seed ?? 0, maxImages: o.maxImages ?? null });
}

/** Features of one split: from `cacheDir` when the key matches, else extracted and stored. */
export function cachedFeatures(model: ImageGPT, split: TokenSplit, splitName: string, cacheDir: string,
                               key: string, o: FeatureOptions): ExtractedFeatures & { cached: boolean } {
  const file = join(cacheDir, `features-${splitName}.safetensors`);
  const L = model.config.nLayer;
  if (existsSync(file)) {
    try {
      const stored = readSafetensors(file);
      if (stored.metadata.key === key) {
        const layers = Array.from({ length: L + 1 }, (_, l) => stored.tensors.get(`layer.${l}`)?.data);
        if (layers.every((x): x is Float32Array => x !== undefined)) {
          return { layers, natsPerPixel: Number(stored.metadata.natsPerPixel), cached: true };
        }
      }
    } catch { /* a damaged cache is recomputed */ }
  }
  const extracted = extractFeatures(model, split, o);
  mkdirSync(cacheDir, { recursive: true });
  const count = extracted.layers[0].length / model.config.nEmbd;
  writeSafetensors(file, extracted.layers.map((data, l) => ({ name: `layer.${l}`, shape: [count, model.config.nEmbd], data })),
                   { key, natsPerPixel: String(extracted.natsPerPixel) });
  return { ...extracted, cached: false };
}
