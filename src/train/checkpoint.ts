/**
 * Run folders: every checkpoint is a complete Hugging Face ImageGPT folder plus the training state
 * (Adam moments, step, history, options), written under a temporary name and renamed into place,
 * so a crash at any moment leaves the previous checkpoint intact.
 *
 *   run/checkpoints/step-000500/   config.json, model.safetensors, preprocessor_config.json,
 *                                  optimizer.safetensors, trainer_state.json, checksums.json
 *   run/latest.json                which checkpoint is the newest complete one
 *   run/model -> checkpoints/step-000500   (symlink: "the model" for other commands)
 *
 * checksums.json (SHA-256 of every other file, written last) is verified when a checkpoint is
 * loaded: a file that changed on disk since is named, and the run resumes from the one before.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { Palette } from '../palette/palette.js';
import type { ParameterTensors } from '../model/parameters.js';
import { loadModelFolder, saveModelFolder, type LoadedModel } from '../io/hf.js';
import { verifyChecksums, writeChecksums } from '../io/checksums.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { writeFileAtomic } from '../util/fs.js';
import type { Adam } from './adam.js';

const OPTIMIZER_FILE = 'optimizer.safetensors';
const STATE_FILE = 'trainer_state.json';
const LATEST_FILE = 'latest.json';
const KEEP = 2;

export interface Checkpoint<S> extends LoadedModel {
  dir: string;
  state: S;
  adamM: Float32Array;
  adamV: Float32Array;
  adamStep: number;
  /** Newer checkpoints that could not be loaded (loadLatestCheckpoint), each with its error. */
  skipped?: string[];
}

const stepDirName = (step: number): string => `step-${String(step).padStart(6, '0')}`;

/** The folder `saveCheckpoint` writes for step `step` of a run. */
export const checkpointDir = (runDir: string, step: number): string => join(runDir, 'checkpoints', stepDirName(step));

/**
 * Saves a checkpoint of step `step` and makes it the latest; returns its folder. Older checkpoints
 * are removed except the newest two and those whose step is a multiple of `keepEvery` (when > 0).
 */
export function saveCheckpoint<S>(runDir: string, step: number, params: ParameterTensors, palette: Palette | null,
                                  adam: Pick<Adam, 'size' | 'step' | 'm' | 'v'>, state: S, labels?: string[], keepEvery = 0): string {
  const root = join(runDir, 'checkpoints');
  mkdirSync(root, { recursive: true });
  const name = stepDirName(step);
  const tmp = join(root, `.tmp-${name}-${process.pid}`);
  const final = join(root, name);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  try {
    saveModelFolder(tmp, params, palette, { labels, metadata: { step: String(step) } });
    writeSafetensors(join(tmp, OPTIMIZER_FILE), [
      { name: 'adam.m', shape: [adam.size], data: adam.m },
      { name: 'adam.v', shape: [adam.size], data: adam.v },
    ], { step: String(adam.step) });
    writeFileAtomic(join(tmp, STATE_FILE), JSON.stringify(state));
    writeChecksums(tmp);
  } catch (err) {
    // A full disk (or any failed write) loses only this checkpoint: nothing of the run changed yet.
    rmSync(tmp, { recursive: true, force: true });
    const message = (err instanceof Error ? err.message : String(err)).replaceAll(tmp, final);
    const previous = readLatest(runDir);
    throw new Error(`checkpoint of step ${step} not saved: ${message}. ` +
      (previous ? `The previous checkpoint (${previous}) and ${LATEST_FILE} are unchanged; ` +
                  `make room, then continue with --resume` : 'make room, then run again'));
  }
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  writeFileAtomic(join(runDir, LATEST_FILE), JSON.stringify({ step, checkpoint: `checkpoints/${name}` }));
  pointModelLink(runDir, `checkpoints/${name}`);
  pruneCheckpoints(root, name, keepEvery);
  return final;
}

