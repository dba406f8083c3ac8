/**
 * Sampling and completion. AR checkpoints decode pixel by pixel through the KV cache; BERT
 * checkpoints fill a mask iteratively with full (non-causal) passes.
 */
import type { DeviceArray, Kernels, PixelDraws } from '../kernels/kernels.js';
import { paletteSizeOf, sosTokenOf, type ModelConfig } from '../model/config.js';
import { KvDecoder, type KvCachePrecision } from '../model/decode.js';
import { ImageGPT } from '../model/model.js';
import type { ParameterTensors } from '../model/parameters.js';
import { Rng } from '../util/rng.js';

export interface SamplingOptions {
  /** 0 means greedy (argmax). */
  temperature: number;
  /** Keep only the k most likely colors (0: all). */
  topK: number;
  /** Keep the smallest set of colors whose probability reaches p (1: all). */
  topP: number;
  seed: number;
  /**
   * AR decoding precision (see KvDecoder): 'f32' (default) decodes exactly as the full forward
   * pass; 'f16' holds the caches and weights in half floats where the kernels support it,
   * moving the logits by ~1e-3, for about half the memory traffic per pixel.
   */
  precision?: KvCachePrecision;
}

export const defaultSampling: SamplingOptions = { temperature: 1, topK: 0, topP: 1, seed: 0 };

/**
 * Draws one id from logits[offset .. offset+V) under the options. `probs` and `order` are
 * scratch of length ≥ V (no allocation per pixel).
 */
export function samplePixel(logits: Float32Array, offset: number, V: number, o: SamplingOptions,
                            rng: Rng, probs: Float64Array, order: Int32Array): number {
  let best = 0;
  for (let i = 1; i < V; i++) if (logits[offset + i] > logits[offset + best]) best = i;
  if (o.temperature <= 0) return best;
  const max = logits[offset + best];
  let total = 0;
  for (let i = 0; i < V; i++) {
    probs[i] = Math.exp((logits[offset + i] - max) / o.temperature);
    total += probs[i];
  }
  let n = V;
  if ((o.topK > 0 && o.topK < V) || o.topP < 1) {
    for (let i = 0; i < V; i++) order[i] = i;
    const sorted = order.subarray(0, V).sort((a, b) => probs[b] - probs[a]);
    n = o.topK > 0 ? Math.min(o.topK, V) : V;
    if (o.topP < 1) {
      let mass = 0;
      for (let i = 0; i < n; i++) {
        mass += probs[sorted[i]] / total;
        if (mass >= o.topP) { n = i + 1; break; }
      }
    }
    let kept = 0;
    for (let i = 0; i < n; i++) kept += probs[sorted[i]];
    let u = rng.next() * kept;
    for (let i = 0; i < n; i++) {
      u -= probs[sorted[i]];
      if (u <= 0) return sorted[i];
    }
    return sorted[n - 1];
  }
  let u = rng.next() * total;
  for (let i = 0; i < V; i++) {
    u -= probs[i];
    if (u <= 0) return i;
  }
  return V - 1;
}

export interface CompletionRequest {
  /** Number of images. */
  count: number;
  /** count × n² ids; positions below `knownPixels` are kept (may be omitted when 0). */
  prefix?: Uint8Array | Uint16Array | Int32Array;
  /** How many leading pixels (raster order) of each image are given. */
  knownPixels: number;
  /**
   * The index of the first image within the whole set (default 0): image i draws from random stream
   * firstImage + i of the seed (Rng.stream), so a set sampled in pieces (decode groups, MPI ranks)
   * gives the images it gives sampled whole.
   */
  firstImage?: number;
}

/**
 * The kernels' decode group for this model: each image's key and value caches (every layer, every
 * position) against the weights of the blocks, in the decoding precision's bytes.
 */
