// Node-API bindings: checks every argument (types, integer ranges, buffer extents) and then runs the
// kernel directly on the caller's typed-array memory (the data pointer already includes the view's
// byteOffset, so subarray views work without copies).
//
// Each binding reads its arguments in order from an `Args` cursor (no hand-numbered indices) and
// is listed once in the export table at the bottom; `kernel<>` wraps the ones that compute, so
// every kernel runs with subnormals flushed.
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "gemm_packed.h"
#include "kernels.h"
#include "thread_pool.h"

namespace {

using igpt::GemmThreading;

/** The arguments of one call, read left to right; every reader names the argument it expects. */
class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* fn) : info_(info), fn_(fn) {}

  const char* function() const { return fn_; }
  Napi::Env env() const { return info_.Env(); }

  [[noreturn]] void fail(const std::string& message) const {
    throw Napi::TypeError::New(info_.Env(), std::string("igpt native ") + fn_ + ": " + message);
  }

  template <class T>
  struct View {
    T* data;
    size_t length;
  };

  View<float> floats(const char* name) { return typed<Napi::Float32Array>(next(name), napi_float32_array, name, "a Float32Array"); }
  View<int32_t> ints(const char* name) { return typed<Napi::Int32Array>(next(name), napi_int32_array, name, "an Int32Array"); }
  /** A Uint16Array of half floats or bf16 values. */
  View<uint16_t> halves(const char* name) { return typed<Napi::Uint16Array>(next(name), napi_uint16_array, name, "a Uint16Array"); }

  /** A Float32Array or null. */
  View<float> floatsOrNull(const char* name) {
    if (!peekNull()) return floats(name);
    next(name);
    return {nullptr, 0};
  }

  /** A string, or "" when the argument is absent. */
  std::string optionalString(const char* name) {
    if (i_ >= info_.Length() || peekNull()) return "";
    const Napi::Value v = next(name);
    if (!v.IsString()) fail(std::string(name) + " must be a string");
    return v.As<Napi::String>().Utf8Value();
  }

  /** Whether the next argument is a Uint16Array (without consuming it). */
  bool nextIsHalves() const {
    if (i_ >= info_.Length()) return false;
    const Napi::Value v = info_[i_];
    return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint16_array;
  }

  /** A non-negative integer that fits in int32 (for BLAS) unless `wide`. */
  int64_t count(const char* name, bool wide = false) {
    const Napi::Value v = next(name);
    if (!v.IsNumber()) fail(std::string(name) + " must be a number");
    const double d = v.As<Napi::Number>().DoubleValue();
    const double limit = wide ? 9007199254740991.0 : static_cast<double>(std::numeric_limits<int32_t>::max());
    if (!(d >= 0) || d > limit || std::floor(d) != d) {
      fail(std::string(name) + " must be a non-negative integer" + (wide ? "" : " below 2^31") +
           ", got " + v.ToString().Utf8Value());
    }
    return static_cast<int64_t>(d);
  }
  int64_t wide(const char* name) { return count(name, true); }

  double number(const char* name) {
    const Napi::Value v = next(name);
    if (!v.IsNumber()) fail(std::string(name) + " must be a number");
    return v.As<Napi::Number>().DoubleValue();
  }

  bool flag(const char* name) {
    const Napi::Value v = next(name);
    if (!v.IsBoolean()) fail(std::string(name) + " must be a boolean");
    return v.As<Napi::Boolean>().Value();
  }

  /** Throws unless `have` >= `need` elements. */
  void needs(const char* name, size_t have, uint64_t need) const {
    if (have < need) {
      throw Napi::RangeError::New(info_.Env(), std::string("igpt native ") + fn_ + ": " + name + " has " +
                                                   std::to_string(have) + " elements, needs " +
                                                   std::to_string(need));
    }
  }

  /** Checks a row-major matrix stored rows×cols with row stride ld; returns its element extent. */
  uint64_t matrix(const char* name, size_t have, int64_t rows, int64_t cols, int64_t ld) const {
    if (rows == 0 || cols == 0) return 0;
    if (ld < cols) {
      fail(std::string("leading dimension of ") + name + " is " + std::to_string(ld) +
           ", below its " + std::to_string(cols) + " columns");
    }
    const uint64_t extent = static_cast<uint64_t>(rows - 1) * ld + cols;
    needs(name, have, extent);
    return extent;
  }

 private:
  Napi::Value next(const char* name) {
    if (i_ >= info_.Length()) {
      fail("argument " + std::to_string(i_ + 1) + " (" + name + ") is missing; got " +
           std::to_string(info_.Length()) + " arguments");
    }
    return info_[i_++];
  }

  bool peekNull() const { return i_ < info_.Length() && (info_[i_].IsNull() || info_[i_].IsUndefined()); }

  template <class Array, class T = typename std::remove_reference<decltype(*std::declval<Array>().Data())>::type>
  View<T> typed(const Napi::Value& v, napi_typedarray_type type, const char* name, const char* what) const {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) fail(std::string(name) + " must be " + what);
    Array a = v.As<Array>();
    return {a.Data(), a.ElementLength()};
  }

  const Napi::CallbackInfo& info_;
  const char* fn_;
  size_t i_ = 0;
};

