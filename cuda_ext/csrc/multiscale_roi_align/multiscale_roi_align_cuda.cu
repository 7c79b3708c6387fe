// multiscale_roi_align, CUDA kernels: every RoI of every level in one launch (forward), and
// one launch scattering gradients with atomic adds (backward).
#include <ATen/ATen.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "checks.h"
#include "roi_align.h"
#include "../common/launch.cuh"

namespace cuda_ext {
namespace roi_align {
namespace {

// The levels, passed by value to the kernels.
template <typename scalar_t>
struct Levels {
  scalar_t* data[kMaxLevels];
  int64_t height[kMaxLevels];
  int64_t width[kMaxLevels];
  int64_t stride[kMaxLevels][4];  // N, C, H, W strides in elements
  scalar_t scale[kMaxLevels];
  int64_t count;
};

template <typename scalar_t>
__global__ void forward_kernel(
    Levels<scalar_t> levels_meta, const scalar_t* __restrict__ rois,
    const int64_t* __restrict__ levels, int64_t total, int64_t batch, int64_t channels,
    int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio, bool aligned,
    scalar_t* __restrict__ out) {
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       index < total; index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t pw = index % pooled_w;
    const int64_t ph = (index / pooled_w) % pooled_h;
    const int64_t c = (index / (pooled_w * pooled_h)) % channels;
    const int64_t r = index / (pooled_w * pooled_h * channels);
    const int64_t level = levels[r];
    const scalar_t* roi = rois + r * 5;
    const int64_t b = static_cast<int64_t>(roi[0]);
    if (level < 0 || level >= levels_meta.count || b < 0 || b >= batch) {
      out[index] = static_cast<scalar_t>(0);
      continue;
    }
    const int64_t height = levels_meta.height[level];
    const int64_t width = levels_meta.width[level];
    const Geometry<scalar_t> g = geometry<scalar_t>(
        roi + 1, levels_meta.scale[level], pooled_h, pooled_w, sampling_ratio, aligned);
    const int64_t* st = levels_meta.stride[level];
    const scalar_t* plane = levels_meta.data[level] + b * st[0] + c * st[1];
    out[index] = pooled_value(plane, g, ph, pw, height, width, st[2], st[3]);
  }
}

template <typename scalar_t>
__global__ void backward_kernel(
    Levels<scalar_t> grads_meta, const scalar_t* __restrict__ grad,
    const scalar_t* __restrict__ rois, const int64_t* __restrict__ levels, int64_t total,
    int64_t batch, int64_t channels, int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio,
    bool aligned) {
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       index < total; index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t pw = index % pooled_w;
    const int64_t ph = (index / pooled_w) % pooled_h;
    const int64_t c = (index / (pooled_w * pooled_h)) % channels;
    const int64_t r = index / (pooled_w * pooled_h * channels);
    const int64_t level = levels[r];
    const scalar_t* roi = rois + r * 5;
    const int64_t b = static_cast<int64_t>(roi[0]);
    if (level < 0 || level >= grads_meta.count || b < 0 || b >= batch) {
      continue;
    }
    const int64_t height = grads_meta.height[level];
    const int64_t width = grads_meta.width[level];
    const Geometry<scalar_t> g = geometry<scalar_t>(
        roi + 1, grads_meta.scale[level], pooled_h, pooled_w, sampling_ratio, aligned);
    scalar_t* plane = grads_meta.data[level] + (b * channels + c) * height * width;
    const scalar_t share = grad[index] / g.count;
    for (int64_t iy = 0; iy < g.grid_h; ++iy) {
      for (int64_t ix = 0; ix < g.grid_w; ++ix) {
        const Sample<scalar_t> s = sample(g, ph, pw, iy, ix, height, width, width, 1);
        for (int i = 0; i < 4; ++i) {
          gpuAtomicAdd(plane + s.pos[i], share * s.w[i]);
        }
      }
    }
  }
}

at::Tensor forward_cuda(
    at::TensorList features_in, const at::Tensor& rois_in, const at::Tensor& levels_in,
    at::ArrayRef<double> scales, int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio,
    bool aligned) {
  check_inputs(features_in, rois_in, levels_in, scales, pooled_h, pooled_w);
  TORCH_CHECK(features_in[0].is_cuda(), "multiscale_roi_align_cuda: features must be CUDA");
  const c10::cuda::CUDAGuard guard(features_in[0].device());
  const int64_t n = rois_in.size(0);
  const int64_t batch = features_in[0].size(0);
  const int64_t channels = features_in[0].size(1);
  at::Tensor out = at::empty({n, channels, pooled_h, pooled_w}, features_in[0].options());
  const int64_t total = out.numel();
  if (total == 0) {
    return out;
  }
  // Features are read through their strides: NCHW and channels-last alike, no copy.
  const std::vector<at::Tensor> features(features_in.begin(), features_in.end());
  const at::Tensor rois = rois_in.contiguous();
  const at::Tensor levels = levels_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, features[0].scalar_type(), "multiscale_roi_align_cuda", [&] {
        Levels<scalar_t> meta;
        meta.count = static_cast<int64_t>(features.size());
        for (int64_t l = 0; l < meta.count; ++l) {
          meta.data[l] = features[l].data_ptr<scalar_t>();
          meta.height[l] = features[l].size(2);
          meta.width[l] = features[l].size(3);
          meta.scale[l] = static_cast<scalar_t>(scales[l]);
          for (int d = 0; d < 4; ++d) {
            meta.stride[l][d] = features[l].stride(d);
          }
        }
        forward_kernel<scalar_t>
            <<<grid_stride_blocks(total), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
                meta, rois.data_ptr<scalar_t>(), levels.data_ptr<int64_t>(), total, batch,
                channels, pooled_h, pooled_w, sampling_ratio, aligned, out.data_ptr<scalar_t>());
      });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::vector<at::Tensor> backward_cuda(
    const at::Tensor& grad_in, const at::Tensor& rois_in, const at::Tensor& levels_in,
    at::ArrayRef<double> scales, at::IntArrayRef heights, at::IntArrayRef widths, int64_t batch,
    int64_t channels, int64_t sampling_ratio, bool aligned) {
  TORCH_CHECK(grad_in.is_cuda(), "multiscale_roi_align_backward_cuda: grad must be CUDA");
  TORCH_CHECK(grad_in.dim() == 4 && grad_in.size(0) == rois_in.size(0) &&
                  grad_in.size(1) == channels,
              "multiscale_roi_align_backward: grad must be (N, C, S, S)");
  const int64_t num_levels = static_cast<int64_t>(scales.size());
  TORCH_CHECK(num_levels <= kMaxLevels && static_cast<int64_t>(heights.size()) == num_levels &&
                  static_cast<int64_t>(widths.size()) == num_levels,
              "multiscale_roi_align_backward: one height and width per level");
  const c10::cuda::CUDAGuard guard(grad_in.device());
  std::vector<at::Tensor> grads;
  for (int64_t l = 0; l < num_levels; ++l) {
    grads.push_back(at::zeros({batch, channels, heights[l], widths[l]}, grad_in.options()));
  }
  const int64_t total = grad_in.numel();
  if (total == 0) {
    return grads;
  }
  const at::Tensor grad = grad_in.contiguous();
  const at::Tensor rois = rois_in.contiguous();
  const at::Tensor levels = levels_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "multiscale_roi_align_backward_cuda", [&] {
        Levels<scalar_t> meta;
        meta.count = num_levels;
        for (int64_t l = 0; l < num_levels; ++l) {
          meta.data[l] = grads[l].data_ptr<scalar_t>();
          meta.height[l] = heights[l];
          meta.width[l] = widths[l];
          meta.scale[l] = static_cast<scalar_t>(scales[l]);
          for (int d = 0; d < 4; ++d) {
            meta.stride[l][d] = grads[l].stride(d);
          }
        }
        backward_kernel<scalar_t>
            <<<grid_stride_blocks(total), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
                meta, grad.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(),
                levels.data_ptr<int64_t>(), total, batch, channels, grad.size(2), grad.size(3),
                sampling_ratio, aligned);
      });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grads;
}

}  // namespace

TORCH_LIBRARY_IMPL(cuda_ext, CUDA, m) {
  m.impl("multiscale_roi_align", &forward_cuda);
  m.impl("multiscale_roi_align_backward", &backward_cuda);
}

}  // namespace roi_align
}  // namespace cuda_ext