export function decodeGroupFor(kernels: Kernels<DeviceArray>, cfg: ModelConfig, precision: KvCachePrecision): number {
  const bytes = precision === 'f16' ? 2 : 4;
  const imageBytes = 2 * cfg.nLayer * cfg.nPositions * cfg.nEmbd * bytes;
  const weightBytes = 12 * cfg.nLayer * cfg.nEmbd * cfg.nEmbd * bytes;
  return kernels.decodeGroup(imageBytes, weightBytes);
}

/**
 * AR sampling with the KV cache: images whose first `knownPixels` pixels are given (0 for
 * unconditional samples), decoded `decodeGroupFor` images at a time (where decoding is bound by memory
 * traffic, smaller groups keep their caches in cache), each image drawing from its own random stream.
 * `onProgress(done, total)` counts decided pixels over all images. Returns count × n² ids.
 *
 * Any backend: the decoding runs where the kernels do (on a GPU the caches stay there). On the CPU
 * the host draws each pixel from the logits; where the kernels draw on the device
 * (Kernels.pixelDraws), pixels are drawn there with the host's random numbers and read back once.
 * A seed gives the same ids on every backend up to float rounding of the logits.
 */
export async function sampleAutoregressive<T extends DeviceArray>(kernels: Kernels<T>, params: ParameterTensors<T>, req: CompletionRequest,
                                                                  o: SamplingOptions, onProgress?: (done: number, total: number) => void): Promise<Int32Array> {
  const n = params.config.nPositions;
  const out = new Int32Array(req.count * n);
  const group = decodeGroupFor(kernels, params.config, o.precision ?? 'f32');
  for (let first = 0; first < req.count; first += group) {
    const count = Math.min(group, req.count - first);
    const prefix = req.knownPixels > 0 ? req.prefix?.subarray(first * n, (first + count) * n) : undefined;
    const firstImage = (req.firstImage ?? 0) + first;
    const decoding = new AutoregressiveDecoding(kernels, params, { count, prefix, knownPixels: req.knownPixels, firstImage }, o);
    const draws = pixelDrawsFor(kernels, params.config);
    if (draws) {
      for await (const _ of decoding.drawOnDevice(draws)) onProgress?.(first * n + decoding.t * count, req.count * n);
    }
    while (!decoding.done) {
      decoding.decide(await kernels.read(decoding.feed()));
      onProgress?.(first * n + decoding.t * count, req.count * n);
    }
    out.set(decoding.tokens, first * n);
  }
  return out;
}

/** The kernels' draws on the device (Kernels.pixelDraws) where they take this model's palette; null: the host draws. */
export function pixelDrawsFor<T extends DeviceArray>(kernels: Kernels<T>, cfg: ModelConfig): PixelDraws<T> | null {
  const draws = kernels.pixelDraws;
  return draws && paletteSizeOf(cfg) <= draws.maxPaletteSize ? draws : null;
}

/**
 * The same sampling for all images at once, one pixel at a time: yields after pixel t of every
 * image is drawn (tokens is the count × n² output so far, the given pixels included) and returns
 * the output. A caller that must stay responsive can pause between pixels or stop early; one whose
 * logits live on a device (webgpu) drives `AutoregressiveDecoding` itself, drawing on the device
 * (`drawOnDevice`) and reading the ids back every few pixels.
 */
export function* autoregressiveSteps(kernels: Kernels, params: ParameterTensors, req: CompletionRequest,
                                     o: SamplingOptions): Generator<{ t: number; tokens: Int32Array }, Int32Array> {
  const decoding = new AutoregressiveDecoding(kernels, params, req, o);
  while (!decoding.done) {
    decoding.decide(decoding.feed());
    yield { t: decoding.t - 1, tokens: decoding.tokens };
  }
  return decoding.tokens;
}

/**
 * One AR decoding of `req.count` images through the KV cache, on any backend: `feed` records
 * pixel t's step and hands back the [count, V] logits handle, `decide` draws pixel t of every
 * image from the logits on the host. On the CPU the handle is the host array (`decide(feed())`);
 * on a device the caller reads it back in between (`decide(await kernels.read(handle))`).
 * The given pixels are decided when it is made: copied, and fed to the decoder in one prefill.
 */
