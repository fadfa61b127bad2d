#pragma once
// A strided 2-d transpose in 16x16 blocks: dst(j, i) = src(i, j). Weight layouts are permuted on
// every call (GEMM panels, Winograd's per-tap rows), and element by element one side is always
// scattered: 512 x 512 x 9 weights took 13 ms through a plain permuted copy. In blocks, both the
// lines read and the lines written stay in L1.
#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace convpool {

namespace cpu {
// channel_block_transpose.h: float matrices with unit strides on both sides, in 16 x 16 register
// tiles where the CPU has AVX-512 or AVX2.
void transpose_matrix(const float* src, int64_t src_stride, int64_t rows, int64_t cols, float* dst,
                      int64_t dst_stride);
// The same for 16-bit values (bfloat16, float16), in AVX2 registers.
void transpose_matrix_16bit(const uint16_t* src, int64_t src_stride, int64_t rows, int64_t cols,
                            uint16_t* dst, int64_t dst_stride);
}  // namespace cpu

// dst[j * dst_j + i * dst_i] = src[i * src_i + j * src_j] for i < rows, j < cols. Each block goes
// through a local tile, so the side with unit stride is read or written as a contiguous run.
template <typename T>
void blocked_transpose(const T* __restrict__ src, int64_t src_i, int64_t src_j, int64_t rows,
                       int64_t cols, T* __restrict__ dst, int64_t dst_j, int64_t dst_i) {
  if constexpr (std::is_same_v<T, float>) {
    // Through registers: element by element, a Winograd weight gradient's write-back took 17 %
    // of it (C512 -> 512 7x7 channels_last on a Xeon: 10.0-11.4 -> 6.5-7.7 ms with the tiles).
    if (src_j == 1 && dst_i == 1) return cpu::transpose_matrix(src, src_i, rows, cols, dst, dst_j);
  }
  if constexpr (sizeof(T) == 2 && std::is_trivially_copyable_v<T>) {
    // bfloat16 planes <-> channels_last (an AMX weight gradient's planes of a channels_last
    // input: 3x3 C64 56x56 N8, 0.46 ms element by element).
    const auto* s16 = reinterpret_cast<const uint16_t*>(src);
    auto* d16 = reinterpret_cast<uint16_t*>(dst);
    if (src_j == 1 && dst_i == 1) {
      return cpu::transpose_matrix_16bit(s16, src_i, rows, cols, d16, dst_j);
    }
    if (src_i == 1 && dst_j == 1) {
      return cpu::transpose_matrix_16bit(s16, src_j, cols, rows, d16, dst_i);
    }
  }
  constexpr int64_t kBlock = 16;
  T tile[kBlock][kBlock];
  for (int64_t i0 = 0; i0 < rows; i0 += kBlock) {
    const int64_t ni = std::min(kBlock, rows - i0);
    for (int64_t j0 = 0; j0 < cols; j0 += kBlock) {
      const int64_t nj = std::min(kBlock, cols - j0);
      for (int64_t i = 0; i < ni; ++i) {
        const T* s = src + (i0 + i) * src_i + j0 * src_j;
        for (int64_t j = 0; j < nj; ++j) tile[j][i] = s[j * src_j];
      }
      for (int64_t j = 0; j < nj; ++j) {
        T* d = dst + (j0 + j) * dst_j + i0 * dst_i;
        for (int64_t i = 0; i < ni; ++i) d[i * dst_i] = tile[j][i];
      }
    }
  }
}

}  // namespace convpool