using Result = Napi::Value;

/** The product's operands: op(A) m×k and op(B) k×n as stored (A is k×m when transposed), C m×n. */
struct GemmShape {
  bool transA, transB;
  int64_t m, n, k;
  float alpha;
};

GemmShape gemmShape(Args& args) {
  GemmShape s;
  s.transA = args.flag("transA");
  s.transB = args.flag("transB");
  s.m = args.count("m");
  s.n = args.count("n");
  s.k = args.count("k");
  s.alpha = static_cast<float>(args.number("alpha"));
  return s;
}

/** Checks A, B, C against the shape (nothing is read when m, n or k is 0). */
void checkGemm(const Args& args, const GemmShape& s, size_t aLength, int64_t lda, size_t bLength, int64_t ldb,
               size_t cLength, int64_t ldc) {
  if (s.m == 0 || s.n == 0) return;
  args.matrix("c", cLength, s.m, s.n, ldc);
  if (s.k > 0) {
    args.matrix("a", aLength, s.transA ? s.k : s.m, s.transA ? s.m : s.k, lda);
    args.matrix("b", bLength, s.transB ? s.n : s.k, s.transB ? s.k : s.n, ldb);
  }
}

inline int ld(int64_t v) { return static_cast<int>(std::max<int64_t>(v, 1)); }

Result Sgemm(Args& args) {
  const GemmShape s = gemmShape(args);
  const auto a = args.floats("a");
  const int64_t lda = args.count("lda");
  const auto b = args.floats("b");
  const int64_t ldb = args.count("ldb");
  const float beta = static_cast<float>(args.number("beta"));
  const auto c = args.floats("c");
  const int64_t ldc = args.count("ldc");
  checkGemm(args, s, a.length, lda, b.length, ldb, c.length, ldc);
  if (s.m == 0 || s.n == 0) return args.env().Undefined();
  igpt::sgemm(s.transA, s.transB, static_cast<int>(s.m), static_cast<int>(s.n), static_cast<int>(s.k), s.alpha,
              a.data, ld(lda), b.data, ld(ldb), beta, c.data, static_cast<int>(ldc));
  return args.env().Undefined();
}

/** A gemmBf16 operand: a Uint16Array of bf16 values or a Float32Array to round. */
struct Operand {
  igpt::GemmOperand pointers;
  size_t length;
};

Operand operand(Args& args, const char* name) {
  if (args.nextIsHalves()) {
    const auto h = args.halves(name);
    return {{nullptr, h.data}, h.length};
  }
  const auto f = args.floats(name);
  return {{f.data, nullptr}, f.length};
}

