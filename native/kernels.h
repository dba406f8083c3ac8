// The kernels on raw pointers. Argument checking happens in addon.cc; these trust their inputs.
// Conventions follow src/kernels/kernels.ts: row-major float32, "accumulates" means +=.
#pragma once

#include <cstdint>

namespace igpt {

/** C = alpha·op(A)·op(B) + beta·C (row-major); beta = 0 never reads C. */
void sgemm(bool transA, bool transB, int m, int n, int k, float alpha, const float* a, int lda,
           const float* b, int ldb, float beta, float* c, int ldc);

/** One operand of gemmBf16: bf16 values (when `bf16` is set) or floats to be rounded to bf16. */
struct GemmOperand {
  const float* f32;
  const uint16_t* bf16;
};

/**
 * sgemm with bf16 operands and float32 accumulation (oneDNN). Float operands are rounded to bf16
 * (to nearest even) first. Does nothing unless bf16Supported().
 */
void gemmBf16(bool transA, bool transB, int m, int n, int k, float alpha, const GemmOperand& a, int lda,
              const GemmOperand& b, int ldb, float beta, float* c, int ldc);
/** Whether gemmBf16 runs here: the addon was built with oneDNN and the CPU has AVX512-BF16 or AMX. */
bool bf16Supported();
/** dst[i] = src[i] rounded to bf16 (to nearest even), for n values. */
void floatsToBf16(uint16_t* dst, const float* src, int64_t n);

/** While alive, OpenBLAS runs single-threaded (for GEMMs issued from the pool's own threads). */
class SingleThreadedBlas {
 public:
  SingleThreadedBlas();
  ~SingleThreadedBlas();
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;
};

void biasForward(float* out, const float* bias, int64_t rows, int64_t n);
void biasBackward(float* dbias, const float* dout, int64_t rows, int64_t n);
void normForward(float* out, float* rstd, const float* x, const float* g, int64_t rows, int64_t d,
                 float eps);
void normBackward(float* dx, float* dg, const float* dout, const float* x, const float* rstd,
                  const float* g, int64_t rows, int64_t d);
void geluForward(float* out, const float* x, int64_t n);
void geluBackward(float* dx, const float* dout, const float* x, int64_t n);
/** Returns the summed loss over rows with target >= 0; targets must be < V (checked by caller). */
double crossEntropy(float* losses, float* dlogits, const float* logits, const int32_t* targets,
                    int64_t rows, int64_t V, float gradScale);
void adamUpdate(float* params, const float* grads, float* m, float* v, int64_t n, double lr,
                double beta1, double beta2, double eps, double t);

void attentionForward(float* out, float* att, const float* qkv, int B, int T, int H, int hs,
                      bool causal);
void attentionBackward(float* dqkv, const float* dout, const float* qkv, const float* att, int B,
                       int T, int H, int hs, bool causal);
/**
 * One cached decoding step at position t: appends the token's k, v to the caches ([B, H, hs, maxT]),
 * attends to 0..t.
 */
void attentionDecode(float* out, const float* qkv, float* kCache, float* vCache, int B, int H, int hs,
                     int t, int maxT);
/** Whether this CPU converts IEEE half floats in hardware (x86 F16C + AVX2 + FMA), for caches and packed weights. */
bool halfFloatsSupported();
/** attentionDecode with half-float caches; does nothing unless halfFloatsSupported(). */
void attentionDecodeHalf(float* out, const float* qkv, uint16_t* kCache, uint16_t* vCache, int B, int H, int hs,
                         int t, int maxT);

/** The size of the largest CPU cache the system reports (L4, L3 or L2), 0 where it reports none. */
int64_t lastLevelCacheBytes();

/** How a large GEMM is spread over cores: OpenBLAS's own threads, or split over our pool. */
enum class GemmThreading { Blas, Pool };
void setGemmThreading(GemmThreading mode);
GemmThreading gemmThreading();

}  // namespace igpt
