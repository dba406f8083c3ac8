/**
 * The webgpu backend: `Kernels<GpuTensor>`, the interface the model is written over, on the WGSL
 * kernels of kernels.ts. Handles are GPU tensors and views of them; the model's integer inputs
 * (tokens, targets, labels) arrive as host Int32Arrays and are uploaded here, in program order,
 * into small i32 tensors kept per role.
 */
import type { Kernels } from '../kernels.js';
import type { GpuTensor } from './runtime.js';
import type { WebGpuKernels } from './kernels.js';

/** The i32 upload buffers, one per role, so that a batch's tokens and targets do not share one. */
type IntRole = 'tokens' | 'targets';

export function createWebGpuBackend(gpu: WebGpuKernels): Kernels<GpuTensor> & { readonly gpu: WebGpuKernels } {
  const rt = gpu.runtime;
  const ints = new Map<IntRole, GpuTensor>();
  /** `data` in the role's i32 tensor (grown when too small), written after the work recorded so far. */
  const upload = (role: IntRole, data: Int32Array): GpuTensor => {
    let t = ints.get(role);
    if (!t || t.length < data.length) {
      if (t) rt.destroy(t);
      t = rt.tensor(Math.max(data.length, 1), [data.length], 'i32');
      ints.set(role, t);
    }
    rt.write(t, data);
    return t;
  };

  return {
    gpu,
    name: 'webgpu',
    threads: 1,
    maxArrayBytes: rt.ctx.adapter.limits.maxBufferSize,
    kvLayout: 'positions',
    // Arithmetic bounds a GPU's decoding, not the traffic a CPU's cache would save: one group.
    decodeGroup: () => Infinity,

    alloc: (length) => rt.tensor(length),
    view: (t, offset, length) => rt.view(t, offset, length),
    fromHost: (src) => rt.upload(src),
    upload: (dst, src) => rt.write(dst, src),
    read: (t) => rt.readFloats(t),
    copy: (dst, src) => rt.copy(dst, 0, src, 0, src.length),
    zero: (t) => rt.zero(t),
    sumOfSquares: (out, x) => gpu.sumOfSquares(out, x),
    // The log-sum-exp per query: the backward recomputes the probabilities (flash-style).
    attentionStateLength: (B, T, H) => B * H * T,

    sgemm: (transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) =>
      gpu.sgemm(transA, transB, m, n, k, alpha, a, 0, lda, b, 0, ldb, beta, c, 0, ldc),
    // The product reads a weight in place: packing is the tensor itself.
    packMatrix: (b, k, n) => ({ k, n, data: b }),
    sgemmPacked(m, a, b, c, accumulate) {
      if (b.data instanceof Uint16Array) throw new Error('igpt webgpu: sgemmPacked: the matrix was packed by a CPU backend');
      gpu.sgemmPacked(m, a, { k: b.k, n: b.n, data: b.data }, c, accumulate);
    },
    biasForward: (out, bias, rows, n) => gpu.biasForward(out, bias, rows, n),
    biasBackward: (dbias, dout, rows, n) => gpu.biasBackward(dbias, dout, rows, n),
    normForward: (out, rstd, x, g, rows, d, eps) => gpu.normForward(out, rstd, x, g, rows, d, eps),
    normBackward: (dx, dg, dout, x, rstd, g, rows, d) => gpu.normBackward(dx, dg, dout, x, rstd, g, rows, d),
    geluForward: (out, x, n) => gpu.geluForward(out, x, n),
    geluBackward: (dx, dout, x, n) => gpu.geluBackward(dx, dout, x, n),
    attentionForward: (out, lse, qkv, B, T, H, hs, causal) => gpu.attentionForward(out, lse, qkv, B, T, H, hs, causal),
    attentionBackward: (dqkv, dout, qkv, out, lse, B, T, H, hs, causal) =>
      gpu.attentionBackward(dqkv, dout, qkv, out, lse, B, T, H, hs, causal),
    attentionDecode: (out, qkv, kCache, vCache, B, H, hs, t, maxT) => gpu.attentionDecode(out, qkv, kCache, vCache, B, H, hs, t, maxT),
    crossEntropy: (losses, dlogits, logits, targets, rows, V, gradScale, total) =>
      gpu.crossEntropy(losses, dlogits, logits, upload('targets', targets.subarray(0, rows)), rows, V, gradScale, total),
    adamUpdate: (params, grads, m, v, n, lr, beta1, beta2, eps, t, gate) => gpu.adamUpdate(params, grads, m, v, n, lr, beta1, beta2, eps, t, gate),
    embeddingForward: (out, tokens, wte, wpe, B, T, d) =>
      gpu.embeddingForward(out, upload('tokens', tokens.subarray(0, B * T)), wte, wpe, B, T, d),
    embeddingBackward: (dwte, dwpe, dout, tokens, B, T, d) =>
      gpu.embeddingBackward(dwte, dwpe, dout, upload('tokens', tokens.subarray(0, B * T)), B, T, d),
    meanPoolForward: (pooled, x, B, T, d) => gpu.meanPoolForward(pooled, x, B, T, d),
    meanPoolBackward: (dx, dpooled, B, T, d) => gpu.meanPoolBackward(dx, dpooled, B, T, d),
  };
}
