// GCC vector types for the hand-blocked x86 kernels (attention_simd.cc, gemm_packed.cc): 8 or 16
// floats, unaligned loads and stores, and a broadcast. Functions using them carry their own
// target attribute (AVX2 or AVX-512).
#pragma once

#define IGPT_INLINE inline __attribute__((always_inline))

namespace igpt {
namespace simd {

typedef float f32x8 __attribute__((vector_size(32)));
typedef float f32x16 __attribute__((vector_size(64)));

template <class V>
constexpr int lanes() { return static_cast<int>(sizeof(V) / sizeof(float)); }

// Unaligned vector loads and stores (memcpy compiles to a single vmovups).
template <class V>
IGPT_INLINE V load(const float* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
template <class V>
IGPT_INLINE void store(float* p, V v) { __builtin_memcpy(p, &v, sizeof v); }

template <class V>
IGPT_INLINE V splat(float x) { return x - V{}; }

}  // namespace simd
}  // namespace igpt
