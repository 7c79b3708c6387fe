// multiscale_roi_align, CPU kernels. Forward: RoIs shared among threads, each reading its own
// level. Backward: channels shared among threads (each thread owns its channels' gradient
// planes, so no two threads add to one value). One thread or several as common/parallel.h
// decides.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../common/parallel.h"
#include "checks.h"
#include "roi_align.h"

namespace cuda_ext {
namespace roi_align {
namespace {

constexpr int64_t kBlock = 8;

// Samples per channel summed over the RoIs that have a level (what one channel of all RoIs
// costs, in samples).
template <typename scalar_t>
int64_t total_samples(
    const scalar_t* roi_data, const int64_t* level_data, int64_t n, int64_t num_levels,
    int64_t batch, at::ArrayRef<double> scales, int64_t pooled_h, int64_t pooled_w,
    int64_t sampling_ratio, bool aligned) {
  int64_t total = 0;
  for (int64_t r = 0; r < n; ++r) {
    const int64_t level = level_data[r];
    const scalar_t* roi = roi_data + r * 5;
    const int64_t b = static_cast<int64_t>(roi[0]);
    if (level < 0 || level >= num_levels || b < 0 || b >= batch) {
      continue;
    }
    const Geometry<scalar_t> g = geometry<scalar_t>(
        roi + 1, static_cast<scalar_t>(scales[level]), pooled_h, pooled_w, sampling_ratio,
        aligned);
    total += pooled_h * pooled_w * samples_per_bin(g);
  }
  return total;
}

at::Tensor forward_cpu(
    at::TensorList features_in, const at::Tensor& rois_in, const at::Tensor& levels_in,
    at::ArrayRef<double> scales, int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio,
    bool aligned) {
  check_inputs(features_in, rois_in, levels_in, scales, pooled_h, pooled_w);
  const int64_t n = rois_in.size(0);
  const int64_t channels = features_in[0].size(1);
  const int64_t batch = features_in[0].size(0);
  // Every row is written below (zeros for RoIs without a level), so no zero fill here.
  at::Tensor out = at::empty({n, channels, pooled_h, pooled_w}, features_in[0].options());
  if (n == 0 || channels == 0) {
    return out;
  }
  // Features are read through their strides: NCHW and channels-last alike, no copy.
  const std::vector<at::Tensor> features(features_in.begin(), features_in.end());
  const at::Tensor rois = rois_in.contiguous();
  const at::Tensor levels = levels_in.contiguous();
  const int64_t num_levels = static_cast<int64_t>(features.size());
  AT_DISPATCH_FLOATING_TYPES(features[0].scalar_type(), "multiscale_roi_align_cpu", [&] {
    const scalar_t* roi_data = rois.data_ptr<scalar_t>();
    const int64_t* level_data = levels.data_ptr<int64_t>();
    scalar_t* out_data = out.data_ptr<scalar_t>();
    const int64_t samples_per_channel =
        total_samples(roi_data, level_data, n, num_levels, batch, scales, pooled_h, pooled_w,
                      sampling_ratio, aligned);
    const int64_t units_per_roi =
        parallel::units(channels * (samples_per_channel / n + 1), parallel::kRoiSample);
    parallel::parallel_for(0, n, units_per_roi, [&](int64_t begin, int64_t end) {
      // The samples of a RoI depend on its geometry, not on the channel: computed once per
      // RoI and reused for every channel, as torchvision's pre_calc does.
      std::vector<Sample<scalar_t>> samples;
      for (int64_t r = begin; r < end; ++r) {
        const int64_t level = level_data[r];
        const scalar_t* roi = roi_data + r * 5;
        const int64_t b = static_cast<int64_t>(roi[0]);
        if (level < 0 || level >= num_levels || b < 0 || b >= batch) {
          // torchvision leaves such rows at zero
          std::fill_n(out_data + r * channels * pooled_h * pooled_w,
                      channels * pooled_h * pooled_w, static_cast<scalar_t>(0));
          continue;
        }
        const at::Tensor& f = features[level];
        const int64_t height = f.size(2);
        const int64_t width = f.size(3);
        const Geometry<scalar_t> g = geometry<scalar_t>(
            roi + 1, static_cast<scalar_t>(scales[level]), pooled_h, pooled_w, sampling_ratio,
            aligned);
        const int64_t per_bin = samples_per_bin(g);
        samples.resize(pooled_h * pooled_w * per_bin);
        for (int64_t ph = 0, i = 0; ph < pooled_h; ++ph) {
          for (int64_t pw = 0; pw < pooled_w; ++pw) {
            for (int64_t iy = 0; iy < g.grid_h; ++iy) {
              for (int64_t ix = 0; ix < g.grid_w; ++ix) {
                samples[i++] = sample(g, ph, pw, iy, ix, height, width, f.stride(2), f.stride(3));
              }
            }
          }
        }
        const scalar_t* image = f.data_ptr<scalar_t>() + b * f.stride(0);
        scalar_t* roi_out = out_data + r * channels * pooled_h * pooled_w;
        const int64_t bins = pooled_h * pooled_w;
        const int64_t plane_size = f.stride(1);
        // kBlock channels at a time: each sample's positions and weights are loaded once for
        // the block, and the block's sums are independent (instruction-level parallelism).
        int64_t c = 0;
        for (; c + kBlock <= channels; c += kBlock) {
          const scalar_t* planes = image + c * plane_size;
          const Sample<scalar_t>* smp = samples.data();
          for (int64_t bin = 0; bin < bins; ++bin) {
            scalar_t sums[kBlock] = {};
            for (int64_t i = 0; i < per_bin; ++i, ++smp) {
              for (int64_t j = 0; j < kBlock; ++j) {
                const scalar_t* plane = planes + j * plane_size;
                sums[j] += smp->w[0] * plane[smp->pos[0]] + smp->w[1] * plane[smp->pos[1]] +
                           smp->w[2] * plane[smp->pos[2]] + smp->w[3] * plane[smp->pos[3]];
              }
            }
            for (int64_t j = 0; j < kBlock; ++j) {
              roi_out[(c + j) * bins + bin] = sums[j] / g.count;
            }
          }
        }
        for (; c < channels; ++c) {
          const scalar_t* plane = image + c * plane_size;
          const Sample<scalar_t>* smp = samples.data();
          for (int64_t bin = 0; bin < bins; ++bin) {
            roi_out[c * bins + bin] = average(plane, smp, per_bin, g.count);
            smp += per_bin;
          }
        }
      }
    });
  });
  return out;
}

std::vector<at::Tensor> backward_cpu(
    const at::Tensor& grad_in, const at::Tensor& rois_in, const at::Tensor& levels_in,
    at::ArrayRef<double> scales, at::IntArrayRef heights, at::IntArrayRef widths, int64_t batch,
    int64_t channels, int64_t sampling_ratio, bool aligned) {
  const int64_t num_levels = static_cast<int64_t>(scales.size());
  TORCH_CHECK(grad_in.dim() == 4 && grad_in.size(0) == rois_in.size(0) &&
                  grad_in.size(1) == channels,
              "multiscale_roi_align_backward: grad must be (N, C, S, S)");
  TORCH_CHECK(static_cast<int64_t>(heights.size()) == num_levels &&
                  static_cast<int64_t>(widths.size()) == num_levels,
              "multiscale_roi_align_backward: one height and width per level");
  const int64_t n = rois_in.size(0);
  const int64_t pooled_h = grad_in.size(2);
  const int64_t pooled_w = grad_in.size(3);
  std::vector<at::Tensor> grads;
  for (int64_t l = 0; l < num_levels; ++l) {
    grads.push_back(at::zeros({batch, channels, heights[l], widths[l]}, grad_in.options()));
  }
  if (n == 0 || channels == 0) {
    return grads;
  }
  const at::Tensor grad = grad_in.contiguous();
  const at::Tensor rois = rois_in.contiguous();
  const at::Tensor levels = levels_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "multiscale_roi_align_backward_cpu", [&] {
    const scalar_t* roi_data = rois.data_ptr<scalar_t>();
    const int64_t* level_data = levels.data_ptr<int64_t>();
    const scalar_t* grad_data = grad.data_ptr<scalar_t>();
    // Each sample is recomputed per channel here: counted twice.
    const int64_t units_per_channel = parallel::units(
        total_samples(roi_data, level_data, n, num_levels, batch, scales, pooled_h, pooled_w,
                      sampling_ratio, aligned) + 1,
        2 * parallel::kRoiSample);
    parallel::parallel_for(0, channels, units_per_channel, [&](int64_t c_begin, int64_t c_end) {
      for (int64_t r = 0; r < n; ++r) {
        const int64_t level = level_data[r];
        const scalar_t* roi = roi_data + r * 5;
        const int64_t b = static_cast<int64_t>(roi[0]);
        if (level < 0 || level >= num_levels || b < 0 || b >= batch) {
          continue;
        }
        const int64_t height = heights[level];
        const int64_t width = widths[level];
        const Geometry<scalar_t> g = geometry<scalar_t>(
            roi + 1, static_cast<scalar_t>(scales[level]), pooled_h, pooled_w, sampling_ratio,
            aligned);
        // The gradients are fresh NCHW tensors: rows W apart, columns adjacent.
        scalar_t* image = grads[level].data_ptr<scalar_t>() + b * channels * height * width;
        for (int64_t c = c_begin; c < c_end; ++c) {
          scalar_t* plane = image + c * height * width;
          const scalar_t* src = grad_data + ((r * channels + c) * pooled_h) * pooled_w;
          for (int64_t ph = 0; ph < pooled_h; ++ph) {
            for (int64_t pw = 0; pw < pooled_w; ++pw) {
              const scalar_t share = src[ph * pooled_w + pw] / g.count;
              for (int64_t iy = 0; iy < g.grid_h; ++iy) {
                for (int64_t ix = 0; ix < g.grid_w; ++ix) {
                  const Sample<scalar_t> s = sample(g, ph, pw, iy, ix, height, width, width, 1);
                  for (int i = 0; i < 4; ++i) {
                    plane[s.pos[i]] += share * s.w[i];
                  }
                }
              }
            }
          }
        }
      }
    });
  });
  return grads;
}

}  // namespace

TORCH_LIBRARY_IMPL(cuda_ext, CPU, m) {
  m.impl("multiscale_roi_align", &forward_cpu);
  m.impl("multiscale_roi_align_backward", &backward_cpu);
}

}  // namespace roi_align
}  // namespace cuda_ext
