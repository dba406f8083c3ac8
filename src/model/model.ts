/**
 * The iGPT transformer: forward and backward over a batch, as in OpenAI's and HF's ImageGPT.
 *   h0 = wte[token] + wpe[pos];  a = h + attn(norm1(h));  h' = a + mlp(norm2(a))
 *   logits = norm_f(h_L) · lm_headᵀ;  class logits = mean_t(norm_f(h_L)) · scoreᵀ
 */
import type { Bf16Products, Kernels } from '../kernels/kernels.js';
import type { ModelConfig } from './config.js';
import { paletteSizeOf } from './config.js';
import { ParameterTensors } from './parameters.js';
import {
  BLOCK_PRODUCTS, blockForward, embeddingBackward, embeddingForward, headBackward, headForward, linearBackward, linearForward,
  meanPoolBackward, meanPoolForward, type BlockActivations, type BlockProduct, type Weight,
} from './layers.js';

/** One batch for `forward`. Token ids: 0..V-1 colors (V: the palette size), V = SOS, -1 = masked (BERT). */
export interface Batch {
  B: number;
  T: number;
  /** B×T input ids. */
  inputs: Int32Array;
  /** B×T target ids for the generative loss, -1 where a position is not scored. */
  targets?: Int32Array;
  /** B class labels for the classification loss. */
  labels?: Int32Array;
  /** Causal attention (AR) or full attention (BERT). */
  causal: boolean;
  /** Weight of the generative loss in the total (default 1). */
  genWeight?: number;
  /**
   * When this batch is one rank's share of a global batch: the global batch's scored positions
   * and images. Losses and gradients are then divided by these, not by the share's own counts,
   * so that summing them over the ranks gives exactly the global batch's means.
   */
  globalCounts?: { scored: number; images: number };
}

export interface ForwardResult {
  /** Mean NLL over scored positions, nats (NaN without targets); see Batch.globalCounts. */
  genLoss: number;
  /** Positions that were scored. */
  genCount: number;
  /** Mean classification cross-entropy (NaN without labels). */
  clfLoss: number;
  /** Correct class predictions in the batch (0 without labels). */
  clfCorrect: number;
}

/** Per-layer activations; in inference mode every layer shares index 0. */
interface LayerActivations extends BlockActivations {
  att: Float32Array;                          // [B, H, T, T] softmax probabilities
}

/**
 * How much forward keeps: 'train' every layer's activations; 'recompute' only each block's input
 * (the rest is recomputed block by block during backward: less memory, one more forward pass);
 * 'inference' one layer's, with the residual stream updated in place.
 */
export type ActivationMode = 'train' | 'recompute' | 'inference';

/** Everything forward keeps for backward, sized for one (B, T). */
class Activations {
  readonly residual: Float32Array[];  // training: L+1 block inputs/outputs; inference: 1
  readonly layers: LayerActivations[];
  readonly lnf: Float32Array; readonly lnfRstd: Float32Array;
  readonly logits: Float32Array; readonly losses: Float32Array;
  readonly pooled: Float32Array; readonly classLogits: Float32Array; readonly classLosses: Float32Array;

  constructor(cfg: ModelConfig, readonly B: number, readonly T: number, readonly mode: ActivationMode) {
    const { nEmbd: d, nHead: H, nLayer: L } = cfg;
    const rows = B * T;
    const f = (n: number): Float32Array => new Float32Array(n);
    const training = mode !== 'inference';
    const kept = mode === 'train' ? L : 1;
    this.residual = Array.from({ length: training ? L + 1 : 1 }, () => f(rows * d));
    this.layers = Array.from({ length: kept }, (): LayerActivations => ({
      ln1: f(rows * d), ln1Rstd: f(rows), qkv: f(rows * 3 * d), atty: f(rows * d),
      att: f(B * H * T * T),
      // In inference the residual stream is updated in place, so res2 is the residual itself.
      res2: training ? f(rows * d) : this.residual[0],
      ln2: f(rows * d), ln2Rstd: f(rows), fch: f(rows * 4 * d), fchGelu: f(rows * 4 * d),
    }));
    this.lnf = f(rows * d);
    this.lnfRstd = f(rows);
    this.logits = f(rows * paletteSizeOf(cfg));
    this.losses = f(rows);
    this.pooled = f(B * d);
    this.classLogits = f(B * Math.max(cfg.numLabels, 1));
    this.classLosses = f(B);
  }

  get training(): boolean { return this.mode !== 'inference'; }
}

