// paste_masks, CPU kernel: rows of all masks, each row interpolating only inside its box and
// zeroing the rest (no separate fill), on one thread or several as common/parallel.h decides.
// Bilinear resizing is separable: the column taps and the mask's rows resized along x are
// computed once per mask, so an output pixel costs two loads and two multiply-adds, with the
// same float operations, in the same order, as pixel() in paste_masks.h (same bits).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <vector>

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
  const int64_t mp = m + 2 * padding;
  parallel::parallel_for(0, n * height, units / (n * height), [&](int64_t begin, int64_t end) {
    // Per mask (of the rows this call covers): the column taps, and the padded mask's rows
    // resized along x (`across`), each computed once, on first use. An output pixel is then
    // ty.w0 * across[ty.i0][x] + ty.w1 * across[ty.i1][x]: the expression of pixel() in
    // paste_masks.h, term for term, so the results are the same bits.
    std::vector<int64_t> col_i0;
    std::vector<int64_t> col_i1;
    std::vector<acc_t> col_w0;
    std::vector<acc_t> col_w1;
    std::vector<acc_t> across;
    std::vector<char> have_row(static_cast<size_t>(mp));
    std::vector<acc_t> padded_row(static_cast<size_t>(mp));
    int64_t current = -1;
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
      const int64_t cols = x_end - x_begin;
      const scalar_t* mask = mask_data + k * m * m;
      if (k != current) {
        current = k;
        col_i0.resize(cols);
        col_i1.resize(cols);
        col_w0.resize(cols);
        col_w1.resize(cols);
        for (int64_t x = x_begin; x < x_end; ++x) {
          const Tap<acc_t> tx = source_tap<acc_t>(x - box[0], mp, box[2] - box[0] + 1);
          col_i0[x - x_begin] = tx.i0;
          col_i1[x - x_begin] = tx.i1;
          col_w0[x - x_begin] = tx.w0;
          col_w1[x - x_begin] = tx.w1;
        }
        if (static_cast<int64_t>(across.size()) < mp * cols) {
          across.resize(mp * cols);
        }
        std::fill(have_row.begin(), have_row.end(), char(0));
      }
      const Tap<acc_t> ty = source_tap<acc_t>(y - box[1], mp, box[3] - box[1] + 1);
      for (const int64_t i : {ty.i0, ty.i1}) {
        if (have_row[i]) {
          continue;
        }
        have_row[i] = 1;
        for (int64_t j = 0; j < mp; ++j) {
          padded_row[j] = padded_value<scalar_t, acc_t>(mask, m, padding, i, j);
        }
        acc_t* dst = across.data() + i * cols;
        for (int64_t c = 0; c < cols; ++c) {
          dst[c] = col_w0[c] * padded_row[col_i0[c]] + col_w1[c] * padded_row[col_i1[c]];
        }
      }
      const acc_t* top = across.data() + ty.i0 * cols;
      const acc_t* bottom = across.data() + ty.i1 * cols;
      const acc_t w0 = ty.w0;
      const acc_t w1 = ty.w1;
      std::fill(out_row, out_row + x_begin, out_t(0));
      out_t* dst = out_row + x_begin;
      for (int64_t c = 0; c < cols; ++c) {
        dst[c] = store(w0 * top[c] + w1 * bottom[c]);
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
