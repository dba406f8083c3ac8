// Node-API bindings: checks every argument (types, integer ranges, buffer extents) and then runs the
// kernel directly on the caller's Float32Array memory (the data pointer already includes the
// view's byteOffset, so subarray views work without copies).
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

class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* fn, size_t count) : info_(info), fn_(fn) {
    if (info.Length() < count) {
      fail("expects " + std::to_string(count) + " arguments, got " + std::to_string(info.Length()));
    }
  }

  [[noreturn]] void fail(const std::string& message) const {
    throw Napi::TypeError::New(info_.Env(), std::string("igpt native ") + fn_ + ": " + message);
  }

  struct F32 {
    float* data;
    size_t length;
  };

  F32 floats(size_t i, const char* name) const {
    const Napi::Value v = info_[i];
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      fail(std::string(name) + " must be a Float32Array");
    }
    Napi::Float32Array a = v.As<Napi::Float32Array>();
    return {a.Data(), a.ElementLength()};
  }

  /** A Float32Array or null. */
  F32 floatsOrNull(size_t i, const char* name) const {
    if (info_[i].IsNull() || info_[i].IsUndefined()) return {nullptr, 0};
    return floats(i, name);
  }

  struct I32 {
    int32_t* data;
    size_t length;
  };

  I32 ints(size_t i, const char* name) const {
    const Napi::Value v = info_[i];
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
      fail(std::string(name) + " must be an Int32Array");
    }
    Napi::Int32Array a = v.As<Napi::Int32Array>();
    return {a.Data(), a.ElementLength()};
  }

  struct U16 {
    uint16_t* data;
    size_t length;
  };

  bool isHalves(size_t i) const {
    const Napi::Value v = info_[i];
    return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint16_array;
  }

  /** A Uint16Array (half floats). */
  U16 halves(size_t i, const char* name) const {
    const Napi::Value v = info_[i];
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array) {
      fail(std::string(name) + " must be a Uint16Array");
    }
    Napi::Uint16Array a = v.As<Napi::Uint16Array>();
    return {a.Data(), a.ElementLength()};
  }

  /** A non-negative integer that fits in int32 (for BLAS) unless `wide`. */
  int64_t count(size_t i, const char* name, bool wide = false) const {
    const Napi::Value v = info_[i];
    if (!v.IsNumber()) fail(std::string(name) + " must be a number");
    const double d = v.As<Napi::Number>().DoubleValue();
    const double limit = wide ? 9007199254740991.0 : static_cast<double>(std::numeric_limits<int32_t>::max());
    if (!(d >= 0) || d > limit || std::floor(d) != d) {
      fail(std::string(name) + " must be a non-negative integer" + (wide ? "" : " below 2^31") +
           ", got " + v.ToString().Utf8Value());
    }
    return static_cast<int64_t>(d);
  }

  double number(size_t i, const char* name) const {
    const Napi::Value v = info_[i];
    if (!v.IsNumber()) fail(std::string(name) + " must be a number");
    return v.As<Napi::Number>().DoubleValue();
  }

  bool flag(size_t i, const char* name) const {
    const Napi::Value v = info_[i];
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
  const Napi::CallbackInfo& info_;
  const char* fn_;
};

