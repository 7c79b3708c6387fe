// assemble_masks, CPU kernel: each instance's rows computed only inside its box, a row at a
// time (for each prototype, a multiply-add over the row's contiguous in-box pixels), on one
// thread or several as common/parallel.h decides.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <utility>
#include <vector>

#include "../common/parallel.h"
#include "assemble_masks.h"
#include "checks.h"

namespace cuda_ext {
namespace assemble_masks {
namespace {

// The first index i in [0, size] for which `pred(i)` holds, for a predicate that is false
// then true as i grows (size when it never holds).
template <typename Pred>
int64_t first_true(int64_t size, Pred pred) {
  int64_t lo = 0;
  int64_t hi = size;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (pred(mid)) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

// [begin, end) of the pixels (along one axis of `size`) that `inside` takes: lo <= v < hi,
// compared in scalar_t as `inside` compares them.
template <typename scalar_t>
std::pair<int64_t, int64_t> span(scalar_t lo, scalar_t hi, int64_t size) {
  const int64_t begin = first_true(size, [&](int64_t i) { return static_cast<scalar_t>(i) >= lo; });
  const int64_t end = first_true(size, [&](int64_t i) { return !(static_cast<scalar_t>(i) < hi); });
  return {begin, std::max(begin, end)};
}

at::Tensor assemble_masks_cpu(
    const at::Tensor& protos_in, const at::Tensor& coeffs_in, const at::Tensor& boxes_in,
    const at::Tensor& batch_index_in) {
  check_inputs(protos_in, coeffs_in, boxes_in, batch_index_in);
  const int64_t b = protos_in.size(0);
  const int64_t k = protos_in.size(1);
  const int64_t height = protos_in.size(2);
  const int64_t width = protos_in.size(3);
  const int64_t n = coeffs_in.size(0);
  // Every pixel is written below (zeros outside the box): no separate zero fill.
  at::Tensor out = at::empty({n, height, width}, protos_in.options());
  if (n == 0 || height == 0 || width == 0) {
    return out;
  }
  // (B, K, H, W): each prototype's rows are contiguous, read along the row.
  const at::Tensor protos = protos_in.contiguous();
  const at::Tensor coeffs = coeffs_in.contiguous();
  const at::Tensor boxes = boxes_in.contiguous();
  const at::Tensor batch_index = batch_index_in.contiguous();
  const int64_t* bidx = batch_index.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(bidx[i] >= 0 && bidx[i] < b, "assemble_masks: batch_index[", i, "] = ",
                bidx[i], " is outside [0, ", b, ")");
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, protos.scalar_type(), "assemble_masks_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const scalar_t* proto_data = protos.data_ptr<scalar_t>();
        const scalar_t* coeff_data = coeffs.data_ptr<scalar_t>();
        const scalar_t* box_data = boxes.data_ptr<scalar_t>();
        scalar_t* out_data = out.data_ptr<scalar_t>();
        // Each box's in-box rows and columns, found once (`inside` is a product of spans).
        std::vector<int64_t> spans(4 * n);
        int64_t terms = 0;
        for (int64_t i = 0; i < n; ++i) {
          const scalar_t* box = box_data + 4 * i;
          std::tie(spans[4 * i], spans[4 * i + 1]) = span(box[0], box[2], width);
          std::tie(spans[4 * i + 2], spans[4 * i + 3]) = span(box[1], box[3], height);
          terms += (spans[4 * i + 1] - spans[4 * i]) * (spans[4 * i + 3] - spans[4 * i + 2]) * k;
        }
        const int64_t units =
            parallel::units(terms, parallel::kAssembledTerm) +
            parallel::units(n * height * width * static_cast<int64_t>(sizeof(scalar_t)),
                            parallel::kZeroedByte);
        const int64_t plane = height * width;
        const int64_t units_per_row = units / (n * height);
        parallel::parallel_for(0, n * height, units_per_row, [&](int64_t begin, int64_t end) {
          std::vector<acc_t> sums(width);
          for (int64_t row = begin; row < end; ++row) {
            const int64_t i = row / height;
            const int64_t y = row % height;
            const int64_t* s = spans.data() + 4 * i;
            scalar_t* out_row = out_data + row * width;
            const int64_t x0 = s[0];
            const int64_t x1 = s[1];
            if (y < s[2] || y >= s[3] || x0 == x1) {
              std::fill_n(out_row, width, static_cast<scalar_t>(0));
              continue;
            }
            const scalar_t* coeff = coeff_data + i * k;
            const scalar_t* image = proto_data + bidx[i] * k * plane + y * width;
            std::fill(sums.begin() + x0, sums.begin() + x1, static_cast<acc_t>(0));
            // The same sum, in the same order, as dot(): prototype 0 first.
            for (int64_t p = 0; p < k; ++p) {
              const acc_t c = static_cast<acc_t>(coeff[p]);
              const scalar_t* proto_row = image + p * plane;
              for (int64_t x = x0; x < x1; ++x) {
                sums[x] += c * static_cast<acc_t>(proto_row[x]);
              }
            }
            std::fill(out_row, out_row + x0, static_cast<scalar_t>(0));
            for (int64_t x = x0; x < x1; ++x) {
              out_row[x] = static_cast<scalar_t>(sigmoid(sums[x]));
            }
            std::fill(out_row + x1, out_row + width, static_cast<scalar_t>(0));
          }
        });
      });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(cuda_ext, CPU, m) {
  m.impl("assemble_masks", &assemble_masks_cpu);
}

}  // namespace assemble_masks
}  // namespace cuda_ext
