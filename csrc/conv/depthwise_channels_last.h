#pragma once
// Depthwise kernels with the channels as the vector, for depth multiplier 1 in float32/float64
// (the common case: MobileNet, EfficientNet), channels_last as it is and NCHW through blocks of
// 16 channels transposed in cache: each line is a list of taps over plain strided runs, handed
// to the vectorised loops of depthwise_cl_lines.h. Other multipliers and dtypes take the
// general kernels in depthwise_cpu.cpp.
#include <ATen/core/Tensor.h>

#include "../common/conv_geometry.h"

namespace convpool::cpu {

// Whether these kernels take the call: depth multiplier 1, float32/float64, and in NCHW a
// sample's block of channels small enough to compute in cache.
bool depthwise_vector_kernels(const at::Tensor& input, const at::Tensor& output,
                              const ConvGeometry& g);

void depthwise_forward_vectors(const at::Tensor& input, const at::Tensor& weight,
                               const at::Tensor& output, const ConvGeometry& g);
void depthwise_transpose_vectors(const at::Tensor& input, const at::Tensor& weight,
                                 const at::Tensor& output, const ConvGeometry& g);
void depthwise_weight_grad_vectors(const at::Tensor& grad_output, const at::Tensor& input,
                                   const at::Tensor& grad_weight, const ConvGeometry& g);

}  // namespace convpool::cpu
