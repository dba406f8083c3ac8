/**
 * The portable kernel backend: the `Kernels` interface in TypeScript plus WebAssembly SIMD built at
 * load time, single-threaded and browser-safe (no Node imports).
 */
import type { Kernels } from './kernels.js';
import { hostOperations } from './host.js';
import { attentionBackwardLoops, attentionDecodeLoops, attentionForwardLoops, geluBackwardLoops,
         geluForwardLoops, sgemmLoops, type Gemm } from './loops.js';
import { createSimdKernels } from './simd.js';
import { createSimdEngine } from './simd-engine.js';

/**
 * The portable backend. GEMM, attention, GELU and layer norm run on WebAssembly SIMD kernels when
 * the runtime has WebAssembly SIMD (every current browser and Node ≥ 16), on plain loops otherwise
 * or with `{ simd: false }`; the memory-bound rest is plain loops. Holds reusable scratch (the
 * wasm memory among it), so use one instance per thread of work.
 */
export function createPortableKernels(options: { simd?: boolean } = {}): Kernels {
  const simd = options.simd === false ? null : createSimdKernels();
  const engine = simd ? createSimdEngine(simd) : null;
  const gemm: Gemm = engine ? engine.gemm : sgemmLoops;
  let scratch = new Float32Array(0);
  const scratchOf = (n: number): Float32Array => {
    if (scratch.length < n) scratch = new Float32Array(n);
    return scratch;
  };

  const biasForward = (out: Float32Array, bias: Float32Array, rows: number, n: number): void => {
    for (let r = 0; r < rows; r++) {
      const row = r * n;
      for (let j = 0; j < n; j++) out[row + j] += bias[j];
    }
  };

  return {
    ...hostOperations,
    name: 'portable',
    threads: 1,
    kvLayout: 'positions',
    decodeGroup: () => Infinity, // one thread, bound by arithmetic: grouping would only repeat the weights' packing

    sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) {
      gemm(transA, transB, m, n, k, alpha, a, 0, lda, b, 0, ldb, beta, c, 0, ldc);
    },

    // The engine packs B inside every product; a packed matrix is the matrix itself, in floats.
    packMatrix: (b, k, n) => ({ k, n, data: b }),

    sgemmPacked(m, a, b, c, accumulate, bias) {
      if (!(b.data instanceof Float32Array)) throw new Error('portable sgemmPacked: the matrix was packed by another backend');
      gemm(false, false, m, b.n, b.k, 1, a, 0, b.k, b.data, 0, b.n, accumulate ? 1 : 0, c, 0, b.n);
      if (bias) biasForward(c, bias, m, b.n);
    },

    attentionForward(out, att, qkv, B, T, H, hs, causal) {
      if (engine) engine.attentionForward(out, att, qkv, B, T, H, hs, causal);
      else attentionForwardLoops(gemm, out, att, qkv, B, T, H, hs, causal);
    },

    attentionBackward(dqkv, dout, qkv, _out, att, B, T, H, hs, causal) {
      if (engine) engine.attentionBackward(dqkv, dout, qkv, att, B, T, H, hs, causal);
      else attentionBackwardLoops(gemm, scratchOf(T * T), dqkv, dout, qkv, att, B, T, H, hs, causal);
    },

    attentionDecode(out, qkv, kCache, vCache, B, H, hs, t, maxT) {
      if (engine) engine.attentionDecode(out, qkv, kCache, vCache, B, H, hs, t, maxT);
      else attentionDecodeLoops(scratchOf(t + 1), out, qkv, kCache, vCache, B, H, hs, t, maxT);
    },

    biasForward,

    biasBackward(dbias, dout, rows, n) {
      for (let r = 0; r < rows; r++) {
        const row = r * n;
        for (let j = 0; j < n; j++) dbias[j] += dout[row + j];
      }
    },

    normForward(out, rstd, x, g, rows, d, eps) {
      if (engine) {
        engine.normForward(out, rstd, x, g, rows, d, eps);
        return;
      }
      for (let r = 0; r < rows; r++) {
        const row = r * d;
        let sumSq = 0;
        for (let j = 0; j < d; j++) sumSq += x[row + j] * x[row + j];
        const rs = 1 / Math.sqrt(sumSq / d + eps);
        rstd[r] = rs;
        for (let j = 0; j < d; j++) out[row + j] = x[row + j] * rs * g[j];
      }
    },

    normBackward(dx, dg, dout, x, rstd, g, rows, d) {
      if (engine) {
        engine.normBackward(dx, dg, dout, x, rstd, g, rows, d);
        return;
      }
      for (let r = 0; r < rows; r++) {
        const row = r * d;
        const rs = rstd[r];
        // dx = rs·(dout·g - x·rs²·mean(dout·g·x)).
        let dot = 0;
        for (let j = 0; j < d; j++) dot += dout[row + j] * g[j] * x[row + j];
        const coef = (rs * rs * dot) / d;
        for (let j = 0; j < d; j++) {
          dx[row + j] += rs * (dout[row + j] * g[j] - x[row + j] * coef);
          dg[j] += dout[row + j] * x[row + j] * rs;
        }
      }
    },

    geluForward(out, x, n) {
      if (engine) engine.geluForward(out, x, n);
      else geluForwardLoops(out, x, n);
    },

    geluBackward(dx, dout, x, n) {
      if (engine) engine.geluBackward(dx, dout, x, n);
      else geluBackwardLoops(dx, dout, x, n);
    },

    crossEntropy(losses, dlogits, logits, targets, rows, V, gradScale, sum) {
      let total = 0;
      for (let r = 0; r < rows; r++) {
        const row = r * V;
        const target = targets[r];
        if (target < 0) {
          losses[r] = 0;
          if (dlogits) dlogits.fill(0, row, row + V);
          continue;
        }
        if (target >= V) throw new Error(`crossEntropy: target ${target} of row ${r} is not below V=${V}`);
        let max = -Infinity;
        for (let j = 0; j < V; j++) if (logits[row + j] > max) max = logits[row + j];
        let sum = 0;
        for (let j = 0; j < V; j++) sum += Math.exp(logits[row + j] - max);
        const loss = Math.log(sum) + max - logits[row + target];
        losses[r] = loss;
        total += loss;
        if (dlogits) {
          const inv = 1 / sum;
          for (let j = 0; j < V; j++) dlogits[row + j] = Math.exp(logits[row + j] - max) * inv * gradScale;
          dlogits[row + target] -= gradScale;
        }
      }
      sum[0] = total;
    },

    adamUpdate(params, grads, m, v, n, lr, beta1, beta2, eps, t, gate) {
      if (!Number.isFinite(gate[0])) return;
      const c1 = 1 / (1 - Math.pow(beta1, t));
      const c2 = 1 / (1 - Math.pow(beta2, t));
      for (let i = 0; i < n; i++) {
        const g = grads[i];
        const mi = beta1 * m[i] + (1 - beta1) * g;
        const vi = beta2 * v[i] + (1 - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        params[i] -= (lr * (mi * c1)) / (Math.sqrt(vi * c2) + eps);
      }
    },
  };
}
