/** Options and parsers several commands share: each turns a flag's text into a typed value or a clear error. */
import type { Command } from 'commander';
import type { DeviceArray, Kernels } from '../kernels/kernels.js';
import { BACKENDS, backendFromEnv, loadKernels, PRECISIONS } from '../kernels/select.js';
import { loadWebGpuKernels } from '../kernels/webgpu/node-gpu.js';
import { SPLITS, type SplitName } from '../data/tokens.js';
import type { KvCachePrecision } from '../model/decode.js';
import type { Objective } from '../train/objectives.js';
import { acquireRunLock, describeOwner, type RunLock } from '../util/run-lock.js';
import { world } from '../parallel/world.js';

/** --backend: the CPU kernels or a GPU through WebGPU (every command that computes takes it). */
export function backendOption(cmd: Command): Command {
  return cmd.option('--backend <name>', 'kernels: auto (native, else portable), native (OpenBLAS addon), portable (TypeScript) ' +
    'or webgpu (a GPU through WebGPU: the system\'s adapter, else SwiftShader on the CPU); default: $IGPT_KERNELS or auto');
}

/** --hold of pretrain and experiment. */
export const HOLD_HELP = 'hold the peak learning rate until this fraction of the steps, then cosine to 0 (default 0: cosine from the end of warmup)';

/** --precision of the linear layers' matrix products (commands that train or run the full model). */
export function precisionOption(cmd: Command): Command {
  return cmd.option('--precision <p>', 'matrix products of the linear layers: f32, bf16 (bf16 operands, float32 sums; ' +
    'weights, Adam, norms, softmax and loss stay float32; where the CPU has no AVX512-BF16/AMX or the addon no oneDNN, ' +
    'says so and runs f32) or auto (bf16 where available, else f32)', 'f32');
}

/**
 * The kernels a command asked for: --backend, else IGPT_KERNELS, else auto; the CPU kernels'
 * matrix products at `precision` (--precision f32, bf16 or auto; default f32). For `webgpu` the
 * device is acquired before any work; the GPU multiplies in float32: --precision bf16 there says
 * so and runs float32.
 */
export async function kernelsFromFlags(flags: { backend?: string }, precision = 'f32'): Promise<Kernels<DeviceArray>> {
  const choice = flags.backend === undefined ? backendFromEnv() : parseChoice('--backend', flags.backend, BACKENDS);
  if (choice !== 'webgpu') return loadKernels(choice, parseChoice('--precision', precision, PRECISIONS));
  if (precision === 'bf16') process.stderr.write('igpt: --precision bf16: the webgpu kernels multiply in float32 only; running float32\n');
  return loadWebGpuKernels({}, world()); // under mpirun, rank i takes adapter i mod count
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

/** An optional integer flag: undefined when absent. */
export function parseOptionalInt(name: string, value: string | undefined, min: number, max?: number): number | undefined {
  return value === undefined ? undefined : parseIntOption(name, value, min, max);
}

/** An optional number flag: undefined when absent. */
export function parseOptionalNumber(name: string, value: string | undefined, min: number, max?: number): number | undefined {
  return value === undefined ? undefined : parseNumberOption(name, value, min, max);
}

/** One of `choices`, or a clear error naming them. */
export function parseChoice<T extends string>(name: string, value: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(value)) {
    const list = choices.length === 2 ? `${choices[0]} or ${choices[1]}` : `${choices.slice(0, -1).join(', ')} or ${choices[choices.length - 1]}`;
    throw new Error(`${name} must be ${list}, got "${value}"`);
  }
  return value as T;
}

/** --objective: ar or bert. */
export function parseObjective(value: string): Objective {
  return parseChoice('--objective', value, ['ar', 'bert'] as const);
}

/** --objective where it overrides the one recorded with a model: undefined when absent. */
export function parseObjectiveOverride(value: string | undefined): Objective | undefined {
  return value === undefined ? undefined : parseObjective(value);
}

/** --precision of AR decoding. */
export function parsePrecision(value: string): KvCachePrecision {
  return parseChoice('--precision', value, ['f16', 'f32'] as const);
}

/** --split as a split name. */
export function parseSplitOption(value: string): SplitName {
  if (!(SPLITS as readonly string[]).includes(value)) throw new Error(`--split must be one of ${SPLITS.join(', ')}, got "${value}"`);
  return value as SplitName;
}

/** A model's image side, or a clear error when its positions are not a square image. */
export function squareSide(positions: number, what: string): number {
  const side = Math.round(Math.sqrt(positions));
  if (side * side !== positions) throw new Error(`${what}: ${positions} positions is not a square image`);
  return side;
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
