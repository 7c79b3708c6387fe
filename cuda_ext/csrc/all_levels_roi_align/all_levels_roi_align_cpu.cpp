// all_levels_roi_align, CPU kernels.
//
// Forward: each (level, RoI) pair is one work item; common/parallel.h runs small calls on one
// thread and shares larger ones out in chunks the threads claim, so a thread slowed by
// another process simply takes fewer of them. An item computes the RoI's
// sample positions and weights once (roi_align.h, torchvision's arithmetic) and applies them
// to every channel:
//   - channels-last levels (as stored, or converted here when the pooling work outweighs one
//     pass over the level): a sample's four taps are runs of C contiguous values, pooled with
//     vector multiply-adds over blocks of kChunk channels;
//   - other levels: blocks of kBlock channel planes, one independent sum per plane.
// Backward: (level, block of kChunk channels) items, each the only writer of its channels of
// one level's gradient, accumulated channels-last and returned NCHW.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../common/parallel.h"
#include "checks.h"
#include "../multiscale_roi_align/roi_align.h"

// The vector loops are compiled for AVX-512 and AVX2 as well as the baseline instruction set;
// the loader picks the best the CPU has. The sample geometry stays in baseline code, so every
// clone samples the same points torchvision does.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define ALL_LEVELS_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define ALL_LEVELS_INLINE inline __attribute__((always_inline))
#else
#define ALL_LEVELS_CLONES
#define ALL_LEVELS_INLINE inline
#endif