Result GemmBf16(Args& args) {
  if (!igpt::bf16Supported()) args.fail("this addon or CPU has no bf16 products (needs oneDNN and AVX512-BF16 or AMX)");
  const GemmShape s = gemmShape(args);
  const Operand a = operand(args, "a");
  const int64_t lda = args.count("lda");
  const Operand b = operand(args, "b");
  const int64_t ldb = args.count("ldb");
  const float beta = static_cast<float>(args.number("beta"));
  const auto c = args.floats("c");
  const int64_t ldc = args.count("ldc");
  checkGemm(args, s, a.length, lda, b.length, ldb, c.length, ldc);
  if (s.m == 0 || s.n == 0) return args.env().Undefined();
  igpt::gemmBf16(s.transA, s.transB, static_cast<int>(s.m), static_cast<int>(s.n), static_cast<int>(s.k), s.alpha,
                 a.pointers, ld(lda), b.pointers, ld(ldb), beta, c.data, static_cast<int>(ldc));
  return args.env().Undefined();
}

Result ToBf16(Args& args) {
  const auto dst = args.halves("dst");
  const auto src = args.floats("src");
  const int64_t n = args.wide("n");
  args.needs("dst", dst.length, n);
  args.needs("src", src.length, n);
  igpt::floatsToBf16(dst.data, src.data, n);
  return args.env().Undefined();
}

Result PackMatrix(Args& args) {
  const auto b = args.floats("b");
  const int64_t k = args.count("k"), n = args.count("n");
  const bool half = args.flag("half") && igpt::halfFloatsSupported();
  args.needs("b", b.length, static_cast<uint64_t>(k) * n);
  const auto size = static_cast<size_t>(igpt::packedStripsSize(static_cast<int>(k), static_cast<int>(n)));
  if (half) {
    Napi::Uint16Array packed = Napi::Uint16Array::New(args.env(), size);
    igpt::packStripsHalf(packed.Data(), b.data, static_cast<int>(k), static_cast<int>(n));
    return packed;
  }
  Napi::Float32Array packed = Napi::Float32Array::New(args.env(), size);
  igpt::packStrips(packed.Data(), b.data, static_cast<int>(k), static_cast<int>(n));
  return packed;
}

Result SgemmPacked(Args& args) {
  const int64_t m = args.count("m"), n = args.count("n"), k = args.count("k");
  const auto a = args.floats("a");
  const bool half = args.nextIsHalves();
  if (half && !igpt::halfFloatsSupported()) args.fail("this CPU has no half-float conversions (F16C)");
  const auto packedHalves = half ? args.halves("packed") : Args::View<uint16_t>{nullptr, 0};
  const auto packedFloats = half ? Args::View<float>{nullptr, 0} : args.floats("packed");
  const auto c = args.floats("c");
  const bool accumulate = args.flag("accumulate");
  args.needs("a", a.length, static_cast<uint64_t>(m) * k);
  args.needs("c", c.length, static_cast<uint64_t>(m) * n);
  const auto need = static_cast<uint64_t>(igpt::packedStripsSize(static_cast<int>(k), static_cast<int>(n)));
  const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
  if (half) {
    args.needs("packed", packedHalves.length, need);
    igpt::sgemmPackedHalf(mi, ni, ki, a.data, packedHalves.data, c.data, accumulate);
  } else {
    args.needs("packed", packedFloats.length, need);
    igpt::sgemmPacked(mi, ni, ki, a.data, packedFloats.data, c.data, accumulate);
  }
  return args.env().Undefined();
}

Result BiasForward(Args& args) {
  const auto out = args.floats("out");
  const auto bias = args.floats("bias");
  const int64_t rows = args.wide("rows"), n = args.wide("n");
  args.needs("out", out.length, static_cast<uint64_t>(rows) * n);
  args.needs("bias", bias.length, n);
  igpt::biasForward(out.data, bias.data, rows, n);
  return args.env().Undefined();
}

