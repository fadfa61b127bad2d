#pragma once
// CPU kernels of depthwise convolution (groups == image channels, any depth multiplier), in the
// layout g.channels_last says; weights contiguous [C * m, 1, K...]. The ConvBackend's depthwise
// entries (see conv_driver.h for the shapes each takes).
#include <ATen/core/Tensor.h>

#include "../common/conv_geometry.h"

namespace convpool::cpu {

// Adds the bias (undefined: none) too.
void depthwise_conv(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                    const at::Tensor& output, const ConvGeometry& g);
void depthwise_conv_transpose(const at::Tensor& input, const at::Tensor& weight,
                              const at::Tensor& output, const ConvGeometry& g);
// Into a [C * m, 1, K...]-shaped contiguous grad_weight.
void depthwise_weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                           const at::Tensor& grad_weight, const ConvGeometry& g);

}  // namespace convpool::cpu