/** Gradient scratch for the backward pass; one layer's worth, reused down the stack. */
class GradientScratch {
  readonly dresidual: Float32Array; readonly dln: Float32Array; readonly dqkv: Float32Array;
  readonly datty: Float32Array; readonly dfch: Float32Array; readonly dlogits: Float32Array;
  readonly dpooled: Float32Array; readonly dclassLogits: Float32Array;

  constructor(cfg: ModelConfig, B: number, T: number) {
    const d = cfg.nEmbd;
    const rows = B * T;
    this.dresidual = new Float32Array(rows * d);
    this.dln = new Float32Array(rows * d);
    this.dqkv = new Float32Array(rows * 3 * d);
    this.datty = new Float32Array(rows * d);
    this.dfch = new Float32Array(rows * 4 * d);
    this.dlogits = new Float32Array(rows * paletteSizeOf(cfg));
    this.dpooled = new Float32Array(B * d);
    this.dclassLogits = new Float32Array(B * Math.max(cfg.numLabels, 1));
  }
}

/**
 * The bf16 copy of a model's parameters for bf16 matrix products: converted from the float32
 * master weights once after they change (an Adam step, a load), never per product.
 */
class Bf16Weights {
  private readonly data: Uint16Array;
  private stale = true;

  constructor(private readonly products: Bf16Products, private readonly params: ParameterTensors) {
    this.data = new Uint16Array(params.count);
  }

  markStale(): void { this.stale = true; }

  refresh(): void {
    if (!this.stale) return;
    this.products.toBf16(this.data, this.params.data, this.params.count);
    this.stale = false;
  }

  /** The bf16 copy of `t`, a view into the parameters' buffer. */
  of(t: Float32Array): Uint16Array {
    const offset = (t.byteOffset - this.params.data.byteOffset) / Float32Array.BYTES_PER_ELEMENT;
    return this.data.subarray(offset, offset + t.length);
  }
}

export class ImageGPT {
  readonly params: ParameterTensors;
  /** Present when the kernels multiply in bf16 (Kernels.bf16): the weights' bf16 copy. */
  private readonly bf16Weights: Bf16Weights | null;
  private gradTensors: ParameterTensors | null = null;
  private acts: Activations | null = null;
  private scratch: GradientScratch | null = null;
  private last: { batch: Batch; genScale: number; clfScale: number } | null = null;

  /** Recompute each block's activations in backward instead of keeping them (checkpointing). */
  recompute = false;

  constructor(readonly kernels: Kernels, readonly config: ModelConfig, params?: ParameterTensors) {
    this.params = params ?? new ParameterTensors(config);
    this.bf16Weights = kernels.bf16 ? new Bf16Weights(kernels.bf16, this.params) : null;
  }

  /** 'bf16' when the linear layers multiply in bf16 (the kernels offer it), else 'f32'. */
  get precision(): 'f32' | 'bf16' { return this.bf16Weights ? 'bf16' : 'f32'; }

  /**
   * Call after writing to `params` (the trainer does after every Adam step): in bf16 the weights'
   * bf16 copy is then converted again before the next forward pass.
   */
  weightsChanged(): void { this.bf16Weights?.markStale(); }

  /** A linear layer's weight for layers.ts, with its bf16 copy in bf16 models. */
  private weight(w: Float32Array): Weight {
    return { f32: w, bf16: this.bf16Weights ? this.bf16Weights.of(w) : null };
  }

  /** Parameter gradients, allocated on first use. */
  get grads(): ParameterTensors {
    this.gradTensors ??= new ParameterTensors(this.config);
    return this.gradTensors;
  }

  /** The activations of the last forward pass (logits, ln_f output, pooled features). */
  get activations(): Activations {
    if (!this.acts) throw new Error('forward has not run yet');
    return this.acts;
  }

  /** Activation bytes for a batch shape, without allocating (for memory checks). */
  static activationBytes(cfg: ModelConfig, B: number, T: number, mode: ActivationMode): number {
    const { nEmbd: d, nHead: H, nLayer: L } = cfg;
    const rows = B * T;
    const training = mode !== 'inference';
    const perLayer = rows * (d + 1 + 3 * d + d + d + 1 + 8 * d) + (training ? rows * d : 0) + B * H * T * T;
    const layers = mode === 'train' ? L : 1;
    const C = Math.max(cfg.numLabels, 1);
    const classHead = B * (d + C + 1); // pooled features, class logits, class losses
    const scratch = training ? rows * (d + d + 3 * d + d + 4 * d + paletteSizeOf(cfg)) + B * (d + C) : 0;
    return 4 * (perLayer * layers + rows * d * (training ? L + 1 : 1) + rows * (d + 1 + paletteSizeOf(cfg) + 1) + classHead + scratch);
  }

