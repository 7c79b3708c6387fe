// preprocess_frames, CPU kernel: output rows, taps computed once per row/column, on one thread
// or several as common/parallel.h decides.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <vector>

#include "../common/parallel.h"
#include "checks.h"
#include "preprocess_frames.h"

namespace cuda_ext {
namespace preprocess {
namespace {

at::Tensor preprocess_frames_cpu(
    const at::Tensor& frames_in, int64_t out_h, int64_t out_w, std::vector<double> mean,
    std::vector<double> std) {
  check_inputs(frames_in, out_h, out_w, mean, std);
  const at::Tensor frames = frames_in.contiguous();
  const int64_t b = frames.size(0);
  const int64_t height = frames.size(1);
  const int64_t width = frames.size(2);
  at::Tensor out = at::empty({b, 3, out_h, out_w}, frames.options().dtype(at::kFloat));
  if (b == 0) {
    return out;
  }
  std::vector<Tap<float>> x_taps(out_w);
  for (int64_t x = 0; x < out_w; ++x) {
    x_taps[x] = source_tap<float>(x, width, out_w);
  }
  const float means[3] = {static_cast<float>(mean[0]), static_cast<float>(mean[1]),
                          static_cast<float>(mean[2])};
  const float stds[3] = {static_cast<float>(std[0]), static_cast<float>(std[1]),
                         static_cast<float>(std[2])};
  const uint8_t* in = frames.data_ptr<uint8_t>();
  float* dst = out.data_ptr<float>();
  const int64_t units_per_row = parallel::units(3 * out_w, parallel::kResampledValue);
  parallel::parallel_for(0, b * out_h, units_per_row, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t i = row / out_h;
      const int64_t y = row % out_h;
      const Tap<float> ty = source_tap<float>(y, height, out_h);
      const uint8_t* frame = in + i * height * width * 3;
      for (int64_t c = 0; c < 3; ++c) {
        float* out_row = dst + ((i * 3 + c) * out_h + y) * out_w;
        for (int64_t x = 0; x < out_w; ++x) {
          out_row[x] = normalise(sample(frame, height, width, c, ty, x_taps[x]), means[c],
                                 stds[c]);
        }
      }
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(cuda_ext, CPU, m) {
  m.impl("preprocess_frames", &preprocess_frames_cpu);
}

}  // namespace preprocess
}  // namespace cuda_ext
