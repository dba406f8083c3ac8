import type { ModelConfig } from './config.js';
import type { DeviceArray, Kernels } from '../kernels/kernels.js';
import { hostOperations } from '../kernels/host.js';
import { Rng } from '../util/rng.js';

/** One block's parameter views; weights in HF's Conv1D layout [in, out]. */
export interface BlockParameters<T extends DeviceArray = Float32Array> {
  ln1: T;       // [d]
  attnW: T;     // [d, 3d]  c_attn
  attnB: T;     // [3d]
  attnProjW: T; // [d, d]  attn.c_proj
  attnProjB: T; // [d]
  ln2: T;       // [d]
  fcW: T;       // [d, 4d]  mlp.c_fc
  fcB: T;       // [4d]
  mlpProjW: T;  // [4d, d]  mlp.c_proj
  mlpProjB: T;  // [d]
}

/** How a ParameterTensors makes its buffer and views: a backend's kernels, or plain host arrays. */
export type ArrayMaker<T extends DeviceArray> = Pick<Kernels<T>, 'alloc' | 'view'>;

export interface NamedTensor { name: string; shape: number[]; offset: number; size: number }

/** Hugging Face tensor names and shapes, in the order they sit in our flat buffer. */
export function tensorLayout(cfg: ModelConfig): NamedTensor[] {
  const d = cfg.nEmbd;
  const shapes: [string, number[]][] = [
    ['transformer.wte.weight', [cfg.vocabSize, d]],
    ['transformer.wpe.weight', [cfg.nPositions, d]],
  ];
  for (let l = 0; l < cfg.nLayer; l++) {
    const p = `transformer.h.${l}.`;
    shapes.push(
      [p + 'ln_1.weight', [d]],
      [p + 'attn.c_attn.weight', [d, 3 * d]], [p + 'attn.c_attn.bias', [3 * d]],
      [p + 'attn.c_proj.weight', [d, d]], [p + 'attn.c_proj.bias', [d]],
      [p + 'ln_2.weight', [d]],
      [p + 'mlp.c_fc.weight', [d, 4 * d]], [p + 'mlp.c_fc.bias', [4 * d]],
      [p + 'mlp.c_proj.weight', [4 * d, d]], [p + 'mlp.c_proj.bias', [d]],
    );
  }
  shapes.push(['transformer.ln_f.weight', [d]], ['lm_head.weight', [cfg.vocabSize - 1, d]]);
  if (cfg.numLabels > 0) shapes.push(['score.weight', [cfg.numLabels, d]]);
  let offset = 0;
  return shapes.map(([name, shape]) => {
    const size = shape.reduce((a, b) => a * b, 1);
    const t = { name, shape, offset, size };
    offset += size;
    return t;
  });
}

/**
 * All parameters (or all gradients, or an Adam moment) of a model in one flat array, with named
 * views into it (as llm.c's ParameterTensors). The same class serves for each, so they share one
 * layout. On the host (the default) the array is a Float32Array; on a backend, its handle type.
 */
export class ParameterTensors<T extends DeviceArray = Float32Array> {
  readonly data: T;
  readonly layout: NamedTensor[];
  readonly wte: T;     // [V + 1, d], row V is SOS
  readonly wpe: T;     // [P, d]
  readonly blocks: BlockParameters<T>[];
  readonly lnF: T;     // [d]
  readonly lmHead: T;  // [V, d] (nn.Linear layout [out, in])
  readonly score: T;   // [C, d], empty when numLabels = 0
  /** Each named view's element offset in `data`. */
  private readonly offsets = new Map<T, number>();
  private readonly arrays: ArrayMaker<T>;

