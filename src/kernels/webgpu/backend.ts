/**
 * The webgpu backend: `Kernels<GpuTensor>`, the interface the model is written over, on the WGSL
 * kernels of kernels.ts. Handles are GPU tensors and views of them; the model's integer inputs
 * (tokens, targets, labels) arrive as host Int32Arrays and are uploaded here into an arena.
 */
import type { Kernels } from '../kernels.js';
import type { GpuTensor } from './runtime.js';
import type { WebGpuKernels } from './kernels.js';
import { DRAW_MAX_PALETTE } from './wgsl/reductions.js';

export function createWebGpuBackend(gpu: WebGpuKernels): Kernels<GpuTensor> & { readonly gpu: WebGpuKernels } {
  const rt = gpu.runtime;
  // Integer inputs go to successive places of one i32 tensor, written ahead of the recorded work
  // (no place is reused until that work is submitted): a step's or a prefill's many small uploads
  // cost no submit each. When it is full, the recorded work is submitted and it starts over.
  let arena: GpuTensor | null = null;
  let used = 0, epoch = -1;
  const upload = (data: Int32Array): GpuTensor => {
    if (epoch !== rt.submissions) used = 0;
    if (!arena || used + data.length > arena.length) {
      if (arena && data.length <= arena.length) {
        rt.flush();
      } else {
        if (arena) rt.destroy(arena);
        const length = Math.max(2 * data.length, 4096);
        arena = rt.tensor(length, [length], 'i32');
      }
      used = 0;
    }
    const t = rt.view(arena, used, data.length);
    rt.writeAhead(arena, data, used);
    used += data.length;
    epoch = rt.submissions;
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
    sgemmPacked(m, a, b, c, accumulate, bias) {
      if (b.data instanceof Uint16Array) throw new Error('igpt webgpu: sgemmPacked: the matrix was packed by a CPU backend');
      gpu.sgemmPacked(m, a, { k: b.k, n: b.n, data: b.data }, c, accumulate, bias);
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
    attentionPrefill: (out, qkv, kCache, vCache, B, H, hs, t, n, maxT) => gpu.attentionPrefill(out, qkv, kCache, vCache, B, H, hs, t, n, maxT),
    crossEntropy: (losses, dlogits, logits, targets, rows, V, gradScale, total) =>
      gpu.crossEntropy(losses, dlogits, logits, upload(targets.subarray(0, rows)), rows, V, gradScale, total),
    adamUpdate: (params, grads, m, v, n, lr, beta1, beta2, eps, t, gate) => gpu.adamUpdate(params, grads, m, v, n, lr, beta1, beta2, eps, t, gate),
    embeddingForward: (out, tokens, wte, wpe, B, T, d) =>
      gpu.embeddingForward(out, upload(tokens.subarray(0, B * T)), wte, wpe, B, T, d),
    embeddingBackward: (dwte, dwpe, dout, tokens, B, T, d) =>
      gpu.embeddingBackward(dwte, dwpe, dout, upload(tokens.subarray(0, B * T)), B, T, d),
    pixelDraws: {
      maxPaletteSize: DRAW_MAX_PALETTE,
      idsFromHost: (ids) => rt.upload(ids),
      readIds: async (ids) => {
        const host = await rt.read(ids);
        if (!(host instanceof Int32Array)) throw new Error('igpt webgpu: readIds of a float tensor');
        return host;
      },
      draw: (tokens, drawn, t, n, logits, uniforms, uAt, B, V, o) =>
        gpu.drawPixels(tokens, drawn, t, n, logits, uniforms, uAt, B, V, o.temperature, o.topK, o.topP),
      embed: (x, drawn, wte, wpe, B, d) => gpu.embeddingForward(x, drawn, wte, wpe, B, 1, d),
    },
    meanPoolForward: (pooled, x, B, T, d) => gpu.meanPoolForward(pooled, x, B, T, d),
    meanPoolBackward: (dx, dpooled, B, T, d) => gpu.meanPoolBackward(dx, dpooled, B, T, d),
  };
}