Napi::Value Sgemm(const Napi::CallbackInfo& info) {
  Args args(info, "sgemm", 13);
  igpt::FlushDenormals flush;
  const bool ta = args.flag(0, "transA"), tb = args.flag(1, "transB");
  const int64_t m = args.count(2, "m"), n = args.count(3, "n"), k = args.count(4, "k");
  const float alpha = static_cast<float>(args.number(5, "alpha"));
  const auto a = args.floats(6, "a");
  const int64_t lda = args.count(7, "lda");
  const auto b = args.floats(8, "b");
  const int64_t ldb = args.count(9, "ldb");
  const float beta = static_cast<float>(args.number(10, "beta"));
  const auto c = args.floats(11, "c");
  const int64_t ldc = args.count(12, "ldc");
  if (m == 0 || n == 0) return info.Env().Undefined();
  args.matrix("c", c.length, m, n, ldc);
  if (k > 0) {
    args.matrix("a", a.length, ta ? k : m, ta ? m : k, lda);
    args.matrix("b", b.length, tb ? n : k, tb ? k : n, ldb);
  }
  igpt::sgemm(ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a.data,
              static_cast<int>(std::max<int64_t>(lda, 1)), b.data, static_cast<int>(std::max<int64_t>(ldb, 1)),
              beta, c.data, static_cast<int>(ldc));
  return info.Env().Undefined();
}

Napi::Value PackMatrix(const Napi::CallbackInfo& info) {
  Args args(info, "packMatrix", 4);
  const auto b = args.floats(0, "b");
  const int64_t k = args.count(1, "k"), n = args.count(2, "n");
  const bool half = args.flag(3, "half") && igpt::halfFloatsSupported();
  args.needs("b", b.length, static_cast<uint64_t>(k) * n);
  const auto size = static_cast<size_t>(igpt::packedStripsSize(static_cast<int>(k), static_cast<int>(n)));
  if (half) {
    Napi::Uint16Array packed = Napi::Uint16Array::New(info.Env(), size);
    igpt::packStripsHalf(packed.Data(), b.data, static_cast<int>(k), static_cast<int>(n));
    return packed;
  }
  Napi::Float32Array packed = Napi::Float32Array::New(info.Env(), size);
  igpt::packStrips(packed.Data(), b.data, static_cast<int>(k), static_cast<int>(n));
  return packed;
}

Napi::Value SgemmPacked(const Napi::CallbackInfo& info) {
  Args args(info, "sgemmPacked", 7);
  igpt::FlushDenormals flush;
  const int64_t m = args.count(0, "m"), n = args.count(1, "n"), k = args.count(2, "k");
  const auto a = args.floats(3, "a");
  const auto c = args.floats(5, "c");
  const bool accumulate = args.flag(6, "accumulate");
  args.needs("a", a.length, static_cast<uint64_t>(m) * k);
  args.needs("c", c.length, static_cast<uint64_t>(m) * n);
  const auto need = static_cast<uint64_t>(igpt::packedStripsSize(static_cast<int>(k), static_cast<int>(n)));
  const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
  if (args.isHalves(4)) {
    if (!igpt::halfFloatsSupported()) args.fail("this CPU has no half-float conversions (F16C)");
    const auto packed = args.halves(4, "packed");
    args.needs("packed", packed.length, need);
    igpt::sgemmPackedHalf(mi, ni, ki, a.data, packed.data, c.data, accumulate);
  } else {
    const auto packed = args.floats(4, "packed");
    args.needs("packed", packed.length, need);
    igpt::sgemmPacked(mi, ni, ki, a.data, packed.data, c.data, accumulate);
  }
  return info.Env().Undefined();
}

