#pragma once
// NCHW convs over few output pixels (ResNet's 7x7 stage at batch 1-4, the strided convs into it):
// y[K, pixels] = w[K, C x taps] x columns[C x taps, pixels], the weight read as it lies.
#include <ATen/ATen.h>

#include "../common/conv_geometry.h"

namespace convpool::cpu {

// output (+ bias) of such a conv, where this path takes it: returns whether it did.
bool small_image_conv(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                      const at::Tensor& output, const ConvGeometry& g);

}  // namespace convpool::cpu
