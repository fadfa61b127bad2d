#pragma once
// Copies of short runs (a few to a few dozen elements), as the channels_last gathers make them:
// the ResNet stem's tap row is 7 taps x 3 channels, a 16-channel 3x3 conv's 48 values. std::copy
// calls memmove for each (about 10 ns of call and size dispatch, more than the copy itself: the
// stem's channels_last gather took longer than its GEMM); fixed-size chunks compile to vector
// moves in place.
#include <cstdint>
#include <cstring>

namespace convpool {

template <typename T>
[[gnu::always_inline]] inline void copy_short(const T* __restrict__ from, int64_t n,
                                              T* __restrict__ to) {
  constexpr int64_t kChunk = 32 / sizeof(T);  // one 32-byte vector
  if (n > 8 * kChunk) {
    std::memcpy(to, from, n * sizeof(T));
    return;
  }
  int64_t i = 0;
  for (; i + kChunk <= n; i += kChunk) __builtin_memcpy(to + i, from + i, 32);
  if (i == n) return;
  if (n >= kChunk) {  // the rest as one chunk that overlaps the last one written
    __builtin_memcpy(to + n - kChunk, from + n - kChunk, 32);
    return;
  }
#pragma GCC unroll 8
  for (int64_t step = kChunk / 2; step >= 1; step /= 2) {
    if (n - i >= step) {
      __builtin_memcpy(to + i, from + i, step * sizeof(T));
      i += step;
    }
  }
}

}  // namespace convpool