Napi::Value SgemmStridedBatched(const Napi::CallbackInfo& info) {
  Args args(info, "sgemmStridedBatched", 17);
  igpt::FlushDenormals flush;
  const bool ta = args.flag(0, "transA"), tb = args.flag(1, "transB");
  const int64_t m = args.count(2, "m"), n = args.count(3, "n"), k = args.count(4, "k");
  const float alpha = static_cast<float>(args.number(5, "alpha"));
  const auto a = args.floats(6, "a");
  const int64_t lda = args.count(7, "lda"), strideA = args.count(8, "strideA", true);
  const auto b = args.floats(9, "b");
  const int64_t ldb = args.count(10, "ldb"), strideB = args.count(11, "strideB", true);
  const float beta = static_cast<float>(args.number(12, "beta"));
  const auto c = args.floats(13, "c");
  const int64_t ldc = args.count(14, "ldc"), strideC = args.count(15, "strideC", true);
  const int64_t batch = args.count(16, "batch");
  if (m == 0 || n == 0 || batch == 0) return info.Env().Undefined();
  const uint64_t last = static_cast<uint64_t>(batch - 1);
  // Each matrix must fit; checking the last one (at the largest offset) covers them all.
  const auto cExtent = args.matrix("c", c.length, m, n, ldc);
  args.needs("c", c.length, last * strideC + cExtent);
  if (k > 0) {
    const auto aExtent = args.matrix("a", a.length, ta ? k : m, ta ? m : k, lda);
    args.needs("a", a.length, last * strideA + aExtent);
    const auto bExtent = args.matrix("b", b.length, tb ? n : k, tb ? k : n, ldb);
    args.needs("b", b.length, last * strideB + bExtent);
  }
  igpt::sgemmStridedBatched(ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha,
                            a.data, static_cast<int>(std::max<int64_t>(lda, 1)), strideA, b.data,
                            static_cast<int>(std::max<int64_t>(ldb, 1)), strideB, beta, c.data,
                            static_cast<int>(ldc), strideC, static_cast<int>(batch));
  return info.Env().Undefined();
}

Napi::Value BiasForward(const Napi::CallbackInfo& info) {
  Args args(info, "biasForward", 4);
  igpt::FlushDenormals flush;
  const auto out = args.floats(0, "out");
  const auto bias = args.floats(1, "bias");
  const int64_t rows = args.count(2, "rows", true), n = args.count(3, "n", true);
  args.needs("out", out.length, static_cast<uint64_t>(rows) * n);
  args.needs("bias", bias.length, n);
  igpt::biasForward(out.data, bias.data, rows, n);
  return info.Env().Undefined();
}

Napi::Value BiasBackward(const Napi::CallbackInfo& info) {
  Args args(info, "biasBackward", 4);
  igpt::FlushDenormals flush;
  const auto dbias = args.floats(0, "dbias");
  const auto dout = args.floats(1, "dout");
  const int64_t rows = args.count(2, "rows", true), n = args.count(3, "n", true);
  args.needs("dbias", dbias.length, n);
  args.needs("dout", dout.length, static_cast<uint64_t>(rows) * n);
  igpt::biasBackward(dbias.data, dout.data, rows, n);
  return info.Env().Undefined();
}

Napi::Value NormForward(const Napi::CallbackInfo& info) {
  Args args(info, "normForward", 7);
  igpt::FlushDenormals flush;
  const auto out = args.floats(0, "out");
  const auto rstd = args.floats(1, "rstd");
  const auto x = args.floats(2, "x");
  const auto g = args.floats(3, "g");
  const int64_t rows = args.count(4, "rows", true), d = args.count(5, "d", true);
  const float eps = static_cast<float>(args.number(6, "eps"));
  const uint64_t size = static_cast<uint64_t>(rows) * d;
  args.needs("out", out.length, size);
  args.needs("rstd", rstd.length, rows);
  args.needs("x", x.length, size);
  args.needs("g", g.length, d);
  if (d == 0) return info.Env().Undefined();
  igpt::normForward(out.data, rstd.data, x.data, g.data, rows, d, eps);
  return info.Env().Undefined();
}

Napi::Value NormBackward(const Napi::CallbackInfo& info) {
  Args args(info, "normBackward", 8);
  igpt::FlushDenormals flush;
  const auto dx = args.floats(0, "dx");
  const auto dg = args.floats(1, "dg");
  const auto dout = args.floats(2, "dout");
  const auto x = args.floats(3, "x");
  const auto rstd = args.floats(4, "rstd");
  const auto g = args.floats(5, "g");
  const int64_t rows = args.count(6, "rows", true), d = args.count(7, "d", true);
  const uint64_t size = static_cast<uint64_t>(rows) * d;
  args.needs("dx", dx.length, size);
  args.needs("dg", dg.length, d);
  args.needs("dout", dout.length, size);
  args.needs("x", x.length, size);
  args.needs("rstd", rstd.length, rows);
  args.needs("g", g.length, d);
  igpt::normBackward(dx.data, dg.data, dout.data, x.data, rstd.data, g.data, rows, d);
  return info.Env().Undefined();
}