  private activationsFor(B: number, T: number, training: boolean): Activations {
    if (T > this.config.nPositions) {
      throw new Error(`sequence of ${T} tokens is longer than the model's ${this.config.nPositions} positions`);
    }
    const mode: ActivationMode = !training ? 'inference' : this.recompute ? 'recompute' : 'train';
    const a = this.acts;
    if (!a || a.B !== B || a.T !== T || a.mode !== mode) {
      this.acts = null; // let the old buffers go before the new ones are allocated
      this.acts = new Activations(this.config, B, T, mode);
    }
    return this.acts!;
  }

  /**
   * Runs the model over a batch. With targets/labels, computes the losses and (when `training`)
   * prepares the loss gradient for `backward`. `features`, if given ([L+1, B, d]), receives the
   * probe features: mean over positions of each block's first norm output, and of ln_f last.
   */
  forward(batch: Batch, training: boolean, features?: Float32Array): ForwardResult {
    const kernels = this.kernels;
    const cfg = this.config;
    const p = this.params;
    const { B, T } = batch;
    const { nEmbd: d, nLayer: L, layerNormEpsilon: eps } = cfg;
    const V = paletteSizeOf(cfg);
    const rows = B * T;
    if (batch.inputs.length < rows) throw new Error(`batch inputs hold ${batch.inputs.length} ids, need ${rows}`);
    const acts = this.activationsFor(B, T, training);
    this.bf16Weights?.refresh();

    embeddingForward(acts.residual[0], batch.inputs, p.wte, p.wpe, B, T, d);
    for (let l = 0; l < L; l++) {
      const a = acts.layers[acts.mode === 'train' ? l : 0];
      const x = acts.residual[training ? l : 0];
      this.blockForward(l, a, x, acts.residual[training ? l + 1 : 0], B, T, batch.causal);
      if (features) meanPoolForward(features.subarray(l * B * d, (l + 1) * B * d), a.ln1, B, T, d);
    }
    const hL = acts.residual[training ? L : 0];
    kernels.normForward(acts.lnf, acts.lnfRstd, hL, p.lnF, rows, d, eps);
    if (features) meanPoolForward(features.subarray(L * B * d, (L + 1) * B * d), acts.lnf, B, T, d);
    headForward(kernels, acts.logits, acts.lnf, p.lmHead, rows, d, V);

    const result: ForwardResult = { genLoss: NaN, genCount: 0, clfLoss: NaN, clfCorrect: 0 };
    const scratch = training ? (this.scratch = this.scratchFor(B, T)) : null;
    let genScale = 0;
    if (batch.targets) {
      for (let i = 0; i < rows; i++) if (batch.targets[i] >= 0) result.genCount++;
      const scored = Math.max(batch.globalCounts?.scored ?? result.genCount, 1);
      genScale = (batch.genWeight ?? 1) / scored;
      const sum = kernels.crossEntropy(acts.losses, scratch ? scratch.dlogits : null, acts.logits,
                                 batch.targets, rows, V, genScale);
      result.genLoss = sum / scored;
    }
    let clfScale = 0;
    if (batch.labels && cfg.numLabels > 0) {
      meanPoolForward(acts.pooled, acts.lnf, B, T, d);
      headForward(kernels, acts.classLogits, acts.pooled, p.score, B, d, cfg.numLabels);
      const images = batch.globalCounts?.images ?? B;
      clfScale = 1 / images;
      const sum = kernels.crossEntropy(acts.classLosses, scratch ? scratch.dclassLogits : null, acts.classLogits,
                                 batch.labels, B, cfg.numLabels, clfScale);
      result.clfLoss = sum / images;
      result.clfCorrect = countCorrect(acts.classLogits, batch.labels, B, cfg.numLabels);
    }
    this.last = training ? { batch, genScale, clfScale } : null;
    return result;
  }

  /** Block l over the batch (see layers.ts blockForward): full attention, the weights unpacked (with their bf16 copies in bf16 models). */
  private blockForward(l: number, a: LayerActivations, x: Float32Array, out: Float32Array | null,
                       B: number, T: number, causal: boolean): void {
    const kernels = this.kernels;
    const w = this.params.blocks[l];
    const { nEmbd: d, nHead: H, layerNormEpsilon: eps } = this.config;
    const rows = B * T;
    const product: BlockProduct = (which, y, input, accumulate) => {
      const [nIn, nOut] = BLOCK_PRODUCTS[which];
      linearForward(kernels, y, input, this.weight(w[`${which}W`]), w[`${which}B`], rows, nIn * d, nOut * d, accumulate);
    };
    blockForward(kernels, w, a, x, out, rows, d, eps, product, () => kernels.attentionForward(a.atty, a.att, a.qkv, B, T, H, d / H, causal));
  }

