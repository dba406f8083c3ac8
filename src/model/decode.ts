/**
 * Incremental decoding with a key/value cache: feeding token t of B sequences costs one token's
 * work per layer (plus attention over the t cached keys), so sampling a whole image is as much
 * arithmetic as one forward pass over it, not n² passes.
 */
import type { Kernels } from '../kernels/kernels.js';
import { paletteSizeOf } from './config.js';
import { linearForward, headForward } from './layers.js';
import type { ParameterTensors } from './parameters.js';

export class KvDecoder {
  /** Position of the next token to feed. */
  position = 0;
  /** [B, k] logits for the next pixel after each `feed`. */
  readonly logits: Float32Array;
  private readonly kCache: Float32Array[];
  private readonly vCache: Float32Array[];
  private readonly x: Float32Array;
  private readonly ln: Float32Array;
  private readonly rstd: Float32Array;
  private readonly qkv: Float32Array;
  private readonly atty: Float32Array;
  private readonly fch: Float32Array;
  private readonly fchGelu: Float32Array;

  constructor(readonly kernels: Kernels, readonly params: ParameterTensors, readonly B: number,
              readonly maxT = params.config.nPositions) {
    const { nEmbd: d, nLayer: L } = params.config;
    if (maxT > params.config.nPositions) {
      throw new Error(`cannot decode ${maxT} positions with a model of ${params.config.nPositions}`);
    }
    const cache = (): Float32Array => new Float32Array(B * maxT * d);
    this.kCache = Array.from({ length: L }, cache);
    this.vCache = Array.from({ length: L }, cache);
    this.x = new Float32Array(B * d);
    this.ln = new Float32Array(B * d);
    this.rstd = new Float32Array(B);
    this.qkv = new Float32Array(B * 3 * d);
    this.atty = new Float32Array(B * d);
    this.fch = new Float32Array(B * 4 * d);
    this.fchGelu = new Float32Array(B * 4 * d);
    this.logits = new Float32Array(B * paletteSizeOf(params.config));
  }

  reset(): void { this.position = 0; }

  /** Feeds one token per sequence at the current position; fills `logits` for the next one. */
  feed(tokens: Int32Array): Float32Array {
    const k = this.kernels;
    const p = this.params;
    const { B, x, ln, rstd, qkv, atty, fch, fchGelu } = this;
    const { nEmbd: d, nHead: H, nLayer: L, layerNormEpsilon: eps } = p.config;
    const t = this.position;
    if (t >= this.maxT) throw new Error(`the decoder is full (${this.maxT} positions)`);
    for (let b = 0; b < B; b++) {
      const tok = tokens[b]!;
      for (let i = 0; i < d; i++) x[b * d + i] = p.wte[tok * d + i]! + p.wpe[t * d + i]!;
    }
    for (let l = 0; l < L; l++) {
      const w = p.blocks[l]!;
      k.normForward(ln, rstd, x, w.ln1, B, d, eps);
      linearForward(k, qkv, ln, w.attnW, w.attnB, B, d, 3 * d);
      k.attentionDecode(atty, qkv, this.kCache[l]!, this.vCache[l]!, B, H, d / H, t, this.maxT);
      linearForward(k, x, atty, w.attnProjW, w.attnProjB, B, d, d, true);
      k.normForward(ln, rstd, x, w.ln2, B, d, eps);
      linearForward(k, fch, ln, w.fcW, w.fcB, B, d, 4 * d);
      k.geluForward(fchGelu, fch, B * 4 * d);
      linearForward(k, x, fchGelu, w.mlpProjW, w.mlpProjB, B, 4 * d, d, true);
    }
    k.normForward(ln, rstd, x, p.lnF, B, d, eps);
    headForward(k, this.logits, ln, p.lmHead, B, d, paletteSizeOf(p.config));
    this.position++;
    return this.logits;
  }
}
