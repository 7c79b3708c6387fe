// preprocess_frames, CUDA kernel: decoded uint8 frames to normalised model input in one pass.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "checks.h"
#include "preprocess_frames.h"
#include "../common/launch.cuh"

namespace cuda_ext {
namespace preprocess {
namespace {

struct Norm {
  float mean[3];
  float std[3];
};

__global__ void preprocess_kernel(
    const uint8_t* __restrict__ frames, int64_t total, int64_t height, int64_t width,
    int64_t out_h, int64_t out_w, Norm norm, float* __restrict__ out) {
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       index < total; index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t x = index % out_w;
    const int64_t y = (index / out_w) % out_h;
    const int64_t c = (index / (out_w * out_h)) % 3;
    const int64_t i = index / (out_w * out_h * 3);
    const Tap<float> ty = source_tap<float>(y, height, out_h);
    const Tap<float> tx = source_tap<float>(x, width, out_w);
    const float v = sample(frames + i * height * width * 3, height, width, c, ty, tx);
    out[index] = normalise(v, norm.mean[c], norm.std[c]);
  }
}

at::Tensor preprocess_frames_cuda(
    const at::Tensor& frames_in, int64_t out_h, int64_t out_w, std::vector<double> mean,
    std::vector<double> std) {
  check_inputs(frames_in, out_h, out_w, mean, std);
  TORCH_CHECK(frames_in.is_cuda(), "preprocess_frames_cuda: frames must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(frames_in.device());
  const at::Tensor frames = frames_in.contiguous();
  const int64_t b = frames.size(0);
  at::Tensor out = at::empty({b, 3, out_h, out_w}, frames.options().dtype(at::kFloat));
  const int64_t total = out.numel();
  if (total == 0) {
    return out;
  }
  Norm norm;
  for (int c = 0; c < 3; ++c) {
    norm.mean[c] = static_cast<float>(mean[c]);
    norm.std[c] = static_cast<float>(std[c]);
  }
  const int blocks = grid_stride_blocks(total);
  preprocess_kernel<<<blocks, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
      frames.data_ptr<uint8_t>(), total, frames.size(1), frames.size(2), out_h, out_w, norm,
      out.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(cuda_ext, CUDA, m) {
  m.impl("preprocess_frames", &preprocess_frames_cuda);
}

}  // namespace preprocess
}  // namespace cuda_ext
