#pragma once
// Depthwise kernels with the channels as the vector, for depth multiplier 1 in float32/float64
// (the common case: MobileNet, EfficientNet), channels_last as it is and NCHW through blocks of
// 16 channels transposed in cache: each line is a list of taps over plain strided runs, handed
// to the vectorised loops of depthwise_cl_lines.h. Other multipliers and dtypes take the
// general kernels in depthwise_cpu.cpp.
#include <ATen/core/Tensor.h>

#include <vector>

#include "../common/conv_geometry.h"

namespace convpool::cpu {

// Weight [C * m, 1, K...] as [K, C * m]: a tap's weights for all channels are contiguous.
template <typename T>
inline std::vector<T> weights_by_tap(const at::Tensor& weight, int64_t taps) {
  const int64_t channels = weight.size(0);
  const T* w = weight.const_data_ptr<T>();
  std::vector<T> t(taps * channels);
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t k = 0; k < taps; ++k) t[k * channels + c] = w[c * taps + k];
  }
  return t;
}

// Whether these kernels take the call: depth multiplier 1, float32/float64, and in NCHW a
// sample's block of channels small enough to compute in cache.
bool depthwise_vector_kernels(const at::Tensor& input, const at::Tensor& output,
                              const ConvGeometry& g);

// Whether depthwise_forward_bfloat16 computes a bfloat16 forward as it is: depth multiplier 1,
// a 2-d channels_last input (NCHW and 3-d ones are computed in float32) whose rows under one
// kernel window fit a band in L2.
bool depthwise_bfloat16_forward_applies(const at::Tensor& input, int64_t out_channels,
                                        const ConvGeometry& g);
// bfloat16 in and out (channels_last, g.channels_last), float32 sums started from the bias
// (undefined: none), rounded once.
void depthwise_forward_bfloat16(const at::Tensor& input, const at::Tensor& weight,
                                const at::Tensor& bias, const at::Tensor& output,
                                const ConvGeometry& g);

// Adds the bias (undefined: none) too.
void depthwise_forward_vectors(const at::Tensor& input, const at::Tensor& weight,
                               const at::Tensor& bias, const at::Tensor& output,
                               const ConvGeometry& g);
void depthwise_transpose_vectors(const at::Tensor& input, const at::Tensor& weight,
                                 const at::Tensor& output, const ConvGeometry& g);
void depthwise_weight_grad_vectors(const at::Tensor& grad_output, const at::Tensor& input,
                                   const at::Tensor& grad_weight, const ConvGeometry& g);

}  // namespace convpool::cpu
