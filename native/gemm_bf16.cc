// Matrix products with bfloat16 operands and float32 accumulation, through oneDNN's matmul (which
// dispatches AVX512-BF16 or AMX tiles). Built only where oneDNN's header is present (IGPT_WITH_DNNL,
// set by binding.gyp); elsewhere bf16Supported() is false and the addon exports no bf16 product.
//
// Operands are either bf16 already (weights, converted once per step by the caller) or float32
// (activations and gradients), which are rounded here into a per-thread scratch first. oneDNN
// primitives take milliseconds to create, so one is kept per shape (the model issues a dozen).
#include "kernels.h"

#include <algorithm>
#include <cstring>

#include "thread_pool.h"
#include "vecmath.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif

namespace igpt {

namespace {

/** Rounds n floats to bf16, to nearest with ties to even (NaN stays NaN). */
IGPT_MULTIVERSION
void roundToBf16(uint16_t* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    uint32_t bits;
    std::memcpy(&bits, &src[i], sizeof bits);
    const bool nan = (bits & 0x7fffffffu) > 0x7f800000u;
    const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
    dst[i] = static_cast<uint16_t>(nan ? (bits >> 16) | 0x40u : rounded);
  }
}

}  // namespace

void floatsToBf16(uint16_t* dst, const float* src, int64_t n) {
  constexpr int64_t kChunk = 1 << 16;
  if (n < 2 * kChunk) return roundToBf16(dst, src, n);
  pool().run((n + kChunk - 1) / kChunk, [&](int64_t c) {
    const int64_t begin = c * kChunk;
    roundToBf16(dst + begin, src + begin, std::min(kChunk, n - begin));
  });
}

}  // namespace igpt

#if defined(IGPT_WITH_DNNL)

#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

namespace igpt {

namespace {

using dnnl::memory;

/** Whether the CPU multiplies bf16 in hardware: AVX512-BF16 (CPUID 7.1 EAX bit 5) or AMX-BF16 (7.0 EDX bit 22). */
bool cpuHasBf16() {
#if defined(__x86_64__) && defined(__GNUC__)
  unsigned eax, ebx, ecx, edx;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool amx = (edx & (1u << 22)) != 0;
  __cpuid_count(7, 1, eax, ebx, ecx, edx);
  const bool avx512bf16 = (eax & (1u << 5)) != 0;
  __builtin_cpu_init();
  return (avx512bf16 && __builtin_cpu_supports("avx512f")) || amx;
#else
  return false;
#endif
}

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

/** A product's shape; one primitive per distinct key. */
struct Shape {
  bool transA, transB;
  int m, n, k, lda, ldb, ldc;
  float alpha, beta;
  bool operator<(const Shape& o) const {
    return std::tie(transA, transB, m, n, k, lda, ldb, ldc, alpha, beta) <
           std::tie(o.transA, o.transB, o.m, o.n, o.k, o.lda, o.ldb, o.ldc, o.alpha, o.beta);
  }
};

struct Product {
  memory::desc a, b, c;
  dnnl::matmul matmul;
};

/** Row-major rows×cols stored with row stride ld, or its transpose (stored cols×rows). */
memory::desc matrixDesc(int rows, int cols, int ld, bool transposed, memory::data_type type) {
  const memory::dims strides = transposed ? memory::dims{1, ld} : memory::dims{ld, 1};
  return memory::desc({rows, cols}, type, strides);
}

Product makeProduct(const Shape& s) {
  using dt = memory::data_type;
  Product p;
  p.a = matrixDesc(s.m, s.k, s.lda, s.transA, dt::bf16);
  p.b = matrixDesc(s.k, s.n, s.ldb, s.transB, dt::bf16);
  p.c = matrixDesc(s.m, s.n, s.ldc, false, dt::f32);
  dnnl::primitive_attr attr;
  if (s.alpha != 1.0f) attr.set_output_scales(0, {s.alpha});
  if (s.beta != 0.0f) {
    dnnl::post_ops ops;
    ops.append_sum(s.beta);
    attr.set_post_ops(ops);
  }
  const dnnl::matmul::desc desc(p.a, p.b, p.c);
  p.matmul = dnnl::matmul(dnnl::matmul::primitive_desc(desc, attr, engine()));
  return p;
}

std::mutex productsMutex;
std::map<Shape, Product> products;

const Product& productFor(const Shape& s) {
  std::lock_guard<std::mutex> lock(productsMutex);
  auto it = products.find(s);
  if (it != products.end()) return it->second;
  if (products.size() >= 256) products.clear();  // a run uses a few dozen shapes; never grow unbounded
  return products.emplace(s, makeProduct(s)).first->second;
}

/**
 * The bf16 form of an operand stored rows×cols with row stride ld: the caller's own when it is
 * bf16 already, else the floats rounded into `scratch` (packed, so its stride becomes cols).
 */
const uint16_t* asBf16(const GemmOperand& x, int rows, int cols, int& ld, std::vector<uint16_t>& scratch) {
  if (x.bf16) return x.bf16;
  scratch.resize(static_cast<size_t>(rows) * cols);
  if (ld == cols) {
    floatsToBf16(scratch.data(), x.f32, static_cast<int64_t>(rows) * cols);
  } else {
    for (int r = 0; r < rows; r++) roundToBf16(scratch.data() + static_cast<size_t>(r) * cols, x.f32 + static_cast<int64_t>(r) * ld, cols);
  }
  ld = cols;
  return scratch.data();
}

}  // namespace

bool bf16Supported() {
  static const bool supported = cpuHasBf16();
  return supported;
}

void gemmBf16(bool transA, bool transB, int m, int n, int k, float alpha, const GemmOperand& a, int lda,
              const GemmOperand& b, int ldb, float beta, float* c, int ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0.0f) {
    // Nothing to multiply: C = beta·C, as sgemm does.
    sgemm(false, false, m, n, 0, 0.0f, nullptr, 1, nullptr, 1, beta, c, ldc);
    return;
  }
  thread_local std::vector<uint16_t> scratchA, scratchB;
  const uint16_t* a16 = asBf16(a, transA ? k : m, transA ? m : k, lda, scratchA);
  const uint16_t* b16 = asBf16(b, transB ? n : k, transB ? k : n, ldb, scratchB);
  const Product& p = productFor({transA, transB, m, n, k, lda, ldb, ldc, alpha, beta});
  dnnl::stream stream(engine());
  memory aMem(p.a, engine(), const_cast<uint16_t*>(a16));
  memory bMem(p.b, engine(), const_cast<uint16_t*>(b16));
  memory cMem(p.c, engine(), c);
  p.matmul.execute(stream, {{DNNL_ARG_SRC, aMem}, {DNNL_ARG_WEIGHTS, bMem}, {DNNL_ARG_DST, cMem}});
  stream.wait();
}

}  // namespace igpt

#else  // no oneDNN: no bf16 products

namespace igpt {

bool bf16Supported() { return false; }

void gemmBf16(bool, bool, int, int, int, float, const GemmOperand&, int, const GemmOperand&, int, float, float*, int) {}

}  // namespace igpt

#endif
