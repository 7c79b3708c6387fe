#pragma once

#include <ATen/ATen.h>

namespace cuda_ext {
namespace assemble_masks {

inline void check_inputs(
    const at::Tensor& protos, const at::Tensor& coeffs, const at::Tensor& boxes,
    const at::Tensor& batch_index) {
  TORCH_CHECK(protos.dim() == 4, "assemble_masks: protos must be (B, K, H, W), got ",
              protos.sizes());
  TORCH_CHECK(coeffs.dim() == 2 && coeffs.size(1) == protos.size(1),
              "assemble_masks: coeffs must be (N, K) with K = ", protos.size(1), ", got ",
              coeffs.sizes());
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4 && boxes.size(0) == coeffs.size(0),
              "assemble_masks: boxes must be (N, 4), got ", boxes.sizes());
  TORCH_CHECK(batch_index.dim() == 1 && batch_index.size(0) == coeffs.size(0) &&
                  batch_index.scalar_type() == at::kLong,
              "assemble_masks: batch_index must be (N,) int64");
  TORCH_CHECK(protos.scalar_type() == coeffs.scalar_type() &&
                  protos.scalar_type() == boxes.scalar_type(),
              "assemble_masks: protos, coeffs and boxes must share a dtype");
  TORCH_CHECK(protos.device() == coeffs.device() && protos.device() == boxes.device() &&
                  protos.device() == batch_index.device(),
              "assemble_masks: all tensors must share a device");
}

}  // namespace assemble_masks
}  // namespace cuda_ext