Result BiasBackward(Args& args) {
  const auto dbias = args.floats("dbias");
  const auto dout = args.floats("dout");
  const int64_t rows = args.wide("rows"), n = args.wide("n");
  args.needs("dbias", dbias.length, n);
  args.needs("dout", dout.length, static_cast<uint64_t>(rows) * n);
  igpt::biasBackward(dbias.data, dout.data, rows, n);
  return args.env().Undefined();
}

Result NormForward(Args& args) {
  const auto out = args.floats("out");
  const auto rstd = args.floats("rstd");
  const auto x = args.floats("x");
  const auto g = args.floats("g");
  const int64_t rows = args.wide("rows"), d = args.wide("d");
  const float eps = static_cast<float>(args.number("eps"));
  const uint64_t size = static_cast<uint64_t>(rows) * d;
  args.needs("out", out.length, size);
  args.needs("rstd", rstd.length, rows);
  args.needs("x", x.length, size);
  args.needs("g", g.length, d);
  if (d == 0) return args.env().Undefined();
  igpt::normForward(out.data, rstd.data, x.data, g.data, rows, d, eps);
  return args.env().Undefined();
}

Result NormBackward(Args& args) {
  const auto dx = args.floats("dx");
  const auto dg = args.floats("dg");
  const auto dout = args.floats("dout");
  const auto x = args.floats("x");
  const auto rstd = args.floats("rstd");
  const auto g = args.floats("g");
  const int64_t rows = args.wide("rows"), d = args.wide("d");
  const uint64_t size = static_cast<uint64_t>(rows) * d;
  args.needs("dx", dx.length, size);
  args.needs("dg", dg.length, d);
  args.needs("dout", dout.length, size);
  args.needs("x", x.length, size);
  args.needs("rstd", rstd.length, rows);
  args.needs("g", g.length, d);
  igpt::normBackward(dx.data, dg.data, dout.data, x.data, rstd.data, g.data, rows, d);
  return args.env().Undefined();
}

Result GeluForward(Args& args) {
  const auto out = args.floats("out");
  const auto x = args.floats("x");
  const int64_t n = args.wide("n");
  args.needs("out", out.length, n);
  args.needs("x", x.length, n);
  igpt::geluForward(out.data, x.data, n);
  return args.env().Undefined();
}

Result GeluBackward(Args& args) {
  const auto dx = args.floats("dx");
  const auto dout = args.floats("dout");
  const auto x = args.floats("x");
  const int64_t n = args.wide("n");
  args.needs("dx", dx.length, n);
  args.needs("dout", dout.length, n);
  args.needs("x", x.length, n);
  igpt::geluBackward(dx.data, dout.data, x.data, n);
  return args.env().Undefined();
}

struct AttentionShape {
  int B, T, H, hs;
  uint64_t rows() const { return static_cast<uint64_t>(B) * T; }
  uint64_t C() const { return static_cast<uint64_t>(H) * hs; }
  uint64_t attSize() const { return static_cast<uint64_t>(B) * H * T * T; }
};

AttentionShape attentionShape(Args& args) {
  const int64_t B = args.count("B"), T = args.count("T");
  const int64_t H = args.count("H"), hs = args.count("hs");
  if (3 * H * hs > std::numeric_limits<int32_t>::max()) args.fail("H·hs is too large");
  return {static_cast<int>(B), static_cast<int>(T), static_cast<int>(H), static_cast<int>(hs)};
}

Result AttentionForward(Args& args) {
  const auto out = args.floats("out");
  const auto att = args.floats("att");
  const auto qkv = args.floats("qkv");
  const AttentionShape s = attentionShape(args);
  const bool causal = args.flag("causal");
  args.needs("out", out.length, s.rows() * s.C());
  args.needs("att", att.length, s.attSize());
  args.needs("qkv", qkv.length, s.rows() * 3 * s.C());
  igpt::attentionForward(out.data, att.data, qkv.data, s.B, s.T, s.H, s.hs, causal);
  return args.env().Undefined();
}

