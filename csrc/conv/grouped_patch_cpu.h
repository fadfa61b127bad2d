#pragma once
// Grouped convolutions with few channels per group, as many in as out (RegNet's 8-24, ResNeXt's
// 4-32), float32: the forward (strides up to 4), the stride-1 input gradient as the forward of
// the flipped kernel, and the weight gradient. bfloat16: the same forwards on pairs of channels
// (vdpbf16ps, float32 sums rounded once) where the CPU has AVX512-BF16, and the weight gradient
// through float32 copies. Each task copies what it reads into a zero-padded
// patch (one plane per stride phase), so that no output pixel has an edge case; the kernels keep
// G groups in one vector register (G = 16 / channels per group with AVX-512: two groups of 8,
// four of 4). Strided input gradients run one stride-1 patch conv per phase where that pays
// (small grids, bfloat16), else the line kernels (grouped_cpu.h).
#include <ATen/core/Tensor.h>

#include "../common/conv_geometry.h"

namespace convpool::cpu {

// Whether the patch kernel computes this forward (grid_channels: the conv's output channels).
bool grouped_patch_applies(const at::Tensor& t, const ConvGeometry& g, int64_t grid_channels);
// Whether grouped_patch_weight_grad computes this conv's weight gradient (bfloat16 too, through
// float32 copies).
bool grouped_patch_weight_grad_applies(const at::Tensor& t, const ConvGeometry& g,
                                       int64_t grid_channels);
// Whether it computes this conv_transpose (the input gradient; grid_channels: its input's).
bool grouped_patch_transpose_applies(const at::Tensor& t, const ConvGeometry& g,
                                     int64_t grid_channels);

// The dense engine's signatures (gemm_conv_cpu.h): output in the input's memory format; the
// forward adds the bias (an undefined tensor: none).
void grouped_patch_conv(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
                        const ConvGeometry& g, const at::Tensor& bias);
void grouped_patch_conv_transpose(const at::Tensor& input, const at::Tensor& weight,
                                  const at::Tensor& output, const ConvGeometry& g);
// The weight gradient where grouped_patch_weight_grad_applies holds for the conv.
void grouped_patch_weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                               const at::Tensor& grad_weight, const ConvGeometry& g);

}  // namespace convpool::cpu