export class AutoregressiveDecoding<T extends DeviceArray = Float32Array> {
  /** The pixel the next `feed` decodes. */
  t = 0;
  /** count × n² ids decided so far. */
  readonly tokens: Int32Array;
  private readonly decoder: KvDecoder<T>;
  private readonly n: number;
  private readonly V: number;
  private readonly feedIds: Int32Array;
  private readonly rngs: Rng[];
  private readonly probs: Float64Array;
  private readonly order: Int32Array;

  constructor(private readonly kernels: Kernels<T>, params: ParameterTensors<T>, private readonly req: CompletionRequest,
              private readonly o: SamplingOptions) {
    const cfg = params.config;
    const n = this.n = cfg.nPositions;
    const V = this.V = paletteSizeOf(cfg);
    const B = req.count;
    if (req.knownPixels > 0 && (!req.prefix || req.prefix.length < B * n)) {
      throw new Error(`completion needs ${B} × ${n} prefix ids`);
    }
    this.decoder = new KvDecoder(kernels, params, B, n, o.precision ?? 'f32');
    this.tokens = new Int32Array(B * n);
    this.feedIds = new Int32Array(B).fill(sosTokenOf(cfg));
    this.rngs = Array.from({ length: B }, (_, b) => Rng.stream(o.seed, (req.firstImage ?? 0) + b));
    this.probs = new Float64Array(V);
    this.order = new Int32Array(V);
    const K = Math.min(req.knownPixels, n);
    if (K > 0) this.prefillGiven(req.prefix!, K, sosTokenOf(cfg));
  }

  get done(): boolean { return this.t >= this.n; }

  /** Records feeding the previous pixel; the logits for pixel t. */
  feed(): T {
    return this.decoder.feed(this.feedIds);
  }

  /** Decides pixel t of every image from `logits` ([count, V] on the host). */
  decide(logits: Float32Array): void {
    const { t, n, V, req } = this;
    for (let b = 0; b < req.count; b++) {
      const pixel = samplePixel(logits, b * V, V, this.o, this.rngs[b], this.probs, this.order);
      this.tokens[b * n + t] = pixel;
      this.feedIds[b] = pixel;
    }
    this.t++;
  }

  /**
   * Decides every pixel left on the device (Kernels.pixelDraws): each image's random numbers are
   * taken from its stream first (the ones `decide` would take), then pixel after pixel is recorded,
   * embedding the ids the previous draw left on the device, with no wait in between. Every
   * MARK_EVERY pixels a readback of the ids is started; the host stays at most two marks ahead of
   * the device, and at each mark reached `tokens` and `t` catch up with it and the generator yields
   * (a caller may paint, report progress, or stop).
   */
  async *drawOnDevice(draws: PixelDraws<T>): AsyncGenerator<void, void, undefined> {
    const { n, V, o, kernels } = this;
    const B = this.req.count, first = this.t, steps = n - first;
    if (steps <= 0) return;
    const uniforms = new Float32Array(steps * B);
    if (o.temperature > 0) {
      // float32 rounds numbers just below 1 up to 1: keep them below it, as the host's are.
      for (let b = 0; b < B; b++) for (let s = 0; s < steps; s++) uniforms[s * B + b] = Math.min(this.rngs[b].next(), BELOW_ONE);
    }
    const U = kernels.fromHost(uniforms), tokens = draws.idsFromHost(this.tokens), drawn = draws.idsFromHost(new Int32Array(B));
    const marks: { t: number; ids: Promise<Int32Array> }[] = [];
    const reach = async (mark: { t: number; ids: Promise<Int32Array> }): Promise<void> => {
      this.tokens.set(await mark.ids);
      this.t = mark.t;
    };
    try {
      let logits = this.decoder.feed(this.feedIds);
      for (let s = 0; s < steps; s++) {
        if (s > 0) logits = this.decoder.feedDrawn(draws, drawn);
        draws.draw(tokens, drawn, first + s, n, logits, U, s * B, B, V, o);
        if ((s + 1) % MARK_EVERY !== 0 && s !== steps - 1) continue;
        marks.push({ t: first + s + 1, ids: draws.readIds(tokens) });
        if (marks.length > 2) {
          await reach(marks.shift()!);
          yield;
        }
      }
      while (marks.length > 0) {
        await reach(marks.shift()!);
        yield;
      }
    } finally {
      for (const mark of marks) mark.ids.catch(() => undefined); // a caller that stopped early reads no more
    }
  }