Result AttentionBackward(Args& args) {
  const auto dqkv = args.floats("dqkv");
  const auto dout = args.floats("dout");
  const auto qkv = args.floats("qkv");
  const auto att = args.floats("att");
  const AttentionShape s = attentionShape(args);
  const bool causal = args.flag("causal");
  args.needs("dqkv", dqkv.length, s.rows() * 3 * s.C());
  args.needs("dout", dout.length, s.rows() * s.C());
  args.needs("qkv", qkv.length, s.rows() * 3 * s.C());
  args.needs("att", att.length, s.attSize());
  igpt::attentionBackward(dqkv.data, dout.data, qkv.data, att.data, s.B, s.T, s.H, s.hs, causal);
  return args.env().Undefined();
}

/**
 * attentionDecode (float caches) or attentionDecodeHalf (half-float caches): the caches are read
 * by `read` (Args::floats or Args::halves) and the step run by `step`.
 */
template <class View, View (Args::*read)(const char*), class Cache>
Result attentionDecodeWith(Args& args, void (*step)(float*, const float*, Cache*, Cache*, int, int, int, int, int)) {
  const auto out = args.floats("out");
  const auto qkv = args.floats("qkv");
  const auto kCache = (args.*read)("kCache");
  const auto vCache = (args.*read)("vCache");
  const int64_t B = args.count("B"), H = args.count("H"), hs = args.count("hs");
  const int64_t t = args.count("t"), maxT = args.count("maxT");
  if (3 * H * hs > std::numeric_limits<int32_t>::max()) args.fail("H·hs is too large");
  if (t >= maxT) args.fail("position t=" + std::to_string(t) + " is not below maxT=" + std::to_string(maxT));
  const uint64_t C = static_cast<uint64_t>(H) * hs;
  args.needs("out", out.length, B * C);
  args.needs("qkv", qkv.length, B * 3 * C);
  args.needs("kCache", kCache.length, B * C * maxT);
  args.needs("vCache", vCache.length, B * C * maxT);
  step(out.data, qkv.data, kCache.data, vCache.data, static_cast<int>(B), static_cast<int>(H), static_cast<int>(hs),
       static_cast<int>(t), static_cast<int>(maxT));
  return args.env().Undefined();
}

Result AttentionDecode(Args& args) {
  return attentionDecodeWith<Args::View<float>, &Args::floats>(args, igpt::attentionDecode);
}

Result AttentionDecodeHalf(Args& args) {
  if (!igpt::halfFloatsSupported()) args.fail("this CPU has no half-float conversions (F16C)");
  return attentionDecodeWith<Args::View<uint16_t>, &Args::halves>(args, igpt::attentionDecodeHalf);
}

Result CrossEntropy(Args& args) {
  const auto losses = args.floats("losses");
  const auto dlogits = args.floatsOrNull("dlogits");
  const auto logits = args.floats("logits");
  const auto targets = args.ints("targets");
  const int64_t rows = args.wide("rows"), V = args.wide("V");
  const float gradScale = static_cast<float>(args.number("gradScale"));
  const uint64_t size = static_cast<uint64_t>(rows) * V;
  args.needs("losses", losses.length, rows);
  if (dlogits.data) args.needs("dlogits", dlogits.length, size);
  args.needs("logits", logits.length, size);
  args.needs("targets", targets.length, rows);
  for (int64_t r = 0; r < rows; r++) {
    if (targets.data[r] >= V) {
      throw Napi::RangeError::New(args.env(), "igpt native crossEntropy: target " +
                                                  std::to_string(targets.data[r]) + " of row " + std::to_string(r) +
                                                  " is not below V=" + std::to_string(V));
    }
  }
  const double total = igpt::crossEntropy(losses.data, dlogits.data, logits.data, targets.data, rows, V, gradScale);
  return Napi::Number::New(args.env(), total);
}

