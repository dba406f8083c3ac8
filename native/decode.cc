// The cached decoding step: per (sequence, head), one new query against the t + 1 keys and values
// cached so far. Each step reads the whole cache once and uses every element once, so the step is
// bound by memory traffic, not arithmetic; the caches are stored channel by channel ([hs, maxT]
// per head) so that both products run down contiguous positions, and may be held as half floats,
// which halves that traffic.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels.h"
#include "thread_pool.h"
#include "vecmath.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define IGPT_HALF_CACHE 1
#endif

namespace igpt {

namespace {

/**
 * scores[s] = scale·Σ_i q[i]·kT[i·maxT + s] for s < n: the sum runs down whole vectors of
 * positions, four channels per pass over the scores.
 */
IGPT_MULTIVERSION
void decodeScores(float* scores, const float* q, const float* kT, int n, int hs, int64_t maxT, float scale) {
  std::fill(scores, scores + n, 0.0f);
  int i = 0;
  for (; i + 4 <= hs; i += 4) {
    const float q0 = scale * q[i], q1 = scale * q[i + 1], q2 = scale * q[i + 2], q3 = scale * q[i + 3];
    const float* k0 = kT + i * maxT;
    const float *k1 = k0 + maxT, *k2 = k1 + maxT, *k3 = k2 + maxT;
#pragma omp simd
    for (int s = 0; s < n; s++) scores[s] += q0 * k0[s] + q1 * k1[s] + q2 * k2[s] + q3 * k3[s];
  }
  for (; i < hs; i++) {
    const float qi = scale * q[i];
    const float* ki = kT + i * maxT;
#pragma omp simd
    for (int s = 0; s < n; s++) scores[s] += qi * ki[s];
  }
}

/** o[c] = Σ_s p[s]·vT[c·maxT + s] for c < hs, four channels at a time. */
IGPT_MULTIVERSION
void decodeValues(float* o, const float* p, const float* vT, int n, int hs, int64_t maxT) {
  int c = 0;
  for (; c + 4 <= hs; c += 4) {
    const float* v0 = vT + c * maxT;
    const float *v1 = v0 + maxT, *v2 = v1 + maxT, *v3 = v2 + maxT;
    float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
    for (int s = 0; s < n; s++) {
      const float ps = p[s];
      a0 += ps * v0[s];
      a1 += ps * v1[s];
      a2 += ps * v2[s];
      a3 += ps * v3[s];
    }
    o[c] = a0;
    o[c + 1] = a1;
    o[c + 2] = a2;
    o[c + 3] = a3;
  }
  for (; c < hs; c++) {
    const float* vc = vT + c * maxT;
    float a = 0;
#pragma omp simd reduction(+ : a)
    for (int s = 0; s < n; s++) a += p[s] * vc[s];
    o[c] = a;
  }
}

#if IGPT_HALF_CACHE

#define IGPT_HALF_TARGET __attribute__((target("avx2,fma,f16c")))

/**
 * Positions ahead of the loads that the half-float loops prefetch (the rows are long streams);
 * never past the positions in use, whose lines would be fetched for nothing.
 */
constexpr int kAhead = 256;

/**
 * rows[j] = channel c + j of a head's cache, for N channels; past the last channel (hs) the last
 * one repeats, so the loops keep a fixed width. Returns how many channels are real.
 */
template <int N>
inline int channelRows(const uint16_t** rows, const uint16_t* cache, int c, int hs, int64_t maxT) {
  const int real = std::min(N, hs - c);
  for (int j = 0; j < N; j++) rows[j] = cache + (c + std::min(j, real - 1)) * maxT;
  return real;
}

/** Prefetches position s + kAhead of each row, unless that is past the n positions in use. */
inline void prefetchAhead(const uint16_t* const* rows, int count, int s, int n) {
  if (s + kAhead >= n) return;
  for (int j = 0; j < count; j++) _mm_prefetch(reinterpret_cast<const char*>(rows[j] + s + kAhead), _MM_HINT_T0);
}

IGPT_HALF_TARGET inline float halfToFloat(uint16_t h) { return _cvtsh_ss(h); }
IGPT_HALF_TARGET inline uint16_t floatToHalf(float x) { return _cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT); }
IGPT_HALF_TARGET inline __m256 load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
IGPT_HALF_TARGET inline float sum8(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

/** decodeScores with half-float keys: 8 positions per vector, four channels per pass. */
IGPT_HALF_TARGET void decodeScoresHalf(float* scores, const float* q, const uint16_t* kT, int n, int hs,
                                       int64_t maxT, float scale) {
  const int vecEnd = n & ~7;
  std::fill(scores, scores + n, 0.0f);
  int i = 0;
  for (; i < hs; i += 4) {
    const uint16_t* rows[4];
    const int ch = channelRows<4>(rows, kT, i, hs, maxT);
    float qs[4] = {0, 0, 0, 0};
    for (int j = 0; j < ch; j++) qs[j] = scale * q[i + j];  // a repeated last channel gets weight 0
    const __m256 q0 = _mm256_set1_ps(qs[0]), q1 = _mm256_set1_ps(qs[1]);
    const __m256 q2 = _mm256_set1_ps(qs[2]), q3 = _mm256_set1_ps(qs[3]);
    for (int s = 0; s < vecEnd; s += 8) {
      if ((s & 31) == 0) prefetchAhead(rows, 4, s, n);  // once per 64-byte line
      __m256 acc = _mm256_loadu_ps(scores + s);
      acc = _mm256_fmadd_ps(q0, load8(rows[0] + s), acc);
      acc = _mm256_fmadd_ps(q1, load8(rows[1] + s), acc);
      acc = _mm256_fmadd_ps(q2, load8(rows[2] + s), acc);
      acc = _mm256_fmadd_ps(q3, load8(rows[3] + s), acc);
      _mm256_storeu_ps(scores + s, acc);
    }
    for (int s = vecEnd; s < n; s++) {
      for (int j = 0; j < 4; j++) scores[s] += qs[j] * halfToFloat(rows[j][s]);
    }
  }
}

/** decodeValues with half-float values: four channels, each summed over 8 positions per vector. */
IGPT_HALF_TARGET void decodeValuesHalf(float* o, const float* p, const uint16_t* vT, int n, int hs, int64_t maxT) {
  const int vecEnd = n & ~7;
  for (int c = 0; c < hs; c += 4) {
    const uint16_t* rows[4];
    const int ch = channelRows<4>(rows, vT, c, hs, maxT);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int s = 0; s < vecEnd; s += 8) {
      if ((s & 31) == 0) prefetchAhead(rows, 4, s, n);  // once per 64-byte line
      const __m256 ps = _mm256_loadu_ps(p + s);
      a0 = _mm256_fmadd_ps(ps, load8(rows[0] + s), a0);
      a1 = _mm256_fmadd_ps(ps, load8(rows[1] + s), a1);
      a2 = _mm256_fmadd_ps(ps, load8(rows[2] + s), a2);
      a3 = _mm256_fmadd_ps(ps, load8(rows[3] + s), a3);
    }
    float sums[4] = {sum8(a0), sum8(a1), sum8(a2), sum8(a3)};
    for (int s = vecEnd; s < n; s++) {
      for (int j = 0; j < 4; j++) sums[j] += p[s] * halfToFloat(rows[j][s]);
    }
    for (int j = 0; j < ch; j++) o[c + j] = sums[j];
  }
}

#define IGPT_HALF512_TARGET __attribute__((target("avx512f,avx2,fma,f16c")))

IGPT_HALF512_TARGET inline __m512 load16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

/**
 * decodeScoresHalf with AVX-512: 64 positions' scores stay in four registers while all hs
 * channels are added in, so each key is converted and multiplied once and nothing else moves.
 */
IGPT_HALF512_TARGET void decodeScoresHalf512(float* scores, const float* q, const uint16_t* kT, int n, int hs,
                                             int64_t maxT, float scale) {
  int s = 0;
  for (; s + 64 <= n; s += 64) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int i = 0; i < hs; i++) {
      const uint16_t* row = kT + i * maxT + s;
      const uint16_t* lines[2] = {row - s, row - s + 32};  // the block's two 64-byte lines
      prefetchAhead(lines, 2, s, n);
      const __m512 qi = _mm512_set1_ps(scale * q[i]);
      a0 = _mm512_fmadd_ps(qi, load16(row), a0);
      a1 = _mm512_fmadd_ps(qi, load16(row + 16), a1);
      a2 = _mm512_fmadd_ps(qi, load16(row + 32), a2);
      a3 = _mm512_fmadd_ps(qi, load16(row + 48), a3);
    }
    _mm512_storeu_ps(scores + s, a0);
    _mm512_storeu_ps(scores + s + 16, a1);
    _mm512_storeu_ps(scores + s + 32, a2);
    _mm512_storeu_ps(scores + s + 48, a3);
  }
  for (; s + 16 <= n; s += 16) {
    __m512 a = _mm512_setzero_ps();
    for (int i = 0; i < hs; i++) a = _mm512_fmadd_ps(_mm512_set1_ps(scale * q[i]), load16(kT + i * maxT + s), a);
    _mm512_storeu_ps(scores + s, a);
  }
  for (; s < n; s++) {
    float a = 0;
    for (int i = 0; i < hs; i++) a += scale * q[i] * halfToFloat(kT[i * maxT + s]);
    scores[s] = a;
  }
}

