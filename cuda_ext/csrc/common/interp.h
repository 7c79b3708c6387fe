// Bilinear interpolation taps (align_corners=False), shared by every op that resizes.
#pragma once

#include <cstdint>

#include "../macros.h"

namespace cuda_ext {

template <typename acc_t>
struct Tap {
  int64_t i0;
  int64_t i1;
  acc_t w0;
  acc_t w1;
};

// Source taps of output index `dst` when resizing in_size -> out_size, the arithmetic of
// ATen's area_pixel_compute_source_index for align_corners=False and no explicit scale.
template <typename acc_t>
HOST_DEVICE_INLINE Tap<acc_t> source_tap(int64_t dst, int64_t in_size, int64_t out_size) {
  const acc_t scale = static_cast<acc_t>(in_size) / static_cast<acc_t>(out_size);
  acc_t src = scale * (static_cast<acc_t>(dst) + static_cast<acc_t>(0.5)) -
              static_cast<acc_t>(0.5);
  if (src < static_cast<acc_t>(0)) {
    src = static_cast<acc_t>(0);
  }
  const int64_t i0 = static_cast<int64_t>(src);
  const int64_t i1 = i0 + (i0 < in_size - 1 ? 1 : 0);
  acc_t w1 = src - static_cast<acc_t>(i0);
  if (w1 > static_cast<acc_t>(1)) {
    w1 = static_cast<acc_t>(1);
  }
  return {i0, i1, static_cast<acc_t>(1) - w1, w1};
}

}  // namespace cuda_ext
