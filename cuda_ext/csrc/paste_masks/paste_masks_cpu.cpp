// paste_masks, CPU kernel: rows of all masks, each row interpolating only inside its box and
// zeroing the rest (no separate fill), on one thread or several as common/parallel.h decides.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>

#include "checks.h"
#include "../common/parallel.h"
#include "paste_masks.h"

namespace cuda_ext {
namespace paste_masks {
namespace {

template <typename scalar_t, typename out_t, typename Store>
void paste_rows(
    const at::Tensor& masks, const at::Tensor& boxes, at::Tensor& out, int64_t height,
    int64_t width, int64_t padding, Store store) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t n = masks.size(0);
  const int64_t m = masks.size(2);
  const scalar_t* mask_data = masks.data_ptr<scalar_t>();
  const int64_t* box_data = boxes.data_ptr<int64_t>();
  out_t* out_data = out.data_ptr<out_t>();
  // Work: every output byte zeroed or written, plus the interpolation of in-box pixels.
  int64_t pasted = 0;
  for (int64_t k = 0; k < n; ++k) {
    const int64_t* box = box_data + 4 * k;
    const int64_t rows = std::min<int64_t>(box[3], height - 1) - std::max<int64_t>(box[1], 0) + 1;
    const int64_t cols = std::min<int64_t>(box[2], width - 1) - std::max<int64_t>(box[0], 0) + 1;
    pasted += std::max<int64_t>(rows, 0) * std::max<int64_t>(cols, 0);
  }
  const int64_t units =
      parallel::units(pasted, parallel::kPastedPixel) +
      parallel::units(n * height * width * static_cast<int64_t>(sizeof(out_t)),
                      parallel::kZeroedByte);
  parallel::parallel_for(0, n * height, units / (n * height), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t k = row / height;
      const int64_t y = row % height;
      const int64_t* box = box_data + 4 * k;
      out_t* out_row = out_data + row * width;
      if (y < box[1] || y > box[3]) {
        std::fill_n(out_row, width, out_t(0));
        continue;
      }
      const int64_t x_begin = std::clamp<int64_t>(box[0], 0, width);
      const int64_t x_end = std::clamp<int64_t>(box[2] + 1, x_begin, width);
      const scalar_t* mask = mask_data + k * m * m;
      std::fill(out_row, out_row + x_begin, out_t(0));
      for (int64_t x = x_begin; x < x_end; ++x) {
        out_row[x] = store(pixel<scalar_t, acc_t>(mask, m, padding, box, y, x));
      }
      std::fill(out_row + x_end, out_row + width, out_t(0));
    }
  });
}

at::Tensor paste_masks_cpu(
    const at::Tensor& masks_in, const at::Tensor& boxes_in, int64_t height, int64_t width,
    int64_t padding, std::optional<double> threshold) {
  check_inputs(masks_in, boxes_in, height, width, padding);
  TORCH_CHECK(masks_in.device().is_cpu(), "paste_masks_cpu: masks must be a CPU tensor");
  const int64_t n = masks_in.size(0);
  const auto out_opts = threshold ? masks_in.options().dtype(at::kBool) : masks_in.options();
  // Every pixel is written by paste_rows: no zero fill (a separate, always-parallel pass).
  at::Tensor out = at::empty({n, 1, height, width}, out_opts);
  if (n == 0 || height == 0 || width == 0) {
    return out;
  }
  const at::Tensor masks = masks_in.contiguous();
  const at::Tensor boxes = boxes_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, masks.scalar_type(), "paste_masks_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        if (threshold) {
          const acc_t cut = static_cast<acc_t>(*threshold);
          paste_rows<scalar_t, bool>(
              masks, boxes, out, height, width, padding, [cut](acc_t v) { return v > cut; });
        } else {
          paste_rows<scalar_t, scalar_t>(
              masks, boxes, out, height, width, padding,
              [](acc_t v) { return static_cast<scalar_t>(v); });
        }
      });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(cuda_ext, CPU, m) {
  m.impl("paste_masks", &paste_masks_cpu);
}

}  // namespace paste_masks
}  // namespace cuda_ext
