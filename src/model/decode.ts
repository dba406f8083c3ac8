/**
 * Incremental decoding with a key/value cache: feeding token t of B sequences costs one token's
 * work per layer (plus attention over the t cached keys), so sampling a whole image is as much
 * arithmetic as one forward pass over it, not n² passes. The blocks' weight matrices are packed
 * once for products of B rows (see Kernels.packMatrix): the decoder keeps a snapshot of them.
 *
 * Each step reads every cached key and value and every weight once, which makes decoding bound by
 * memory traffic. Given pixels (a completion's kept rows) go through `prefill` instead: the same
 * caches, with each block's products over many positions at once. With precision 'f16' (where the
 * kernels support it) the caches and the packed weights hold half floats: half the bytes, logits
 * within ~1e-3 of the exact ones. 'f32' keeps the cached decoder equal to the full forward pass up
 * to float rounding.
 */
import type { DeviceArray, Kernels, PackedMatrix, PixelDraws } from '../kernels/kernels.js';
import { paletteSizeOf } from './config.js';
import { BLOCK_PRODUCTS, blockForward, headForward, packedLinearForward, type BlockActivations, type BlockProduct } from './layers.js';
import type { ParameterTensors } from './parameters.js';

export type KvCachePrecision = 'f32' | 'f16';

export class KvDecoder<T extends DeviceArray = Float32Array> {
  /** Position of the next token to feed. */
  position = 0;
  /** [B, V] logits (V: the palette size) for the next pixel after each `feed`, on the backend. */
  readonly logits: T;
  /** The precision the caches are held in ('f32' when 'f16' was asked for but is not supported). */
  readonly precision: KvCachePrecision;
  /** The residual stream of the B sequences at the current position, [B, d]. */
  private readonly x: T;
  /** One block's buffers for one position, shared by the layers; the residual is updated in place. */
  private readonly acts: BlockActivations<T>;
  /**
   * Per layer: its products on the packed weights over `rows` rows, and attention over its caches
   * at positions t..t+n-1 (out ← qkv, position-major, B rows a position).
   */
  private readonly layers: { productOver: (rows: number) => BlockProduct<T>; attendOver: (out: T, qkv: T, t: number, n: number) => void }[];
  /** prefill's buffers for PREFILL_CHUNK positions of the B sequences, allocated on first use. */
  private chunk: { x: T; acts: BlockActivations<T> } | null = null;

  constructor(readonly kernels: Kernels<T>, readonly params: ParameterTensors<T>, readonly B: number,
              readonly maxT = params.config.nPositions, precision: KvCachePrecision = 'f32') {
    const { nEmbd: d, nHead: H } = params.config;
    if (maxT > params.config.nPositions) {
      throw new Error(`cannot decode ${maxT} positions with a model of ${params.config.nPositions}`);
    }
    const half = precision === 'f16' ? kernels.attentionDecodeHalf : undefined;
    this.precision = half ? 'f16' : 'f32';
    this.x = kernels.alloc(B * d);
    this.acts = blockBuffers(kernels, this.x, B, d);
    this.logits = kernels.alloc(B * paletteSizeOf(params.config));

    const cacheSize = B * maxT * d;
    const hs = d / H;
    this.layers = params.blocks.map((w) => {
      // The weights packed once for products of B rows (see Kernels.packMatrix).
      const pack = (which: keyof typeof BLOCK_PRODUCTS): PackedMatrix<T> => {
        const [nIn, nOut] = BLOCK_PRODUCTS[which];
        return kernels.packMatrix(w[`${which}W`], nIn * d, nOut * d, half !== undefined);
      };
      const packed = { attn: pack('attn'), attnProj: pack('attnProj'), fc: pack('fc'), mlpProj: pack('mlpProj') };
      const productOver = (rows: number): BlockProduct<T> => (which, out, input, accumulate) =>
        packedLinearForward(kernels, out, input, packed[which], w[`${which}B`], rows, accumulate);
      // One position at a time, unless the kernels attend over several at once (attentionPrefill).
      const stepwise = (attendAt: (out: T, qkv: T, t: number) => void) => (out: T, qkv: T, t: number, n: number): void => {
        for (let i = 0; i < n; i++) attendAt(kernels.view(out, i * B * d, B * d), kernels.view(qkv, i * B * 3 * d, B * 3 * d), t + i);
      };
      if (half) {
        const kCache = new Uint16Array(cacheSize), vCache = new Uint16Array(cacheSize);
        return { productOver, attendOver: stepwise((out, qkv, t) => half(out, qkv, kCache, vCache, B, H, hs, t, maxT)) };
      }
      const kCache = kernels.alloc(cacheSize), vCache = kernels.alloc(cacheSize);
      const prefill = kernels.attentionPrefill?.bind(kernels);
      const attendOver = prefill
        ? (out: T, qkv: T, t: number, n: number) => prefill(out, qkv, kCache, vCache, B, H, hs, t, n, maxT)
        : stepwise((out, qkv, t) => kernels.attentionDecode(out, qkv, kCache, vCache, B, H, hs, t, maxT));
      return { productOver, attendOver };
    });
  }

