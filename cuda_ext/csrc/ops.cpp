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
  m.def(
      "rle_strings(Tensor positions, Tensor offsets, int numel) -> "
      "(Tensor chars, Tensor char_offsets)");
  // boxes: (C, k, 4) each class's top-k candidates sorted by descending score (C, k).
  // Returns keep (C, k) bool: YOLACT's Fast NMS decision and the score threshold.
  m.def(
      "fast_nms_keep(Tensor boxes, Tensor scores, float iou_threshold, float conf_threshold) "
      "-> Tensor");
  // protos (B, K, H, W), coeffs (N, K), boxes (N, 4) xyxy in proto pixels, batch_index (N,)
  // int64. Returns (N, H, W): sigmoid(coeffs @ protos) inside each box, 0 outside.
  m.def(
      "assemble_masks(Tensor protos, Tensor coeffs, Tensor boxes, Tensor batch_index) "
      "-> Tensor");
  // frames (B, H, W, 3) uint8 -> (B, 3, out_h, out_w) float32, bilinear (align_corners=False)
  // then (value - mean[c]) / std[c].
  m.def(
      "preprocess_frames(Tensor frames, int out_h, int out_w, float[] mean, float[] std) "
      "-> Tensor");
  // features: L levels (B, C, H_l, W_l); rois (N, 5) (batch index, x1, y1, x2, y2) in image
  // pixels; levels (N,) int64, the level of each RoI (outside [0, L): a zero row); scales: L
  // floats. Returns (N, C, pooled_h, pooled_w): torchvision's roi_align of each RoI on its
  // level, all levels in one pass.
  m.def(
      "multiscale_roi_align(Tensor[] features, Tensor rois, Tensor levels, float[] scales, "
      "int pooled_h, int pooled_w, int sampling_ratio, bool aligned) -> Tensor");
  m.def(
      "multiscale_roi_align_backward(Tensor grad, Tensor rois, Tensor levels, float[] scales, "
      "int[] heights, int[] widths, int batch, int channels, int sampling_ratio, bool aligned) "
      "-> Tensor[]");
  // features: L levels (B, C, H_l, W_l); rois (N, 5) (batch index, x1, y1, x2, y2) in image
  // pixels; scales: L floats. Returns (L, N, C, pooled_h, pooled_w): slice l is
  // torchvision's roi_align of every RoI on level l (PANet's adaptive feature pooling).
  m.def(
      "all_levels_roi_align(Tensor[] features, Tensor rois, float[] scales, int pooled_h, "
      "int pooled_w, int sampling_ratio, bool aligned) -> Tensor");
  // grad (L, N, C, pooled_h, pooled_w) -> the L gradients (batch, channels, H_l, W_l).
  m.def(
      "all_levels_roi_align_backward(Tensor grad, Tensor rois, float[] scales, int[] heights, "
      "int[] widths, int batch, int channels, int sampling_ratio, bool aligned) -> Tensor[]");
}
