/**
 * A deliberately naive float64 iGPT written straight from the paper's equations, independent of
 * src/model: the reference that gradients (finite differences) and logits are checked against.
 */
import type { ModelConfig } from '../src/model/config.js';
import { tensorLayout } from '../src/model/parameters.js';

export interface ReferenceInputs {
  B: number; T: number;
  inputs: Int32Array; targets?: Int32Array; labels?: Int32Array;
  causal: boolean; genWeight?: number;
}

export interface ReferenceOutputs {
  logits: Float64Array;   // [B, T, k]
  loss: number;           // genWeight · mean NLL + mean class CE
  features: Float64Array; // [L+1, B, d]
}

export function referenceForward(cfg: ModelConfig, flat: Float64Array, x: ReferenceInputs): ReferenceOutputs {
  const { nEmbd: d, nHead: H, nLayer: L, layerNormEpsilon: eps } = cfg;
  const hs = d / H;
  const K = cfg.vocabSize - 1;
  const P = new Map(tensorLayout(cfg).map((t) => [t.name, flat.subarray(t.offset, t.offset + t.size)]));
  const W = (name: string): Float64Array => P.get(name)!;
  const { B, T } = x;
  const features = new Float64Array((L + 1) * B * d);
  const logits = new Float64Array(B * T * K);
  let genSum = 0, genCount = 0, clfSum = 0;

  const norm = (v: Float64Array, g: Float64Array): Float64Array => {
    let ms = 0;
    for (const e of v) ms += e * e;
    const r = 1 / Math.sqrt(ms / v.length + eps);
    return v.map((e, i) => e * r * g[i]);
  };
  const affine = (v: Float64Array, w: Float64Array, b: Float64Array | null, nOut: number): Float64Array => {
    const out = new Float64Array(nOut);
    for (let o = 0; o < nOut; o++) {
      let s = b ? b[o] : 0;
      for (let i = 0; i < v.length; i++) s += v[i] * w[i * nOut + o];
      out[o] = s;
    }
    return out;
  };
  const logSoftmaxAt = (z: Float64Array, target: number): number => {
    const m = Math.max(...z);
    let s = 0;
    for (const e of z) s += Math.exp(e - m);
    return z[target] - m - Math.log(s);
  };

  for (let b = 0; b < B; b++) {
    let h: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const tok = x.inputs[b * T + t];
      const v = new Float64Array(d);
      for (let i = 0; i < d; i++) v[i] = (tok >= 0 ? W('transformer.wte.weight')[tok * d + i] : 0) + W('transformer.wpe.weight')[t * d + i];
      h.push(v);
    }
    const pool = (rowsOf: Float64Array[], layer: number): void => {
      for (const r of rowsOf) for (let i = 0; i < d; i++) features[(layer * B + b) * d + i] += r[i] / T;
    };
    for (let l = 0; l < L; l++) {
      const pre = `transformer.h.${l}.`;
      const n1 = h.map((v) => norm(v, W(pre + 'ln_1.weight')));
      pool(n1, l);
      const qkv = n1.map((v) => affine(v, W(pre + 'attn.c_attn.weight'), W(pre + 'attn.c_attn.bias'), 3 * d));
      const y = h.map(() => new Float64Array(d));
      for (let head = 0; head < H; head++) {
        for (let t = 0; t < T; t++) {
          const last = x.causal ? t : T - 1;
          const scores: number[] = [];
          for (let u = 0; u <= last; u++) {
            let s = 0;
            for (let i = 0; i < hs; i++) s += qkv[t][head * hs + i] * qkv[u][d + head * hs + i];
            scores.push(s / Math.sqrt(hs));
          }
          const m = Math.max(...scores);
          const e = scores.map((s) => Math.exp(s - m));
          const z = e.reduce((a, c) => a + c, 0);
          for (let u = 0; u <= last; u++) {
            for (let i = 0; i < hs; i++) y[t][head * hs + i] += (e[u] / z) * qkv[u][2 * d + head * hs + i];
          }
        }
      }
      const a = h.map((v, t) => {
        const o = affine(y[t], W(pre + 'attn.c_proj.weight'), W(pre + 'attn.c_proj.bias'), d);
        return v.map((e, i) => e + o[i]);
      });
      h = a.map((v) => {
        const f = affine(norm(v, W(pre + 'ln_2.weight')), W(pre + 'mlp.c_fc.weight'), W(pre + 'mlp.c_fc.bias'), 4 * d)
          .map((u) => u / (1 + Math.exp(-1.702 * u)));
        const o = affine(f, W(pre + 'mlp.c_proj.weight'), W(pre + 'mlp.c_proj.bias'), d);
        return v.map((e, i) => e + o[i]);
      });
    }
    const nf = h.map((v) => norm(v, W('transformer.ln_f.weight')));
    pool(nf, L);
    const head = W('lm_head.weight');
    for (let t = 0; t < T; t++) {
      const z = new Float64Array(K);
      for (let o = 0; o < K; o++) {
        let s = 0;
        for (let i = 0; i < d; i++) s += nf[t][i] * head[o * d + i];
        z[o] = s;
      }
      logits.set(z, (b * T + t) * K);
      const target = x.targets?.[b * T + t] ?? -1;
      if (target >= 0) { genSum -= logSoftmaxAt(z, target); genCount++; }
    }
    if (x.labels && cfg.numLabels > 0) {
      const score = W('score.weight');
      const pooled = features.subarray((L * B + b) * d, (L * B + b + 1) * d);
      const z = new Float64Array(cfg.numLabels);
      for (let c = 0; c < cfg.numLabels; c++) {
        let s = 0;
        for (let i = 0; i < d; i++) s += pooled[i] * score[c * d + i];
        z[c] = s;
      }
      clfSum -= logSoftmaxAt(z, x.labels[b]);
    }
  }
  const gen = genCount > 0 ? (x.genWeight ?? 1) * genSum / genCount : 0;
  const clf = x.labels && cfg.numLabels > 0 ? clfSum / B : 0;
  return { logits, loss: gen + clf, features };
}