Napi::Value GeluForward(const Napi::CallbackInfo& info) {
  Args args(info, "geluForward", 3);
  igpt::FlushDenormals flush;
  const auto out = args.floats(0, "out");
  const auto x = args.floats(1, "x");
  const int64_t n = args.count(2, "n", true);
  args.needs("out", out.length, n);
  args.needs("x", x.length, n);
  igpt::geluForward(out.data, x.data, n);
  return info.Env().Undefined();
}

Napi::Value GeluBackward(const Napi::CallbackInfo& info) {
  Args args(info, "geluBackward", 4);
  igpt::FlushDenormals flush;
  const auto dx = args.floats(0, "dx");
  const auto dout = args.floats(1, "dout");
  const auto x = args.floats(2, "x");
  const int64_t n = args.count(3, "n", true);
  args.needs("dx", dx.length, n);
  args.needs("dout", dout.length, n);
  args.needs("x", x.length, n);
  igpt::geluBackward(dx.data, dout.data, x.data, n);
  return info.Env().Undefined();
}

struct AttentionShape {
  int B, T, H, hs;
  uint64_t rows() const { return static_cast<uint64_t>(B) * T; }
  uint64_t C() const { return static_cast<uint64_t>(H) * hs; }
  uint64_t attSize() const { return static_cast<uint64_t>(B) * H * T * T; }
};

AttentionShape attentionShape(const Args& args, size_t first) {
  const int64_t B = args.count(first, "B"), T = args.count(first + 1, "T");
  const int64_t H = args.count(first + 2, "H"), hs = args.count(first + 3, "hs");
  if (3 * H * hs > std::numeric_limits<int32_t>::max()) args.fail("H·hs is too large");
  return {static_cast<int>(B), static_cast<int>(T), static_cast<int>(H), static_cast<int>(hs)};
}

Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  Args args(info, "attentionForward", 8);
  igpt::FlushDenormals flush;
  const auto out = args.floats(0, "out");
  const auto att = args.floats(1, "att");
  const auto qkv = args.floats(2, "qkv");
  const AttentionShape s = attentionShape(args, 3);
  const bool causal = args.flag(7, "causal");
  args.needs("out", out.length, s.rows() * s.C());
  args.needs("att", att.length, s.attSize());
  args.needs("qkv", qkv.length, s.rows() * 3 * s.C());
  igpt::attentionForward(out.data, att.data, qkv.data, s.B, s.T, s.H, s.hs, causal);
  return info.Env().Undefined();
}

Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  Args args(info, "attentionBackward", 9);
  igpt::FlushDenormals flush;
  const auto dqkv = args.floats(0, "dqkv");
  const auto dout = args.floats(1, "dout");
  const auto qkv = args.floats(2, "qkv");
  const auto att = args.floats(3, "att");
  const AttentionShape s = attentionShape(args, 4);
  const bool causal = args.flag(8, "causal");
  args.needs("dqkv", dqkv.length, s.rows() * 3 * s.C());
  args.needs("dout", dout.length, s.rows() * s.C());
  args.needs("qkv", qkv.length, s.rows() * 3 * s.C());
  args.needs("att", att.length, s.attSize());
  igpt::attentionBackward(dqkv.data, dout.data, qkv.data, att.data, s.B, s.T, s.H, s.hs, causal);
  return info.Env().Undefined();
}

/** The checks and shape shared by both cache types; `Cache` is a typed array view. */
struct DecodeArgs {
  int B, H, hs, t, maxT;
};

