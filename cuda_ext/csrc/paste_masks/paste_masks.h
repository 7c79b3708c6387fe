// paste_masks: the per-pixel math, shared by the CPU loop and the CUDA kernel.
//
// A mask (M x M) is zero-padded by `pad` on each side to Mp = M + 2 * pad, resized with
// bilinear interpolation (align_corners=False, as torch.nn.functional.interpolate) to the box
// size (w, h) = (x2 - x1 + 1, y2 - y1 + 1), and written at the box's place in the image.
// Pixels outside the box are zero.
#pragma once

#include <cstdint>

#include "../common/interp.h"
#include "../macros.h"

namespace cuda_ext {
namespace paste_masks {

// Value of the zero-padded mask at padded coordinates (i, j).
template <typename scalar_t, typename acc_t>
HOST_DEVICE_INLINE acc_t padded_value(
    const scalar_t* mask, int64_t m, int64_t pad, int64_t i, int64_t j) {
  const int64_t r = i - pad;
  const int64_t c = j - pad;
  if (r < 0 || r >= m || c < 0 || c >= m) {
    return static_cast<acc_t>(0);
  }
  return static_cast<acc_t>(mask[r * m + c]);
}

// Output pixel (y, x) of one mask pasted into its integer box {x1, y1, x2, y2}.
template <typename scalar_t, typename acc_t>
HOST_DEVICE_INLINE acc_t pixel(
    const scalar_t* mask, int64_t m, int64_t pad, const int64_t* box, int64_t y, int64_t x) {
  const int64_t x1 = box[0];
  const int64_t y1 = box[1];
  const int64_t x2 = box[2];
  const int64_t y2 = box[3];
  if (x < x1 || x > x2 || y < y1 || y > y2) {
    return static_cast<acc_t>(0);
  }
  const int64_t mp = m + 2 * pad;
  const Tap<acc_t> tx = source_tap<acc_t>(x - x1, mp, x2 - x1 + 1);
  const Tap<acc_t> ty = source_tap<acc_t>(y - y1, mp, y2 - y1 + 1);
  const acc_t v00 = padded_value<scalar_t, acc_t>(mask, m, pad, ty.i0, tx.i0);
  const acc_t v01 = padded_value<scalar_t, acc_t>(mask, m, pad, ty.i0, tx.i1);
  const acc_t v10 = padded_value<scalar_t, acc_t>(mask, m, pad, ty.i1, tx.i0);
  const acc_t v11 = padded_value<scalar_t, acc_t>(mask, m, pad, ty.i1, tx.i1);
  return ty.w0 * (tx.w0 * v00 + tx.w1 * v01) + ty.w1 * (tx.w0 * v10 + tx.w1 * v11);
}

}  // namespace paste_masks
}  // namespace cuda_ext
