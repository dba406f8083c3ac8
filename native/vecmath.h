// Small helpers the hot loops share: a branch-free exp that the compiler can vectorize, and a
// macro that compiles a function twice (AVX2+FMA and baseline x86-64) and picks one at load time,
// so the addon runs on any x86-64 yet uses the wide units where they exist.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define IGPT_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define IGPT_MULTIVERSION
#endif

namespace igpt {

/**
 * e^x in float with about 1 ulp of error, for x in [-87, 88] (clamped outside: results below
 * 2^-126 flush to about 1e-38, which is zero for every use here). Range reduction x = n·ln2 + r
 * with |r| <= ln2/2, then a degree-6 Taylor polynomial, then scaling by 2^n through the exponent bits.
 */
static inline float expApprox(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float shifter = 12582912.0f;  // 1.5·2^23: adding it rounds to an integer in the low bits
  const float t = x * 1.44269504088896341f + shifter;
  const float n = t - shifter;
  const float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t ti;
  std::memcpy(&ti, &t, sizeof ti);
  int32_t ni = ti - 0x4B400000;  // bits of `shifter`
  int32_t scaleBits = (ni + 127) << 23;
  float scale;
  std::memcpy(&scale, &scaleBits, sizeof scale);
  return p * scale;
}

/** Softmax over p[0..n) in place (p holds scaled scores), zeroes p[n..width). In attention.cc. */
void softmaxRow(float* p, int n, int width);

}  // namespace igpt
