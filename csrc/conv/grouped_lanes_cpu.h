#pragma once
// Grouped convolutions whose groups are too narrow for the grouped kernels (2, 3, 6 ... channels
// per group: widths that are not a multiple of 4), float32/float64, as one depthwise conv over
// lanes. Lane (o, i) is output channel o's i-th input channel: it reads image channel
// (o's group) * cg + i through the weight w[o, i]. Output channel o sums its cg lanes; image
// channel c's gradient sums the lanes of the kg output channels that read it. The lanes run on the
// channel-vector depthwise kernels (depthwise_channels_last.h) at full vector width, with the
// grouped conv's own multiply count; the spread into lanes and the sums over them are passes
// over memory. The GEMM engine ran such convs as per-group GEMMs 2-3 columns wide (N16 2 per
// group C64 64x64 channels_last: 87 ms forward, torch 16).
#include <ATen/core/Tensor.h>

#include "../common/conv_geometry.h"

namespace convpool::cpu {

// Whether the lanes compute this conv (image channels g.channels, grid channels grid_channels)
// reading tensors a and b (of a's dtype): not where either holds an inf or NaN, whose products
// with padding zeros torch's GEMMs turn into NaN where the lanes, skipping the padding, would not.
bool grouped_lanes_apply(const at::Tensor& a, const at::Tensor& b, const ConvGeometry& g,
                         int64_t grid_channels);

// The dense engine's signatures (gemm_conv_cpu.h); the forward adds the bias (undefined: none).
void grouped_lanes_conv(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
                        const ConvGeometry& g, const at::Tensor& bias);
void grouped_lanes_conv_transpose(const at::Tensor& input, const at::Tensor& weight,
                                  const at::Tensor& output, const ConvGeometry& g);
void grouped_lanes_weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                               const at::Tensor& grad_weight, const ConvGeometry& g);

}  // namespace convpool::cpu
