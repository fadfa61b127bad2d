#pragma once
// Which algorithm computes the CPU's dense (non-depthwise) convolutions. "auto" picks per shape
// (conv_algorithm_for); a user or a test can force one with torch_convpool.set_conv_algorithm.
#include <cstdint>
#include <string>

#include "../common/conv_geometry.h"

namespace convpool {

enum class ConvAlgorithm {
  kAuto,
  kGemm,      // blocked implicit GEMM in the tensors' own layout (gemm_conv_cpu.h)
  kWinograd,  // F(4x4, 3x3) where it applies (winograd_cpu.h), the GEMM engine elsewhere
  kIm2col,    // whole-sample im2col -> bmm -> col2im: the path CUDA runs, kept for the tests
};

void set_conv_algorithm(const std::string& name);
std::string conv_algorithm_name();
ConvAlgorithm conv_algorithm();

// What is computed: a conv (or the stride-1 conv_transpose of an input gradient, as the conv with
// the flipped kernel), or a weight gradient.
enum class ConvPass { kForward, kWeightGrad };

// The algorithm for one dense conv on the CPU (g: its geometry, as the GEMM engine computes it):
// the forced one where it applies, or the rule of "auto". Never kAuto.
ConvAlgorithm conv_algorithm_for(const ConvGeometry& g, int64_t batch, int64_t out_channels,
                                 ConvPass pass);

}  // namespace convpool