  reset(): void { this.position = 0; }

  /** Feeds one token per sequence at the current position; fills `logits` for the next one. */
  feed(tokens: Int32Array): T {
    return this.step((x, t) => this.embed(x, tokens.subarray(0, this.B), t));
  }

  /** `feed` of the ids a device draw left in `drawn` (Kernels.pixelDraws): nothing waits for the host. */
  feedDrawn(draws: PixelDraws<T>, drawn: T): T {
    const { wte, wpe, config: { nEmbd: d } } = this.params;
    return this.step((x, t) => draws.embed(x, drawn, wte, this.kernels.view(wpe, t * d, d), this.B, d));
  }

  /** One position: `embed` writes the residual stream x at position t, the blocks and the head follow. */
  private step(embed: (x: T, t: number) => void): T {
    const { B, x, acts } = this;
    const { nEmbd: d, layerNormEpsilon: eps } = this.params.config;
    const t = this.position;
    if (t >= this.maxT) throw new Error(`the decoder is full (${this.maxT} positions)`);
    embed(x, t);
    this.layers.forEach(({ productOver, attendOver }, l) =>
      blockForward(this.kernels, this.params.blocks[l], acts, x, x, B, d, eps, productOver(B), () => attendOver(acts.atty, acts.qkv, t, 1)));
    this.position++;
    return this.head(x);
  }

  /**
   * Feeds P positions at once: `tokens` holds them position-major ([P, B]: position p's B tokens
   * at p·B). The caches and logits are those of P `feed`s, but a block's products run over up to
   * PREFILL_CHUNK positions of all B sequences at once (the weights read once per chunk, not once
   * per position); attention attends over the chunk's positions at once where the kernels can
   * (attentionPrefill), else steps position by position through the caches. For a completion's
   * given pixels.
   */
  prefill(tokens: Int32Array, P: number): T {
    const { B, kernels } = this;
    const { nEmbd: d, layerNormEpsilon: eps } = this.params.config;
    if (P < 1) throw new Error('prefill needs at least one position');
    if (this.position + P > this.maxT) throw new Error(`cannot prefill ${P} positions: the decoder has ${this.maxT - this.position} left`);
    if (tokens.length < P * B) throw new Error(`prefill of ${P} positions needs ${P * B} tokens, got ${tokens.length}`);
    if (!this.chunk) {
      const x = kernels.alloc(PREFILL_CHUNK * B * d);
      this.chunk = { x, acts: blockBuffers(kernels, x, PREFILL_CHUNK * B, d) };
    }
    const { x, acts } = this.chunk;
    let last: T = x;
    for (let first = 0; first < P; first += PREFILL_CHUNK) {
      const n = Math.min(PREFILL_CHUNK, P - first), rows = n * B, start = this.position;
      const at = (a: T, width: number, i: number): T => kernels.view(a, i * B * width, B * width);
      for (let i = 0; i < n; i++) this.embed(at(x, d, i), tokens.subarray((first + i) * B, (first + i + 1) * B), start + i);
      this.layers.forEach(({ productOver, attendOver }, l) =>
        blockForward(kernels, this.params.blocks[l], acts, x, x, rows, d, eps, productOver(rows), () => attendOver(acts.atty, acts.qkv, start, n)));
      this.position += n;
      last = at(x, d, n - 1);
    }
    return this.head(last);
  }

  /** x[b, :] = wte[token b] + wpe[t]: the embedding of a batch of B sequences one position long. */
  private embed(x: T, tokens: Int32Array, t: number): void {
    const { wte, wpe, config: { nEmbd: d } } = this.params;
    this.kernels.embeddingForward(x, tokens, wte, this.kernels.view(wpe, t * d, d), this.B, 1, d);
  }

  /** `logits` for the next pixel from the residual stream x ([B, d]) after the last block. */
  private head(x: T): T {
    const { kernels, params: p, B, acts } = this;
    const { nEmbd: d, layerNormEpsilon: eps } = p.config;
    kernels.normForward(acts.ln1, acts.ln1Rstd, x, p.lnF, B, d, eps);
    headForward(kernels, this.logits, acts.ln1, p.lmHead, B, d, paletteSizeOf(p.config));
    return this.logits;
  }
}

/** Positions per prefill chunk: each weight is read once per 64 positions, and the buffers stay small. */
const PREFILL_CHUNK = 64;

/**
 * A block's buffers for `rows` rows, the norms sharing one (each is read before the next is
 * written); the residual after attention is `residual` itself, updated in place.
 */
function blockBuffers<T extends DeviceArray>(kernels: Kernels<T>, residual: T, rows: number, d: number): BlockActivations<T> {
  const f = (n: number): T => kernels.alloc(n);
  const ln = f(rows * d), rstd = f(rows);
  return {
    ln1: ln, ln1Rstd: rstd, ln2: ln, ln2Rstd: rstd, res2: residual, fch: f(rows * 4 * d), fchGelu: f(rows * 4 * d),
    qkv: f(rows * 3 * d), atty: f(rows * d),
  };
}
