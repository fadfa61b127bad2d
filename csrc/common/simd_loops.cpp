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
inline void scale_accumulate_impl(T* __restrict__ acc, T w, const T* __restrict__ x,
                                  int64_t stride, int64_t n) {
  if (stride == 1) {
    for (int64_t i = 0; i < n; ++i) acc[i] += w * x[i];
  } else {
    for (int64_t i = 0; i < n; ++i) acc[i] += w * x[i * stride];
  }
}

constexpr int64_t kBlock = 64;

template <typename T>
inline void depthwise_pixel_impl(T* __restrict__ out, const T* const* pixels,
                                 const T* __restrict__ weights, int64_t taps, int64_t channels) {
  int64_t c0 = 0;
  for (; c0 + kBlock <= channels; c0 += kBlock) {
    T acc[kBlock] = {};
    for (int64_t t = 0; t < taps; ++t) {
      const T* __restrict__ px = pixels[t];
      if (px == nullptr) continue;
      const T* __restrict__ w = weights + t * channels + c0;
      for (int64_t c = 0; c < kBlock; ++c) acc[c] += w[c] * px[c0 + c];
    }
    for (int64_t c = 0; c < kBlock; ++c) out[c0 + c] = acc[c];
  }
  if (c0 == channels) return;
  for (int64_t c = c0; c < channels; ++c) out[c] = T(0);
  for (int64_t t = 0; t < taps; ++t) {
    const T* __restrict__ px = pixels[t];
    if (px == nullptr) continue;
    const T* __restrict__ w = weights + t * channels;
    for (int64_t c = c0; c < channels; ++c) out[c] += w[c] * px[c];
  }
}

}  // namespace

CONVPOOL_CLONES void depthwise_pixel(float* out, const float* const* pixels, const float* weights,
                                     int64_t taps, int64_t channels) {
  depthwise_pixel_impl(out, pixels, weights, taps, channels);
}
CONVPOOL_CLONES void depthwise_pixel(double* out, const double* const* pixels,
                                     const double* weights, int64_t taps, int64_t channels) {
  depthwise_pixel_impl(out, pixels, weights, taps, channels);
}

CONVPOOL_CLONES void multiply_accumulate(float* acc, const float* w, const float* x, int64_t n) {
  multiply_accumulate_impl(acc, w, x, n);
}
CONVPOOL_CLONES void multiply_accumulate(double* acc, const double* w, const double* x, int64_t n) {
  multiply_accumulate_impl(acc, w, x, n);
}
CONVPOOL_CLONES void scale_accumulate(float* acc, float w, const float* x, int64_t stride, int64_t n) {
  scale_accumulate_impl(acc, w, x, stride, n);
}
CONVPOOL_CLONES void scale_accumulate(double* acc, double w, const double* x, int64_t stride,
                                      int64_t n) {
  scale_accumulate_impl(acc, w, x, stride, n);
}

}  // namespace convpool::simd