template <class Cache>
DecodeArgs decodeArgs(const Args& args, size_t outLength, size_t qkvLength, const Cache& kCache, const Cache& vCache) {
  const int64_t B = args.count(4, "B"), H = args.count(5, "H"), hs = args.count(6, "hs");
  const int64_t t = args.count(7, "t"), maxT = args.count(8, "maxT");
  if (3 * H * hs > std::numeric_limits<int32_t>::max()) args.fail("H·hs is too large");
  if (t >= maxT) args.fail("position t=" + std::to_string(t) + " is not below maxT=" + std::to_string(maxT));
  const uint64_t C = static_cast<uint64_t>(H) * hs;
  args.needs("out", outLength, B * C);
  args.needs("qkv", qkvLength, B * 3 * C);
  args.needs("kCache", kCache.length, B * C * maxT);
  args.needs("vCache", vCache.length, B * C * maxT);
  return {static_cast<int>(B), static_cast<int>(H), static_cast<int>(hs), static_cast<int>(t), static_cast<int>(maxT)};
}

/** attentionDecode or attentionDecodeHalf: caches read by `caches` (floats or halves), run by `step`. */
template <class ReadCache, class Step>
Napi::Value attentionDecodeWith(const Napi::CallbackInfo& info, const char* name, ReadCache caches, Step step) {
  Args args(info, name, 9);
  igpt::FlushDenormals flush;
  const auto out = args.floats(0, "out");
  const auto qkv = args.floats(1, "qkv");
  const auto kCache = caches(args, 2, "kCache");
  const auto vCache = caches(args, 3, "vCache");
  const DecodeArgs d = decodeArgs(args, out.length, qkv.length, kCache, vCache);
  step(out.data, qkv.data, kCache.data, vCache.data, d.B, d.H, d.hs, d.t, d.maxT);
  return info.Env().Undefined();
}

Napi::Value AttentionDecode(const Napi::CallbackInfo& info) {
  return attentionDecodeWith(info, "attentionDecode",
                             [](const Args& a, size_t i, const char* n) { return a.floats(i, n); }, igpt::attentionDecode);
}

Napi::Value AttentionDecodeHalf(const Napi::CallbackInfo& info) {
  if (!igpt::halfFloatsSupported()) Args(info, "attentionDecodeHalf", 0).fail("this CPU has no half-float conversions (F16C)");
  return attentionDecodeWith(info, "attentionDecodeHalf",
                             [](const Args& a, size_t i, const char* n) { return a.halves(i, n); }, igpt::attentionDecodeHalf);
}

Napi::Value HalfFloats(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), igpt::halfFloatsSupported());
}

Napi::Value CrossEntropy(const Napi::CallbackInfo& info) {
  Args args(info, "crossEntropy", 7);
  igpt::FlushDenormals flush;
  const auto losses = args.floats(0, "losses");
  const auto dlogits = args.floatsOrNull(1, "dlogits");
  const auto logits = args.floats(2, "logits");
  const auto targets = args.ints(3, "targets");
  const int64_t rows = args.count(4, "rows", true), V = args.count(5, "V", true);
  const float gradScale = static_cast<float>(args.number(6, "gradScale"));
  const uint64_t size = static_cast<uint64_t>(rows) * V;
  args.needs("losses", losses.length, rows);
  if (dlogits.data) args.needs("dlogits", dlogits.length, size);
  args.needs("logits", logits.length, size);
  args.needs("targets", targets.length, rows);
  for (int64_t r = 0; r < rows; r++) {
    if (targets.data[r] >= V) {
      throw Napi::RangeError::New(info.Env(), "igpt native crossEntropy: target " +
                                                  std::to_string(targets.data[r]) + " of row " + std::to_string(r) +
                                                  " is not below V=" + std::to_string(V));
    }
  }
  const double total = igpt::crossEntropy(losses.data, dlogits.data, logits.data, targets.data, rows, V, gradScale);
  return Napi::Number::New(info.Env(), total);
}

