// Argument checks of paste_masks, shared by both backends.
#pragma once

#include <ATen/ATen.h>

namespace cuda_ext {
namespace paste_masks {

inline void check_inputs(
    const at::Tensor& masks, const at::Tensor& boxes, int64_t height, int64_t width,
    int64_t padding) {
  TORCH_CHECK(masks.dim() == 4 && masks.size(1) == 1 && masks.size(2) == masks.size(3),
              "paste_masks: masks must be (N, 1, M, M), got ", masks.sizes());
  TORCH_CHECK(masks.size(2) > 0, "paste_masks: masks must have M > 0");
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4,
              "paste_masks: boxes must be (N, 4), got ", boxes.sizes());
  TORCH_CHECK(boxes.scalar_type() == at::kLong,
              "paste_masks: boxes must be int64 (the expanded integer boxes), got ",
              boxes.scalar_type());
  TORCH_CHECK(boxes.size(0) == masks.size(0), "paste_masks: masks has ", masks.size(0),
              " entries but boxes has ", boxes.size(0));
  TORCH_CHECK(masks.device() == boxes.device(), "paste_masks: masks is on ", masks.device(),
              " but boxes is on ", boxes.device());
  TORCH_CHECK(height >= 0 && width >= 0, "paste_masks: image size must be >= 0, got (",
              height, ", ", width, ")");
  TORCH_CHECK(padding >= 0, "paste_masks: padding must be >= 0, got ", padding);
}

}  // namespace paste_masks
}  // namespace cuda_ext
