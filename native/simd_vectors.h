// GCC vector types for the hand-blocked x86 kernels (attention_simd.cc, gemm_packed.cc): 8 or 16
// floats, unaligned loads and stores, and a broadcast. Functions using them carry their own
// target attribute (AVX2 or AVX-512). A plain float counts as a one-lane vector, so lane-wise
// templates (expApprox in vecmath.h) serve scalar loops too.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__)
// GCC 12's AVX-512 intrinsics (_mm512_cvtph_ps, _mm512_broadcastss_ps) trip -Wmaybe-uninitialized
// inside its own header.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#endif

#include <cstdint>

#define IGPT_INLINE inline __attribute__((always_inline))

namespace igpt {
namespace simd {

typedef float f32x8 __attribute__((vector_size(32)));
typedef float f32x16 __attribute__((vector_size(64)));

typedef int i32x8 __attribute__((vector_size(32)));
typedef int i32x16 __attribute__((vector_size(64)));

template <class V>
constexpr int lanes() { return static_cast<int>(sizeof(V) / sizeof(float)); }

/** The int32 vector with as many lanes as V (int32_t for a float). */
template <class V>
struct IntOf;
template <>
struct IntOf<float> {
  using type = int32_t;
};
template <>
struct IntOf<f32x8> {
  using type = i32x8;
};
template <>
struct IntOf<f32x16> {
  using type = i32x16;
};
template <class V>
using IntVec = typename IntOf<V>::type;

inline float broadcast(float*, float x) { return x; }

// Unaligned vector loads and stores (memcpy compiles to a single vmovups).
template <class V>
IGPT_INLINE V load(const float* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
template <class V>
IGPT_INLINE void store(float* p, V v) { __builtin_memcpy(p, &v, sizeof v); }

#if defined(__x86_64__) && defined(__GNUC__)
// A vector of x in every lane, by the broadcast instruction. GCC 12 builds `x - V{}` or {x, x, ...}
// one lane at a time (16 masked broadcasts for 16 floats), which in the strip GEMM's inner loop
// made the AVX-512 path slower than the AVX2 one.
__attribute__((target("avx2"))) inline f32x8 broadcast(f32x8*, float x) {
  return (f32x8)_mm256_broadcastss_ps(_mm_set_ss(x));
}
__attribute__((target("avx512f"))) inline f32x16 broadcast(f32x16*, float x) {
  return (f32x16)_mm512_broadcastss_ps(_mm_set_ss(x));
}
#endif
/** x in every lane of V. */
template <class V>
IGPT_INLINE V splat(float x) { return broadcast(static_cast<V*>(nullptr), x); }

}  // namespace simd
}  // namespace igpt
