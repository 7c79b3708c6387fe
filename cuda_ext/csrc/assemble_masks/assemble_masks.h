// assemble_masks: one pixel of one instance's mask, shared by CPU and CUDA.
//
// mask(y, x) = sigmoid(sum_k coeffs[k] * protos[k](y, x)) inside the box, 0 outside, where
// pixel x is inside when x1 <= x < x2 (likewise y), YOLACT's crop.
#pragma once

#include <cmath>
#include <cstdint>

#include "../macros.h"

namespace cuda_ext {
namespace assemble_masks {

template <typename T>
HOST_DEVICE_INLINE bool inside(const T* box, int64_t y, int64_t x) {
  const T fx = static_cast<T>(x);
  const T fy = static_cast<T>(y);
  return fx >= box[0] && fx < box[2] && fy >= box[1] && fy < box[3];
}

template <typename acc_t>
HOST_DEVICE_INLINE acc_t sigmoid(acc_t v) {
#if defined(__CUDA_ARCH__)
  return static_cast<acc_t>(1) / (static_cast<acc_t>(1) + exp(-v));
#else
  return static_cast<acc_t>(1) / (static_cast<acc_t>(1) + std::exp(-v));
#endif
}

// Dot product of one coefficient row with the prototypes at one pixel; `stride` is the
// distance between consecutive prototypes of that pixel.
template <typename scalar_t, typename acc_t>
HOST_DEVICE_INLINE acc_t dot(
    const scalar_t* coeffs, const scalar_t* protos, int64_t k, int64_t stride) {
  acc_t sum = static_cast<acc_t>(0);
  for (int64_t i = 0; i < k; ++i) {
    sum += static_cast<acc_t>(coeffs[i]) * static_cast<acc_t>(protos[i * stride]);
  }
  return sum;
}

}  // namespace assemble_masks
}  // namespace cuda_ext
