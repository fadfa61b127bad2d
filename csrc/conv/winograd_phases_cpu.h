#pragma once
// A strided conv_transpose as one Winograd 3x3 conv: where every output phase (output position
// mod the stride) reads input offsets -1, 0 and +1 only, and the phases tile the output exactly
// (output = stride x input: 4x4 stride 2 padding 1, the upsampling of DCGAN's generator and of
// many U-Nets; 8x8 stride 4 padding 2), the s x s phases of K channels are the s^2 K output
// channels of one 3x3 conv over the input (padding 1), phase (a, b)'s taps in channels
// [(a s + b) K, (a s + b + 1) K), zero where a phase has no tap. Winograd computes that conv and
// writes its outputs interleaved into the conv_transpose's output. 4x4 stride 2: 4 x 36 / 16 = 9
// multiplications per input pixel and channel pair, against the phases' 16.
#include <ATen/ATen.h>

#include "../common/conv_geometry.h"

namespace convpool::cpu {

// y = conv_transpose(x, weight) for the conv of geometry g (g.image: y's size, g.grid: x's),
// where the rule above applies and the algorithm rule picks Winograd for the 3x3 conv; returns
// whether it did (false also where x or the weight is not finite: the caller computes y).
bool winograd_conv_transpose_phases(const at::Tensor& x, const at::Tensor& weight,
                                    const at::Tensor& y, const ConvGeometry& g);

}  // namespace convpool::cpu
