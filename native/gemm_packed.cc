// Products of a few rows with a fixed matrix, C[m, n] = A[m, k]·B[k, n] for m up to a few dozen: the
// shape of every linear layer while decoding, where m is the number of images. OpenBLAS packs all
// of B on every call, which for m = 16 costs as much as the product itself, and B read in place is
// a strided walk over rows a page apart that the prefetchers do not follow. So B is packed once
// (per decoder) into strips of 32 columns, each strip k rows of 32 contiguous floats (or half
// floats, half the bytes for a step that is bound by reading them); a product then streams each
// strip once per tile of rows, with the tile's sums held in registers for the whole k.
#include "gemm_packed.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "kernels.h"
#include "simd_vectors.h"
#include "thread_pool.h"

#if defined(__x86_64__) && defined(__GNUC__)  // simd_vectors.h has brought in immintrin.h
#define IGPT_PACKED_SIMD 1
#endif

namespace igpt {

namespace {

struct Problem {
  int m, n, k;
  const float* a;
  const float* packed;       // one of these two
  const uint16_t* packedHalf;
  float* c;
  bool accumulate;
};

/** C[r0 .. r0+rows, j0 .. j0+width) (+)= the tile's sums, held as rows × kPackedStrip floats. */
void storeTile(const Problem& p, const float* sums, int r0, int rows, int j0, int width) {
  for (int r = 0; r < rows; r++) {
    float* cRow = p.c + static_cast<int64_t>(r0 + r) * p.n + j0;
    const float* s = sums + r * kPackedStrip;
    if (p.accumulate) for (int j = 0; j < width; j++) cRow[j] += s[j];
    else std::copy(s, s + width, cRow);
  }
}

/** Any CPU, float strips only: one strip, one row at a time. */
void stripScalar(const Problem& p, int s) {
  const float* strip = p.packed + static_cast<int64_t>(s) * p.k * kPackedStrip;
  const int j0 = s * kPackedStrip, width = std::min(kPackedStrip, p.n - j0);
  float sums[kPackedStrip];
  for (int r = 0; r < p.m; r++) {
    std::fill(sums, sums + kPackedStrip, 0.0f);
    const float* a = p.a + static_cast<int64_t>(r) * p.k;
    for (int q = 0; q < p.k; q++) {
      for (int j = 0; j < kPackedStrip; j++) sums[j] += a[q] * strip[static_cast<int64_t>(q) * kPackedStrip + j];
    }
    storeTile(p, sums, r, 1, j0, width);
  }
}

}  // namespace

int64_t packedStripsSize(int k, int n) {
  return static_cast<int64_t>((n + kPackedStrip - 1) / kPackedStrip) * kPackedStrip * k;
}

/** Packs B into strips, each element converted by `convert` (columns past n are zero). */
template <class T, class Convert>
void packStripsWith(T* packed, const float* b, int k, int n, Convert convert) {
  const int strips = (n + kPackedStrip - 1) / kPackedStrip;
  for (int s = 0; s < strips; s++) {
    T* strip = packed + static_cast<int64_t>(s) * k * kPackedStrip;
    const int j0 = s * kPackedStrip, width = std::min(kPackedStrip, n - j0);
    for (int q = 0; q < k; q++) {
      T* row = strip + static_cast<int64_t>(q) * kPackedStrip;
      const float* src = b + static_cast<int64_t>(q) * n + j0;
      for (int j = 0; j < kPackedStrip; j++) row[j] = convert(j < width ? src[j] : 0.0f);
    }
  }
}

void packStrips(float* packed, const float* b, int k, int n) {
  packStripsWith(packed, b, k, n, [](float x) { return x; });
}

}  // namespace igpt

#if IGPT_PACKED_SIMD

