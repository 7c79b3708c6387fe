// assemble_masks, CPU kernel: prototypes made pixel-major once, then each instance's rows
// computed only inside its box.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>

#include "assemble_masks.h"
#include "checks.h"

namespace cuda_ext {
namespace assemble_masks {
namespace {

at::Tensor assemble_masks_cpu(
    const at::Tensor& protos_in, const at::Tensor& coeffs_in, const at::Tensor& boxes_in,
    const at::Tensor& batch_index_in) {
  check_inputs(protos_in, coeffs_in, boxes_in, batch_index_in);
  const int64_t b = protos_in.size(0);
  const int64_t k = protos_in.size(1);
  const int64_t height = protos_in.size(2);
  const int64_t width = protos_in.size(3);
  const int64_t n = coeffs_in.size(0);
  at::Tensor out = at::zeros({n, height, width}, protos_in.options());
  if (n == 0 || height == 0 || width == 0) {
    return out;
  }
  // (B, H, W, K): the K prototype values of a pixel are contiguous.
  const at::Tensor protos = protos_in.permute({0, 2, 3, 1}).contiguous();
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
        at::parallel_for(0, n * height, 8, [&](int64_t begin, int64_t end) {
          for (int64_t row = begin; row < end; ++row) {
            const int64_t i = row / height;
            const int64_t y = row % height;
            const scalar_t* box = box_data + 4 * i;
            const scalar_t* coeff = coeff_data + i * k;
            const scalar_t* image = proto_data + bidx[i] * height * width * k;
            scalar_t* out_row = out_data + row * width;
            for (int64_t x = 0; x < width; ++x) {
              if (inside(box, y, x)) {
                const acc_t v =
                    dot<scalar_t, acc_t>(coeff, image + (y * width + x) * k, k, 1);
                out_row[x] = static_cast<scalar_t>(sigmoid(v));
              }
            }
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