namespace cuda_ext {
namespace all_levels {
namespace {

using roi_align::Geometry;
using roi_align::Sample;

constexpr int64_t kChunk = 64;  // channels summed in registers together, channels-last
constexpr int64_t kBlock = 8;   // channel planes summed together, NCHW
// Work units (common/parallel.h: about a nanosecond of one thread) of the steps below,
// measured with one thread (docs/benchmarks.md, "all_levels_roi_align"):
// one sample of 16 channels on a channels-last level (vector multiply-adds),
constexpr int64_t kUnitsPerSample16Last = 4;
// one sample of one channel on an NCHW level (scalar loads from 4 places),
constexpr int64_t kUnitsPerSamplePlanar = parallel::kUnitsPerRoiSample;
// one value converted to channels-last (a fresh buffer: its page faults included).
constexpr int64_t kUnitsPerConvertedValue = 3;

// ---- the vector loops --------------------------------------------------------------------

// tmp (bins, C) <- bin averages of the C contiguous channels at `image`: per bin, kChunk
// channels at a time summed in registers, the bin's taps staying in L1 across the chunks.
template <typename T>
ALL_LEVELS_INLINE void pool_channels(
    const T* image, const Sample<T>* samples, int64_t bins, int64_t per_bin, T count,
    int64_t channels, T* tmp) {
  for (int64_t bin = 0; bin < bins; ++bin) {
    const Sample<T>* first = samples + bin * per_bin;
    T* o = tmp + bin * channels;
    for (int64_t c0 = 0; c0 < channels; c0 += kChunk) {
      const int64_t width = std::min(kChunk, channels - c0);
      T acc[kChunk];
      for (int64_t j = 0; j < kChunk; ++j) {
        acc[j] = static_cast<T>(0);
      }
      const Sample<T>* s = first;
      for (int64_t i = 0; i < per_bin; ++i, ++s) {
        const T* p0 = image + s->pos[0] + c0;
        const T* p1 = image + s->pos[1] + c0;
        const T* p2 = image + s->pos[2] + c0;
        const T* p3 = image + s->pos[3] + c0;
        const T w0 = s->w[0], w1 = s->w[1], w2 = s->w[2], w3 = s->w[3];
        if (width == kChunk) {
          for (int64_t j = 0; j < kChunk; ++j) {
            acc[j] += w0 * p0[j] + w1 * p1[j] + w2 * p2[j] + w3 * p3[j];
          }
        } else {
          for (int64_t j = 0; j < width; ++j) {
            acc[j] += w0 * p0[j] + w1 * p1[j] + w2 * p2[j] + w3 * p3[j];
          }
        }
      }
      for (int64_t j = 0; j < width; ++j) {
        o[c0 + j] = acc[j] / count;
      }
    }
  }
}

// out (C, bins) <- bin averages of the C planes at `image`, `plane_stride` apart.
template <typename T>
ALL_LEVELS_INLINE void pool_planes(
    const T* image, int64_t plane_stride, const Sample<T>* samples, int64_t bins,
    int64_t per_bin, T count, int64_t channels, T* out) {
  int64_t c = 0;
  for (; c + kBlock <= channels; c += kBlock) {
    const T* planes = image + c * plane_stride;
    const Sample<T>* s = samples;
    for (int64_t bin = 0; bin < bins; ++bin) {
      T sums[kBlock] = {};
      for (int64_t i = 0; i < per_bin; ++i, ++s) {
        for (int64_t j = 0; j < kBlock; ++j) {
          const T* plane = planes + j * plane_stride;
          sums[j] += s->w[0] * plane[s->pos[0]] + s->w[1] * plane[s->pos[1]] +
                     s->w[2] * plane[s->pos[2]] + s->w[3] * plane[s->pos[3]];
        }
      }
      for (int64_t j = 0; j < kBlock; ++j) {
        out[(c + j) * bins + bin] = sums[j] / count;
      }
    }
  }
  for (; c < channels; ++c) {
    const T* plane = image + c * plane_stride;
    for (int64_t bin = 0; bin < bins; ++bin) {
      out[c * bins + bin] = roi_align::average(plane, samples + bin * per_bin, per_bin, count);
    }
  }
}

// `width` contiguous channels at `image` += each sample's share of grad (bins, kChunk).
template <typename T>
ALL_LEVELS_INLINE void scatter_chunk(
    T* image, const Sample<T>* samples, int64_t bins, int64_t per_bin, int64_t width,
    const T* grad) {
  for (int64_t bin = 0; bin < bins; ++bin) {
    const T* g = grad + bin * kChunk;
    const Sample<T>* s = samples + bin * per_bin;
    for (int64_t i = 0; i < per_bin; ++i, ++s) {
      for (int t = 0; t < 4; ++t) {
        const T w = s->w[t];
        if (w == static_cast<T>(0)) {
          continue;  // outside the map, or a tap without weight: torchvision adds nothing
        }
        T* p = image + s->pos[t];
        for (int64_t j = 0; j < width; ++j) {
          p[j] += w * g[j];
        }
      }
    }
  }
}

#define ALL_LEVELS_INSTANTIATE(T)                                                          \
  ALL_LEVELS_CLONES void pool_channels_##T(const T* image, const Sample<T>* samples,       \
                                           int64_t bins, int64_t per_bin, T count,         \
                                           int64_t channels, T* tmp) {                     \
    pool_channels<T>(image, samples, bins, per_bin, count, channels, tmp);                 \
  }                                                                                        \
  ALL_LEVELS_CLONES void pool_planes_##T(const T* image, int64_t plane_stride,             \
                                         const Sample<T>* samples, int64_t bins,           \
                                         int64_t per_bin, T count, int64_t channels,       \
                                         T* out) {                                         \
    pool_planes<T>(image, plane_stride, samples, bins, per_bin, count, channels, out);     \
  }                                                                                        \
  ALL_LEVELS_CLONES void scatter_chunk_##T(T* image, const Sample<T>* samples,             \
                                           int64_t bins, int64_t per_bin, int64_t width,   \
                                           const T* grad) {                                \
    scatter_chunk<T>(image, samples, bins, per_bin, width, grad);                          \
  }

ALL_LEVELS_INSTANTIATE(float)
ALL_LEVELS_INSTANTIATE(double)
#undef ALL_LEVELS_INSTANTIATE

