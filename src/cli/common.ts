/** Options and helpers several commands share. */
import type { Command } from 'commander';
import type { Kernels } from '../kernels/kernels.js';
import { loadKernels, PRECISIONS, type KernelChoice, type PrecisionChoice } from '../kernels/select.js';
import { SPLITS, type SplitName } from '../data/tokens.js';
import type { KvCachePrecision } from '../model/decode.js';
import { acquireRunLock, describeOwner, type RunLock } from '../util/run-lock.js';
import { world } from '../parallel/world.js';

export function backendOption(cmd: Command): Command {
  return cmd.option('--backend <name>', 'kernels: auto, native (OpenBLAS addon) or portable (TypeScript); default: $IGPT_KERNELS or auto');
}

/** --precision of the linear layers' matrix products (commands that train or run the full model). */
export function precisionOption(cmd: Command): Command {
  return cmd.option('--precision <p>', 'matrix products of the linear layers: f32, bf16 (bf16 operands, float32 sums; ' +
    'weights, Adam, norms, softmax and loss stay float32; where the CPU has no AVX512-BF16/AMX or the addon no oneDNN, ' +
    'says so and runs f32) or auto (bf16 where available, else f32)', 'f32');
}

/** The kernels a command asked for: --backend, else IGPT_KERNELS, else auto; at --precision (default f32). */
export function kernelsFromFlags(flags: { backend?: string }, precision = 'f32'): Kernels {
  if (!(PRECISIONS as readonly string[]).includes(precision)) {
    throw new Error(`--precision must be ${PRECISIONS.join(', ')}, got "${precision}"`);
  }
  const choice = flags.backend ?? 'auto';
  if (choice !== 'auto' && choice !== 'native' && choice !== 'portable') {
    throw new Error(`--backend must be auto, native or portable, got "${choice}"`);
  }
  return loadKernels(flags.backend === undefined ? undefined : choice as KernelChoice, precision as PrecisionChoice);
}

export function parseNumberOption(name: string, value: string, min: number, max = Infinity): number {
  const v = Number(value);
  if (!Number.isFinite(v) || v < min || v > max) throw new Error(`${name} must be a number in ${min}..${max}, got "${value}"`);
  return v;
}

export function parseIntOption(name: string, value: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = Number(value);
  if (!Number.isInteger(v) || v < min || v > max) throw new Error(`${name} must be an integer in ${min}..${max === Number.MAX_SAFE_INTEGER ? '∞' : max}, got "${value}"`);
  return v;
}

/** --precision of AR decoding, or a clear error. */
export function parsePrecision(value: string): KvCachePrecision {
  if (value !== 'f16' && value !== 'f32') throw new Error(`--precision must be f16 or f32, got "${value}"`);
  return value;
}

/** --split as a split name, or a clear error. */
export function parseSplitOption(value: string): SplitName {
  if (!(SPLITS as readonly string[]).includes(value)) throw new Error(`--split must be one of ${SPLITS.join(', ')}, got "${value}"`);
  return value as SplitName;
}

/**
 * Ctrl-C (or SIGTERM, as from `kill` or a job scheduler) for long work: the first signal asks the
 * work to stop at its next safe point (it polls `requested()`), saying `message`; a second Ctrl-C
 * quits at once. `dispose()` removes the handlers.
 */
export function stopOnInterrupt(message: string): { requested(): boolean; dispose(): void } {
  let stop = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stop && signal === 'SIGINT') process.exit(130);
    if (stop) return;
    stop = true;
    process.stderr.write(`\nigpt: ${signal === 'SIGINT' ? '' : `${signal}: `}${message} (Ctrl-C again to quit at once)\n`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return { requested: () => stop, dispose: () => { process.off('SIGINT', onSignal); process.off('SIGTERM', onSignal); } };
}

/**
 * Holds run folder `dir` for this command (released on exit): a second igpt process on the same
 * folder is refused, naming this one; a lock left by a process that no longer runs is taken over.
 */
export function lockRunFolder(dir: string): RunLock {
  // Under MPI the ranks share the folder and rank 0 alone writes to it, so rank 0 alone holds it.
  if (world().rank !== 0) return { file: '', tookOverFrom: null, release: () => { /* held by rank 0 */ } };
  const lock = acquireRunLock(dir);
  if (lock.tookOverFrom) {
    process.stderr.write(`igpt: warning: ${dir}: taking over the lock of ${describeOwner(lock.tookOverFrom)}, ` +
                         `which is no longer running\n`);
  }
  return lock;
}
