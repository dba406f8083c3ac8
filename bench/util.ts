import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TokenDataset } from '../src/data/tokens.js';
import type { PretrainOptions } from '../src/train/trainer.js';
import { allocTokens } from '../src/palette/quantize.js';
import { Rng } from '../src/util/rng.js';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
export const python = '/usr/bin/python3';

/** Runs a command and parses the last line of its stdout as JSON; null (with a reason) on failure. */
/**
 * The environment as the bench started, before our kernels loaded: the native addon sets
 * OMP_WAIT_POLICY=passive for its own process (oneDNN's idle threads must not spin), and a peer
 * that inherited it would run its OpenMP threads slower than its users see.
 */
const peerEnv: NodeJS.ProcessEnv = { ...process.env };

export function runJson<T>(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): T | { error: string } {
  const r = spawnSync(cmd, args, { cwd: repoRoot, encoding: 'utf8', env: { ...peerEnv, ...opts.env }, timeout: opts.timeoutMs ?? 30 * 60_000, maxBuffer: 64 << 20 });
  if (r.status !== 0) return { error: `${cmd} ${args.join(' ')} exited ${r.status}: ${(r.stderr || '').trim().split('\n').slice(-3).join(' | ')}` };
  const lines = r.stdout.trim().split('\n');
  try {
    return JSON.parse(lines[lines.length - 1]) as T;
  } catch {
    return { error: `no JSON from ${cmd}: ${lines.slice(-2).join(' | ')}` };
  }
}

export const isError = (x: unknown): x is { error: string } => typeof x === 'object' && x !== null && 'error' in x;

export function hasTorch(): boolean {
  return existsSync(python) && spawnSync(python, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
}

/** Median of a list of numbers. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Best wall time (ms) of `reps` runs after one warm-up. */
export function bestMs(reps: number, fn: () => void): number {
  fn();
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

/** `images` uniformly random side×side images of k colors in each split, to time the real Trainer on. */
export function randomTokenDataset(side: number, k: number, images: number, seed = 1): TokenDataset {
  const rng = new Rng(seed);
  const T = side * side;
  const split = (): TokenDataset['train'] => {
    const tokens = allocTokens(k, images * T);
    for (let i = 0; i < tokens.length; i++) tokens[i] = rng.int(k);
    return { count: images, tokens, labels: new Int32Array(images).fill(-1) };
  };
  return {
    meta: { source: 'synthetic', side, pixels: T, channels: 1, numClasses: 0, splitSeed: 0 },
    palette: { k, channels: 1, centers: Float32Array.from({ length: k }, (_, i) => -1 + (2 * i) / (k - 1)) },
    train: split(), val: split(), test: split(),
  };
}

/** Trainer options for timing steps: AR, a flat rate without warmup, no validation or checkpoints. */
export function timingOptions(batch: number, steps: number, lr: number): PretrainOptions {
  return { objective: 'ar', batch, lr, steps, warmup: 0, cosine: false, seed: 0, maskProb: 0.15, evalEvery: 0, evalImages: 0, checkpointEvery: 0 };
}
