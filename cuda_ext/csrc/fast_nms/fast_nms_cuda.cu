// fast_nms_keep, CUDA kernel: one thread per candidate of every class, in one launch.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "checks.h"
#include "fast_nms.h"
#include "../common/launch.cuh"

namespace cuda_ext {
namespace fast_nms {
namespace {

// Grid: (ceil(k / kThreads), classes). Each block handles kThreads candidates of one class.
template <typename scalar_t>
__global__ void fast_nms_keep_kernel(
    const scalar_t* __restrict__ boxes, const scalar_t* __restrict__ scores, int64_t k,
    double iou_threshold, double conf_threshold, bool* __restrict__ out) {
  const int64_t c = blockIdx.y;
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (j >= k) {
    return;
  }
  const scalar_t* class_boxes = boxes + c * k * 4;
  out[c * k + j] = keep<scalar_t>(class_boxes, j, scores[c * k + j], iou_threshold,
                                  conf_threshold);
}

at::Tensor fast_nms_keep_cuda(
    const at::Tensor& boxes_in, const at::Tensor& scores_in, double iou_threshold,
    double conf_threshold) {
  check_inputs(boxes_in, scores_in);
  TORCH_CHECK(boxes_in.is_cuda(), "fast_nms_keep_cuda: boxes must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(boxes_in.device());
  const at::Tensor boxes = boxes_in.contiguous();
  const at::Tensor scores = scores_in.contiguous();
  const int64_t classes = boxes.size(0);
  const int64_t k = boxes.size(1);
  at::Tensor keep_out = at::empty({classes, k}, boxes.options().dtype(at::kBool));
  if (classes * k == 0) {
    return keep_out;
  }
  TORCH_CHECK(classes <= 65535, "fast_nms_keep_cuda: at most 65535 classes");
  const dim3 grid(static_cast<unsigned>((k + kThreads - 1) / kThreads),
                  static_cast<unsigned>(classes));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, boxes.scalar_type(), "fast_nms_keep_cuda", [&] {
        fast_nms_keep_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
            boxes.data_ptr<scalar_t>(), scores.data_ptr<scalar_t>(), k, iou_threshold,
            conf_threshold, keep_out.data_ptr<bool>());
      });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return keep_out;
}

}  // namespace

TORCH_LIBRARY_IMPL(cuda_ext, CUDA, m) {
  m.impl("fast_nms_keep", &fast_nms_keep_cuda);
}

}  // namespace fast_nms
}  // namespace cuda_ext
