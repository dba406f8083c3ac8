/**
 * Completions in the paper's layout: `samples` completions of each of `count` images whose top
 * `rows` rows are kept (or unconditional samples), AR through the KV cache or BERT in-filling.
 */
import type { DeviceArray, Kernels } from '../kernels/kernels.js';
import { allGatherShares, shareOf, SingleProcess, type Communicator } from '../parallel/communicator.js';
import type { Palette } from '../palette/palette.js';
import { quantize } from '../palette/quantize.js';
import type { ParameterTensors } from '../model/parameters.js';
import type { Objective } from '../train/objectives.js';
import type { CompletionFigure } from './grid.js';
import { sampleAutoregressive, sampleBert, type SamplingOptions } from './sampler.js';

export interface CompleteOptions extends SamplingOptions {
  objective: Objective;
  count: number;
  samples: number;
  /** Rows kept from the top (0 with no originals: unconditional). */
  rows: number;
  /** BERT in-filling passes and order. */
  passes?: number;
  order?: 'confident' | 'random';
  /** AR: pixels decided so far, of count × samples × n² (see sampleAutoregressive). */
  onProgress?: (done: number, total: number) => void;
  /**
   * The ranks that share the work (one process by default; Node callers pass `world()`): each
   * samples its `shareOf` the count × samples images and every rank returns the whole figure,
   * the same as one process gives (each image has its own random stream).
   */
  comm?: Communicator;
}

export async function completeImages<T extends DeviceArray>(kernels: Kernels<T>, params: ParameterTensors<T>, originals: Int32Array | null,
                                                          o: CompleteOptions): Promise<CompletionFigure> {
  const n = params.config.nPositions;
  const side = modelImageSide(params);
  const knownPixels = originals ? o.rows * side : 0;
  const B = o.count * o.samples;
  const prefix = new Int32Array(B * n);
  if (originals) {
    for (let i = 0; i < o.count; i++) {
      for (let s = 0; s < o.samples; s++) prefix.set(originals.subarray(i * n, (i + 1) * n), (i * o.samples + s) * n);
    }
  }
  const comm = o.comm ?? new SingleProcess();
  const { from, to } = shareOf(B, comm.rank, comm.size);
  const mine = prefix.subarray(from * n, to * n);
  let completed: Int32Array;
  if (o.objective === 'bert') {
    const known = new Uint8Array((to - from) * n);
    for (let i = 0; i < to - from; i++) known.fill(1, i * n, i * n + knownPixels);
    completed = await sampleBert(kernels, params, mine, known, to - from, { ...o, passes: o.passes ?? 16, order: o.order ?? 'confident' }, from);
  } else {
    // Rank 0's share is the largest (shareOf), so its progress, scaled to the whole, is the job's.
    const onProgress = o.onProgress && ((done: number): void => o.onProgress!(Math.round((done * B) / (to - from)), B * n));
    completed = await sampleAutoregressive(kernels, params, { count: to - from, prefix: mine, knownPixels, firstImage: from }, o, onProgress);
  }
  const completions = allGatherShares(comm, completed, B, n);
  const known = originals ? new Uint8Array(o.count * n) : null;
  if (known) for (let i = 0; i < o.count; i++) known.fill(1, i * n, i * n + knownPixels);
  return { side, originals, completions, known, count: o.count, samples: o.samples };
}

/** The image side a model reads (n² positions). */
export function modelImageSide(params: ParameterTensors<DeviceArray>): number {
  const n = params.config.nPositions;
  const side = Math.round(Math.sqrt(n));
  if (side * side !== n) throw new Error(`a model of ${n} positions does not read square images`);
  return side;
}

/**
 * Completions of images given as pixels: count × side² × channels bytes (HWC, the palette's
 * channels, the model's side), quantized with the palette; the top `rows` rows are kept.
 */
export async function completePixels<T extends DeviceArray>(k: Kernels<T>, params: ParameterTensors<T>, palette: Palette, pixels: Uint8Array,
                                                          o: Omit<CompleteOptions, 'count'>): Promise<CompletionFigure> {
  const side = modelImageSide(params);
  const size = side * side * palette.channels;
  if (pixels.length === 0 || pixels.length % size !== 0) {
    throw new Error(`${pixels.length} bytes are not whole ${side}×${side} images of ${palette.channels} channel(s)`);
  }
  return completeImages(k, params, Int32Array.from(quantize(palette, pixels)), { ...o, count: pixels.length / size });
}
