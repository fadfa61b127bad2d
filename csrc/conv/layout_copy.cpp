#include "layout_copy.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>

#include "../common/output_memory.h"
#include "channels_last_staging.h"
#include "channel_block_transpose.h"

namespace convpool::cpu {
namespace {

// Blocks of this many rows and columns are the parallel tasks: 64 KiB of float32 each way.
constexpr int64_t kBlock = 128;

bool channels_last(const at::Tensor& t) { return t.is_contiguous(channels_last_format(t)); }

// dst[n][j][i] = src[n][i][j] for matrices [rows, cols] of `batch` samples.
template <typename T>
void transpose_samples(const T* src, T* dst, int64_t batch, int64_t rows, int64_t cols) {
  const int64_t row_blocks = (rows + kBlock - 1) / kBlock,
                col_blocks = (cols + kBlock - 1) / kBlock;
  const int64_t per_sample = row_blocks * col_blocks;
  at::parallel_for(0, batch * per_sample, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / per_sample, r0 = task % per_sample / col_blocks * kBlock;
      const int64_t c0 = task % col_blocks * kBlock;
      const int64_t nr = std::min(kBlock, rows - r0), nc = std::min(kBlock, cols - c0);
      const T* s = src + n * rows * cols + r0 * cols + c0;
      T* d = dst + n * rows * cols + c0 * rows + r0;
      transpose_matrix(s, cols, nr, nc, d, rows);
    }
  });
}

// Whether dst.copy_(src) is a transpose of each sample between NCHW and channels_last that
// transpose_samples does: dense 4-d or 5-d CPU tensors of one floating dtype, neither layout
// trivially the other (one channel or one pixel).
bool transposing_copy(const at::Tensor& dst, const at::Tensor& src) {
  if (dst.dim() < 4 || dst.dim() > 5 || dst.sizes() != src.sizes() || !dst.device().is_cpu() ||
      !src.device().is_cpu() || dst.scalar_type() != src.scalar_type() ||
      !at::isFloatingType(src.scalar_type()) || src.numel() == 0) {
    return false;
  }
  if (dst.is_contiguous() && src.is_contiguous()) return false;
  return (src.is_contiguous() && channels_last(dst)) || (channels_last(src) && dst.is_contiguous());
}

}  // namespace

void copy_layout(const at::Tensor& dst, const at::Tensor& src) {
  if (!transposing_copy(dst, src)) {
    dst.copy_(src);
    return;
  }
  const int64_t batch = src.size(0), channels = src.size(1);
  const int64_t pixels = src.numel() / (batch * channels);
  const bool to_channels_last = src.is_contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(), "copy_layout", [&] {
    transpose_samples(src.const_data_ptr<scalar_t>(), dst.data_ptr<scalar_t>(), batch,
                      to_channels_last ? channels : pixels, to_channels_last ? pixels : channels);
  });
}

at::Tensor contiguous_as(const at::Tensor& t, at::MemoryFormat format) {
  if (t.is_contiguous(format)) return t;
  auto out = empty_output(t.sizes(), t.options().memory_format(format));
  copy_layout(out, t);
  return out;
}

}  // namespace convpool::cpu
