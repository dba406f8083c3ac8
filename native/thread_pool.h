// A small persistent thread pool for the fused loops. The calling thread takes part, so a pool of
// size N owns N-1 worker threads. Work is handed out as item indices claimed from an atomic
// counter, which balances uneven items (causal attention rows) without any tuning. Between jobs
// the workers spin for a moment before they sleep: decoding hands out a job every few
// microseconds, and waking a sleeping thread costs tens of them.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace igpt {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  /** Threads taking part in `run`, the caller included. */
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  /**
   * Calls fn(i) once for every i in [0, n), spread over the pool; returns when all are done.
   * Safe to call from several threads (calls are serialized) and from inside fn (runs inline).
   */
  void run(int64_t n, const std::function<void(int64_t)>& fn);

 private:
  void workerLoop();
  void drain();

  std::vector<std::thread> workers_;
  std::mutex callerMutex_;  // one job at a time
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> busyWorkers_{0};
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t jobSize_ = 0;
  std::atomic<int64_t> next_{0};
};

/**
 * While alive, this thread flushes subnormal floats to zero (x86 MXCSR FTZ and DAZ), restoring the
 * previous mode afterwards (JavaScript shares the main thread). Subnormals appear in the kernels'
 * far tails (sigmoid and softmax of large negative values); each one costs the CPU a microcode
 * assist of ~100 cycles, and a vectorized loop can produce them in every lane it discards.
 */
class FlushDenormals {
 public:
  FlushDenormals();
  ~FlushDenormals();
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
  unsigned saved_;
};

/** The process-wide pool, sized by IGPT_THREADS or the cores this process may use. */
ThreadPool& pool();

/** Threads the kernels use (the pool's size). */
int threadCount();

}  // namespace igpt
