// The few MPI calls data-parallel training needs, for TypeScript (src/parallel/mpi.ts):
// init/finalize, rank and size, in-place sum all-reduce, broadcast, gather, barrier, abort.
// Every call is blocking and made from Node's main thread only (MPI_THREAD_FUNNELED); errors in
// a collective stay fatal (MPI_ERRORS_ARE_FATAL), so a dead peer ends the job instead of hanging it.
#include <dlfcn.h>
#include <mpi.h>
#include <napi.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <stdexcept>
#include <cstdint>
#include <string>
#include <vector>

namespace {

// MPI counts are ints: large buffers move in chunks of at most this many elements.
constexpr int64_t kMaxChunk = INT_MAX / 2;

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  throw std::runtime_error(std::string(what) + ": " + std::string(text, length));
}

bool isInitialized() {
  int flag = 0;
  MPI_Initialized(&flag);
  return flag != 0;
}

void requireInitialized(const char* what) {
  if (!isInitialized()) throw std::runtime_error(std::string(what) + ": MPI is not initialized (call init first)");
}

// The bytes of a typed array or Buffer argument.
struct Bytes {
  uint8_t* data;
  size_t length;
  napi_typedarray_type type;
};

Bytes bytesOf(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray()) throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected a typed array");
  auto a = v.As<Napi::TypedArray>();
  auto* base = static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
  return {base, a.ByteLength(), a.TypedArrayType()};
}

// init(): MPI_Init_thread. Open MPI loads its transports as plugins, and builds whose plugins are
// not linked against libmpi need libmpi's symbols in the global namespace; Node opens this addon,
// and with it libmpi, RTLD_LOCAL. So libmpi is reopened RTLD_GLOBAL first (RTLD_NOLOAD: the copy
// already mapped, found through MPI_Init's own address, whatever its soname). Debian's 4.1 works
// without this; it costs nothing there.
Napi::Value Init(const Napi::CallbackInfo& info) {
  if (isInitialized()) return info.Env().Undefined();
  Dl_info where;
  if (dladdr(reinterpret_cast<void*>(&MPI_Init), &where) != 0 && where.dli_fname != nullptr) {
    if (dlopen(where.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD) == nullptr) {
      throw std::runtime_error(std::string("could not make ") + where.dli_fname + " global: " + dlerror());
    }
  }
  int provided = 0;
  check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  return info.Env().Undefined();
}

Napi::Value Finalize(const Napi::CallbackInfo& info) {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (isInitialized() && !finalized) check(MPI_Finalize(), "MPI_Finalize");
  return info.Env().Undefined();
}

Napi::Value Rank(const Napi::CallbackInfo& info) {
  requireInitialized("rank");
  int r = 0;
  check(MPI_Comm_rank(MPI_COMM_WORLD, &r), "MPI_Comm_rank");
  return Napi::Number::New(info.Env(), r);
}

Napi::Value Size(const Napi::CallbackInfo& info) {
  requireInitialized("size");
  int n = 0;
  check(MPI_Comm_size(MPI_COMM_WORLD, &n), "MPI_Comm_size");
  return Napi::Number::New(info.Env(), n);
}

Napi::Value ProcessorName(const Napi::CallbackInfo& info) {
  requireInitialized("processorName");
  char name[MPI_MAX_PROCESSOR_NAME];
  int length = 0;
  check(MPI_Get_processor_name(name, &length), "MPI_Get_processor_name");
  return Napi::String::New(info.Env(), name, length);
}

// allReduce(array, op): in place, over every rank; op 'sum' or 'max'; Float32Array, Float64Array
// or Int32Array.
Napi::Value AllReduce(const Napi::CallbackInfo& info) {
  requireInitialized("allReduce");
  Bytes b = bytesOf(info[0], "allReduce");
  const std::string opName = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "sum";
  MPI_Op op = opName == "max" ? MPI_MAX : MPI_SUM;
  if (opName != "sum" && opName != "max") throw Napi::TypeError::New(info.Env(), "allReduce: op must be 'sum' or 'max'");
  MPI_Datatype type;
  size_t width;
  switch (b.type) {
    case napi_float32_array: type = MPI_FLOAT; width = 4; break;
    case napi_float64_array: type = MPI_DOUBLE; width = 8; break;
    case napi_int32_array: type = MPI_INT; width = 4; break;
    default: throw Napi::TypeError::New(info.Env(), "allReduce: expected a Float32Array, Float64Array or Int32Array");
  }
  const int64_t count = static_cast<int64_t>(b.length / width);
  for (int64_t from = 0; from < count; from += kMaxChunk) {
    const int n = static_cast<int>(std::min<int64_t>(kMaxChunk, count - from));
    check(MPI_Allreduce(MPI_IN_PLACE, b.data + from * width, n, type, op, MPI_COMM_WORLD), "MPI_Allreduce");
  }
  return info.Env().Undefined();
}

