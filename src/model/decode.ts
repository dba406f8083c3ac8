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
import type { Kernels, PackedMatrix } from '../kernels/kernels.js';
import { paletteSizeOf } from './config.js';
import { headForward, packedLinearForward } from './layers.js';
import type { ParameterTensors } from './parameters.js';

export type KvCachePrecision = 'f32' | 'f16';

/** One block's weight matrices, packed. */
interface PackedBlock { attn: PackedMatrix; attnProj: PackedMatrix; fc: PackedMatrix; mlpProj: PackedMatrix }

export class KvDecoder {
  /** Position of the next token to feed. */
  position = 0;
  /** [B, k] logits for the next pixel after each `feed`. */
  readonly logits: Float32Array;
  /** The precision the caches are held in ('f32' when 'f16' was asked for but is not supported). */
  readonly precision: KvCachePrecision;
  private readonly blocks: PackedBlock[];
  /** Per layer: one attention step at position t over that layer's caches (atty ← qkv). */
  private readonly attend: ((t: number) => void)[];
  private readonly x: Float32Array;
  private readonly ln: Float32Array;
  private readonly rstd: Float32Array;
  private readonly qkv: Float32Array;
  private readonly atty: Float32Array;
  private readonly fch: Float32Array;
  private readonly fchGelu: Float32Array;

  constructor(readonly kernels: Kernels, readonly params: ParameterTensors, readonly B: number,
              readonly maxT = params.config.nPositions, precision: KvCachePrecision = 'f32') {
    const { nEmbd: d, nLayer: L, nHead: H } = params.config;
    if (maxT > params.config.nPositions) {
      throw new Error(`cannot decode ${maxT} positions with a model of ${params.config.nPositions}`);
    }
    const half = precision === 'f16' ? kernels.attentionDecodeHalf : undefined;
    this.precision = half ? 'f16' : 'f32';
    this.blocks = params.blocks.map((w) => ({
      attn: kernels.packMatrix(w.attnW, d, 3 * d, half !== undefined),
      attnProj: kernels.packMatrix(w.attnProjW, d, d, half !== undefined),
      fc: kernels.packMatrix(w.fcW, d, 4 * d, half !== undefined),
      mlpProj: kernels.packMatrix(w.mlpProjW, 4 * d, d, half !== undefined),
    }));
    this.x = new Float32Array(B * d);
    this.ln = new Float32Array(B * d);
    this.rstd = new Float32Array(B);
    this.qkv = new Float32Array(B * 3 * d);
    this.atty = new Float32Array(B * d);
    this.fch = new Float32Array(B * 4 * d);
    this.fchGelu = new Float32Array(B * 4 * d);
    this.logits = new Float32Array(B * paletteSizeOf(params.config));

    const size = B * maxT * d;
    const hs = d / H;
    this.attend = Array.from({ length: L }, () => {
      if (half) {
        const kCache = new Uint16Array(size), vCache = new Uint16Array(size);
        return (t: number) => half(this.atty, this.qkv, kCache, vCache, B, H, hs, t, maxT);
      }
      const kCache = new Float32Array(size), vCache = new Float32Array(size);
      return (t: number) => kernels.attentionDecode(this.atty, this.qkv, kCache, vCache, B, H, hs, t, maxT);
    });
  }

  reset(): void { this.position = 0; }

  /** Feeds one token per sequence at the current position; fills `logits` for the next one. */
  feed(tokens: Int32Array): Float32Array {
    const k = this.kernels;
    const p = this.params;
    const { B, x, ln, rstd, qkv, atty, fch, fchGelu } = this;
    const { nEmbd: d, nLayer: L, layerNormEpsilon: eps } = p.config;
    const t = this.position;
    if (t >= this.maxT) throw new Error(`the decoder is full (${this.maxT} positions)`);
    for (let b = 0; b < B; b++) {
      const tok = tokens[b]!;
      for (let i = 0; i < d; i++) x[b * d + i] = p.wte[tok * d + i]! + p.wpe[t * d + i]!;
    }
    for (let l = 0; l < L; l++) {
      const w = p.blocks[l]!;
      const packed = this.blocks[l]!;
      k.normForward(ln, rstd, x, w.ln1, B, d, eps);
      packedLinearForward(k, qkv, ln, packed.attn, w.attnB, B);
      this.attend[l]!(t);
      packedLinearForward(k, x, atty, packed.attnProj, w.attnProjB, B, true);
      k.normForward(ln, rstd, x, w.ln2, B, d, eps);
      packedLinearForward(k, fch, ln, packed.fc, w.fcB, B);
      k.geluForward(fchGelu, fch, B * 4 * d);
      packedLinearForward(k, x, fchGelu, packed.mlpProj, w.mlpProjB, B, true);
    }
    k.normForward(ln, rstd, x, p.lnF, B, d, eps);
    headForward(k, this.logits, ln, p.lmHead, B, d, paletteSizeOf(p.config));
    this.position++;
    return this.logits;
  }
}
