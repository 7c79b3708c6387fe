// masks_to_rle: COCO run-length encoding, shared by the CPU and CUDA kernels.
//
// COCO scans a mask (H x W) in column-major order. A "transition" is a position p where the
// value differs from the one before it (a virtual 0 precedes p = 0); the run lengths are the
// gaps between consecutive transitions, the first counted from 0 and the last to H * W, so
// runs alternate 0s and 1s and start with 0s (possibly an empty run).
#pragma once

#include <cstdint>
#include <string>

#include "../macros.h"

namespace cuda_ext {
namespace rle {

// True when column-major position p = x * height + y of `mask` (row-major H x W) starts a run.
template <typename T>
HOST_DEVICE_INLINE bool is_transition(
    const T* mask, int64_t height, int64_t width, int64_t x, int64_t y) {
  const bool here = mask[y * width + x] != 0;
  bool before = false;
  if (y > 0) {
    before = mask[(y - 1) * width + x] != 0;
  } else if (x > 0) {
    before = mask[(height - 1) * width + (x - 1)] != 0;
  }
  return here != before;
}

// Appends the COCO compressed string of one mask's run lengths (pycocotools' rleToString:
// LEB128-like, 5 bits per character, offsets from the count two places back, ASCII 48-111).
inline void append_counts_string(const int64_t* counts, int64_t m, std::string& out) {
  for (int64_t i = 0; i < m; ++i) {
    int64_t x = counts[i];
    if (i > 2) {
      x -= counts[i - 2];
    }
    bool more = true;
    while (more) {
      char c = static_cast<char>(x & 0x1f);
      x >>= 5;
      more = (c & 0x10) ? x != -1 : x != 0;
      if (more) {
        c |= 0x20;
      }
      out.push_back(static_cast<char>(c + 48));
    }
  }
}

}  // namespace rle
}  // namespace cuda_ext
