#pragma once

#include <ATen/ATen.h>

namespace cuda_ext {
namespace fast_nms {

inline void check_inputs(const at::Tensor& boxes, const at::Tensor& scores) {
  TORCH_CHECK(boxes.dim() == 3 && boxes.size(2) == 4,
              "fast_nms_keep: boxes must be (C, k, 4), got ", boxes.sizes());
  TORCH_CHECK(scores.dim() == 2 && scores.size(0) == boxes.size(0) &&
                  scores.size(1) == boxes.size(1),
              "fast_nms_keep: scores must be (C, k) matching boxes, got ", scores.sizes());
  TORCH_CHECK(boxes.scalar_type() == scores.scalar_type(),
              "fast_nms_keep: boxes and scores must share a dtype");
  TORCH_CHECK(boxes.device() == scores.device(),
              "fast_nms_keep: boxes and scores must share a device");
}

}  // namespace fast_nms
}  // namespace cuda_ext