  private scratchFor(B: number, T: number): GradientScratch {
    const s = this.scratch;
    if (s && s.dresidual.length === B * T * this.config.nEmbd && s.dpooled.length === B * this.config.nEmbd) return s;
    this.scratch = null;
    return new GradientScratch(this.config, B, T);
  }

  /** Accumulates parameter gradients of the losses of the last training forward. */
  backward(): void {
    const last = this.last;
    const acts = this.acts;
    const s = this.scratch;
    if (!last || !acts || !s || !acts.training) throw new Error('backward needs a training forward first');
    const kernels = this.kernels;
    const cfg = this.config;
    const p = this.params;
    const g = this.grads;
    const { B, T } = last.batch;
    const { nEmbd: d, nHead: H, nLayer: L } = cfg;
    const V = paletteSizeOf(cfg);
    const rows = B * T;

    // Gradient at ln_f's output, from the LM head and the class head.
    s.dln.fill(0);
    if (last.genScale > 0) headBackward(kernels, s.dln, g.lmHead, s.dlogits, acts.lnf, p.lmHead, rows, d, V);
    if (last.clfScale > 0) {
      s.dpooled.fill(0);
      headBackward(kernels, s.dpooled, g.score, s.dclassLogits, acts.pooled, p.score, B, d, cfg.numLabels);
      meanPoolBackward(s.dln, s.dpooled, B, T, d);
    }
    s.dresidual.fill(0);
    kernels.normBackward(s.dresidual, g.lnF, s.dln, acts.residual[L], acts.lnfRstd, p.lnF, rows, d);

    for (let l = L - 1; l >= 0; l--) {
      const w = p.blocks[l];
      const gw = g.blocks[l];
      const x = acts.residual[l];
      const a = acts.layers[acts.mode === 'train' ? l : 0];
      if (acts.mode === 'recompute') this.blockForward(l, a, x, null, B, T, last.batch.causal);
      // MLP branch: out = res2 + c_proj(gelu(c_fc(norm2(res2)))).
      linearBackward(kernels, s.dfch, gw.mlpProjW, gw.mlpProjB, s.dresidual, a.fchGelu, this.weight(w.mlpProjW), rows, 4 * d, d);
      kernels.geluBackward(s.dfch, s.dfch, a.fch, rows * 4 * d);
      linearBackward(kernels, s.dln, gw.fcW, gw.fcB, s.dfch, a.ln2, this.weight(w.fcW), rows, d, 4 * d);
      kernels.normBackward(s.dresidual, gw.ln2, s.dln, a.res2, a.ln2Rstd, w.ln2, rows, d);
      // Attention branch: res2 = x + c_proj(attn(c_attn(norm1(x)))).
      linearBackward(kernels, s.datty, gw.attnProjW, gw.attnProjB, s.dresidual, a.atty, this.weight(w.attnProjW), rows, d, d);
      kernels.attentionBackward(s.dqkv, s.datty, a.qkv, a.att, B, T, H, d / H, last.batch.causal);
      linearBackward(kernels, s.dln, gw.attnW, gw.attnB, s.dqkv, a.ln1, this.weight(w.attnW), rows, d, 3 * d);
      kernels.normBackward(s.dresidual, gw.ln1, s.dln, x, a.ln1Rstd, w.ln1, rows, d);
    }
    embeddingBackward(g.wte, g.wpe, s.dresidual, last.batch.inputs, B, T, d);
  }

  zeroGrad(): void { this.grads.data.fill(0); }

  /** Drops activation buffers (e.g. between training and a large inference batch). */
  releaseActivations(): void { this.acts = null; this.scratch = null; this.last = null; }
}

function countCorrect(logits: Float32Array, labels: Int32Array, B: number, C: number): number {
  let correct = 0;
  for (let b = 0; b < B; b++) if (argmax(logits, b * C, C) === labels[b]) correct++;
  return correct;
}

export function argmax(x: Float32Array, offset: number, n: number): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (x[offset + i] > x[offset + best]) best = i;
  return best;
}

/** Full-sequence logits [B, T, V] for input ids (causal), e.g. to compare with a reference. */
export function computeLogits(kernels: Kernels, params: ParameterTensors, tokens: Int32Array,
                              B: number, T: number): Float32Array {
  const model = new ImageGPT(kernels, params.config, params);
  model.forward({ B, T, inputs: tokens, causal: true }, false);
  return model.activations.logits.slice();
}