template <typename T>
struct Kernels;
template <>
struct Kernels<float> {
  static constexpr auto pool_channels = &pool_channels_float;
  static constexpr auto pool_planes = &pool_planes_float;
  static constexpr auto scatter_chunk = &scatter_chunk_float;
};
template <>
struct Kernels<double> {
  static constexpr auto pool_channels = &pool_channels_double;
  static constexpr auto pool_planes = &pool_planes_double;
  static constexpr auto scatter_chunk = &scatter_chunk_double;
};

// ---- scheduling and geometry -------------------------------------------------------------

// The samples of every bin of one RoI, bin-major, (iy, ix) within a bin, positions in a map
// with the given row and column strides. Returns the samples per bin.
template <typename T>
int64_t fill_samples(
    const Geometry<T>& g, int64_t pooled_h, int64_t pooled_w, int64_t height, int64_t width,
    int64_t row_stride, int64_t col_stride, std::vector<Sample<T>>& samples) {
  // A negative grid (an inverted box with aligned=true) samples nothing, as in torchvision.
  const int64_t grid_h = std::max<int64_t>(g.grid_h, 0);
  const int64_t grid_w = std::max<int64_t>(g.grid_w, 0);
  samples.resize(pooled_h * pooled_w * grid_h * grid_w);
  int64_t i = 0;
  for (int64_t ph = 0; ph < pooled_h; ++ph) {
    for (int64_t pw = 0; pw < pooled_w; ++pw) {
      for (int64_t iy = 0; iy < grid_h; ++iy) {
        for (int64_t ix = 0; ix < grid_w; ++ix) {
          samples[i++] =
              roi_align::sample(g, ph, pw, iy, ix, height, width, row_stride, col_stride);
        }
      }
    }
  }
  return grid_h * grid_w;
}

// Samples (of one channel) of every RoI on one level: the work of pooling that level.
template <typename T>
int64_t level_samples(
    const T* roi_data, int64_t n, int64_t batch, double scale, int64_t pooled_h,
    int64_t pooled_w, int64_t sampling_ratio, bool aligned) {
  int64_t total = 0;
  for (int64_t r = 0; r < n; ++r) {
    const T* roi = roi_data + r * 5;
    const int64_t b = static_cast<int64_t>(roi[0]);
    if (b < 0 || b >= batch) {
      continue;
    }
    const Geometry<T> g = roi_align::geometry<T>(roi + 1, static_cast<T>(scale), pooled_h,
                                                 pooled_w, sampling_ratio, aligned);
    total += pooled_h * pooled_w * std::max<int64_t>(g.grid_h, 0) * std::max<int64_t>(g.grid_w, 0);
  }
  return total;
}

bool channels_contiguous(const at::Tensor& f) { return f.size(1) == 1 || f.stride(1) == 1; }

// A channels-last copy of f (B, C, H, W), any strides: per image row, the C x W slice
// transposed in kTile x kTile tiles, the rows shared among threads.
template <typename T>
at::Tensor to_channels_last(const at::Tensor& f) {
  constexpr int64_t kTile = 16;
  at::Tensor out = at::empty(f.sizes(), f.options(), at::MemoryFormat::ChannelsLast);
  const int64_t batch = f.size(0), channels = f.size(1), height = f.size(2), width = f.size(3);
  const int64_t sb = f.stride(0), sc = f.stride(1), sh = f.stride(2), sw = f.stride(3);
  const T* src = f.const_data_ptr<T>();
  T* dst = out.mutable_data_ptr<T>();
  parallel::parallel_for(0, batch * height, kUnitsPerConvertedValue * channels * width,
                         [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / height, y = row % height;
      const T* in = src + b * sb + y * sh;
      T* o = dst + row * width * channels;
      for (int64_t x0 = 0; x0 < width; x0 += kTile) {
        const int64_t x1 = std::min(width, x0 + kTile);
        for (int64_t c0 = 0; c0 < channels; c0 += kTile) {
          const int64_t c1 = std::min(channels, c0 + kTile);
          for (int64_t x = x0; x < x1; ++x) {
            for (int64_t c = c0; c < c1; ++c) {
              o[x * channels + c] = in[c * sc + x * sw];
            }
          }
        }
      }
    }
  });
  return out;
}

