#pragma once
// Grouped convolutions with stride 1 and few output channels per group (RegNet's 8, ResNeXt's
// 4-32), float32: the forward, and the input gradient as the forward of the flipped kernel. Each
// task copies the input rows it reads into a zero-padded patch, so that no output pixel has an
// edge case, and the kernel keeps G groups' outputs in one vector register (G = 16 / channels per
// group with AVX-512: two groups of 8, four of 4). Strided convs and the weight gradient stay
// with the line kernels (grouped_cpu.h).
#include <ATen/core/Tensor.h>

#include "../common/conv_geometry.h"

namespace convpool::cpu {

// Whether the patch kernel computes this forward (grid_channels: the conv's output channels).
bool grouped_patch_applies(const at::Tensor& t, const ConvGeometry& g, int64_t grid_channels);
// Whether it computes this conv_transpose (the input gradient; grid_channels: its input's).
bool grouped_patch_transpose_applies(const at::Tensor& t, const ConvGeometry& g,
                                     int64_t grid_channels);

// The dense engine's signatures (gemm_conv_cpu.h): output in the input's memory format; the
// forward adds the bias (an undefined tensor: none).
void grouped_patch_conv(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
                        const ConvGeometry& g, const at::Tensor& bias);
void grouped_patch_conv_transpose(const at::Tensor& input, const at::Tensor& weight,
                                  const at::Tensor& output, const ConvGeometry& g);

}  // namespace convpool::cpu
