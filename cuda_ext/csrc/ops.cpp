// Operator schemas of the cuda_ext library, defined once. Each kernel file registers its
// implementation for its dispatch key (CPU, CUDA), so callers use torch.ops.cuda_ext.<op>
// and the dispatcher picks the kernel; torch.compile and tracing see the schema.
#include <torch/library.h>

TORCH_LIBRARY(cuda_ext, m) {
  // masks: (N, 1, M, M) float; boxes: (N, 4) int64, the expanded integer boxes
  // (x1, y1, x2, y2), corners inclusive, as torchvision's paste_masks_in_image computes them.
  // Returns (N, 1, height, width) in the masks' dtype.
  m.def("paste_masks(Tensor masks, Tensor boxes, int height, int width, int padding) -> Tensor");
}