// ---- forward -----------------------------------------------------------------------------

at::Tensor forward_cpu(
    at::TensorList features_in, const at::Tensor& rois_in, at::ArrayRef<double> scales,
    int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio, bool aligned) {
  check_inputs(features_in, rois_in, scales, pooled_h, pooled_w);
  const int64_t levels = static_cast<int64_t>(features_in.size());
  const int64_t n = rois_in.size(0);
  const int64_t batch = features_in[0].size(0);
  const int64_t channels = features_in[0].size(1);
  const int64_t bins = pooled_h * pooled_w;
  // Every row is written below (zeros for RoIs of no image), so no zero fill here.
  at::Tensor out =
      at::empty({levels, n, channels, pooled_h, pooled_w}, features_in[0].options());
  if (n == 0 || channels == 0) {
    return out;
  }
  const at::Tensor rois = rois_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES(features_in[0].scalar_type(), "all_levels_roi_align_cpu", [&] {
    using T = scalar_t;
    const T* roi_data = rois.const_data_ptr<T>();
    T* out_data = out.mutable_data_ptr<T>();
    // Each level is read as stored, or converted to channels-last first when the vector
    // loops save more than the conversion costs.
    std::vector<at::Tensor> features;
    std::vector<char> last;
    int64_t units = 0;
    const int64_t blocks16 = (channels + 15) / 16;
    for (int64_t l = 0; l < levels; ++l) {
      const at::Tensor& f = features_in[l];
      const int64_t samples = level_samples(roi_data, n, batch, scales[l], pooled_h, pooled_w,
                                            sampling_ratio, aligned);
      const int64_t as_last = kUnitsPerSample16Last * samples * blocks16;
      const int64_t planar = kUnitsPerSamplePlanar * samples * channels;
      const bool convert =
          !channels_contiguous(f) && as_last + kUnitsPerConvertedValue * f.numel() < planar;
      features.push_back(convert ? to_channels_last<T>(f) : f);
      last.push_back(channels_contiguous(features.back()));
      units += last.back() ? as_last : planar;
    }
    parallel::parallel_for(0, levels * n, units / (levels * n) + 1, [&](int64_t begin,
                                                                         int64_t end) {
      std::vector<Sample<T>> samples;
      std::vector<T> tmp(bins * channels);
      for (int64_t item = begin; item < end; ++item) {
        const int64_t level = item / n;
        const int64_t r = item % n;
        T* dst = out_data + item * channels * bins;
        const T* roi = roi_data + r * 5;
        const int64_t b = static_cast<int64_t>(roi[0]);
        if (b < 0 || b >= batch) {
          std::fill_n(dst, channels * bins, static_cast<T>(0));
          continue;
        }
        const at::Tensor& f = features[level];
        const Geometry<T> g = roi_align::geometry<T>(
            roi + 1, static_cast<T>(scales[level]), pooled_h, pooled_w, sampling_ratio,
            aligned);
        const int64_t per_bin = fill_samples(
            g, pooled_h, pooled_w, f.size(2), f.size(3), f.stride(2), f.stride(3), samples);
        const T* image = f.const_data_ptr<T>() + b * f.stride(0);
        if (!last[level]) {
          Kernels<T>::pool_planes(image, f.stride(1), samples.data(), bins, per_bin, g.count,
                                  channels, dst);
          continue;
        }
        Kernels<T>::pool_channels(image, samples.data(), bins, per_bin, g.count, channels,
                                  tmp.data());
        for (int64_t c = 0; c < channels; ++c) {
          T* row = dst + c * bins;
          for (int64_t bin = 0; bin < bins; ++bin) {
            row[bin] = tmp[bin * channels + c];
          }
        }
      }
    });
  });
  return out;
}