Result AdamUpdate(Args& args) {
  const auto params = args.floats("params");
  const auto grads = args.floats("grads");
  const auto m = args.floats("m");
  const auto v = args.floats("v");
  const int64_t n = args.wide("n");
  const double lr = args.number("lr");
  const double beta1 = args.number("beta1");
  const double beta2 = args.number("beta2");
  const double eps = args.number("eps");
  const double t = args.number("t");
  if (!(t >= 1)) args.fail("step t must be >= 1");
  args.needs("params", params.length, n);
  args.needs("grads", grads.length, n);
  args.needs("m", m.length, n);
  args.needs("v", v.length, n);
  igpt::adamUpdate(params.data, grads.data, m.data, v.data, n, lr, beta1, beta2, eps, t);
  return args.env().Undefined();
}

Result Threads(Args& args) { return Napi::Number::New(args.env(), igpt::threadCount()); }
Result HalfFloats(Args& args) { return Napi::Boolean::New(args.env(), igpt::halfFloatsSupported()); }
Result Bf16(Args& args) { return Napi::Boolean::New(args.env(), igpt::bf16Supported()); }
Result CacheBytes(Args& args) { return Napi::Number::New(args.env(), static_cast<double>(igpt::lastLevelCacheBytes())); }

/** "pool" or "blas": how large GEMMs use the cores (for benchmarks). No argument: just reads it. */
Result GemmThreadingMode(Args& args) {
  const std::string mode = args.optionalString("mode");
  if (mode == "pool") igpt::setGemmThreading(GemmThreading::Pool);
  else if (mode == "blas") igpt::setGemmThreading(GemmThreading::Blas);
  else if (!mode.empty()) args.fail("mode must be 'pool' or 'blas'");
  return Napi::String::New(args.env(), igpt::gemmThreading() == GemmThreading::Pool ? "pool" : "blas");
}

using Body = Result (*)(Args&);

/** A kernel: runs with subnormals flushed to zero (see FlushDenormals). */
template <Body body>
Napi::Value kernel(const Napi::CallbackInfo& info) {
  igpt::FlushDenormals flush;
  Args args(info, static_cast<const char*>(info.Data()));
  return body(args);
}

/** A query or setting that computes nothing. */
template <Body body>
Napi::Value control(const Napi::CallbackInfo& info) {
  Args args(info, static_cast<const char*>(info.Data()));
  return body(args);
}

struct Export {
  const char* name;
  Napi::Function::Callback callback;
};

const Export kExports[] = {
    {"sgemm", kernel<Sgemm>},
    {"gemmBf16", kernel<GemmBf16>},
    {"toBf16", kernel<ToBf16>},
    {"packMatrix", kernel<PackMatrix>},
    {"sgemmPacked", kernel<SgemmPacked>},
    {"biasForward", kernel<BiasForward>},
    {"biasBackward", kernel<BiasBackward>},
    {"normForward", kernel<NormForward>},
    {"normBackward", kernel<NormBackward>},
    {"geluForward", kernel<GeluForward>},
    {"geluBackward", kernel<GeluBackward>},
    {"attentionForward", kernel<AttentionForward>},
    {"attentionBackward", kernel<AttentionBackward>},
    {"attentionDecode", kernel<AttentionDecode>},
    {"attentionDecodeHalf", kernel<AttentionDecodeHalf>},
    {"crossEntropy", kernel<CrossEntropy>},
    {"adamUpdate", kernel<AdamUpdate>},
    {"threads", control<Threads>},
    {"halfFloats", control<HalfFloats>},
    {"bf16", control<Bf16>},
    {"cacheBytes", control<CacheBytes>},
    {"gemmThreading", control<GemmThreadingMode>},
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  for (const Export& e : kExports) {
    exports.Set(e.name, Napi::Function::New(env, e.callback, e.name, const_cast<char*>(e.name)));
  }
  return exports;
}

}  // namespace

NODE_API_MODULE(igpt_native, Init)