  /** `arrays`: the backend that holds `data` (host Float32Arrays when omitted). */
  constructor(readonly config: ModelConfig, data?: T, arrays?: ArrayMaker<T>) {
    this.arrays = arrays ?? (hostOperations as unknown as ArrayMaker<T>);
    this.layout = tensorLayout(config);
    const total = this.layout.reduce((s, t) => s + t.size, 0);
    if (data && data.length !== total) {
      throw new Error(`parameter buffer holds ${data.length} floats, the config needs ${total}`);
    }
    this.data = data ?? this.arrays.alloc(total);
    const byName = new Map(this.layout.map((t) => [t.name, this.arrays.view(this.data, t.offset, t.size)]));
    for (const t of this.layout) this.offsets.set(byName.get(t.name)!, t.offset);
    const get = (name: string): T => byName.get(name) ?? this.arrays.view(this.data, 0, 0);
    this.wte = get('transformer.wte.weight');
    this.wpe = get('transformer.wpe.weight');
    this.blocks = [];
    for (let l = 0; l < config.nLayer; l++) {
      const p = `transformer.h.${l}.`;
      this.blocks.push({
        ln1: get(p + 'ln_1.weight'),
        attnW: get(p + 'attn.c_attn.weight'), attnB: get(p + 'attn.c_attn.bias'),
        attnProjW: get(p + 'attn.c_proj.weight'), attnProjB: get(p + 'attn.c_proj.bias'),
        ln2: get(p + 'ln_2.weight'),
        fcW: get(p + 'mlp.c_fc.weight'), fcB: get(p + 'mlp.c_fc.bias'),
        mlpProjW: get(p + 'mlp.c_proj.weight'), mlpProjB: get(p + 'mlp.c_proj.bias'),
      });
    }
    this.lnF = get('transformer.ln_f.weight');
    this.lmHead = get('lm_head.weight');
    this.score = get('score.weight');
  }

  get count(): number { return this.data.length; }

  /** The view of one tensor by its Hugging Face name, or undefined. */
  tensor(name: string): T | undefined {
    const t = this.layout.find((x) => x.name === name);
    return t ? this.arrays.view(this.data, t.offset, t.size) : undefined;
  }

  /** Where one of the named views (wte, a block's weight, …) starts in `data`. */
  offsetOf(view: T): number {
    const offset = this.offsets.get(view);
    if (offset === undefined) throw new Error('offsetOf: not one of this ParameterTensors\' named views');
    return offset;
  }
}

/** Host parameters on a backend: the same memory on the CPU, a copy in device memory on a GPU. */
export function parametersOn<T extends DeviceArray>(kernels: Kernels<T>, host: ParameterTensors): ParameterTensors<T> {
  return new ParameterTensors(host.config, kernels.fromHost(host.data), kernels);
}

/** A backend's parameters (or gradients, moments) as host arrays, for checkpoints: a readback on a GPU. */
export async function parametersToHost<T extends DeviceArray>(kernels: Kernels<T>, p: ParameterTensors<T>): Promise<ParameterTensors> {
  return new ParameterTensors(p.config, await kernels.read(p.data));
}

/**
 * OpenAI's initialization: wte N(0, .02), wpe N(0, .01), q/k/v N(0, 1/sqrt(d)), attention
 * out-projection N(0, 1/sqrt(d·L)), MLP N(0, .02), biases 0, gains 1, lm_head and score 0.
 */
export function initParameters(p: ParameterTensors, seed: number): void {
  const rng = new Rng(seed);
  const { nEmbd: d, nLayer: L } = p.config;
  p.data.fill(0);
  rng.fillNormal(p.wte, 0.02);
  rng.fillNormal(p.wpe, 0.01);
  for (const b of p.blocks) {
    b.ln1.fill(1);
    b.ln2.fill(1);
    rng.fillNormal(b.attnW, 1 / Math.sqrt(d));
    rng.fillNormal(b.attnProjW, 1 / Math.sqrt(d * L));
    rng.fillNormal(b.fcW, 0.02);
    rng.fillNormal(b.mlpProjW, 0.02);
  }
  p.lnF.fill(1);
}

export function parameterCount(cfg: ModelConfig): number {
  return tensorLayout(cfg).reduce((s, t) => s + t.size, 0);
}

/**
 * The same model with a class head of `numLabels` outputs: every other tensor is copied, and the
 * head is kept when its size already matches, else zero-initialized (as the paper's is).
 */
export function withClassHead(p: ParameterTensors, numLabels: number): ParameterTensors {
  if (p.config.numLabels === numLabels) return p;
  const out = new ParameterTensors({ ...p.config, numLabels });
  for (const t of out.layout) {
    if (t.name === 'score.weight') continue;
    out.data.set(p.tensor(t.name)!, t.offset);
  }
  return out;
}