// ---- backward ----------------------------------------------------------------------------

std::vector<at::Tensor> backward_cpu(
    const at::Tensor& grad_in, const at::Tensor& rois_in, at::ArrayRef<double> scales,
    at::IntArrayRef heights, at::IntArrayRef widths, int64_t batch, int64_t channels,
    int64_t sampling_ratio, bool aligned) {
  check_backward(grad_in, rois_in, scales, heights, widths, channels);
  const int64_t levels = static_cast<int64_t>(scales.size());
  const int64_t n = rois_in.size(0);
  const int64_t pooled_h = grad_in.size(3);
  const int64_t pooled_w = grad_in.size(4);
  const int64_t bins = pooled_h * pooled_w;
  // Accumulated channels-last (each sample adds to runs of contiguous channels).
  std::vector<at::Tensor> grads;
  for (int64_t l = 0; l < levels; ++l) {
    grads.push_back(at::empty({batch, channels, heights[l], widths[l]}, grad_in.options(),
                              at::MemoryFormat::ChannelsLast)
                        .zero_());
  }
  if (n > 0 && channels > 0) {
    const at::Tensor grad = grad_in.contiguous();
    const at::Tensor rois = rois_in.contiguous();
    const int64_t chunks = (channels + kChunk - 1) / kChunk;
    AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "all_levels_roi_align_backward_cpu", [&] {
      using T = scalar_t;
      const T* roi_data = rois.data_ptr<T>();
      const T* grad_data = grad.data_ptr<T>();
      int64_t total_samples = 0;
      for (int64_t l = 0; l < levels; ++l) {
        total_samples += level_samples(roi_data, n, batch, scales[l], pooled_h, pooled_w,
                                 sampling_ratio, aligned);
      }
      const int64_t units_per_item =
          kUnitsPerSample16Last * (total_samples / levels + 1) * (kChunk / 16);
      parallel::parallel_for(0, levels * chunks, units_per_item, [&](int64_t begin,
                                                                     int64_t end) {
        std::vector<Sample<T>> samples;
        std::vector<T> share(bins * kChunk);
        for (int64_t item = begin; item < end; ++item) {
          const int64_t level = item / chunks;
          const int64_t c0 = (item % chunks) * kChunk;
          const int64_t width = std::min(kChunk, channels - c0);
          const int64_t height = heights[level];
          const int64_t map_width = widths[level];
          T* base = grads[level].data_ptr<T>() + c0;
          for (int64_t r = 0; r < n; ++r) {
            const T* roi = roi_data + r * 5;
            const int64_t b = static_cast<int64_t>(roi[0]);
            if (b < 0 || b >= batch) {
              continue;
            }
            const Geometry<T> g = roi_align::geometry<T>(
                roi + 1, static_cast<T>(scales[level]), pooled_h, pooled_w, sampling_ratio,
                aligned);
            const int64_t per_bin = fill_samples(g, pooled_h, pooled_w, height, map_width,
                                                 map_width * channels, channels, samples);
            const T* src = grad_data + ((level * n + r) * channels + c0) * bins;
            for (int64_t j = 0; j < width; ++j) {
              for (int64_t bin = 0; bin < bins; ++bin) {
                share[bin * kChunk + j] = src[j * bins + bin] / g.count;
              }
            }
            Kernels<T>::scatter_chunk(base + b * height * map_width * channels, samples.data(),
                                      bins, per_bin, width, share.data());
          }
        }
      });
    });
  }
  for (at::Tensor& g : grads) {
    g = g.contiguous();
  }
  return grads;
}

}  // namespace

TORCH_LIBRARY_IMPL(cuda_ext, CPU, m) {
  m.impl("all_levels_roi_align", &forward_cpu);
  m.impl("all_levels_roi_align_backward", &backward_cpu);
}

}  // namespace all_levels
}  // namespace cuda_ext
