// When a CPU kernel runs on more than one thread, and how it shares the work.
//
// at::parallel_for (OpenMP in PyTorch's builds) wakes every thread of the pool and waits for
// all of them at the end of the loop. On an idle core a woken thread starts within tens of
// microseconds; on a loaded machine (a CPU worker shares its cores with ingest and the
// broker) it waits for the running process's time slice to end: 4 to 12 ms per loop on the
// 2-core machine with one other busy process (HZ=250), against 0.3 ms for a 15-mask 320x240
// paste on one thread. So:
//
// - Work is counted in units of a nanosecond of one thread's time: a kernel passes the units
//   one item of its range costs (its loop counts times the measured costs below). A loop of
//   at most kMinWork units runs on the calling thread.
// - A larger loop is handed out in chunks of about kChunkWork units that each thread claims as
//   it gets to them, so a thread that starts late, or loses its core for a while, takes fewer
//   chunks instead of holding up the others with a fixed share.
// - When a parallel loop lost more than kLateStartNs to its threads (a helper started late,
//   or the calling thread, done with its chunks, waited that long for the others), the machine
//   is taken as loaded for kLoadMemoryNs: loops of at most max(kMinWorkLoaded, kLossFactor x
//   the time lost) units then run on the calling thread (a late helper costs more than they
//   could save). The first loop after that time tries threads again.
//
// How each value was chosen: docs/benchmarks.md, "Threads" (bench/threads.py).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>

