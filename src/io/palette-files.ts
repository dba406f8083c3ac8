/**
 * Palette files: our JSON `{ "k", "channels", "centers": [[...], ...] }` (centers in [-1, 1]),
 * OpenAI's `kmeans_centers.npy` (float32 [512, 3], same scale), an HF preprocessor_config.json,
 * or a model folder holding one of those.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { paletteFromJson, paletteToJson, validatePalette, type Palette } from '../palette/palette.js';
import { writeFileAtomic } from '../util/fs.js';
import { isRepoId, readFolderPalette, readPreprocessorPalette, resolveModelDir } from './hf.js';
import { readOpenAiClusters, writeOpenAiClusters } from './openai.js';

/** Writes a palette as .npy (float32 [k, channels], OpenAI's form) when the path says so, else as our JSON. */
export function savePalette(path: string, p: Palette): void {
  validatePalette(p);
  if (path.endsWith('.npy')) writeOpenAiClusters(path, p);
  else writeFileAtomic(path, JSON.stringify(paletteToJson(p)) + '\n');
}

/** Loads a palette from our JSON or a .npy of centers ([k, 3], [k, 1] or [k]). */
export function loadPalette(path: string): Palette {
  if (path.endsWith('.npy')) return readOpenAiClusters(path);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`${path}: cannot read palette (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: not valid JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  return paletteFromJson(value, path);
}

/** A palette file (.json, .npy), an HF preprocessor_config.json, or the palette of a model folder or cached owner/name. */
export function paletteFromPath(path: string): Palette {
  let isDir = false;
  try { isDir = statSync(path).isDirectory(); } catch { /* loadPalette names the missing file */ }
  // A model by name (owner/name in the Hugging Face cache); palette files keep their extensions.
  if (!isDir && !existsSync(path) && isRepoId(path) && !/\.(json|npy)$/.test(path)) return paletteFromPath(resolveModelDir(path));
  if (isDir) {
    const p = readFolderPalette(path);
    if (!p) throw new Error(`${path}: a folder without preprocessor_config.json or kmeans_centers.npy has no palette`);
    return p;
  }
  return path.endsWith('preprocessor_config.json') ? readPreprocessorPalette(path) : loadPalette(path);
}
