// preprocess_frames: one output value of the fused resize + normalisation, shared by CPU and
// CUDA. frames are (B, H, W, 3) uint8 (channels last, as decoders give them); the output is
// (B, 3, h, w) float: bilinear resize (align_corners=False) then (value - mean[c]) / std[c].
#pragma once

#include <cstdint>

#include "../common/interp.h"
#include "../macros.h"

namespace cuda_ext {
namespace preprocess {

HOST_DEVICE_INLINE float sample(
    const uint8_t* frame, int64_t height, int64_t width, int64_t c, const Tap<float>& ty,
    const Tap<float>& tx) {
  const auto at = [&](int64_t y, int64_t x) {
    return static_cast<float>(frame[(y * width + x) * 3 + c]);
  };
  return ty.w0 * (tx.w0 * at(ty.i0, tx.i0) + tx.w1 * at(ty.i0, tx.i1)) +
         ty.w1 * (tx.w0 * at(ty.i1, tx.i0) + tx.w1 * at(ty.i1, tx.i1));
}

HOST_DEVICE_INLINE float normalise(float value, float mean, float std) {
  return (value - mean) / std;
}

}  // namespace preprocess
}  // namespace cuda_ext
