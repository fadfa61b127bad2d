#pragma once
// Moving 16 NCHW planes into a [pixels, 16] channel block and back: the NCHW depthwise kernels
// compute on such blocks, so this transpose runs on every element they read and write.
#include <cstdint>

#include "blocked_transpose.h"

namespace convpool::cpu {

// dst[c * dst_stride + r] = src[r * src_stride + c] for r < rows, c < cols, in 16 x 16 tiles
// transposed in registers (NCHW <-> channels_last copies, layout_copy.h).
void transpose_matrix(const float* src, int64_t src_stride, int64_t rows, int64_t cols, float* dst,
                      int64_t dst_stride);

// The same for the other dtypes (double, half types), which have no register tiles: overload
// resolution picks the float function above wherever it applies.
template <typename T>
void transpose_matrix(const T* src, int64_t src_stride, int64_t rows, int64_t cols, T* dst,
                      int64_t dst_stride) {
  blocked_transpose(src, src_stride, int64_t{1}, rows, cols, dst, dst_stride, int64_t{1});
}

// block[p * 16 + c] = planes[c * plane_stride + p] for c < 16, p < pixels.
void planes_to_block16(const float* planes, int64_t plane_stride, int64_t pixels, float* block);
// planes[c * plane_stride + p] = block[p * 16 + c] for c < 16, p < pixels.
void block16_to_planes(const float* block, int64_t pixels, float* planes, int64_t plane_stride);

}  // namespace convpool::cpu