/** decodeValuesHalf with AVX-512: eight channels at a time, each a register of partial sums. */
IGPT_HALF512_TARGET void decodeValuesHalf512(float* o, const float* p, const uint16_t* vT, int n, int hs, int64_t maxT) {
  const int vecEnd = n & ~15;
  for (int c = 0; c < hs; c += 8) {
    const uint16_t* rows[8];
    const int ch = channelRows<8>(rows, vT, c, hs, maxT);
    __m512 acc[8];
    for (int j = 0; j < 8; j++) acc[j] = _mm512_setzero_ps();
    for (int s = 0; s < vecEnd; s += 16) {
      const __m512 ps = _mm512_loadu_ps(p + s);
      if ((s & 31) == 0) prefetchAhead(rows, 8, s, n);
      for (int j = 0; j < 8; j++) acc[j] = _mm512_fmadd_ps(ps, load16(rows[j] + s), acc[j]);
    }
    for (int j = 0; j < ch; j++) {
      float sum = _mm512_reduce_add_ps(acc[j]);
      for (int s = vecEnd; s < n; s++) sum += p[s] * halfToFloat(rows[j][s]);
      o[c + j] = sum;
    }
  }
}

/** Rounds the new key and value (hs floats each) into half-float column t of the caches. */
IGPT_HALF_TARGET void storeHalfColumn(uint16_t* kT, uint16_t* vT, const float* k, const float* v, int hs, int t,
                                      int64_t maxT) {
  for (int i = 0; i < hs; i++) {
    kT[i * maxT + t] = floatToHalf(k[i]);
    vT[i * maxT + t] = floatToHalf(v[i]);
  }
}

