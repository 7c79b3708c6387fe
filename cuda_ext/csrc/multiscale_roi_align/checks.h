#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "roi_align.h"

namespace cuda_ext {
namespace roi_align {

inline void check_inputs(
    at::TensorList features, const at::Tensor& rois, const at::Tensor& levels,
    at::ArrayRef<double> scales, int64_t pooled_h, int64_t pooled_w) {
  TORCH_CHECK(!features.empty() && static_cast<int64_t>(features.size()) <= kMaxLevels,
              "multiscale_roi_align: between 1 and ", kMaxLevels, " feature levels, got ",
              features.size());
  TORCH_CHECK(scales.size() == features.size(),
              "multiscale_roi_align: one scale per feature level");
  const at::Tensor& first = features[0];
  for (const at::Tensor& f : features) {
    TORCH_CHECK(f.dim() == 4 && f.size(0) == first.size(0) && f.size(1) == first.size(1),
                "multiscale_roi_align: features must be (B, C, H, W) with one B and C");
    TORCH_CHECK(f.scalar_type() == first.scalar_type() && f.device() == first.device(),
                "multiscale_roi_align: features must share a dtype and a device");
  }
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5,
              "multiscale_roi_align: rois must be (N, 5), got ", rois.sizes());
  TORCH_CHECK(rois.scalar_type() == first.scalar_type() && rois.device() == first.device(),
              "multiscale_roi_align: rois must match the features' dtype and device");
  TORCH_CHECK(levels.dim() == 1 && levels.size(0) == rois.size(0) &&
                  levels.scalar_type() == at::kLong && levels.device() == first.device(),
              "multiscale_roi_align: levels must be (N,) int64 on the features' device");
  TORCH_CHECK(pooled_h > 0 && pooled_w > 0, "multiscale_roi_align: output size must be > 0");
}

}  // namespace roi_align
}  // namespace cuda_ext
