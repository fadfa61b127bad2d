#pragma once
// The innermost loops of the CPU kernels that decide their speed, compiled once per x86 vector
// ISA (AVX-512, AVX2+FMA, baseline) and picked at load time for the machine that runs them
// (GCC's target_clones), so a portable build still gets the wide vectors torch's own kernels use.
#include <cstdint>
#include <type_traits>

namespace convpool::simd {

// acc[i] += w[i] * x[i]
void multiply_accumulate(float* acc, const float* w, const float* x, int64_t n);
void multiply_accumulate(double* acc, const double* w, const double* x, int64_t n);

// acc[i] += w * x[i * stride]
void scale_accumulate(float* acc, float w, const float* x, int64_t stride, int64_t n);
void scale_accumulate(double* acc, double w, const double* x, int64_t stride, int64_t n);

// A line of depthwise output pixels, channels_last: for each pixel p < count,
//   out[p * channels + c] = sum_t weights[t * channels + c] * pixels[p * taps + t][c]
// over the taps whose pixel pointer is not null. A block of channels keeps its weights for every
// tap and its sums in vector registers while it walks the line.
void depthwise_line(float* out, const float* const* pixels, const float* weights, int64_t count,
                    int64_t taps, int64_t channels);
void depthwise_line(double* out, const double* const* pixels, const double* weights, int64_t count,
                    int64_t taps, int64_t channels);

// The same for any (accumulator, element) pair: the vector clones where they are the same type
// (float, double), a plain converting loop otherwise (float16 / bfloat16 into float).
template <typename acc_t, typename scalar_t>
inline void accumulate_products(acc_t* acc, const scalar_t* w, const scalar_t* x, int64_t n) {
  if constexpr (std::is_same_v<acc_t, scalar_t>) {
    multiply_accumulate(acc, w, x, n);
  } else {
    for (int64_t i = 0; i < n; ++i) acc[i] += static_cast<acc_t>(w[i]) * static_cast<acc_t>(x[i]);
  }
}

// Short runs (an image row) stay inline: a call through the clone dispatcher costs more than
// they gain from wider vectors.
template <typename acc_t, typename scalar_t>
inline void accumulate_scaled(acc_t* acc, acc_t w, const scalar_t* x, int64_t stride, int64_t n) {
  if constexpr (std::is_same_v<acc_t, scalar_t>) {
    if (n >= 128) return scale_accumulate(acc, w, x, stride, n);
  }
  for (int64_t i = 0; i < n; ++i) acc[i] += w * static_cast<acc_t>(x[i * stride]);
}

}  // namespace convpool::simd