namespace igpt {

namespace {

using namespace simd;

// One vector of a packed row, from floats or from half floats (the tag picks the width). The half
// loaders need their instruction sets; they reach the hot loop through `flatten` on the entry
// points below, which inlines the whole call tree there (always_inline would be checked against
// the templates in between, which carry no target).
template <class V>
IGPT_INLINE V loadPacked(V*, const float* p) { return load<V>(p); }
__attribute__((target("avx2,fma,f16c"))) inline f32x8 loadPacked(f32x8*, const uint16_t* p) {
  return (f32x8)_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
__attribute__((target("avx512f,avx2,fma,f16c"))) inline f32x16 loadPacked(f32x16*, const uint16_t* p) {
  return (f32x16)_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

/**
 * Rows r0 .. r0+ROWS of one strip: ROWS × kPackedStrip sums in registers (2 vectors per row with
 * AVX-512; with AVX2 the strip is done as two halves of 2 vectors).
 */
template <class V, int ROWS, class T>
IGPT_INLINE void stripTile(const Problem& p, const T* packed, int s, int r0) {
  constexpr int W = lanes<V>();
  constexpr int halves = kPackedStrip / (2 * W);
  const T* strip = packed + static_cast<int64_t>(s) * p.k * kPackedStrip;
  const float* a = p.a + static_cast<int64_t>(r0) * p.k;
  alignas(64) float sums[ROWS * kPackedStrip];
  for (int h = 0; h < halves; h++) {
    V acc[ROWS][2] = {};
    const T* b = strip + h * 2 * W;
    for (int q = 0; q < p.k; q++) {
      const V b0 = loadPacked(static_cast<V*>(nullptr), b + static_cast<int64_t>(q) * kPackedStrip);
      const V b1 = loadPacked(static_cast<V*>(nullptr), b + static_cast<int64_t>(q) * kPackedStrip + W);
      for (int r = 0; r < ROWS; r++) {
        const V ar = splat<V>(a[static_cast<int64_t>(r) * p.k + q]);
        acc[r][0] += ar * b0;
        acc[r][1] += ar * b1;
      }
    }
    for (int r = 0; r < ROWS; r++) {
      store<V>(sums + r * kPackedStrip + h * 2 * W, acc[r][0]);
      store<V>(sums + r * kPackedStrip + h * 2 * W + W, acc[r][1]);
    }
  }
  const int j0 = s * kPackedStrip;
  storeTile(p, sums, r0, ROWS, j0, std::min(kPackedStrip, p.n - j0));
}

/** All rows of one strip, in tiles of MR rows (the last tile smaller). */
template <class V, int MR, class T>
IGPT_INLINE void strip(const Problem& p, const T* packed, int s) {
  int r0 = 0;
  for (; r0 + MR <= p.m; r0 += MR) stripTile<V, MR>(p, packed, s, r0);
  // One instantiation per possible remainder, so that every tile's loops have fixed trip counts.
  switch (p.m - r0) {
#define IGPT_TAIL(R) case R: if constexpr (R < MR) stripTile<V, R>(p, packed, s, r0); break;
    IGPT_TAIL(1) IGPT_TAIL(2) IGPT_TAIL(3) IGPT_TAIL(4) IGPT_TAIL(5) IGPT_TAIL(6) IGPT_TAIL(7)
#undef IGPT_TAIL
    default: break;
  }
}

template <class V, int MR>
IGPT_INLINE void stripOfEither(const Problem& p, int s) {
  if (p.packedHalf) strip<V, MR>(p, p.packedHalf, s);
  else strip<V, MR>(p, p.packed, s);
}

__attribute__((target("avx2,fma,f16c"), flatten)) void stripAvx2(const Problem& p, int s) { stripOfEither<f32x8, 6>(p, s); }
__attribute__((target("avx512f,avx2,fma,f16c"), flatten)) void stripAvx512(const Problem& p, int s) {
  stripOfEither<f32x16, 8>(p, s);
}

enum class Isa { None, Avx2, Avx512 };

Isa detectIsa() {
  __builtin_cpu_init();
  // Both vector paths also read half floats, so they need what halfFloatsSupported checks.
  // IGPT_PACKED_ISA=avx2 picks the AVX2 path on an AVX-512 CPU (to test it); =none the scalar
  // one for float strips.
  const char* env = std::getenv("IGPT_PACKED_ISA");
  const std::string want = env ? env : "";
  if (!halfFloatsSupported() || want == "none") return Isa::None;
  if (want != "avx2" && __builtin_cpu_supports("avx512f")) return Isa::Avx512;
  return Isa::Avx2;
}

Isa isa() {
  static const Isa detected = detectIsa();
  return detected;
}

void runStrip(const Problem& p, int s) {
  if (isa() == Isa::Avx512) stripAvx512(p, s);
  else if (isa() == Isa::Avx2 || p.packedHalf) stripAvx2(p, s);  // half strips exist only with F16C + AVX2
  else stripScalar(p, s);
}

__attribute__((target("f16c"))) uint16_t floatToHalf(float x) { return _cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT); }

}  // namespace

void packStripsHalf(uint16_t* packed, const float* b, int k, int n) {
  if (halfFloatsSupported()) packStripsWith(packed, b, k, n, floatToHalf);
}

}  // namespace igpt

#else  // not x86-64: float strips, scalar

namespace igpt {

namespace {
void runStrip(const Problem& p, int s) { stripScalar(p, s); }
}  // namespace

void packStripsHalf(uint16_t*, const float*, int, int) {}

}  // namespace igpt

#endif

namespace igpt {

namespace {

void sgemmStrips(const Problem& p) {
  const int strips = (p.n + kPackedStrip - 1) / kPackedStrip;
  // Threads pay off once each gets a few microseconds of work.
  if (2.0 * p.m * p.n * p.k >= 4e6 && strips >= 2) {
    pool().run(strips, [&](int64_t s) { runStrip(p, static_cast<int>(s)); });
  } else {
    for (int s = 0; s < strips; s++) runStrip(p, s);
  }
}

bool trivialProduct(int m, int n, int k, float* c, bool accumulate) {
  if (m <= 0 || n <= 0) return true;
  if (k > 0) return false;
  if (!accumulate) std::fill(c, c + static_cast<int64_t>(m) * n, 0.0f);
  return true;
}

}  // namespace

void sgemmPacked(int m, int n, int k, const float* a, const float* packed, float* c, bool accumulate) {
  if (!trivialProduct(m, n, k, c, accumulate)) sgemmStrips({m, n, k, a, packed, nullptr, c, accumulate});
}

void sgemmPackedHalf(int m, int n, int k, const float* a, const uint16_t* packed, float* c, bool accumulate) {
  if (halfFloatsSupported() && !trivialProduct(m, n, k, c, accumulate)) {
    sgemmStrips({m, n, k, a, nullptr, packed, c, accumulate});
  }
}

}  // namespace igpt
