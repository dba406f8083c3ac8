/**
 * The iGPT transformer: forward and backward over a batch, as in OpenAI's and HF's ImageGPT.
 *   h0 = wte[token] + wpe[pos];  a = h + attn(norm1(h));  h' = a + mlp(norm2(a))
 *   logits = norm_f(h_L) · lm_headᵀ;  class logits = mean_t(norm_f(h_L)) · scoreᵀ
 *
 * Written once over the backend's array handle `T`: parameters, gradients, activations and the
 * losses live on the backend (host memory on the CPU, GPU memory on webgpu). `forward` records
 * the pass; its losses reach the host through `readResult` (a readback on a GPU, immediate on the
 * CPU), or at once through `forwardOnHost` with a CPU backend.
 */
import type { Bf16Products, DeviceArray, Kernels } from '../kernels/kernels.js';
import type { ModelConfig } from './config.js';
import { paletteSizeOf } from './config.js';
import { ParameterTensors } from './parameters.js';
import {
  BLOCK_PRODUCTS, blockForward, headBackward, headForward, linearBackward, linearForward,
  type BlockActivations, type BlockProduct, type Weight,
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
interface LayerActivations<T extends DeviceArray> extends BlockActivations<T> {
  att: T;  // attention's state for backward (Kernels.attentionStateLength): [B, H, T, T] probabilities on the CPU
}

/**
 * How much forward keeps: 'train' every layer's activations; 'recompute' only each block's input
 * (the rest is recomputed block by block during backward: less memory, one more forward pass);
 * 'inference' one layer's, with the residual stream updated in place.
 */
export type ActivationMode = 'train' | 'recompute' | 'inference';

/** Everything forward keeps for backward, sized for one (B, T); one array per tensor. */
class Activations<T extends DeviceArray> {
  readonly residual: T[];  // training: L+1 block inputs/outputs; inference: 1
  readonly layers: LayerActivations<T>[];
  readonly lnf: T; readonly lnfRstd: T;
  readonly logits: T; readonly losses: T;
  readonly pooled: T; readonly classLogits: T; readonly classLosses: T;
  /** The sums of the generative and the classification losses (one float each). */
  readonly genTotal: T; readonly clfTotal: T;

  constructor(kernels: Kernels<T>, cfg: ModelConfig, readonly B: number, readonly T: number, readonly mode: ActivationMode) {
    const { nEmbd: d, nHead: H, nLayer: L } = cfg;
    const rows = B * T;
    const f = (n: number): T => kernels.alloc(n);
    const training = mode !== 'inference';
    const kept = mode === 'train' ? L : 1;
    this.residual = Array.from({ length: training ? L + 1 : 1 }, () => f(rows * d));
    this.layers = Array.from({ length: kept }, (): LayerActivations<T> => ({
      ln1: f(rows * d), ln1Rstd: f(rows), qkv: f(rows * 3 * d), atty: f(rows * d),
      att: f(kernels.attentionStateLength(B, T, H)),
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
    this.genTotal = f(1);
    this.clfTotal = f(1);
  }

  get training(): boolean { return this.mode !== 'inference'; }
}

/** Gradient scratch for the backward pass; one layer's worth, reused down the stack. */
class GradientScratch<T extends DeviceArray> {
  readonly dresidual: T; readonly dln: T; readonly dqkv: T;
  readonly datty: T; readonly dfch: T; readonly dlogits: T;
  readonly dpooled: T; readonly dclassLogits: T;

  constructor(kernels: Kernels<T>, cfg: ModelConfig, B: number, T: number) {
    const d = cfg.nEmbd;
    const rows = B * T;
    this.dresidual = kernels.alloc(rows * d);
    this.dln = kernels.alloc(rows * d);
    this.dqkv = kernels.alloc(rows * 3 * d);
    this.datty = kernels.alloc(rows * d);
    this.dfch = kernels.alloc(rows * 4 * d);
    this.dlogits = kernels.alloc(rows * paletteSizeOf(cfg));
    this.dpooled = kernels.alloc(B * d);
    this.dclassLogits = kernels.alloc(B * Math.max(cfg.numLabels, 1));
  }
}

/**
 * The bf16 copy of a model's parameters for bf16 matrix products: converted from the float32
 * master weights once after they change (an Adam step, a load), never per product.
 */
class Bf16Weights<T extends DeviceArray> {
  private readonly data: Uint16Array;
  private stale = true;

  constructor(private readonly products: Bf16Products<T>, private readonly params: ParameterTensors<T>) {
    this.data = new Uint16Array(params.count);
  }

  markStale(): void { this.stale = true; }

  refresh(): void {
    if (!this.stale) return;
    this.products.toBf16(this.data, this.params.data, this.params.count);
    this.stale = false;
  }

  /** The bf16 copy of `t`, one of the parameters' named views. */
  of(t: T): Uint16Array {
    const offset = this.params.offsetOf(t);
    return this.data.subarray(offset, offset + t.length);
  }
}

/** What forward leaves for the host to read: the counts that turn the loss sums into means. */
interface Recorded { batch: Batch; genScale: number; clfScale: number; genCount: number; scored: number; images: number }

export class ImageGPT<T extends DeviceArray = Float32Array> {
  readonly params: ParameterTensors<T>;
  /** Present when the kernels multiply in bf16 (Kernels.bf16): the weights' bf16 copy. */
  private readonly bf16Weights: Bf16Weights<T> | null;
  private gradTensors: ParameterTensors<T> | null = null;
  private acts: Activations<T> | null = null;
  private scratch: GradientScratch<T> | null = null;
  /** The last forward's batch and counts (kept for backward when training). */
  private last: Recorded | null = null;
  /** Where `readResult` copies the losses to read them back. */
  private resultCopy: T | null = null;

  /** Recompute each block's activations in backward instead of keeping them (checkpointing). */
  recompute = false;

  /** `params` must live on `kernels`' backend (see parametersOn); zero-filled when omitted. */
  constructor(readonly kernels: Kernels<T>, readonly config: ModelConfig, params?: ParameterTensors<T>) {
    this.params = params ?? new ParameterTensors(config, undefined, kernels);
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
  private weight(w: T): Weight<T> {
    return { f32: w, bf16: this.bf16Weights ? this.bf16Weights.of(w) : null };
  }

  /** Parameter gradients, allocated on first use. */
  get grads(): ParameterTensors<T> {
    this.gradTensors ??= new ParameterTensors(this.config, undefined, this.kernels);
    return this.gradTensors;
  }

  /** The activations of the last forward pass (logits, ln_f output, pooled features). */
  get activations(): Activations<T> {
    if (!this.acts) throw new Error('forward has not run yet');
    return this.acts;
  }

  /**
   * Activation bytes for a batch shape, without allocating (for memory checks). `attentionState`:
   * the floats attention keeps per layer (Kernels.attentionStateLength; the CPU's B·H·T·T by default).
   */
  static activationBytes(cfg: ModelConfig, B: number, T: number, mode: ActivationMode,
                         attentionState = B * cfg.nHead * T * T): number {
    const { nEmbd: d, nLayer: L } = cfg;
    const rows = B * T;
    const training = mode !== 'inference';
    const perLayer = rows * (d + 1 + 3 * d + d + d + 1 + 8 * d) + (training ? rows * d : 0) + attentionState;
    const layers = mode === 'train' ? L : 1;
    const C = Math.max(cfg.numLabels, 1);
    const classHead = B * (d + C + 1) + 2; // pooled features, class logits, class losses; the two loss sums
    const scratch = training ? rows * (d + d + 3 * d + d + 4 * d + paletteSizeOf(cfg)) + B * (d + C) : 0;
    return 4 * (perLayer * layers + rows * d * (training ? L + 1 : 1) + rows * (d + 1 + paletteSizeOf(cfg) + 1) + classHead + scratch);
  }

  private activationsFor(B: number, T: number, training: boolean): Activations<T> {
    if (T > this.config.nPositions) {
      throw new Error(`sequence of ${T} tokens is longer than the model's ${this.config.nPositions} positions`);
    }
    const mode: ActivationMode = !training ? 'inference' : this.recompute ? 'recompute' : 'train';
    const a = this.acts;
    if (!a || a.B !== B || a.T !== T || a.mode !== mode) {
      this.acts = null; // let the old buffers go before the new ones are allocated
      this.acts = new Activations(this.kernels, this.config, B, T, mode);
    }
    return this.acts!;
  }

  /**
   * Records the model over a batch. With targets/labels, computes the losses and (when `training`)
   * prepares the loss gradient for `backward`; `readResult` then reads them. `features`, if given
   * ([L+1, B, segments, d]), receives the probe features: the mean of each block's first norm
   * output (and of ln_f last) over each of `segments` equal runs of positions (1: all of them).
   */
  forward(batch: Batch, training: boolean, features?: T, segments = 1): void {
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
    if (features && T % segments !== 0) throw new Error(`${T} positions do not split into ${segments} equal runs`);
    const featuresOf = (l: number): T => kernels.view(features!, l * B * segments * d, B * segments * d);

    kernels.embeddingForward(acts.residual[0], batch.inputs, p.wte, p.wpe, B, T, d);
    for (let l = 0; l < L; l++) {
      const a = acts.layers[acts.mode === 'train' ? l : 0];
      const x = acts.residual[training ? l : 0];
      this.blockForward(l, a, x, acts.residual[training ? l + 1 : 0], B, T, batch.causal);
      if (features) kernels.meanPoolForward(featuresOf(l), a.ln1, B * segments, T / segments, d);
    }
    const hL = acts.residual[training ? L : 0];
    kernels.normForward(acts.lnf, acts.lnfRstd, hL, p.lnF, rows, d, eps);
    if (features) kernels.meanPoolForward(featuresOf(L), acts.lnf, B * segments, T / segments, d);
    headForward(kernels, acts.logits, acts.lnf, p.lmHead, rows, d, V);

    const scratch = training ? (this.scratch = this.scratchFor(B, T)) : null;
    let genScale = 0, genCount = 0, scored = 1;
    if (batch.targets) {
      for (let i = 0; i < rows; i++) if (batch.targets[i] >= 0) genCount++;
      scored = Math.max(batch.globalCounts?.scored ?? genCount, 1);
      genScale = (batch.genWeight ?? 1) / scored;
      kernels.crossEntropy(acts.losses, scratch ? scratch.dlogits : null, acts.logits, batch.targets, rows, V, genScale, acts.genTotal);
    }
    let clfScale = 0;
    const images = batch.globalCounts?.images ?? B;
    if (batch.labels && cfg.numLabels > 0) {
      kernels.meanPoolForward(acts.pooled, acts.lnf, B, T, d);
      headForward(kernels, acts.classLogits, acts.pooled, p.score, B, d, cfg.numLabels);
      clfScale = 1 / images;
      kernels.crossEntropy(acts.classLosses, scratch ? scratch.dclassLogits : null, acts.classLogits,
                           batch.labels, B, cfg.numLabels, clfScale, acts.clfTotal);
    }
    this.last = { batch, genScale, clfScale, genCount, scored, images };
  }

  /** The losses of the last forward, read from the backend in one readback. */
  async readResult(): Promise<ForwardResult> {
    const B = this.recorded().last.batch.B;
    if (!this.resultCopy || this.resultCopy.length < this.resultLength(B)) this.resultCopy = this.kernels.alloc(this.resultLength(B));
    const decode = this.copyResult(this.resultCopy);
    return decode(await this.kernels.read(this.resultCopy));
  }

  /** Floats that `copyResult` writes for a batch of B images: the two loss sums, then B×C class logits. */
  resultLength(B: number): number { return 2 + B * this.config.numLabels; }

  /**
   * Records a copy of the last forward's loss sums and class logits into `dst` (in program order:
   * later passes may reuse the activations) and returns how to read the result from the host's
   * copy of `dst`. The trainer keeps a few steps' copies in flight this way.
   */
  copyResult(dst: T): (copy: Float32Array) => ForwardResult {
    const { acts, last } = this.recorded();
    const k = this.kernels;
    const C = this.config.numLabels;
    const logits = last.batch.labels !== undefined && C > 0 ? last.batch.B * C : 0;
    k.copy(k.view(dst, 0, 1), acts.genTotal);
    k.copy(k.view(dst, 1, 1), acts.clfTotal);
    if (logits > 0) k.copy(k.view(dst, 2, logits), k.view(acts.classLogits, 0, logits));
    return (copy) => resultOf(last, last.batch.targets ? copy[0]! : NaN, logits > 0 ? copy[1]! : NaN,
                              logits > 0 ? copy.subarray(2, 2 + logits) : null, C);
  }

  /** forward and readResult at once, for the CPU backends, whose arrays the host reads directly. */
  forwardOnHost(this: ImageGPT<Float32Array>, batch: Batch, training: boolean, features?: Float32Array): ForwardResult {
    this.forward(batch, training, features);
    const { acts, last } = this.recorded();
    const withLabels = batch.labels !== undefined && this.config.numLabels > 0;
    return resultOf(last, acts.genTotal[0]!, acts.clfTotal[0]!, withLabels ? acts.classLogits : null, this.config.numLabels);
  }

  private recorded(): { acts: Activations<T>; last: Recorded } {
    if (!this.acts || !this.last) throw new Error('forward has not run yet');
    return { acts: this.acts, last: this.last };
  }

  /** Block l over the batch (see layers.ts blockForward): full attention, the weights unpacked (with their bf16 copies in bf16 models). */
  private blockForward(l: number, a: LayerActivations<T>, x: T, out: T | null,
                       B: number, T: number, causal: boolean): void {
    const kernels = this.kernels;
    const w = this.params.blocks[l];
    const { nEmbd: d, nHead: H, layerNormEpsilon: eps } = this.config;
    const rows = B * T;
    const product: BlockProduct<T> = (which, y, input, accumulate) => {
      const [nIn, nOut] = BLOCK_PRODUCTS[which];
      linearForward(kernels, y, input, this.weight(w[`${which}W`]), w[`${which}B`], rows, nIn * d, nOut * d, accumulate);
    };
    blockForward(kernels, w, a, x, out, rows, d, eps, product, () => kernels.attentionForward(a.atty, a.att, a.qkv, B, T, H, d / H, causal));
  }

  private scratchFor(B: number, T: number): GradientScratch<T> {
    const s = this.scratch;
    if (s && s.dresidual.length === B * T * this.config.nEmbd && s.dpooled.length === B * this.config.nEmbd) return s;
    this.scratch = null;
    return new GradientScratch(this.kernels, this.config, B, T);
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
    kernels.zero(s.dln);
    if (last.genScale > 0) headBackward(kernels, s.dln, g.lmHead, s.dlogits, acts.lnf, p.lmHead, rows, d, V);
    if (last.clfScale > 0) {
      kernels.zero(s.dpooled);
      headBackward(kernels, s.dpooled, g.score, s.dclassLogits, acts.pooled, p.score, B, d, cfg.numLabels);
      kernels.meanPoolBackward(s.dln, s.dpooled, B, T, d);
    }
    kernels.zero(s.dresidual);
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
      kernels.attentionBackward(s.dqkv, s.datty, a.qkv, a.atty, a.att, B, T, H, d / H, last.batch.causal);
      linearBackward(kernels, s.dln, gw.attnW, gw.attnB, s.dqkv, a.ln1, this.weight(w.attnW), rows, d, 3 * d);
      kernels.normBackward(s.dresidual, gw.ln1, s.dln, x, a.ln1Rstd, w.ln1, rows, d);
    }
    kernels.embeddingBackward(g.wte, g.wpe, s.dresidual, last.batch.inputs, B, T, d);
  }

  zeroGrad(): void { this.kernels.zero(this.grads.data); }

  /** Drops activation buffers (e.g. between training and a large inference batch). */
  releaseActivations(): void { this.acts = null; this.scratch = null; this.last = null; }
}

/** A forward's result from the loss sums (and the class logits, when labelled) read on the host. */
function resultOf(last: Recorded, genSum: number, clfSum: number, classLogits: Float32Array | null, C: number): ForwardResult {
  const { batch } = last;
  return {
    genLoss: batch.targets ? genSum / last.scored : NaN,
    genCount: last.genCount,
    clfLoss: classLogits ? clfSum / last.images : NaN,
    clfCorrect: classLogits ? countCorrect(classLogits, batch.labels!, batch.B, C) : 0,
  };
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
  model.forwardOnHost({ B, T, inputs: tokens, causal: true }, false);
  return model.activations.logits.slice();
}