#endif  // IGPT_HALF_CACHE

/** The step for caches of element type T, given its three inner pieces. */
template <class T, class Store, class Scores, class Values>
void decodeStep(float* out, const float* qkv, T* kCache, T* vCache, int B, int H, int hs, int t, int maxT,
                Store store, Scores scores, Values values) {
  if (B <= 0 || H <= 0 || hs <= 0) return;
  const int C = H * hs;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const int64_t heads = static_cast<int64_t>(B) * H;
  auto decodeHead = [&](int64_t bh) {
    const int b = static_cast<int>(bh / H), h = static_cast<int>(bh % H);
    const float* q = qkv + static_cast<int64_t>(b) * 3 * C + static_cast<int64_t>(h) * hs;
    T* kT = kCache + bh * maxT * hs;
    T* vT = vCache + bh * maxT * hs;
    store(kT, vT, q + C, q + 2 * C, hs, t, maxT);
    thread_local std::vector<float> p;
    p.resize(static_cast<size_t>(t) + 1);
    scores(p.data(), q, kT, t + 1, hs, maxT, scale);
    softmaxRow(p.data(), t + 1, t + 1);
    values(out + static_cast<int64_t>(b) * C + static_cast<int64_t>(h) * hs, p.data(), vT, t + 1, hs, maxT);
  };
  if (heads * (t + 1) * hs < 65536) {
    for (int64_t bh = 0; bh < heads; bh++) decodeHead(bh);
  } else {
    pool().run(heads, decodeHead);
  }
}

}  // namespace

void attentionDecode(float* out, const float* qkv, float* kCache, float* vCache, int B, int H, int hs, int t,
                     int maxT) {
  const auto store = [](float* kT, float* vT, const float* k, const float* v, int hs, int t, int64_t maxT) {
    for (int i = 0; i < hs; i++) {
      kT[i * maxT + t] = k[i];
      vT[i * maxT + t] = v[i];
    }
  };
  decodeStep(out, qkv, kCache, vCache, B, H, hs, t, maxT, store, decodeScores, decodeValues);
}

void attentionDecodeHalf(float* out, const float* qkv, uint16_t* kCache, uint16_t* vCache, int B, int H, int hs,
                         int t, int maxT) {
#if IGPT_HALF_CACHE
  // IGPT_ATTENTION_ISA=avx2 (or none) keeps an AVX-512 CPU on the AVX2 kernels (to test them).
  static const bool avx512 = [] {
    const char* want = std::getenv("IGPT_ATTENTION_ISA");
    const bool narrower = want && (std::string(want) == "avx2" || std::string(want) == "none");
    return halfFloatsSupported() && __builtin_cpu_supports("avx512f") && !narrower;
  }();
  if (avx512) {
    decodeStep(out, qkv, kCache, vCache, B, H, hs, t, maxT, storeHalfColumn, decodeScoresHalf512, decodeValuesHalf512);
  } else if (halfFloatsSupported()) {
    decodeStep(out, qkv, kCache, vCache, B, H, hs, t, maxT, storeHalfColumn, decodeScoresHalf, decodeValuesHalf);
  }
#else
  (void)out, (void)qkv, (void)kCache, (void)vCache, (void)B, (void)H, (void)hs, (void)t, (void)maxT;
#endif
}

}  // namespace igpt
