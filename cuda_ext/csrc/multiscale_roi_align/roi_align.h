// multiscale_roi_align: RoIAlign's geometry and bilinear sampling, shared by CPU and CUDA.
//
// The arithmetic is torchvision's roi_align (csrc/ops/*/roi_align_kernel.*), so each level
// of the fused op gives what torchvision's per-level call gives.
#pragma once

#include <cstdint>

#include "../macros.h"

namespace cuda_ext {
namespace roi_align {

constexpr int kMaxLevels = 8;

template <typename T>
struct Geometry {
  T start_h;
  T start_w;
  T bin_h;
  T bin_w;
  int64_t grid_h;
  int64_t grid_w;
  T count;
};

// roi: (x1, y1, x2, y2) in image pixels (the four values after the batch index).
template <typename T>
HOST_DEVICE_INLINE Geometry<T> geometry(
    const T* roi, T scale, int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio,
    bool aligned) {
  const T offset = aligned ? static_cast<T>(0.5) : static_cast<T>(0);
  Geometry<T> g;
  g.start_w = roi[0] * scale - offset;
  g.start_h = roi[1] * scale - offset;
  const T end_w = roi[2] * scale - offset;
  const T end_h = roi[3] * scale - offset;
  T width = end_w - g.start_w;
  T height = end_h - g.start_h;
  if (!aligned) {
    width = width > static_cast<T>(1) ? width : static_cast<T>(1);
    height = height > static_cast<T>(1) ? height : static_cast<T>(1);
  }
  g.bin_h = height / static_cast<T>(pooled_h);
  g.bin_w = width / static_cast<T>(pooled_w);
  g.grid_h = sampling_ratio > 0 ? sampling_ratio
                                : static_cast<int64_t>(ceil(height / static_cast<T>(pooled_h)));
  g.grid_w = sampling_ratio > 0 ? sampling_ratio
                                : static_cast<int64_t>(ceil(width / static_cast<T>(pooled_w)));
  const int64_t samples = g.grid_h * g.grid_w;
  g.count = static_cast<T>(samples > 1 ? samples : 1);
  return g;
}

// The samples a bin takes: none when a grid is empty or, with aligned=True, negative (a box
// inverted in both directions has grid_h * grid_w > 0 but no sample, as in torchvision).
template <typename T>
HOST_DEVICE_INLINE int64_t samples_per_bin(const Geometry<T>& g) {
  return (g.grid_h > 0 ? g.grid_h : 0) * (g.grid_w > 0 ? g.grid_w : 0);
}

template <typename T>
struct Sample {
  int64_t pos[4];
  T w[4];
};

// Sample (iy, ix) of bin (ph, pw): four neighbours and their weights in an H x W map whose
// rows are `row_stride` and columns `col_stride` elements apart (W and 1 for NCHW, W * C and
// C for channels-last); weights all zero when the point lies outside the map.
template <typename T>
HOST_DEVICE_INLINE Sample<T> sample(
    const Geometry<T>& g, int64_t ph, int64_t pw, int64_t iy, int64_t ix, int64_t height,
    int64_t width, int64_t row_stride, int64_t col_stride) {
  Sample<T> s;
  T y = g.start_h + static_cast<T>(ph) * g.bin_h +
        static_cast<T>(static_cast<float>(iy) + .5f) * g.bin_h / static_cast<T>(g.grid_h);
  T x = g.start_w + static_cast<T>(pw) * g.bin_w +
        static_cast<T>(static_cast<float>(ix) + .5f) * g.bin_w / static_cast<T>(g.grid_w);
  if (y < static_cast<T>(-1.0) || y > static_cast<T>(height) || x < static_cast<T>(-1.0) ||
      x > static_cast<T>(width)) {
    for (int i = 0; i < 4; ++i) {
      s.pos[i] = 0;
      s.w[i] = static_cast<T>(0);
    }
    return s;
  }
  if (y <= static_cast<T>(0)) {
    y = static_cast<T>(0);
  }
  if (x <= static_cast<T>(0)) {
    x = static_cast<T>(0);
  }
  int64_t y_low = static_cast<int64_t>(y);
  int64_t x_low = static_cast<int64_t>(x);
  int64_t y_high;
  int64_t x_high;
  if (y_low >= height - 1) {
    y_high = y_low = height - 1;
    y = static_cast<T>(y_low);
  } else {
    y_high = y_low + 1;
  }
  if (x_low >= width - 1) {
    x_high = x_low = width - 1;
    x = static_cast<T>(x_low);
  } else {
    x_high = x_low + 1;
  }
  const T ly = y - static_cast<T>(y_low);
  const T lx = x - static_cast<T>(x_low);
  const T hy = static_cast<T>(1) - ly;
  const T hx = static_cast<T>(1) - lx;
  s.pos[0] = y_low * row_stride + x_low * col_stride;
  s.pos[1] = y_low * row_stride + x_high * col_stride;
  s.pos[2] = y_high * row_stride + x_low * col_stride;
  s.pos[3] = y_high * row_stride + x_high * col_stride;
  s.w[0] = hy * hx;
  s.w[1] = hy * lx;
  s.w[2] = ly * hx;
  s.w[3] = ly * lx;
  return s;
}

// The average of a bin's samples over one channel plane.
template <typename T>
HOST_DEVICE_INLINE T average(const T* plane, const Sample<T>* samples, int64_t n, T count) {
  T sum = static_cast<T>(0);
  for (int64_t i = 0; i < n; ++i) {
    const Sample<T>& s = samples[i];
    sum += s.w[0] * plane[s.pos[0]] + s.w[1] * plane[s.pos[1]] + s.w[2] * plane[s.pos[2]] +
           s.w[3] * plane[s.pos[3]];
  }
  return sum / count;
}

// One output value: the average of the bin's samples of one channel plane.
template <typename T>
HOST_DEVICE_INLINE T pooled_value(
    const T* plane, const Geometry<T>& g, int64_t ph, int64_t pw, int64_t height,
    int64_t width, int64_t row_stride, int64_t col_stride) {
  T sum = static_cast<T>(0);
  for (int64_t iy = 0; iy < g.grid_h; ++iy) {
    for (int64_t ix = 0; ix < g.grid_w; ++ix) {
      const Sample<T> s = sample(g, ph, pw, iy, ix, height, width, row_stride, col_stride);
      sum += s.w[0] * plane[s.pos[0]] + s.w[1] * plane[s.pos[1]] + s.w[2] * plane[s.pos[2]] +
             s.w[3] * plane[s.pos[3]];
    }
  }
  return sum / g.count;
}

}  // namespace roi_align
}  // namespace cuda_ext
