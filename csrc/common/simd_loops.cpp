#include "simd_loops.h"

#include "isa_clones.h"

namespace convpool::simd {
namespace {

template <typename T>
inline void multiply_accumulate_impl(T* __restrict__ acc, const T* __restrict__ w,
                                     const T* __restrict__ x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += w[i] * x[i];
}

template <typename T>
inline void scale_accumulate_impl(T* __restrict__ acc, T w, const T* __restrict__ x, int64_t stride,
                                  int64_t n) {
  if (stride == 1) {
    for (int64_t i = 0; i < n; ++i) acc[i] += w * x[i];
  } else {
    for (int64_t i = 0; i < n; ++i) acc[i] += w * x[i * stride];
  }
}

// Forced inline: each ISA clone must compile these bodies for its own vector width.
#define CONVPOOL_INLINE inline __attribute__((always_inline))

// The baseline clone passes wide vectors differently from the AVX-512 one; these helpers are
// always inlined, so no such value crosses a call.
#pragma GCC diagnostic ignored "-Wpsabi"

// Vectors of B bytes: one AVX-512 register (B = 64) or one AVX2 register (B = 32), the clone
// picking B by the CPU it runs on (see wide_vector_registers()).
template <typename T, int B>
struct Vec {
  typedef T type __attribute__((vector_size(B)));
};

template <int B, typename T>
CONVPOOL_INLINE typename Vec<T, B>::type load(const T* p) {
  typename Vec<T, B>::type v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

// One block of kVectors * (B / sizeof(T)) channels starting at c0, over the whole line.

template <typename T, int B, int kVectors>
CONVPOOL_INLINE void depthwise_block(T* __restrict__ out, const T* const* pixels,
                                     const T* __restrict__ weights, int64_t count, int64_t taps,
                                     int64_t channels, int64_t c0) {
  using V = typename Vec<T, B>::type;
  constexpr int64_t kLanes = B / sizeof(T);
  constexpr int64_t kMaxTaps = 9;  // kernels up to 3x3 keep every weight in registers
  V w[kMaxTaps][kVectors];
  const bool held = taps <= kMaxTaps;
  if (held) {
    for (int64_t t = 0; t < taps; ++t) {
      for (int v = 0; v < kVectors; ++v) {
        w[t][v] = load<B>(weights + t * channels + c0 + v * kLanes);
      }
    }
  }
  for (int64_t p = 0; p < count; ++p) {
    V acc[kVectors] = {};
    const T* const* px = pixels + p * taps;
    for (int64_t t = 0; t < taps; ++t) {
      if (px[t] == nullptr) continue;
      for (int v = 0; v < kVectors; ++v) {
        const V wt = held ? w[t][v] : load<B>(weights + t * channels + c0 + v * kLanes);
        acc[v] += wt * load<B>(px[t] + c0 + v * kLanes);
      }
    }
    for (int v = 0; v < kVectors; ++v) {
      __builtin_memcpy(out + p * channels + c0 + v * kLanes, &acc[v], sizeof(V));
    }
  }
}

// Blocks of two registers where 9 taps' weights for both fit the register file (AVX-512's 32),
// else of one (AVX2's 16).
template <typename T, int B>
CONVPOOL_INLINE void depthwise_line_impl(T* __restrict__ out, const T* const* pixels,
                                         const T* __restrict__ weights, int64_t count, int64_t taps,
                                         int64_t channels) {
  constexpr int64_t kLanes = B / sizeof(T);
  int64_t c0 = 0;
  if constexpr (B == 64) {
    for (; c0 + 2 * kLanes <= channels; c0 += 2 * kLanes) {
      depthwise_block<T, B, 2>(out, pixels, weights, count, taps, channels, c0);
    }
  }
  for (; c0 + kLanes <= channels; c0 += kLanes) {
    depthwise_block<T, B, 1>(out, pixels, weights, count, taps, channels, c0);
  }
  if (c0 == channels) return;
  for (int64_t p = 0; p < count; ++p) {
    const T* const* px = pixels + p * taps;
    for (int64_t c = c0; c < channels; ++c) {
      T sum = T(0);
      for (int64_t t = 0; t < taps; ++t) {
        if (px[t] != nullptr) sum += weights[t * channels + c] * px[t][c];
      }
      out[p * channels + c] = sum;
    }
  }
}

template <typename T>
CONVPOOL_INLINE void depthwise_line_any(T* out, const T* const* pixels, const T* weights,
                                        int64_t count, int64_t taps, int64_t channels) {
  if (wide_vector_registers()) {
    return depthwise_line_impl<T, 64>(out, pixels, weights, count, taps, channels);
  }
  depthwise_line_impl<T, 32>(out, pixels, weights, count, taps, channels);
}

}  // namespace

CONVPOOL_CLONES void depthwise_line(float* out, const float* const* pixels, const float* weights,
                                    int64_t count, int64_t taps, int64_t channels) {
  depthwise_line_any(out, pixels, weights, count, taps, channels);
}
CONVPOOL_CLONES void depthwise_line(double* out, const double* const* pixels, const double* weights,
                                    int64_t count, int64_t taps, int64_t channels) {
  depthwise_line_any(out, pixels, weights, count, taps, channels);
}

CONVPOOL_CLONES void multiply_accumulate(float* acc, const float* w, const float* x, int64_t n) {
  multiply_accumulate_impl(acc, w, x, n);
}
CONVPOOL_CLONES void multiply_accumulate(double* acc, const double* w, const double* x, int64_t n) {
  multiply_accumulate_impl(acc, w, x, n);
}
CONVPOOL_CLONES void scale_accumulate(float* acc, float w, const float* x, int64_t stride,
                                      int64_t n) {
  scale_accumulate_impl(acc, w, x, stride, n);
}
CONVPOOL_CLONES void scale_accumulate(double* acc, double w, const double* x, int64_t stride,
                                      int64_t n) {
  scale_accumulate_impl(acc, w, x, stride, n);
}

}  // namespace convpool::simd
