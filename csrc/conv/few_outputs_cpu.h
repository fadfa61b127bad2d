#pragma once
// A direct kernel for convolutions with few output channels (up to 12: an image
// decoder's last layer, 64 -> 3; a one-channel map) in float32 / float64. A GEMM with 3 columns
// runs far below speed (MKL, oneDNN and our packed GEMM alike: torch's 7x7 64 -> 3 runs at ~70
// GFLOP/s), so here each output value is a dot product over its window: in channels_last a
// kernel row of an undilated window is one run of kw x C consecutive values, the weight's row
// the same run, and a block of output pixels shares each loaded weight vector. The input gradient
// of a stride-1 conv with few input channels is the same kernel (the flipped, transposed weight).
// The weight gradient reads the same runs: a few vectors of each kernel row's gradient per
// output channel stay in registers over a row of pixels, each loaded input vector feeding every
// output channel. Results are the same for any thread count.
#include <ATen/core/Tensor.h>

#include "../common/conv_geometry.h"

namespace convpool::cpu {

enum class FewOutputsPass { kForward, kTranspose, kWeightGrad };

// Whether the kernel computes this pass of a conv (out_channels: of the conv, or for kTranspose
// of the stride-1 conv_transpose, an input gradient; dtype of t, the pass's input).
bool few_outputs_applies(const at::Tensor& t, const ConvGeometry& g, int64_t out_channels,
                         FewOutputsPass pass);

// The dense engine's signatures (gemm_conv_cpu.h): output in the input's memory format; the
// forward adds the bias (an undefined tensor: none).
void few_outputs_conv(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
                      const ConvGeometry& g, const at::Tensor& bias);
void few_outputs_weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                             const at::Tensor& grad_weight, const ConvGeometry& g);

}  // namespace convpool::cpu
