#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace cuda_ext {
namespace preprocess {

inline void check_inputs(
    const at::Tensor& frames, int64_t out_h, int64_t out_w, const std::vector<double>& mean,
    const std::vector<double>& std) {
  TORCH_CHECK(frames.dim() == 4 && frames.size(3) == 3,
              "preprocess_frames: frames must be (B, H, W, 3), got ", frames.sizes());
  TORCH_CHECK(frames.scalar_type() == at::kByte,
              "preprocess_frames: frames must be uint8, got ", frames.scalar_type());
  TORCH_CHECK(out_h > 0 && out_w > 0, "preprocess_frames: size must be positive");
  TORCH_CHECK(frames.size(1) > 0 && frames.size(2) > 0,
              "preprocess_frames: frames must not be empty images");
  TORCH_CHECK(mean.size() == 3 && std.size() == 3,
              "preprocess_frames: mean and std must have 3 values");
}

}  // namespace preprocess
}  // namespace cuda_ext
