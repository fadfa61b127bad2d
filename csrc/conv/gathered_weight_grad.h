#pragma once
// bfloat16 weight gradients of strided convs on our AMX tiles (amx_tiles.h):
// grad_weight[k, r] = sum over output pixels p of window[p, r] x grad_output[p, k], r = (tap,
// input channel), summed in float32 and rounded once.
//
// The reduction runs over the pixels, 32 per step (a tile row of a). a is the windows transposed,
// [r][32 pixels], one block of 32 output pixels of a line at a time: with each padded input line
// split by stride phase (value w at phase w % stride, position w / stride) and channels planar,
// the 32 values of window element r for 32 neighbouring output pixels are 32 contiguous values,
// one masked 64-byte load. b is grad_output's 32 pixel rows, pairs interleaved (the VNNI layout).
// A thread's block of c (every r x every output channel of a group) stays in the tile registers
// over a chunk of 64 steps (2048 pixels); the chunks' partial sums are added in chunk order.
//
// Against the GEMM engine it replaces (bfloat16 columns gathered per block of pixels, then
// at::mm), N8 channels_last, 2 threads, ms (torch's oneDNN): the ResNet stem's weight gradient
// (7x7 stride 2, 3 -> 64, 224x224) 7.2 -> 2.7 (4.8); 3x3 stride 2 3 -> 32 224x224 2.3 -> 1.5
// (1.0-1.2), 32 -> 64 112x112 2.7 -> 1.7 (1.2), 64 -> 128 56x56 2.2 -> 1.8 (1.1-1.2).
//
// Determinism: chunks depend on the shapes only; every partial sum is one thread's, in pixel
// order, and the partial sums are added in chunk order.
#include <ATen/core/Tensor.h>

#include "../common/conv_geometry.h"

namespace convpool::cpu {

// Whether gathered_weight_grad computes the weight gradient of g: a stride above 1 and more than
// one tap, on a CPU with AMX-BF16 (and the tiles allowed: gemm_kernel "auto"), with at most 64
// channels per group.
bool gathered_weight_grad_applies(const ConvGeometry& g);

// grad_weight (bfloat16, [K, C / groups, kernel...] in the input's memory format) of the conv of
// geometry g, from grad_output [N, K, grid...] and input [N, C, image...], both bfloat16 in the
// same memory format.
void gathered_weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                          const at::Tensor& grad_weight, const ConvGeometry& g);

}  // namespace convpool::cpu
