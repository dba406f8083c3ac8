// Row-wise and elementwise kernels: bias, norm, quick GELU, cross-entropy, Adam. Rows are split
// into fixed-size chunks (independent of the thread count), and reductions over rows add one
// partial sum per chunk in chunk order, so results do not depend on how many threads ran.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels.h"
#include "thread_pool.h"
#include "vecmath.h"

namespace igpt {

namespace {

/** Calls fn(begin, end) over [0, n) in chunks of about `grain`; small jobs stay on this thread. */
template <typename Fn>
void parallelChunks(int64_t n, int64_t grain, Fn&& fn) {
  if (n <= 0) return;
  const int64_t chunks = (n + grain - 1) / grain;
  pool().run(chunks, [&](int64_t c) {
    const int64_t begin = c * grain;
    fn(begin, std::min(n, begin + grain));
  });
}

/** Rows per chunk so a chunk carries roughly 64K values. */
int64_t rowGrain(int64_t width) { return std::max<int64_t>(1, 65536 / std::max<int64_t>(1, width)); }

constexpr int64_t kElementGrain = 65536;

IGPT_MULTIVERSION
void addBiasRows(float* out, const float* bias, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; r++) {
    float* row = out + r * n;
    for (int64_t j = 0; j < n; j++) row[j] += bias[j];
  }
}

IGPT_MULTIVERSION
void sumColumns(double* acc, const float* dout, int64_t rows, int64_t n, int64_t j0, int64_t j1) {
  for (int64_t r = 0; r < rows; r++) {
    const float* row = dout + r * n;
    for (int64_t j = j0; j < j1; j++) acc[j - j0] += row[j];
  }
}

IGPT_MULTIVERSION
void normRows(float* out, float* rstd, const float* x, const float* g, int64_t rows, int64_t d,
              float eps) {
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = x + r * d;
    double sumSq = 0;
#pragma omp simd reduction(+ : sumSq)
    for (int64_t j = 0; j < d; j++) sumSq += static_cast<double>(xr[j]) * xr[j];
    const float rs = static_cast<float>(1.0 / std::sqrt(sumSq / static_cast<double>(d) + eps));
    rstd[r] = rs;
    float* o = out + r * d;
    for (int64_t j = 0; j < d; j++) o[j] = xr[j] * rs * g[j];
  }
}

IGPT_MULTIVERSION
void normBackwardRows(float* dx, double* dgPartial, const float* dout, const float* x,
                      const float* rstd, const float* g, int64_t rows, int64_t d) {
  for (int64_t r = 0; r < rows; r++) {
    const float* dy = dout + r * d;
    const float* xr = x + r * d;
    float* dxr = dx + r * d;
    const float rs = rstd[r];
    double dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int64_t j = 0; j < d; j++) dot += static_cast<double>(dy[j]) * g[j] * xr[j];
    // d/dx of x·rs·g: rs·(dy·g − x·rs²·mean(dy·g·x)).
    const float coef = static_cast<float>(static_cast<double>(rs) * rs * dot / static_cast<double>(d));
    for (int64_t j = 0; j < d; j++) {
      dxr[j] += rs * (dy[j] * g[j] - xr[j] * coef);
      dgPartial[j] += static_cast<double>(dy[j] * xr[j] * rs);
    }
  }
}

IGPT_MULTIVERSION
void geluRange(float* out, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float xi = x[i];
    // x·sigmoid(1.702x) as a product: GCC turns x / (1 + e) into two vector divisions (one per
    // clamp case of expApprox), the reciprocal form into one.
    const float s = 1.0f / (1.0f + expApprox(-1.702f * xi));
    out[i] = xi * s;
  }
}

IGPT_MULTIVERSION
void geluBackwardRange(float* dx, const float* dout, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float xi = x[i];
    const float s = 1.0f / (1.0f + expApprox(-1.702f * xi));
    dx[i] = dout[i] * (s + 1.702f * xi * s * (1.0f - s));
  }
}

IGPT_MULTIVERSION
void adamRange(float* params, const float* grads, float* m, float* v, int64_t n, float lr,
               float beta1, float beta2, float oneMinusB1, float oneMinusB2, float eps, float c1,
               float c2) {
  for (int64_t i = 0; i < n; i++) {
    const float g = grads[i];
    const float mi = beta1 * m[i] + oneMinusB1 * g;
    const float vi = beta2 * v[i] + oneMinusB2 * g * g;
    m[i] = mi;
    v[i] = vi;
    params[i] -= lr * (mi * c1) / (std::sqrt(vi * c2) + eps);
  }
}

