/** Messages between the page (main.ts) and the sampling worker (worker.ts). */

/** What the page shows about the loaded model. */
export interface ModelInfo {
  side: number;
  channels: 1 | 3;
  /** Palette size (colors); the vocabulary is k + 1 with SOS. */
  k: number;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  parameters: number;
  /** k × channels palette centers in [-1, 1]. */
  centers: Float32Array;
  /** Which kernels the worker computes with. */
  kernels: string;
  /** Where the model runs, in a few words: "WebGPU (vendor architecture)" or "WebAssembly (why not WebGPU)". */
  runsOn: string;
  /** Download + parse time of the model files. */
  loadSeconds: number;
  bytes: number;
}

export interface CompleteRequest {
  type: 'complete';
  /** Identifies the run; messages of an older run are ignored by the page. */
  id: number;
  /** n² palette ids of the image to complete (only the first knownPixels matter). */
  image: Int32Array;
  knownPixels: number;
  /** Completions sampled at once (one batch through the KV cache). */
  count: number;
  temperature: number;
  topK: number;
  seed: number;
}

export type ToWorker =
  | { type: 'load'; baseUrl: string }
  | CompleteRequest
  | { type: 'stop' };

export type FromWorker =
  | { type: 'loaded'; info: ModelInfo }
  /** Pixels [from, to) of every completion: count × (to - from) ids, completion-major. */
  | { type: 'pixels'; id: number; from: number; to: number; ids: Int32Array }
  | { type: 'done'; id: number; stopped: boolean; seconds: number; pixels: number }
  | { type: 'error'; message: string };
