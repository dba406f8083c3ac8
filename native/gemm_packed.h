// Products of a few rows with a matrix packed once (decoding's linear layers); see gemm_packed.cc.
#pragma once

#include <cstdint>

namespace igpt {

/** Columns per packed strip. */
constexpr int kPackedStrip = 32;

/** Floats that B [k, n] takes once packed (n rounded up to whole strips). */
int64_t packedStripsSize(int k, int n);

/** Packs row-major B [k, n] into strips of kPackedStrip columns (k rows each, zero-padded). */
void packStrips(float* packed, const float* b, int k, int n);

/** packStrips into IEEE half floats (rounded to nearest); does nothing unless halfFloatsSupported(). */
void packStripsHalf(uint16_t* packed, const float* b, int k, int n);

/** C[m, n] = A[m, k]·B, or += with `accumulate`; B packed by packStrips, A and C row-major. */
void sgemmPacked(int m, int n, int k, const float* a, const float* packed, float* c, bool accumulate);

/** sgemmPacked with B from packStripsHalf; does nothing unless halfFloatsSupported(). */
void sgemmPackedHalf(int m, int n, int k, const float* a, const uint16_t* packed, float* c, bool accumulate);

}  // namespace igpt
