// all_levels_roi_align: argument checks shared by the CPU and CUDA kernels. The sampling
// math itself is multiscale_roi_align's (roi_align.h), torchvision's roi_align arithmetic.
#pragma once

#include <ATen/ATen.h>

#include "../multiscale_roi_align/roi_align.h"

namespace cuda_ext {
namespace all_levels {

inline void check_inputs(
    at::TensorList features, const at::Tensor& rois, at::ArrayRef<double> scales,
    int64_t pooled_h, int64_t pooled_w) {
  TORCH_CHECK(!features.empty() && static_cast<int64_t>(features.size()) <= roi_align::kMaxLevels,
              "all_levels_roi_align: between 1 and ", roi_align::kMaxLevels,
              " feature levels, got ", features.size());
  TORCH_CHECK(scales.size() == features.size(), "all_levels_roi_align: one scale per level, got ",
              scales.size(), " scales for ", features.size(), " levels");
  const at::Tensor& first = features[0];
  for (const at::Tensor& f : features) {
    TORCH_CHECK(f.dim() == 4 && f.size(0) == first.size(0) && f.size(1) == first.size(1),
                "all_levels_roi_align: features must be (B, C, H, W) with one B and C, got ",
                f.sizes(), " and ", first.sizes());
    TORCH_CHECK(f.scalar_type() == first.scalar_type() && f.device() == first.device(),
                "all_levels_roi_align: features must share a dtype and a device");
  }
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5,
              "all_levels_roi_align: rois must be (N, 5), got ", rois.sizes());
  TORCH_CHECK(rois.scalar_type() == first.scalar_type() && rois.device() == first.device(),
              "all_levels_roi_align: rois must match the features' dtype and device");
  TORCH_CHECK(pooled_h > 0 && pooled_w > 0, "all_levels_roi_align: output size must be > 0, got ",
              pooled_h, "x", pooled_w);
}

inline void check_backward(
    const at::Tensor& grad, const at::Tensor& rois, at::ArrayRef<double> scales,
    at::IntArrayRef heights, at::IntArrayRef widths, int64_t channels) {
  const int64_t levels = static_cast<int64_t>(scales.size());
  TORCH_CHECK(levels >= 1 && levels <= roi_align::kMaxLevels &&
                  static_cast<int64_t>(heights.size()) == levels &&
                  static_cast<int64_t>(widths.size()) == levels,
              "all_levels_roi_align_backward: one scale, height and width per level (at most ",
              roi_align::kMaxLevels, ")");
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5,
              "all_levels_roi_align_backward: rois must be (N, 5), got ", rois.sizes());
  TORCH_CHECK(grad.dim() == 5 && grad.size(0) == levels && grad.size(1) == rois.size(0) &&
                  grad.size(2) == channels,
              "all_levels_roi_align_backward: grad must be (L, N, C, Sh, Sw) = (", levels, ", ",
              rois.size(0), ", ", channels, ", Sh, Sw), got ", grad.sizes());
  TORCH_CHECK(rois.scalar_type() == grad.scalar_type() && rois.device() == grad.device(),
              "all_levels_roi_align_backward: rois must match grad's dtype and device");
}

}  // namespace all_levels
}  // namespace cuda_ext
