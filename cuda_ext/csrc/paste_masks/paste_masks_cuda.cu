// paste_masks, CUDA kernel: every pixel of every mask in one launch.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <type_traits>

#include "checks.h"
#include "paste_masks.h"
#include "../common/launch.cuh"

namespace cuda_ext {
namespace paste_masks {
namespace {

// Writes the pasted value, or (value > threshold) when out_t is bool.
template <typename scalar_t, typename out_t>
__global__ void paste_masks_kernel(
    const scalar_t* __restrict__ masks, const int64_t* __restrict__ boxes, int64_t total,
    int64_t m, int64_t pad, int64_t height, int64_t width,
    at::opmath_type<scalar_t> threshold, out_t* __restrict__ out) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       index < total; index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t x = index % width;
    const int64_t y = (index / width) % height;
    const int64_t k = index / (width * height);
    const acc_t value = pixel<scalar_t, acc_t>(masks + k * m * m, m, pad, boxes + 4 * k, y, x);
    if constexpr (std::is_same_v<out_t, bool>) {
      out[index] = value > threshold;
    } else {
      out[index] = static_cast<out_t>(value);
    }
  }
}

at::Tensor paste_masks_cuda(
    const at::Tensor& masks_in, const at::Tensor& boxes_in, int64_t height, int64_t width,
    int64_t padding, std::optional<double> threshold) {
  check_inputs(masks_in, boxes_in, height, width, padding);
  TORCH_CHECK(masks_in.is_cuda(), "paste_masks_cuda: masks must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(masks_in.device());
  const int64_t n = masks_in.size(0);
  const int64_t m = masks_in.size(2);
  const auto out_opts = threshold ? masks_in.options().dtype(at::kBool) : masks_in.options();
  at::Tensor out = at::empty({n, 1, height, width}, out_opts);
  const int64_t total = n * height * width;
  if (total == 0) {
    return out;
  }
  const at::Tensor masks = masks_in.contiguous();
  const at::Tensor boxes = boxes_in.contiguous();
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int blocks = grid_stride_blocks(total);

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, masks.scalar_type(), "paste_masks_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const acc_t cut = static_cast<acc_t>(threshold.value_or(0.0));
        if (threshold) {
          paste_masks_kernel<scalar_t, bool><<<blocks, kThreads, 0, stream>>>(
              masks.data_ptr<scalar_t>(), boxes.data_ptr<int64_t>(), total, m, padding, height,
              width, cut, out.data_ptr<bool>());
        } else {
          paste_masks_kernel<scalar_t, scalar_t><<<blocks, kThreads, 0, stream>>>(
              masks.data_ptr<scalar_t>(), boxes.data_ptr<int64_t>(), total, m, padding, height,
              width, cut, out.data_ptr<scalar_t>());
        }
      });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(cuda_ext, CUDA, m) {
  m.impl("paste_masks", &paste_masks_cuda);
}

}  // namespace paste_masks
}  // namespace cuda_ext