namespace cuda_ext {
namespace parallel {

// A loop of at most this many units (about 1 ms of one thread) runs serially: well above what
// a parallel loop costs when a core is idle, above each op's 15-instance 320x240 serving case
// (0.1 to 0.7 ms), below a 1080p batch.
constexpr int64_t kMinWork = 1'000'000;
// While the machine is loaded, loops of at most this many units (about 20 ms), or of
// kLossFactor times the time the last late loop lost if more, run serially: twice the
// 4-12 ms a late helper thread costs beside one busy process, and more when more processes
// share the cores.
constexpr int64_t kMinWorkLoaded = 20'000'000;
constexpr int64_t kLossFactor = 4;
// Units per chunk claimed by a thread (about 100 us): an atomic add per chunk is negligible,
// and a thread that loses its core mid-chunk holds back no more than that chunk.
constexpr int64_t kChunkWork = 100'000;
// A loop losing more than this to its threads means other work held their cores (on an idle
// core a helper starts within 0.1 ms).
constexpr int64_t kLateStartNs = 1'000'000;
// How long the machine counts as loaded after a late start.
constexpr int64_t kLoadMemoryNs = 1'000'000'000;

// Units (ns) of one step of each op's inner loop, measured with one thread on the shapes of
// bench/threads.py: how kernels turn their loop counts into work, with units(steps, cost).
constexpr double kZeroedByte = 0.1;       // an output byte filled with zero (or a bool written)
constexpr double kPastedPixel = 5.0;      // paste_masks: one bilinear output pixel in a box
constexpr double kScannedPixel = 0.25;    // rle_transitions: one mask pixel, per pass
constexpr double kRun = 3.0;              // rle_strings: one run length written
constexpr double kAssembledTerm = 0.5;    // assemble_masks: one coefficient x prototype value
constexpr double kIou = 15.0;             // fast_nms: one IoU (k / 2 per candidate assumed)
constexpr double kResampledValue = 4.0;   // preprocess_frames: one output value
constexpr double kRoiSample = 1.1;        // roi_align: one bilinear sample of one channel
// kRoiSample rounded up to whole units, for kernels that count in integers.
constexpr int64_t kUnitsPerRoiSample = 2;

// `steps` inner-loop steps of `cost` units each, as a whole number of units.
inline int64_t units(int64_t steps, double cost) {
  const double u = static_cast<double>(steps) * cost;
  return u >= 9.0e18 ? int64_t{9'000'000'000'000'000'000} : static_cast<int64_t>(u);
}

namespace detail {

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// steady_clock time (ns) until which the machine counts as loaded.
inline std::atomic<int64_t> loaded_until_ns{0};
// What the last late loop lost to its threads (ns).
inline std::atomic<int64_t> lost_ns{0};

inline int64_t saturating_mul(int64_t a, int64_t b) {
  if (a != 0 && b > std::numeric_limits<int64_t>::max() / a) {
    return std::numeric_limits<int64_t>::max();
  }
  return a * b;
}

}  // namespace detail

// Whether a parallel loop recently lost more than kLateStartNs to its threads.
inline bool loaded() {
  return detail::now_ns() < detail::loaded_until_ns.load(std::memory_order_relaxed);
}

// Forget a recent late start (for a caller that knows the machine's load has changed).
inline void reset_load() {
  detail::loaded_until_ns.store(0, std::memory_order_relaxed);
}

// Whether a loop costing `total_units` would run on more than one thread now.
inline bool worth_splitting(int64_t total_units) {
  if (total_units <= kMinWork || at::get_num_threads() <= 1 || at::in_parallel_region()) {
    return false;
  }
  if (!loaded()) {
    return true;
  }
  const int64_t lost = detail::lost_ns.load(std::memory_order_relaxed);
  return total_units > std::max(kMinWorkLoaded, detail::saturating_mul(kLossFactor, lost));
}

// The at::parallel_for grain (items per task) that keeps each task at kMinWork units or more
// for items costing `units_per_item` each (at::parallel_for runs inline when the range holds
// at most `grain` items). For loops that must use at::parallel_for itself.
inline int64_t grain(int64_t units_per_item) {
  const int64_t per_item = std::max<int64_t>(units_per_item, 1);
  return std::max<int64_t>((kMinWork + per_item - 1) / per_item, 1);
}

// f(b, e) over consecutive sub-ranges covering [begin, end) once each, each item costing
// about `units_per_item` units: all of it on the calling thread unless worth_splitting, else
// in chunks claimed by at::get_num_threads() threads. f must be safe to call concurrently on
// disjoint sub-ranges and must not assume which thread runs which sub-range.
template <typename F>
inline void parallel_for(int64_t begin, int64_t end, int64_t units_per_item, const F& f) {
  if (begin >= end) {
    return;
  }
  const int64_t items = end - begin;
  const int64_t per_item = std::max<int64_t>(units_per_item, 1);
  if (items < 2 || !worth_splitting(detail::saturating_mul(items, per_item))) {
    f(begin, end);
    return;
  }
  const int64_t threads = at::get_num_threads();
  const int64_t chunk = std::clamp<int64_t>(
      (kChunkWork + per_item - 1) / per_item, 1, (items + threads - 1) / threads);
  std::atomic<int64_t> next{begin};
  std::atomic<int64_t> latest_start{0};
  int64_t caller_done = 0;  // written by the calling thread only, read after the loop
  const int64_t start = detail::now_ns();
  at::parallel_for(0, threads, 1, [&](int64_t /*thread*/, int64_t /*unused*/) {
    const bool caller = at::get_thread_num() == 0;
    if (!caller) {
      const int64_t delay = detail::now_ns() - start;
      int64_t seen = latest_start.load(std::memory_order_relaxed);
      while (delay > seen && !latest_start.compare_exchange_weak(seen, delay)) {
      }
    }
    for (;;) {
      const int64_t b = next.fetch_add(chunk, std::memory_order_relaxed);
      if (b >= end) {
        break;
      }
      f(b, std::min(b + chunk, end));
    }
    if (caller) {
      caller_done = detail::now_ns();
    }
  });
  const int64_t finish = detail::now_ns();
  // Lost: a helper's late start, or the caller's wait for a helper still in (or not yet at)
  // its last chunk, beyond the chunk's own work.
  const int64_t lost = std::max(latest_start.load(std::memory_order_relaxed),
                                finish - caller_done - detail::saturating_mul(chunk, per_item));
  if (lost > kLateStartNs) {
    detail::lost_ns.store(lost, std::memory_order_relaxed);
    detail::loaded_until_ns.store(finish + kLoadMemoryNs, std::memory_order_relaxed);
  }
}

}  // namespace parallel
}  // namespace cuda_ext