Napi::Value AdamUpdate(const Napi::CallbackInfo& info) {
  Args args(info, "adamUpdate", 10);
  igpt::FlushDenormals flush;
  const auto params = args.floats(0, "params");
  const auto grads = args.floats(1, "grads");
  const auto m = args.floats(2, "m");
  const auto v = args.floats(3, "v");
  const int64_t n = args.count(4, "n", true);
  const double lr = args.number(5, "lr");
  const double beta1 = args.number(6, "beta1");
  const double beta2 = args.number(7, "beta2");
  const double eps = args.number(8, "eps");
  const double t = args.number(9, "t");
  if (!(t >= 1)) args.fail("step t must be >= 1");
  args.needs("params", params.length, n);
  args.needs("grads", grads.length, n);
  args.needs("m", m.length, n);
  args.needs("v", v.length, n);
  igpt::adamUpdate(params.data, grads.data, m.data, v.data, n, lr, beta1, beta2, eps, t);
  return info.Env().Undefined();
}

Napi::Value Threads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), igpt::threadCount()); }

/** "pool" or "blas": how large GEMMs use the cores (for benchmarks). No argument: just reads it. */
Napi::Value GemmThreadingMode(const Napi::CallbackInfo& info) {
  if (info.Length() > 0 && info[0].IsString()) {
    const std::string mode = info[0].As<Napi::String>().Utf8Value();
    if (mode == "pool") igpt::setGemmThreading(GemmThreading::Pool);
    else if (mode == "blas") igpt::setGemmThreading(GemmThreading::Blas);
    else throw Napi::TypeError::New(info.Env(), "igpt native gemmThreading: mode must be 'pool' or 'blas'");
  }
  return Napi::String::New(info.Env(), igpt::gemmThreading() == GemmThreading::Pool ? "pool" : "blas");
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("sgemm", Napi::Function::New(env, Sgemm, "sgemm"));
  exports.Set("packMatrix", Napi::Function::New(env, PackMatrix, "packMatrix"));
  exports.Set("sgemmPacked", Napi::Function::New(env, SgemmPacked, "sgemmPacked"));
  exports.Set("sgemmStridedBatched", Napi::Function::New(env, SgemmStridedBatched, "sgemmStridedBatched"));
  exports.Set("biasForward", Napi::Function::New(env, BiasForward, "biasForward"));
  exports.Set("biasBackward", Napi::Function::New(env, BiasBackward, "biasBackward"));
  exports.Set("normForward", Napi::Function::New(env, NormForward, "normForward"));
  exports.Set("normBackward", Napi::Function::New(env, NormBackward, "normBackward"));
  exports.Set("geluForward", Napi::Function::New(env, GeluForward, "geluForward"));
  exports.Set("geluBackward", Napi::Function::New(env, GeluBackward, "geluBackward"));
  exports.Set("attentionForward", Napi::Function::New(env, AttentionForward, "attentionForward"));
  exports.Set("attentionBackward", Napi::Function::New(env, AttentionBackward, "attentionBackward"));
  exports.Set("attentionDecode", Napi::Function::New(env, AttentionDecode, "attentionDecode"));
  exports.Set("attentionDecodeHalf", Napi::Function::New(env, AttentionDecodeHalf, "attentionDecodeHalf"));
  exports.Set("halfFloats", Napi::Function::New(env, HalfFloats, "halfFloats"));
  exports.Set("crossEntropy", Napi::Function::New(env, CrossEntropy, "crossEntropy"));
  exports.Set("adamUpdate", Napi::Function::New(env, AdamUpdate, "adamUpdate"));
  exports.Set("threads", Napi::Function::New(env, Threads, "threads"));
  exports.Set("gemmThreading", Napi::Function::New(env, GemmThreadingMode, "gemmThreading"));
  return exports;
}

}  // namespace

NODE_API_MODULE(igpt_native, Init)
