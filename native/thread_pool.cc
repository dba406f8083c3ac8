#include "thread_pool.h"

#include <algorithm>
#include <chrono>

#include <cstdio>
#include <cstdlib>

#if defined(__linux__)
#include <sched.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define IGPT_HAS_MXCSR 1
#endif

namespace igpt {

namespace {
thread_local bool insidePool = false;

/** How long a thread spins on a condition before it blocks. */
constexpr auto kSpinTime = std::chrono::microseconds(200);

inline void cpuRelax() {
#if IGPT_HAS_MXCSR
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

/** Spins until done() or kSpinTime has passed; returns done(). */
template <class Done>
bool spinUntil(Done done) {
  const auto until = std::chrono::steady_clock::now() + kSpinTime;
  for (int i = 0;; i++) {
    if (done()) return true;
    cpuRelax();
    if ((i & 63) == 63 && std::chrono::steady_clock::now() > until) return done();
  }
}
}  // namespace

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < threads; i++) workers_.emplace_back([this] { workerLoop(); });
}

void ThreadPool::drain() {
  const int64_t n = jobSize_;
  for (;;) {
    const int64_t i = next_.fetch_add(1, std::memory_order_relaxed);
    if (i >= n) break;
    (*job_)(i);
  }
}

#if IGPT_HAS_MXCSR
FlushDenormals::FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040); }  // FTZ | DAZ
FlushDenormals::~FlushDenormals() { _mm_setcsr(saved_); }
#else
FlushDenormals::FlushDenormals() : saved_(0) {}
FlushDenormals::~FlushDenormals() {}
#endif

void ThreadPool::workerLoop() {
  insidePool = true;
  FlushDenormals flush;  // for the thread's lifetime: it only ever runs kernels
  uint64_t seen = 0;
  const auto jobPosted = [&] { return generation_.load(std::memory_order_acquire) != seen; };
  for (;;) {
    if (!spinUntil(jobPosted)) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, jobPosted);
    }
    seen = generation_.load(std::memory_order_acquire);
    drain();
    if (busyWorkers_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);  // the caller checks busyWorkers_ under this lock
      done_.notify_one();
    }
  }
}

void ThreadPool::run(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  if (n == 1 || workers_.empty() || insidePool) {
    for (int64_t i = 0; i < n; i++) fn(i);
    return;
  }
  std::lock_guard<std::mutex> serialize(callerMutex_);
  job_ = &fn;
  jobSize_ = n;
  next_.store(0, std::memory_order_relaxed);
  busyWorkers_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  {
    // The release publishes the job to spinning workers; the lock orders it with sleeping ones.
    std::lock_guard<std::mutex> lock(mutex_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  insidePool = true;
  drain();
  insidePool = false;
  const auto finished = [&] { return busyWorkers_.load(std::memory_order_acquire) == 0; };
  if (!spinUntil(finished)) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, finished);
  }
  job_ = nullptr;
}

int threadCount() { return pool().size(); }

/**
 * Cores this process may use: the CPUs in its affinity mask, capped by a cgroup v2 CPU quota
 * (containers often see every host CPU but may only use a few).
 */
int usableCores() {
  int n = static_cast<int>(std::thread::hardware_concurrency());
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
  if (FILE* f = std::fopen("/sys/fs/cgroup/cpu.max", "r")) {
    char quota[32] = {0};
    long period = 0;
    if (std::fscanf(f, "%31s %ld", quota, &period) == 2 && period > 0) {
      const long q = std::atol(quota);  // "max" (no quota) parses as 0
      if (q > 0) n = std::min<int>(n, static_cast<int>((q + period - 1) / period));
    }
    std::fclose(f);
  }
#endif
  return n;
}

ThreadPool& pool() {
  // Never destroyed: workers sleep on a condition variable and die with the process.
  static ThreadPool* instance = [] {
    int n = usableCores();
    if (const char* env = std::getenv("IGPT_THREADS")) {
      const int requested = std::atoi(env);
      if (requested > 0) n = requested;
    }
    if (n < 1) n = 1;
    if (n > 256) n = 256;
    return new ThreadPool(n);
  }();
  return *instance;
}

}  // namespace igpt
