#pragma once
// A strided 2-d transpose in 16x16 blocks: dst(j, i) = src(i, j). Weight layouts are permuted on
// every call (GEMM panels, Winograd's per-tap rows), and element by element one side is always
// scattered: 512 x 512 x 9 weights took 13 ms through a plain permuted copy. In blocks, both the
// lines read and the lines written stay in L1.
#include <algorithm>
#include <cstdint>

namespace convpool {

// dst[j * dst_j + i * dst_i] = src[i * src_i + j * src_j] for i < rows, j < cols.
template <typename T>
void blocked_transpose(const T* src, int64_t src_i, int64_t src_j, int64_t rows, int64_t cols,
                       T* dst, int64_t dst_j, int64_t dst_i) {
  constexpr int64_t kBlock = 16;
  for (int64_t i0 = 0; i0 < rows; i0 += kBlock) {
    const int64_t i1 = std::min(rows, i0 + kBlock);
    for (int64_t j0 = 0; j0 < cols; j0 += kBlock) {
      const int64_t j1 = std::min(cols, j0 + kBlock);
      for (int64_t j = j0; j < j1; ++j) {
        for (int64_t i = i0; i < i1; ++i) dst[j * dst_j + i * dst_i] = src[i * src_i + j * src_j];
      }
    }
  }
}

}  // namespace convpool