IGPT_MULTIVERSION
double crossEntropyRows(float* losses, float* dlogits, const float* logits, const int32_t* targets,
                        int64_t rows, int64_t V, float gradScale) {
  double total = 0;
  for (int64_t r = 0; r < rows; r++) {
    const float* lr = logits + r * V;
    float* dl = dlogits ? dlogits + r * V : nullptr;
    const int32_t target = targets[r];
    if (target < 0) {
      losses[r] = 0;
      if (dl) std::fill(dl, dl + V, 0.0f);
      continue;
    }
    float max = lr[0];
#pragma omp simd reduction(max : max)
    for (int64_t j = 1; j < V; j++) max = lr[j] > max ? lr[j] : max;
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < V; j++) sum += expApprox(lr[j] - max);
    const double loss = std::log(sum) + max - lr[target];
    losses[r] = static_cast<float>(loss);
    total += loss;
    if (dl) {
      const float scale = static_cast<float>(gradScale / sum);
      for (int64_t j = 0; j < V; j++) dl[j] = expApprox(lr[j] - max) * scale;
      dl[target] -= gradScale;
    }
  }
  return total;
}

}  // namespace

void biasForward(float* out, const float* bias, int64_t rows, int64_t n) {
  parallelChunks(rows, rowGrain(n), [&](int64_t r0, int64_t r1) {
    addBiasRows(out + r0 * n, bias, r1 - r0, n);
  });
}

void biasBackward(float* dbias, const float* dout, int64_t rows, int64_t n) {
  // Split columns (each summed over all rows in float64): no cross-thread reduction needed.
  const int64_t colGrain = std::max<int64_t>(16, (n / threadCount() + 15) / 16 * 16);
  const int64_t grain = rows * n < kElementGrain ? n : colGrain;
  parallelChunks(n, grain, [&](int64_t j0, int64_t j1) {
    std::vector<double> acc(j1 - j0, 0.0);
    sumColumns(acc.data(), dout, rows, n, j0, j1);
    for (int64_t j = j0; j < j1; j++) dbias[j] += static_cast<float>(acc[j - j0]);
  });
}

void normForward(float* out, float* rstd, const float* x, const float* g, int64_t rows, int64_t d,
                 float eps) {
  parallelChunks(rows, rowGrain(d), [&](int64_t r0, int64_t r1) {
    normRows(out + r0 * d, rstd + r0, x + r0 * d, g, r1 - r0, d, eps);
  });
}

void normBackward(float* dx, float* dg, const float* dout, const float* x, const float* rstd,
                  const float* g, int64_t rows, int64_t d) {
  if (rows <= 0 || d <= 0) return;
  const int64_t grain = rowGrain(d);
  const int64_t chunks = (rows + grain - 1) / grain;
  std::vector<double> partial(static_cast<size_t>(chunks * d), 0.0);
  pool().run(chunks, [&](int64_t c) {
    const int64_t r0 = c * grain;
    const int64_t r1 = std::min(rows, r0 + grain);
    normBackwardRows(dx + r0 * d, partial.data() + c * d, dout + r0 * d, x + r0 * d, rstd + r0, g,
                     r1 - r0, d);
  });
  for (int64_t j = 0; j < d; j++) {
    double sum = 0;
    for (int64_t c = 0; c < chunks; c++) sum += partial[c * d + j];
    dg[j] += static_cast<float>(sum);
  }
}

void geluForward(float* out, const float* x, int64_t n) {
  parallelChunks(n, kElementGrain, [&](int64_t i0, int64_t i1) { geluRange(out + i0, x + i0, i1 - i0); });
}

void geluBackward(float* dx, const float* dout, const float* x, int64_t n) {
  parallelChunks(n, kElementGrain, [&](int64_t i0, int64_t i1) {
    geluBackwardRange(dx + i0, dout + i0, x + i0, i1 - i0);
  });
}

double crossEntropy(float* losses, float* dlogits, const float* logits, const int32_t* targets,
                    int64_t rows, int64_t V, float gradScale) {
  if (rows <= 0) return 0;
  const int64_t grain = rowGrain(V);
  const int64_t chunks = (rows + grain - 1) / grain;
  std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
  pool().run(chunks, [&](int64_t c) {
    const int64_t r0 = c * grain;
    const int64_t r1 = std::min(rows, r0 + grain);
    partial[c] = crossEntropyRows(losses + r0, dlogits ? dlogits + r0 * V : nullptr, logits + r0 * V,
                                  targets + r0, r1 - r0, V, gradScale);
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

void adamUpdate(float* params, const float* grads, float* m, float* v, int64_t n, double lr,
                double beta1, double beta2, double eps, double t) {
  // Constants in float64 first: 1 − 0.999 rounded from a float32 β would be off by 1e-5.
  const float c1 = static_cast<float>(1.0 / (1.0 - std::pow(beta1, t)));
  const float c2 = static_cast<float>(1.0 / (1.0 - std::pow(beta2, t)));
  parallelChunks(n, kElementGrain, [&](int64_t i0, int64_t i1) {
    adamRange(params + i0, grads + i0, m + i0, v + i0, i1 - i0, static_cast<float>(lr),
              static_cast<float>(beta1), static_cast<float>(beta2), static_cast<float>(1.0 - beta1),
              static_cast<float>(1.0 - beta2), static_cast<float>(eps), c1, c2);
  });
}

}  // namespace igpt
