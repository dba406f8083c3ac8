/**
 * Incremental decoding with a key/value cache: feeding token t of B sequences costs one token's
 * work per layer (plus attention over the t cached keys), so sampling a whole image is as much
 * arithmetic as one forward pass over it, not n² passes. The blocks' weight matrices are packed
 * once for products of B rows (see Kernels.packMatrix): the decoder keeps a snapshot of them.
 *
 * Each step reads every cached key and value and every weight once, which makes decoding bound by
 * memory traffic. With precision 'f16' (where the kernels support it) the caches and the packed
 * weights hold half floats: half the bytes, logits within ~1e-3 of the exact ones. 'f32' keeps the
 * cached decoder equal to the full forward pass up to float rounding.
 */
import type { DeviceArray, Kernels, PackedMatrix } from '../kernels/kernels.js';
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
  /** Per layer: its products on the packed weights, and one attention step over its caches (atty ← qkv). */
  private readonly layers: { product: BlockProduct<T>; attend: () => void }[];

  constructor(readonly kernels: Kernels<T>, readonly params: ParameterTensors<T>, readonly B: number,
              readonly maxT = params.config.nPositions, precision: KvCachePrecision = 'f32') {
    const { nEmbd: d, nHead: H } = params.config;
    if (maxT > params.config.nPositions) {
      throw new Error(`cannot decode ${maxT} positions with a model of ${params.config.nPositions}`);
    }
    const half = precision === 'f16' ? kernels.attentionDecodeHalf : undefined;
    this.precision = half ? 'f16' : 'f32';
    const f = (n: number): T => kernels.alloc(n);
    const x = this.x = f(B * d);
    const ln = f(B * d), rstd = f(B);
    const acts: BlockActivations<T> = this.acts = {
      ln1: ln, ln1Rstd: rstd, ln2: ln, ln2Rstd: rstd, res2: x, fch: f(B * 4 * d), fchGelu: f(B * 4 * d),
      qkv: f(B * 3 * d), atty: f(B * d),
    };
    this.logits = f(B * paletteSizeOf(params.config));

    const cacheSize = B * maxT * d;
    const hs = d / H;
    this.layers = params.blocks.map((w) => {
      // The weights packed once for products of B rows (see Kernels.packMatrix).
      const pack = (which: keyof typeof BLOCK_PRODUCTS): PackedMatrix<T> => {
        const [nIn, nOut] = BLOCK_PRODUCTS[which];
        return kernels.packMatrix(w[`${which}W`], nIn * d, nOut * d, half !== undefined);
      };
      const packed = { attn: pack('attn'), attnProj: pack('attnProj'), fc: pack('fc'), mlpProj: pack('mlpProj') };
      const product: BlockProduct<T> = (which, out, input, accumulate) =>
        packedLinearForward(kernels, out, input, packed[which], w[`${which}B`], B, accumulate);
      if (half) {
        const kCache = new Uint16Array(cacheSize), vCache = new Uint16Array(cacheSize);
        return { product, attend: () => half(acts.atty, acts.qkv, kCache, vCache, B, H, hs, this.position, maxT) };
      }
      const kCache = f(cacheSize), vCache = f(cacheSize);
      return { product, attend: () => kernels.attentionDecode(acts.atty, acts.qkv, kCache, vCache, B, H, hs, this.position, maxT) };
    });
  }

  reset(): void { this.position = 0; }

  /** Feeds one token per sequence at the current position; fills `logits` for the next one. */
  feed(tokens: Int32Array): T {
    const kernels = this.kernels;
    const p = this.params;
    const { B, x, acts } = this;
    const { nEmbd: d, layerNormEpsilon: eps } = p.config;
    const t = this.position;
    if (t >= this.maxT) throw new Error(`the decoder is full (${this.maxT} positions)`);
    // x[b, :] = wte[token b] + wpe[t]: the embedding of a batch of B sequences one position long.
    kernels.embeddingForward(x, tokens.subarray(0, B), p.wte, kernels.view(p.wpe, t * d, d), B, 1, d);
    this.layers.forEach(({ product, attend }, l) => blockForward(kernels, p.blocks[l], acts, x, x, B, d, eps, product, attend));
    kernels.normForward(acts.ln1, acts.ln1Rstd, x, p.lnF, B, d, eps);
    headForward(kernels, this.logits, acts.ln1, p.lmHead, B, d, paletteSizeOf(p.config));
    this.position++;
    return this.logits;
  }
}
