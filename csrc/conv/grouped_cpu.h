#pragma once
// Direct kernels for grouped convolutions with few channels per group (4-64, a multiple of 4, on
// both sides: RegNet, ResNeXt), float32/float64, where the dense engine's per-group GEMMs are too
// small to run at speed. Computed in channels_last ([N, spatial..., C]; an NCHW tensor is
// transposed in and out): for each tap, a vector of V (16, 8 or 4) output channels times the
// group's input channels, one broadcast FMA each, over a block of output pixels held in
// registers. The input gradient is the same line kernel by width phases (conv_transpose as a
// gather, no scatter), the weight gradient one task per (group, channel block, tap) summing over
// the batch in a fixed order: results are bitwise the same for any thread count.
#include <ATen/core/Tensor.h>

#include "../common/conv_geometry.h"

namespace convpool::cpu {

// Whether the grouped kernels compute this conv (image channels g.channels, grid channels
// grid_channels, dtype of t).
bool grouped_applies(const at::Tensor& t, const ConvGeometry& g, int64_t grid_channels);
// The same, whatever the dtype: groups of 4-64 channels (multiples of 4) in and out.
bool grouped_shape_applies(const ConvGeometry& g, int64_t grid_channels);

// Whether the grouped forward kernel computes this conv with one group: few input channels (an
// RGB stem, up to 16) in channels_last, where Winograd does not take it.
bool few_channels_applies(const at::Tensor& t, const ConvGeometry& g, int64_t grid_channels);

// The dense engine's signatures (gemm_conv_cpu.h): output in the input's memory format; the
// forward adds the bias (an undefined tensor: none).
void grouped_conv(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
                  const ConvGeometry& g, const at::Tensor& bias);
void grouped_conv_transpose(const at::Tensor& input, const at::Tensor& weight,
                            const at::Tensor& output, const ConvGeometry& g);
void grouped_weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                         const at::Tensor& grad_weight, const ConvGeometry& g);

}  // namespace convpool::cpu
