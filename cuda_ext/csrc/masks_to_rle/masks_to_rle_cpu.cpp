// masks_to_rle, CPU kernels: transitions of every mask, then the COCO strings, masks shared
// among threads as common/parallel.h decides.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

#include "../common/parallel.h"
#include "masks_to_rle.h"

namespace cuda_ext {
namespace rle {
namespace {

void check_masks(const at::Tensor& masks) {
  TORCH_CHECK(masks.dim() == 3, "masks_to_rle: masks must be (N, H, W), got ", masks.sizes());
  TORCH_CHECK(masks.scalar_type() == at::kBool || masks.scalar_type() == at::kByte,
              "masks_to_rle: masks must be bool or uint8, got ", masks.scalar_type());
}

// Per-column transition counts of one mask, scanning rows (contiguous memory) and skipping
// rows equal to the one above, which hold no transition.
void count_columns(const uint8_t* mask, int64_t height, int64_t width, int64_t* counts) {
  std::fill(counts, counts + width, 0);
  for (int64_t y = 0; y < height; ++y) {
    const uint8_t* row = mask + y * width;
    if (y > 0 && std::memcmp(row, row - width, width) == 0) {
      continue;
    }
    for (int64_t x = 0; x < width; ++x) {
      counts[x] += is_transition(mask, height, width, x, y) ? 1 : 0;
    }
  }
}

std::tuple<at::Tensor, at::Tensor> rle_transitions_cpu(const at::Tensor& masks_in) {
  check_masks(masks_in);
  const at::Tensor masks = masks_in.contiguous().view(at::kByte);
  const int64_t n = masks.size(0);
  const int64_t height = masks.size(1);
  const int64_t width = masks.size(2);
  const auto long_opts = masks.options().dtype(at::kLong);
  if (n == 0 || height == 0 || width == 0) {
    return {at::empty({0}, long_opts), at::zeros({n + 1}, long_opts)};
  }
  const uint8_t* data = masks.data_ptr<uint8_t>();
  std::vector<int64_t> column_counts(n * width);
  const int64_t units_per_mask = parallel::units(height * width, parallel::kScannedPixel);
  parallel::parallel_for(0, n, units_per_mask, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      count_columns(data + k * height * width, height, width, column_counts.data() + k * width);
    }
  });
  at::Tensor offsets = at::empty({n + 1}, long_opts);
  int64_t* off = offsets.data_ptr<int64_t>();
  off[0] = 0;
  for (int64_t k = 0; k < n; ++k) {
    const int64_t* counts = column_counts.data() + k * width;
    off[k + 1] = off[k] + std::accumulate(counts, counts + width, int64_t{0});
  }
  at::Tensor positions = at::empty({off[n]}, long_opts);
  int64_t* pos = positions.data_ptr<int64_t>();
  parallel::parallel_for(0, n, units_per_mask, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> cursor(width);
    for (int64_t k = begin; k < end; ++k) {
      const uint8_t* mask = data + k * height * width;
      const int64_t* counts = column_counts.data() + k * width;
      // Column x writes from its exclusive prefix sum; rows ascend, so each column's
      // positions come out in order.
      int64_t next = off[k];
      for (int64_t x = 0; x < width; ++x) {
        cursor[x] = next;
        next += counts[x];
      }
      for (int64_t y = 0; y < height; ++y) {
        const uint8_t* row = mask + y * width;
        if (y > 0 && std::memcmp(row, row - width, width) == 0) {
          continue;
        }
        for (int64_t x = 0; x < width; ++x) {
          if (is_transition(mask, height, width, x, y)) {
            pos[cursor[x]++] = x * height + y;
          }
        }
      }
    }
  });
  return {positions, offsets};
}

std::tuple<at::Tensor, at::Tensor> rle_strings_cpu(
    const at::Tensor& positions_in, const at::Tensor& offsets_in, int64_t numel) {
  TORCH_CHECK(positions_in.device().is_cpu() && offsets_in.device().is_cpu(),
              "rle_strings: positions and offsets must be CPU tensors");
  TORCH_CHECK(positions_in.scalar_type() == at::kLong && offsets_in.scalar_type() == at::kLong,
              "rle_strings: positions and offsets must be int64");
  TORCH_CHECK(offsets_in.dim() == 1 && offsets_in.size(0) >= 1,
              "rle_strings: offsets must be (N + 1,)");
  const at::Tensor positions = positions_in.contiguous();
  const at::Tensor offsets = offsets_in.contiguous();
  const int64_t n = offsets.size(0) - 1;
  const int64_t* pos = positions.data_ptr<int64_t>();
  const int64_t* off = offsets.data_ptr<int64_t>();
  TORCH_CHECK(off[n] == positions.size(0), "rle_strings: offsets do not match positions");
  std::vector<std::string> strings(n);
  const int64_t units_per_mask =
      parallel::units(off[n] / std::max<int64_t>(n, 1) + 1, parallel::kRun);
  parallel::parallel_for(0, n, units_per_mask, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> counts;
    for (int64_t k = begin; k < end; ++k) {
      counts.clear();
      int64_t previous = 0;
      for (int64_t i = off[k]; i < off[k + 1]; ++i) {
        counts.push_back(pos[i] - previous);
        previous = pos[i];
      }
      counts.push_back(numel - previous);
      strings[k].reserve(counts.size() * 2);
      append_counts_string(counts.data(), static_cast<int64_t>(counts.size()), strings[k]);
    }
  });
  at::Tensor char_offsets = at::empty({n + 1}, offsets.options());
  int64_t* coff = char_offsets.data_ptr<int64_t>();
  coff[0] = 0;
  for (int64_t k = 0; k < n; ++k) {
    coff[k + 1] = coff[k] + static_cast<int64_t>(strings[k].size());
  }
  at::Tensor chars = at::empty({coff[n]}, offsets.options().dtype(at::kByte));
  uint8_t* out = chars.data_ptr<uint8_t>();
  // A copy of a few bytes per run: never worth a second thread.
  for (int64_t k = 0; k < n; ++k) {
    std::copy(strings[k].begin(), strings[k].end(), out + coff[k]);
  }
  return {chars, char_offsets};
}

}  // namespace

TORCH_LIBRARY_IMPL(cuda_ext, CPU, m) {
  m.impl("rle_transitions", &rle_transitions_cpu);
  m.impl("rle_strings", &rle_strings_cpu);
}

}  // namespace rle
}  // namespace cuda_ext
