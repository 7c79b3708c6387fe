// fast_nms: YOLACT's Fast NMS decision for one candidate, shared by CPU and CUDA.
//
// Candidates of a class are sorted by descending score. Candidate j is dropped when its IoU
// with any higher-scored candidate i < j exceeds the threshold, which is what YOLACT gets
// from `iou.triu_(1).max(dim=1) <= threshold` on the full IoU matrix, without building it.
// An IoU of NaN (two empty boxes) drops the candidate, as torch's max propagates NaN.
#pragma once

#include <cstdint>

#include "../macros.h"

namespace cuda_ext {
namespace fast_nms {

// IoU of two xyxy boxes with YOLACT's jaccard arithmetic (no +1, intersection clamped at 0).
template <typename T>
HOST_DEVICE_INLINE T iou(const T* a, const T* b) {
  const T zero = static_cast<T>(0);
  T w = (a[2] < b[2] ? a[2] : b[2]) - (a[0] > b[0] ? a[0] : b[0]);
  T h = (a[3] < b[3] ? a[3] : b[3]) - (a[1] > b[1] ? a[1] : b[1]);
  w = w > zero ? w : zero;
  h = h > zero ? h : zero;
  const T inter = w * h;
  const T area_a = (a[2] - a[0]) * (a[3] - a[1]);
  const T area_b = (b[2] - b[0]) * (b[3] - b[1]);
  const T uni = area_a + area_b - inter;
  return inter / uni;
}

// Keep decision of candidate j among `boxes` (k x 4, sorted by score) of one class. The
// thresholds are compared in T, as torch compares a tensor with a Python number.
template <typename T>
HOST_DEVICE_INLINE bool keep(
    const T* boxes, int64_t j, T score, double iou_threshold, double conf_threshold) {
  const T iou_cut = static_cast<T>(iou_threshold);
  if (!(score > static_cast<T>(conf_threshold))) {
    return false;
  }
  for (int64_t i = 0; i < j; ++i) {
    const T v = iou(boxes + 4 * i, boxes + 4 * j);
    if (v != v || v > iou_cut) {  // NaN, or overlapping a better box
      return false;
    }
  }
  return true;
}

}  // namespace fast_nms
}  // namespace cuda_ext
