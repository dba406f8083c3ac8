// Small helpers the hot loops share: a branch-free exp that the compiler can vectorize, and a
// macro that compiles a function three times (AVX-512, AVX2+FMA, baseline x86-64) and picks one at load time,
// so the addon runs on any x86-64 yet uses the wide units where they exist.
#pragma once

#include <cstdint>

#include "simd_vectors.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define IGPT_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define IGPT_MULTIVERSION
#endif

namespace igpt {

/**
 * e^x with about 1 ulp of error, for x in [-87, 88] (clamped outside: results below 2^-126 flush
 * to about 1e-38, which is zero for every use here), lane by lane for a float or a SIMD vector
 * (simd_vectors.h). Range reduction x = n·ln2 + r with |r| <= ln2/2, then a degree-6 Taylor
 * polynomial, then scaling by 2^n through the exponent bits. The one exp of the native kernels;
 * the WebAssembly kernels emit the same steps as bytecode (src/kernels/simd.ts, exp4).
 */
template <class V>
IGPT_INLINE V expApprox(V x) {
  using simd::splat;
  x = x < splat<V>(-87.0f) ? splat<V>(-87.0f) : x;
  x = x > splat<V>(88.0f) ? splat<V>(88.0f) : x;
  const V shifter = splat<V>(12582912.0f);  // 1.5·2^23: adding it rounds to an integer in the low bits
  const V t = x * 1.44269504088896341f + shifter;
  const V n = t - shifter;
  const V r = (x - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
  V p = splat<V>(1.0f / 720.0f);
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  using VI = simd::IntVec<V>;
  const VI scaleBits = ((__builtin_bit_cast(VI, t) - 0x4B400000) + 127) << 23;  // 0x4B400000: the bits of `shifter`
  return p * __builtin_bit_cast(V, scaleBits);
}

/** Softmax over p[0..n) in place (p holds scaled scores), zeroes p[n..width). In attention.cc. */
void softmaxRow(float* p, int n, int width);

}  // namespace igpt
