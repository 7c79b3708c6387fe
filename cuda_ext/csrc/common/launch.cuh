// Launch geometry shared by the grid-stride CUDA kernels.
#pragma once

#include <ATen/cuda/CUDAContext.h>

#include <algorithm>
#include <cstdint>

namespace cuda_ext {

constexpr int kThreads = 256;

// Blocks for `total` elements with kThreads threads each: enough to cover them, capped at
// 32 blocks per multiprocessor (the kernels loop with a grid stride beyond that).
inline int grid_stride_blocks(int64_t total) {
  const int64_t max_blocks =
      static_cast<int64_t>(at::cuda::getCurrentDeviceProperties()->multiProcessorCount) * 32;
  return static_cast<int>(std::min<int64_t>((total + kThreads - 1) / kThreads, max_blocks));
}

}  // namespace cuda_ext
