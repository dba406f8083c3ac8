/** The sampling flags `igpt sample` and `igpt complete` share: declared and parsed in one place. */
import type { Command } from 'commander';
import type { SamplingOptions } from '../sample/sampler.js';
import { parseIntOption, parseNumberOption, parsePrecision } from './common.js';

export interface SamplingFlags {
  samples: string; temperature: string; topK: string; topP: string; seed: string; passes: string;
  precision: string; scale: string;
}

export function samplingOptions(cmd: Command): Command {
  return cmd
    .option('--samples <n>', 'completions per image', '4')
    .option('--temperature <t>', 'softmax temperature; 0 is greedy', '1')
    .option('--top-k <k>', 'sample among the k likeliest colors (0: all)', '0')
    .option('--top-p <p>', 'nucleus sampling mass (1: all)', '1')
    .option('--seed <n>', 'sampling seed', '0')
    .option('--passes <n>', 'BERT: forward passes to fill the hidden pixels', '16')
    .option('--precision <p>', 'AR decoding: f16 (half-float caches and weights where the CPU has them, faster) or f32 (exact)', 'f16')
    .option('--scale <s>', 'PNG upscaling factor of the grid', '4');
}

export interface ParsedSampling {
  sampling: SamplingOptions;
  samples: number;
  passes: number;
  scale: number;
}

export function parseSampling(flags: SamplingFlags): ParsedSampling {
  return {
    sampling: {
      temperature: parseNumberOption('--temperature', flags.temperature, 0),
      topK: parseIntOption('--top-k', flags.topK, 0), topP: parseNumberOption('--top-p', flags.topP, 0, 1),
      seed: parseIntOption('--seed', flags.seed, 0), precision: parsePrecision(flags.precision),
    },
    samples: parseIntOption('--samples', flags.samples, 1, 64),
    passes: parseIntOption('--passes', flags.passes, 1),
    scale: parseIntOption('--scale', flags.scale, 1, 32),
  };
}
