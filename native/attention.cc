// Multi-head attention core. The fast path is attention_simd.cc (AVX2/AVX-512, head size a multiple
// of 8); this file holds the entry points and the portable fallback built on OpenBLAS. The cached
// decoding step is in decode.cc.
//
// Fallback: one (batch, head) at a time in blocks of query rows. Within a block the scores come
// from one small GEMM against the keys the block can see (with `causal`, keys up to the block's
// last row: the masked half above the diagonal is never computed), the softmax runs in place in the
// caller's `att` rows while they are still in cache, and one more GEMM applies them to the values.
// Blocks are handed to the pool's threads; OpenBLAS runs single-threaded inside them.
#include <algorithm>
#include <cmath>
#include <vector>

#include "attention_simd.h"
#include "kernels.h"
#include "thread_pool.h"
#include "vecmath.h"

namespace igpt {

IGPT_MULTIVERSION
void softmaxRow(float* p, int n, int width) {
  float max = p[0];
#pragma omp simd reduction(max : max)
  for (int s = 1; s < n; s++) max = p[s] > max ? p[s] : max;
  float sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int s = 0; s < n; s++) {
    const float e = expApprox(p[s] - max);
    p[s] = e;
    sum += e;
  }
  const float inv = 1.0f / sum;
  for (int s = 0; s < n; s++) p[s] *= inv;
  for (int s = n; s < width; s++) p[s] = 0.0f;
}

namespace {

constexpr int kBlockRows = 64;

/**
 * Softmax backward for one row: ds[s] = p[s]·(dp[s] − Σ p·dp)·scale for s < n, 0 up to width.
 * Written in place over dp.
 */
IGPT_MULTIVERSION
void softmaxBackwardRow(float* dp, const float* p, int n, int width, float scale) {
  float weighted = 0;
#pragma omp simd reduction(+ : weighted)
  for (int s = 0; s < n; s++) weighted += p[s] * dp[s];
  for (int s = 0; s < n; s++) dp[s] = p[s] * (dp[s] - weighted) * scale;
  for (int s = n; s < width; s++) dp[s] = 0.0f;
}

struct HeadView {
  const float* q;  // rows of stride ld
  const float* k;
  const float* v;
  int ld;
};

HeadView headView(const float* qkv, int b, int h, int T, int H, int hs) {
  const int C = H * hs;
  const float* base = qkv + static_cast<int64_t>(b) * T * 3 * C + static_cast<int64_t>(h) * hs;
  return {base, base + C, base + 2 * C, 3 * C};
}

}  // namespace

void attentionForward(float* out, float* att, const float* qkv, int B, int T, int H, int hs,
                      bool causal) {
  if (B <= 0 || T <= 0 || H <= 0 || hs <= 0) return;
  if (attentionForwardSimd(out, att, qkv, B, T, H, hs, causal)) return;
  const int C = H * hs;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const int blocks = (T + kBlockRows - 1) / kBlockRows;
  const int64_t items = static_cast<int64_t>(B) * H * blocks;
  SingleThreadedBlas single;
  pool().run(items, [&](int64_t item) {
    // Last blocks first: under `causal` they are the most work, so the tail of the job is short.
    const int block = blocks - 1 - static_cast<int>(item % blocks);
    const int bh = static_cast<int>(item / blocks);
    const int b = bh / H, h = bh % H;
    const HeadView hv = headView(qkv, b, h, T, H, hs);
    const int i0 = block * kBlockRows;
    const int rows = std::min(kBlockRows, T - i0);
    const int keys = causal ? i0 + rows : T;
    float* scores = att + (static_cast<int64_t>(bh) * T + i0) * T;
    sgemm(false, true, rows, keys, hs, scale, hv.q + static_cast<int64_t>(i0) * hv.ld, hv.ld, hv.k,
          hv.ld, 0.0f, scores, T);
    for (int r = 0; r < rows; r++) {
      softmaxRow(scores + static_cast<int64_t>(r) * T, causal ? i0 + r + 1 : T, T);
    }
    float* o = out + (static_cast<int64_t>(b) * T + i0) * C + static_cast<int64_t>(h) * hs;
    sgemm(false, false, rows, hs, keys, 1.0f, scores, T, hv.v, hv.ld, 0.0f, o, C);
  });
}

void attentionBackward(float* dqkv, const float* dout, const float* qkv, const float* att, int B,
                       int T, int H, int hs, bool causal) {
  if (B <= 0 || T <= 0 || H <= 0 || hs <= 0) return;
  if (attentionBackwardSimd(dqkv, dout, qkv, att, B, T, H, hs, causal)) return;
  const int C = H * hs;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const int blocks = (T + kBlockRows - 1) / kBlockRows;
  SingleThreadedBlas single;
  // One (batch, head) per item: dk and dv sum over all query blocks, so a head stays on one thread.
  pool().run(static_cast<int64_t>(B) * H, [&](int64_t bh64) {
    const int bh = static_cast<int>(bh64);
    const int b = bh / H, h = bh % H;
    const HeadView hv = headView(qkv, b, h, T, H, hs);
    float* dq = dqkv + static_cast<int64_t>(b) * T * 3 * C + static_cast<int64_t>(h) * hs;
    float* dk = dq + C;
    float* dv = dq + 2 * C;
    for (int t = 0; t < T; t++) {
      std::fill(dk + static_cast<int64_t>(t) * hv.ld, dk + static_cast<int64_t>(t) * hv.ld + hs, 0.0f);
      std::fill(dv + static_cast<int64_t>(t) * hv.ld, dv + static_cast<int64_t>(t) * hv.ld + hs, 0.0f);
    }
    thread_local std::vector<float> scratch;
    scratch.resize(static_cast<size_t>(kBlockRows) * T);
    float* dscores = scratch.data();
    const float* dO = dout + static_cast<int64_t>(b) * T * C + static_cast<int64_t>(h) * hs;
    for (int block = 0; block < blocks; block++) {
      const int i0 = block * kBlockRows;
      const int rows = std::min(kBlockRows, T - i0);
      const int keys = causal ? i0 + rows : T;
      const float* p = att + (static_cast<int64_t>(bh) * T + i0) * T;
      const float* dOBlock = dO + static_cast<int64_t>(i0) * C;
      // dP = dO·Vᵀ, then through the softmax (and the 1/sqrt(hs) scale) into dS.
      sgemm(false, true, rows, keys, hs, 1.0f, dOBlock, C, hv.v, hv.ld, 0.0f, dscores, keys);
      for (int r = 0; r < rows; r++) {
        softmaxBackwardRow(dscores + static_cast<int64_t>(r) * keys, p + static_cast<int64_t>(r) * T,
                           causal ? i0 + r + 1 : T, keys, scale);
      }
      // dQ = dS·K; dK += dSᵀ·Q; dV += Pᵀ·dO.
      sgemm(false, false, rows, hs, keys, 1.0f, dscores, keys, hv.k, hv.ld, 0.0f,
            dq + static_cast<int64_t>(i0) * hv.ld, hv.ld);
      sgemm(true, false, keys, hs, rows, 1.0f, dscores, keys, hv.q + static_cast<int64_t>(i0) * hv.ld,
            hv.ld, 1.0f, dk, hv.ld);
      sgemm(true, false, keys, hs, rows, 1.0f, p, T, dOBlock, C, 1.0f, dv, hv.ld);
    }
  });
}

}  // namespace igpt
