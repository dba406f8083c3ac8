/** Options and helpers several commands share. */
import type { Command } from 'commander';
import type { Kernels } from '../kernels/kernels.js';
import { loadKernels, type KernelChoice } from '../kernels/select.js';

export function backendOption(cmd: Command): Command {
  return cmd.option('--backend <name>', 'kernels: auto, native (OpenBLAS addon) or portable (TypeScript); default: $IGPT_KERNELS or auto');
}

/** The kernels a command asked for: --backend, else IGPT_KERNELS, else auto. */
export function kernelsFromFlags(flags: { backend?: string }): Kernels {
  const choice = flags.backend;
  if (choice === undefined) return loadKernels();
  if (choice !== 'auto' && choice !== 'native' && choice !== 'portable') {
    throw new Error(`--backend must be auto, native or portable, got "${choice}"`);
  }
  return loadKernels(choice as KernelChoice);
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
