// all_levels_roi_align, CUDA kernels: one thread per output value of every (level, RoI,
// channel, bin) in one launch (forward); one launch scattering the gradients with atomic adds
// (backward). The sampling math is roi_align.h's, shared with the CPU kernels.
#include <ATen/ATen.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <vector>

#include "checks.h"
#include "../common/launch.cuh"
#include "../multiscale_roi_align/roi_align.h"

namespace cuda_ext {
namespace all_levels {
namespace {

using roi_align::Geometry;
using roi_align::kMaxLevels;
using roi_align::Sample;

// The levels, passed by value to the kernels.
template <typename scalar_t>
struct Levels {
  scalar_t* data[kMaxLevels];
  int64_t height[kMaxLevels];
  int64_t width[kMaxLevels];
  int64_t stride[kMaxLevels][4];  // N, C, H, W strides in elements
  scalar_t scale[kMaxLevels];
};

// index runs over (L, N, C, pooled_h, pooled_w), row-major.
template <typename scalar_t>
__global__ void forward_kernel(
    Levels<scalar_t> meta, const scalar_t* __restrict__ rois, int64_t total, int64_t n,
    int64_t batch, int64_t channels, int64_t pooled_h, int64_t pooled_w,
    int64_t sampling_ratio, bool aligned, scalar_t* __restrict__ out) {
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       index < total; index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t pw = index % pooled_w;
    const int64_t ph = (index / pooled_w) % pooled_h;
    const int64_t c = (index / (pooled_w * pooled_h)) % channels;
    const int64_t item = index / (pooled_w * pooled_h * channels);
    const int64_t r = item % n;
    const int64_t level = item / n;
    const scalar_t* roi = rois + r * 5;
    const int64_t b = static_cast<int64_t>(roi[0]);
    if (b < 0 || b >= batch) {
      out[index] = static_cast<scalar_t>(0);
      continue;
    }
    const Geometry<scalar_t> g = roi_align::geometry<scalar_t>(
        roi + 1, meta.scale[level], pooled_h, pooled_w, sampling_ratio, aligned);
    const int64_t* st = meta.stride[level];
    const scalar_t* plane = meta.data[level] + b * st[0] + c * st[1];
    out[index] = roi_align::pooled_value(plane, g, ph, pw, meta.height[level],
                                         meta.width[level], st[2], st[3]);
  }
}

template <typename scalar_t>
__global__ void backward_kernel(
    Levels<scalar_t> grads, const scalar_t* __restrict__ grad,
    const scalar_t* __restrict__ rois, int64_t total, int64_t n, int64_t batch,
    int64_t channels, int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio,
    bool aligned) {
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       index < total; index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t pw = index % pooled_w;
    const int64_t ph = (index / pooled_w) % pooled_h;
    const int64_t c = (index / (pooled_w * pooled_h)) % channels;
    const int64_t item = index / (pooled_w * pooled_h * channels);
    const int64_t r = item % n;
    const int64_t level = item / n;
    const scalar_t* roi = rois + r * 5;
    const int64_t b = static_cast<int64_t>(roi[0]);
    if (b < 0 || b >= batch) {
      continue;
    }
    const int64_t height = grads.height[level];
    const int64_t width = grads.width[level];
    const Geometry<scalar_t> g = roi_align::geometry<scalar_t>(
        roi + 1, grads.scale[level], pooled_h, pooled_w, sampling_ratio, aligned);
    scalar_t* plane = grads.data[level] + (b * channels + c) * height * width;
    const scalar_t share = grad[index] / g.count;
    for (int64_t iy = 0; iy < g.grid_h; ++iy) {
      for (int64_t ix = 0; ix < g.grid_w; ++ix) {
        const Sample<scalar_t> s =
            roi_align::sample(g, ph, pw, iy, ix, height, width, width, 1);
        for (int i = 0; i < 4; ++i) {
          if (s.w[i] != static_cast<scalar_t>(0)) {
            gpuAtomicAdd(plane + s.pos[i], share * s.w[i]);
          }
        }
      }
    }
  }
}

at::Tensor forward_cuda(
    at::TensorList features_in, const at::Tensor& rois_in, at::ArrayRef<double> scales,
    int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio, bool aligned) {
  check_inputs(features_in, rois_in, scales, pooled_h, pooled_w);
  TORCH_CHECK(features_in[0].is_cuda(), "all_levels_roi_align_cuda: features must be CUDA");
  const c10::cuda::CUDAGuard guard(features_in[0].device());
  const int64_t levels = static_cast<int64_t>(features_in.size());
  const int64_t n = rois_in.size(0);
  const int64_t batch = features_in[0].size(0);
  const int64_t channels = features_in[0].size(1);
  at::Tensor out =
      at::empty({levels, n, channels, pooled_h, pooled_w}, features_in[0].options());
  const int64_t total = out.numel();
  if (total == 0) {
    return out;
  }
  // Features are read through their strides: NCHW and channels-last alike, no copy.
  const std::vector<at::Tensor> features(features_in.begin(), features_in.end());
  const at::Tensor rois = rois_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, features[0].scalar_type(), "all_levels_roi_align_cuda", [&] {
        Levels<scalar_t> meta;
        for (int64_t l = 0; l < levels; ++l) {
          meta.data[l] = const_cast<scalar_t*>(features[l].const_data_ptr<scalar_t>());
          meta.height[l] = features[l].size(2);
          meta.width[l] = features[l].size(3);
          meta.scale[l] = static_cast<scalar_t>(scales[l]);
          for (int d = 0; d < 4; ++d) {
            meta.stride[l][d] = features[l].stride(d);
          }
        }
        forward_kernel<scalar_t>
            <<<grid_stride_blocks(total), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
                meta, rois.const_data_ptr<scalar_t>(), total, n, batch, channels, pooled_h,
                pooled_w, sampling_ratio, aligned, out.mutable_data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return out;
}

std::vector<at::Tensor> backward_cuda(
    const at::Tensor& grad_in, const at::Tensor& rois_in, at::ArrayRef<double> scales,
    at::IntArrayRef heights, at::IntArrayRef widths, int64_t batch, int64_t channels,
    int64_t sampling_ratio, bool aligned) {
  check_backward(grad_in, rois_in, scales, heights, widths, channels);
  TORCH_CHECK(grad_in.is_cuda(), "all_levels_roi_align_backward_cuda: grad must be CUDA");
  const c10::cuda::CUDAGuard guard(grad_in.device());
  const int64_t levels = static_cast<int64_t>(scales.size());
  std::vector<at::Tensor> grads;
  for (int64_t l = 0; l < levels; ++l) {
    grads.push_back(at::zeros({batch, channels, heights[l], widths[l]}, grad_in.options()));
  }
  const int64_t total = grad_in.numel();
  if (total == 0) {
    return grads;
  }
  const at::Tensor grad = grad_in.contiguous();
  const at::Tensor rois = rois_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "all_levels_roi_align_backward_cuda", [&] {
        Levels<scalar_t> meta;
        for (int64_t l = 0; l < levels; ++l) {
          meta.data[l] = grads[l].mutable_data_ptr<scalar_t>();
          meta.height[l] = heights[l];
          meta.width[l] = widths[l];
          meta.scale[l] = static_cast<scalar_t>(scales[l]);
          for (int d = 0; d < 4; ++d) {
            meta.stride[l][d] = grads[l].stride(d);
          }
        }
        backward_kernel<scalar_t>
            <<<grid_stride_blocks(total), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
                meta, grad.const_data_ptr<scalar_t>(), rois.const_data_ptr<scalar_t>(), total,
                rois.size(0), batch, channels, grad.size(3), grad.size(4), sampling_ratio,
                aligned);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return grads;
}

}  // namespace

TORCH_LIBRARY_IMPL(cuda_ext, CUDA, m) {
  m.impl("all_levels_roi_align", &forward_cuda);
  m.impl("all_levels_roi_align_backward", &backward_cuda);
}

}  // namespace all_levels
}  // namespace cuda_ext
