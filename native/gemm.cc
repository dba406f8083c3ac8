// GEMM through OpenBLAS. Two ways to use both cores: let OpenBLAS thread one call (`Blas`), or run
// OpenBLAS single-threaded and split C into one block per pool thread (`Pool`), which keeps a single
// set of threads in the process so the fused loops never fight OpenBLAS's spinning workers.
#include <cblas.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "kernels.h"
#include "thread_pool.h"

namespace igpt {

namespace {

GemmThreading initialMode() {
  const char* env = std::getenv("IGPT_GEMM_THREADING");
  if (env && std::strcmp(env, "blas") == 0) return GemmThreading::Blas;
  return GemmThreading::Pool;
}

GemmThreading mode = initialMode();
int blasThreadsInUse = -1;  // what we last told OpenBLAS

void useBlasThreads(int n) {
  if (n != blasThreadsInUse) {
    openblas_set_num_threads(n);
    blasThreadsInUse = n;
  }
}

int singleThreadDepth = 0;

void scaleMatrix(float* c, int m, int n, int ldc, float beta) {
  if (beta == 1.0f) return;
  for (int i = 0; i < m; i++) {
    float* row = c + static_cast<int64_t>(i) * ldc;
    if (beta == 0.0f) std::fill(row, row + n, 0.0f);
    else for (int j = 0; j < n; j++) row[j] *= beta;
  }
}

void blasGemm(bool transA, bool transB, int m, int n, int k, float alpha, const float* a, int lda,
              const float* b, int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
              m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace

SingleThreadedBlas::SingleThreadedBlas() {
  if (singleThreadDepth++ == 0) useBlasThreads(1);
}
SingleThreadedBlas::~SingleThreadedBlas() { --singleThreadDepth; }

void setGemmThreading(GemmThreading m) { mode = m; }
GemmThreading gemmThreading() { return mode; }

void sgemm(bool transA, bool transB, int m, int n, int k, float alpha, const float* a, int lda,
           const float* b, int ldb, float beta, float* c, int ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0.0f) {
    scaleMatrix(c, m, n, ldc, beta);
    return;
  }
  const int threads = threadCount();
  const double flops = 2.0 * m * n * k;
  if (singleThreadDepth > 0 || threads == 1 || flops < 4e6) {
    if (singleThreadDepth == 0) useBlasThreads(1);
    blasGemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  if (mode == GemmThreading::Blas) {
    useBlasThreads(threads);
    blasGemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  // Split the longer side of C into equal blocks (multiples of 16 columns / 8 rows, so the
  // OpenBLAS micro-kernels see full tiles), one per thread.
  useBlasThreads(1);
  const bool splitRows = m >= n;
  const int extent = splitRows ? m : n;
  const int align = splitRows ? 8 : 16;
  int block = (extent + threads - 1) / threads;
  block = (block + align - 1) / align * align;
  const int parts = (extent + block - 1) / block;
  pool().run(parts, [&](int64_t p) {
    const int begin = static_cast<int>(p) * block;
    const int size = std::min(block, extent - begin);
    if (splitRows) {
      const float* aPart = transA ? a + begin : a + static_cast<int64_t>(begin) * lda;
      blasGemm(transA, transB, size, n, k, alpha, aPart, lda, b, ldb, beta,
               c + static_cast<int64_t>(begin) * ldc, ldc);
    } else {
      const float* bPart = transB ? b + static_cast<int64_t>(begin) * ldb : b + begin;
      blasGemm(transA, transB, m, size, k, alpha, a, lda, bPart, ldb, beta, c + begin, ldc);
    }
  });
}

}  // namespace igpt
