// Operator schemas of the cuda_ext library, defined once. Each kernel file registers its
// implementation for its dispatch key (CPU, CUDA), so callers use torch.ops.cuda_ext.<op>
// and the dispatcher picks the kernel; torch.compile and tracing see the schema.
#include <torch/library.h>

TORCH_LIBRARY(cuda_ext, m) {
  // masks: (N, 1, M, M) float; boxes: (N, 4) int64, the expanded integer boxes
  // (x1, y1, x2, y2), corners inclusive, as torchvision's paste_masks_in_image computes them.
  // Returns (N, 1, height, width) in the masks' dtype, or bool (value > threshold) when a
  // threshold is given, which fuses the binarisation and writes a quarter of the bytes.
  m.def(
      "paste_masks(Tensor masks, Tensor boxes, int height, int width, int padding, "
      "float? threshold=None) -> Tensor");
  // masks: (N, H, W) bool or uint8. positions: (T,) int64, the column-major indices where a
  // COCO run starts; offsets: (N + 1,) int64, mask k owning positions[offsets[k]:offsets[k+1]].
  m.def("rle_transitions(Tensor masks) -> (Tensor positions, Tensor offsets)");
  // CPU only: the COCO compressed strings of masks of numel = H * W pixels, concatenated in
  // chars (uint8), mask k owning chars[char_offsets[k]:char_offsets[k+1]].
  m.def("rle_strings(Tensor positions, Tensor offsets, int numel) -> (Tensor chars, Tensor char_offsets)");
}
