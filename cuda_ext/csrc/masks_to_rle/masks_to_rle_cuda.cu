// masks_to_rle, CUDA kernels: one thread per column of every mask counts, then writes, the
// column's transitions; only the transitions (as many as the run lengths) leave the device.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>

#include "masks_to_rle.h"
#include "../common/launch.cuh"

namespace cuda_ext {
namespace rle {
namespace {

__global__ void count_kernel(
    const uint8_t* __restrict__ masks, int64_t n, int64_t height, int64_t width,
    int64_t* __restrict__ counts) {
  const int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (index >= n * width) {
    return;
  }
  const int64_t k = index / width;
  const int64_t x = index % width;
  const uint8_t* mask = masks + k * height * width;
  int64_t count = 0;
  for (int64_t y = 0; y < height; ++y) {
    count += is_transition(mask, height, width, x, y) ? 1 : 0;
  }
  counts[index] = count;
}

__global__ void write_kernel(
    const uint8_t* __restrict__ masks, int64_t n, int64_t height, int64_t width,
    const int64_t* __restrict__ column_offsets, const int64_t* __restrict__ mask_offsets,
    int64_t* __restrict__ positions) {
  const int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (index >= n * width) {
    return;
  }
  const int64_t k = index / width;
  const int64_t x = index % width;
  const uint8_t* mask = masks + k * height * width;
  int64_t write = column_offsets[index];
  for (int64_t y = 0; y < height; ++y) {
    if (is_transition(mask, height, width, x, y)) {
      positions[write++] = x * height + y;
    }
  }
}

std::tuple<at::Tensor, at::Tensor> rle_transitions_cuda(const at::Tensor& masks_in) {
  TORCH_CHECK(masks_in.dim() == 3, "masks_to_rle: masks must be (N, H, W), got ",
              masks_in.sizes());
  TORCH_CHECK(masks_in.scalar_type() == at::kBool || masks_in.scalar_type() == at::kByte,
              "masks_to_rle: masks must be bool or uint8, got ", masks_in.scalar_type());
  const c10::cuda::CUDAGuard guard(masks_in.device());
  const at::Tensor masks = masks_in.contiguous().view(at::kByte);
  const int64_t n = masks.size(0);
  const int64_t height = masks.size(1);
  const int64_t width = masks.size(2);
  const auto long_opts = masks.options().dtype(at::kLong);
  const int64_t columns = n * width;
  if (columns == 0 || height == 0) {
    return {at::empty({0}, long_opts), at::zeros({n + 1}, long_opts)};
  }
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int blocks = static_cast<int>((columns + kThreads - 1) / kThreads);
  at::Tensor counts = at::empty({columns}, long_opts);
  count_kernel<<<blocks, kThreads, 0, stream>>>(
      masks.data_ptr<uint8_t>(), n, height, width, counts.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  // Exclusive prefix sums over columns; a mask's offset is that of its first column.
  at::Tensor column_ends = at::cumsum(counts, 0);
  at::Tensor column_offsets = column_ends - counts;
  at::Tensor offsets = at::zeros({n + 1}, long_opts);
  offsets.slice(0, 1).copy_(column_ends.view({n, width}).select(1, width - 1));
  const int64_t total = offsets[n].item<int64_t>();  // the output size: one scalar to host
  at::Tensor positions = at::empty({total}, long_opts);
  if (total > 0) {
    write_kernel<<<blocks, kThreads, 0, stream>>>(
        masks.data_ptr<uint8_t>(), n, height, width, column_offsets.data_ptr<int64_t>(),
        offsets.data_ptr<int64_t>(), positions.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {positions, offsets};
}

}  // namespace

TORCH_LIBRARY_IMPL(cuda_ext, CUDA, m) {
  m.impl("rle_transitions", &rle_transitions_cuda);
}

}  // namespace rle
}  // namespace cuda_ext
