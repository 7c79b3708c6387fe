// fast_nms_keep, CPU kernel: every candidate of every class, on one thread or several as
// common/parallel.h decides.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "../common/parallel.h"
#include "checks.h"
#include "fast_nms.h"

namespace cuda_ext {
namespace fast_nms {
namespace {

at::Tensor fast_nms_keep_cpu(
    const at::Tensor& boxes_in, const at::Tensor& scores_in, double iou_threshold,
    double conf_threshold) {
  check_inputs(boxes_in, scores_in);
  const at::Tensor boxes = boxes_in.contiguous();
  const at::Tensor scores = scores_in.contiguous();
  const int64_t classes = boxes.size(0);
  const int64_t k = boxes.size(1);
  at::Tensor keep_out = at::empty({classes, k}, boxes.options().dtype(at::kBool));
  if (classes * k == 0) {
    return keep_out;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, boxes.scalar_type(), "fast_nms_keep_cpu", [&] {
        const scalar_t* box_data = boxes.data_ptr<scalar_t>();
        const scalar_t* score_data = scores.data_ptr<scalar_t>();
        bool* out = keep_out.data_ptr<bool>();
        // Candidate j compares with the j before it: k / 2 IoUs on average, fewer when it is
        // dropped early.
        const int64_t units_per_candidate = parallel::units(k / 2 + 1, parallel::kIou);
        const auto body = [&](int64_t begin, int64_t end) {
          for (int64_t index = begin; index < end; ++index) {
            const int64_t c = index / k;
            const int64_t j = index % k;
            out[index] = keep<scalar_t>(
                box_data + c * k * 4, j, score_data[index], iou_threshold, conf_threshold);
          }
        };
        parallel::parallel_for(0, classes * k, units_per_candidate, body);
      });
  return keep_out;
}

}  // namespace

TORCH_LIBRARY_IMPL(cuda_ext, CPU, m) {
  m.impl("fast_nms_keep", &fast_nms_keep_cpu);
}

}  // namespace fast_nms
}  // namespace cuda_ext