/** `run/model` → the latest checkpoint, replaced atomically (a new link renamed over the old). */
function pointModelLink(runDir: string, target: string): void {
  const link = join(runDir, 'model');
  const tmp = join(runDir, `.model-${process.pid}`);
  rmSync(tmp, { force: true });
  symlinkSync(target, tmp);
  renameSync(tmp, link);
  // A run killed between the two calls above leaves its temporary link behind.
  for (const n of readdirSync(runDir)) if (n.startsWith('.model-')) rmSync(join(runDir, n), { force: true });
}

function pruneCheckpoints(root: string, newest: string, keepEvery: number): void {
  const done = readdirSync(root).filter((n) => /^step-\d+$/.test(n)).sort();
  const kept = (n: string): boolean => n === newest || (keepEvery > 0 && Number(n.slice(5)) % keepEvery === 0);
  for (const n of done.slice(0, Math.max(0, done.length - KEEP))) if (!kept(n)) rmSync(join(root, n), { recursive: true, force: true });
  for (const n of readdirSync(root)) {
    if (n.startsWith('.tmp-') && !n.endsWith(`-${process.pid}`)) rmSync(join(root, n), { recursive: true, force: true });
  }
}

/** The checkpoint latest.json points to (relative to the run folder), or null. */
function readLatest(runDir: string): string | null {
  try {
    return (JSON.parse(readFileSync(join(runDir, LATEST_FILE), 'utf8')) as { checkpoint?: string }).checkpoint ?? null;
  } catch {
    return null;
  }
}

/**
 * The newest complete checkpoint of a run, or null when there is none. latest.json is trusted
 * first; if it is missing or unreadable, or its checkpoint does not load (or fails its checksums),
 * the newest step folder that loads is used.
 */
export function loadLatestCheckpoint<S>(runDir: string): Checkpoint<S> | null {
  const root = join(runDir, 'checkpoints');
  const candidates: string[] = [];
  const latest = readLatest(runDir);
  if (latest) candidates.push(join(runDir, latest));
  if (existsSync(root)) {
    for (const n of readdirSync(root).filter((x) => /^step-\d+$/.test(x)).sort().reverse()) candidates.push(join(root, n));
  }
  const errors: string[] = [];
  for (const dir of new Set(candidates)) {
    try {
      return { ...loadCheckpoint<S>(dir), skipped: errors };
    } catch (err) {
      errors.push(err instanceof Error ? err.message : String(err));
    }
  }
  if (errors.length > 0) throw new Error(`${runDir}: no checkpoint could be loaded:\n  ${errors.join('\n  ')}`);
  return null;
}

/** The step numbers of a run's complete checkpoints, oldest first. */
export function listCheckpoints(runDir: string): { step: number; dir: string }[] {
  const root = join(runDir, 'checkpoints');
  if (!existsSync(root)) return [];
  return readdirSync(root).filter((n) => /^step-\d+$/.test(n)).sort().map((n) => ({ step: Number(n.slice(5)), dir: join(root, n) }));
}

/**
 * Loads one checkpoint folder, after checking its files against checksums.json (when it has one:
 * checkpoints written before checksums were recorded load as they are).
 */
export function loadCheckpoint<S>(dir: string): Checkpoint<S> {
  verifyChecksums(dir);
  const model = loadModelFolder(dir);
  const state = JSON.parse(readFileSync(join(dir, STATE_FILE), 'utf8')) as S;
  const opt = readSafetensors(join(dir, OPTIMIZER_FILE));
  const m = opt.tensors.get('adam.m')?.data;
  const v = opt.tensors.get('adam.v')?.data;
  if (!m || !v || m.length !== model.params.count || v.length !== model.params.count) {
    throw new Error(`${join(dir, OPTIMIZER_FILE)}: Adam moments missing or of the wrong size`);
  }
  return { ...model, dir, state, adamM: m, adamV: v, adamStep: Number(opt.metadata.step ?? 0) };
}