  /**
   * Pixels 0..K-1 are given: positions 0..K-1 (SOS, then pixels 0..K-2) go through the decoder in
   * one prefill, and the first `feed` feeds pixel K-1, whose logits are pixel K's.
   */
  private prefillGiven(prefix: ArrayLike<number>, K: number, sos: number): void {
    const { n, tokens, feedIds } = this;
    const B = this.req.count;
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < K; t++) tokens[b * n + t] = prefix[b * n + t];
      feedIds[b] = prefix[b * n + K - 1];
    }
    this.t = K;
    if (this.done) return; // nothing left to draw
    const positionMajor = new Int32Array(K * B);
    for (let b = 0; b < B; b++) {
      positionMajor[b] = sos;
      for (let t = 1; t < K; t++) positionMajor[t * B + b] = prefix[b * n + t - 1];
    }
    this.decoder.prefill(positionMajor, K);
  }
}

/** Pixels drawn on the device between two progress readbacks. */
const MARK_EVERY = 8;
/** The largest float32 below 1. */
const BELOW_ONE = 1 - 2 ** -24;

/**
 * BERT in-filling: positions where `known[i]` is 0 are unknown; `passes` full forward passes
 * each fill an equal share of the remaining pixels, most confident first (or in random order).
 * Image b draws from random stream `firstImage` + b of the seed (see CompletionRequest).
 */
export async function sampleBert<T extends DeviceArray>(kernels: Kernels<T>, params: ParameterTensors<T>, tokens: Int32Array, known: Uint8Array,
                                                       count: number, o: SamplingOptions & { passes: number; order: 'confident' | 'random' },
                                                       firstImage = 0): Promise<Int32Array> {
  const cfg = params.config;
  const n = cfg.nPositions;
  const V = paletteSizeOf(cfg);
  const model = new ImageGPT(kernels, cfg, params);
  const probs = new Float64Array(V);
  const order = new Int32Array(V);
  const inputs = Int32Array.from(tokens, (v, i) => (known[i] ? v : -1));
  const out = Int32Array.from(inputs);
  for (let b = 0; b < count; b++) {
    const rng = Rng.stream(o.seed, firstImage + b);
    const unknown: number[] = [];
    for (let t = 0; t < n; t++) if (!known[b * n + t]) unknown.push(t);
    const passes = Math.max(1, Math.min(o.passes, unknown.length));
    for (let pass = 0; pass < passes && unknown.length > 0; pass++) {
      const row = inputs.subarray(b * n, (b + 1) * n);
      model.forward({ B: 1, T: n, inputs: row, causal: false }, false);
      const logits = await kernels.read(model.activations.logits);
      const take = Math.ceil(unknown.length / (passes - pass));
      if (o.order === 'confident') {
        const confidence = (t: number): number => maxSoftmax(logits, t * V, V);
        unknown.sort((a, c) => confidence(c) - confidence(a));
      } else {
        rng.shuffle(unknown);
      }
      for (const t of unknown.splice(0, take)) {
        const pixel = samplePixel(logits, t * V, V, o, rng, probs, order);
        row[t] = pixel;
        out[b * n + t] = pixel;
      }
    }
  }
  return out;
}

function maxSoftmax(logits: Float32Array, offset: number, V: number): number {
  let max = -Infinity;
  for (let i = 0; i < V; i++) max = Math.max(max, logits[offset + i]);
  let total = 0;
  for (let i = 0; i < V; i++) total += Math.exp(logits[offset + i] - max);
  return 1 / total;
}
