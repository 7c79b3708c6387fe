// assemble_masks, CUDA kernel: every pixel of every instance in one launch, the linear
// combination, sigmoid and crop fused.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

#include "assemble_masks.h"
#include "checks.h"
#include "../common/launch.cuh"

namespace cuda_ext {
namespace assemble_masks {
namespace {

template <typename scalar_t>
__global__ void assemble_masks_kernel(
    const scalar_t* __restrict__ protos, const scalar_t* __restrict__ coeffs,
    const scalar_t* __restrict__ boxes, const int64_t* __restrict__ batch_index, int64_t total,
    int64_t k, int64_t height, int64_t width, scalar_t* __restrict__ out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = height * width;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       index < total; index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t x = index % width;
    const int64_t y = (index / width) % height;
    const int64_t i = index / plane;
    scalar_t value = static_cast<scalar_t>(0);
    if (inside(boxes + 4 * i, y, x)) {
      // (B, K, H, W) layout: neighbouring threads read neighbouring pixels of a prototype.
      const scalar_t* pixel = protos + batch_index[i] * k * plane + y * width + x;
      value = static_cast<scalar_t>(sigmoid(dot<scalar_t, acc_t>(coeffs + i * k, pixel, k, plane)));
    }
    out[index] = value;
  }
}

at::Tensor assemble_masks_cuda(
    const at::Tensor& protos_in, const at::Tensor& coeffs_in, const at::Tensor& boxes_in,
    const at::Tensor& batch_index_in) {
  check_inputs(protos_in, coeffs_in, boxes_in, batch_index_in);
  TORCH_CHECK(protos_in.is_cuda(), "assemble_masks_cuda: protos must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(protos_in.device());
  const int64_t k = protos_in.size(1);
  const int64_t height = protos_in.size(2);
  const int64_t width = protos_in.size(3);
  const int64_t n = coeffs_in.size(0);
  at::Tensor out = at::empty({n, height, width}, protos_in.options());
  const int64_t total = n * height * width;
  if (total == 0) {
    return out;
  }
  const at::Tensor protos = protos_in.contiguous();
  const at::Tensor coeffs = coeffs_in.contiguous();
  const at::Tensor boxes = boxes_in.contiguous();
  const at::Tensor batch_index = batch_index_in.contiguous();
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int blocks = grid_stride_blocks(total);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, protos.scalar_type(), "assemble_masks_cuda", [&] {
        assemble_masks_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
            protos.data_ptr<scalar_t>(), coeffs.data_ptr<scalar_t>(),
            boxes.data_ptr<scalar_t>(), batch_index.data_ptr<int64_t>(), total, k, height,
            width, out.data_ptr<scalar_t>());
      });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(cuda_ext, CUDA, m) {
  m.impl("assemble_masks", &assemble_masks_cuda);
}

}  // namespace assemble_masks
}  // namespace cuda_ext