// broadcast(array, root): the root's bytes into every rank's array (same length on every rank).
Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  requireInitialized("broadcast");
  Bytes b = bytesOf(info[0], "broadcast");
  const int root = info[1].As<Napi::Number>().Int32Value();
  for (size_t from = 0; from < b.length; from += kMaxChunk) {
    const int n = static_cast<int>(std::min<size_t>(kMaxChunk, b.length - from));
    check(MPI_Bcast(b.data + from, n, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
  }
  return info.Env().Undefined();
}

// gather(array, root): every rank's bytes (any length) on the root, as one Buffer per rank in rank
// order; null elsewhere.
Napi::Value Gather(const Napi::CallbackInfo& info) {
  requireInitialized("gather");
  Napi::Env env = info.Env();
  Bytes b = bytesOf(info[0], "gather");
  const int root = info[1].As<Napi::Number>().Int32Value();
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  long long mine = static_cast<long long>(b.length);
  std::vector<long long> lengths(rank == root ? size : 0);
  check(MPI_Gather(&mine, 1, MPI_LONG_LONG, lengths.data(), 1, MPI_LONG_LONG, root, MPI_COMM_WORLD), "MPI_Gather");
  if (mine > INT_MAX) throw std::runtime_error("gather: more than 2 GB from one rank");
  std::vector<int> counts, offsets;
  std::vector<uint8_t> all;
  if (rank == root) {
    long long total = 0;
    for (long long n : lengths) { counts.push_back(static_cast<int>(n)); offsets.push_back(static_cast<int>(total)); total += n; }
    // Checked after MPI_Gatherv would be too late for the other ranks; all of them are already in it.
    if (total > INT_MAX) MPI_Abort(MPI_COMM_WORLD, 1);
    all.resize(static_cast<size_t>(total));
  }
  check(MPI_Gatherv(b.data, static_cast<int>(mine), MPI_BYTE, all.data(), counts.data(), offsets.data(), MPI_BYTE,
                    root, MPI_COMM_WORLD), "MPI_Gatherv");
  if (rank != root) return env.Null();
  Napi::Array out = Napi::Array::New(env, size);
  for (int r = 0; r < size; r++) out.Set(r, Napi::Buffer<uint8_t>::Copy(env, all.data() + offsets[r], counts[r]));
  return out;
}

Napi::Value Barrier(const Napi::CallbackInfo& info) {
  requireInitialized("barrier");
  check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
  return info.Env().Undefined();
}

// abort(code): ends every rank of the job (mpirun kills the others), never returns.
Napi::Value Abort(const Napi::CallbackInfo& info) {
  const int code = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1;
  if (isInitialized()) MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

Napi::Object Register(Napi::Env env, Napi::Object exports) {
  exports.Set("init", Napi::Function::New(env, Init));
  exports.Set("finalize", Napi::Function::New(env, Finalize));
  exports.Set("rank", Napi::Function::New(env, Rank));
  exports.Set("size", Napi::Function::New(env, Size));
  exports.Set("processorName", Napi::Function::New(env, ProcessorName));
  exports.Set("allReduce", Napi::Function::New(env, AllReduce));
  exports.Set("broadcast", Napi::Function::New(env, Broadcast));
  exports.Set("gather", Napi::Function::New(env, Gather));
  exports.Set("barrier", Napi::Function::New(env, Barrier));
  exports.Set("abort", Napi::Function::New(env, Abort));
  return exports;
}

}  // namespace

NODE_API_MODULE(igpt_mpi, Register)
