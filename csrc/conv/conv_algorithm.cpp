#include "conv_algorithm.h"

#include <c10/util/Exception.h>

#include <atomic>

#include "winograd_cpu.h"

namespace convpool {
namespace {
std::atomic<ConvAlgorithm> g_algorithm{ConvAlgorithm::kAuto};

constexpr struct {
  const char* name;
  ConvAlgorithm algorithm;
} kNames[] = {{"auto", ConvAlgorithm::kAuto},
              {"gemm", ConvAlgorithm::kGemm},
              {"winograd", ConvAlgorithm::kWinograd},
              {"im2col", ConvAlgorithm::kIm2col}};
}  // namespace

void set_conv_algorithm(const std::string& name) {
  for (const auto& entry : kNames) {
    if (name == entry.name) {
      g_algorithm = entry.algorithm;
      return;
    }
  }
  TORCH_CHECK_VALUE(false, "set_conv_algorithm: unknown algorithm '", name,
                    "'; expected one of 'auto', 'gemm', 'winograd', 'im2col'");
}

std::string conv_algorithm_name() {
  for (const auto& entry : kNames) {
    if (entry.algorithm == g_algorithm.load()) return entry.name;
  }
  return "auto";
}

ConvAlgorithm conv_algorithm() { return g_algorithm; }

// Winograd pays where the multiplications it saves outweigh its transforms: enough channels on
// both sides (the GEMMs' inner and outer sizes), and enough tiles of 4x4 outputs to use each
// transformed weight often. The fused blocks (few channels) re-read the transformed weights per
// block of tiles and need 16 tiles per image; the batched variant (many channels: ResNet's 14x14
// and 7x7 stages) shares them across the batch and needs 16 tiles in all (one vector of tiles per
// GEMM panel), in every pass. Forward + weight gradient, N8 = 32 tiles, C512 7x7: 17.4 against
// 27.9 ms for the GEMM engine; batch 4 (16 tiles) 11.2 against 14.8; batch 2 (8 tiles) 10.4
// against 9.7; C256 14x14 at batch 1 (16 tiles) 2.6-3.1 against 3.1-3.7.
//
// With dilation, each phase is tiled on its own: where the phases are shorter than a tile, most
// of each tile's outputs fall outside the image (ASPP's dilation 12-36 on 28x28 maps), so
// Winograd runs only where at least half of the computed outputs are real.
//
// The fused blocks transform their input tiles once per chunk of output channels (4 MiB of
// transformed weights) and per sub-kernel (depth tap, 3x3 block of a larger kernel): beyond three
// chunks the GEMM engine (5x5 C256 -> 256 on 14x14, 11 chunks: 59 ms against 36; C128 on 28x28,
// 3 chunks: 22 against 32; N8, two threads).
//
// Kernels of more than four 3x3 blocks (7x7: nine) over fewer than 32 input channels: each
// block's GEMMs per point reduce over those few channels only, and the transformed weights (36
// values per block and channel pair) outweigh what they save. N8 NCHW, ms, Winograd against the
// GEMM engine (torch): 7x7 C16 -> 384 13x13 forward 8.8 / 5.7 (4.9-5.5), and the input gradient
// of 7x7 C384 -> 16 13x13 unpadded (a conv of 16 channels into 384) 10.3 / 6.8 (4.7-5.2), at
// batch 1 4.7 / 1.3 (0.9). With 32 channels they are even (C32 -> 128 28x28: 14.7 / 16.2).
constexpr int64_t kMaxBlocksOverFewChannels = 4;
constexpr int64_t kManyChannels = 32;

bool winograd_pays(const ConvGeometry& g, int64_t batch, int64_t out_channels, ConvPass pass) {
  (void)pass;  // one rule for every pass since the batched weight gradient runs in L2 blocks
  if (g.channels < 16 || out_channels < 16) return false;
  if (cpu::winograd_blocks(g) > kMaxBlocksOverFewChannels && g.channels < kManyChannels) {
    return false;
  }
  if (!cpu::winograd_batched_pays(g, batch, out_channels) &&
      cpu::winograd_weight_chunks(g, out_channels) > 3) {
    return false;
  }
  const int64_t image_tiles = cpu::winograd_tiles_per_image(g);
  if ((g.dilation[1] > 1 || g.dilation[2] > 1) && 2 * g.grid_numel() < image_tiles * 16) {
    return false;
  }
  if (cpu::winograd_batched_pays(g, batch, out_channels)) {
    return batch * image_tiles >= 16;
  }
  return image_tiles >= 16;
}

ConvAlgorithm conv_algorithm_for(const ConvGeometry& g, int64_t batch, int64_t out_channels,
                                 ConvPass pass) {
  const ConvAlgorithm forced = g_algorithm;
  if (forced == ConvAlgorithm::kIm2col || forced == ConvAlgorithm::kGemm) return forced;
  if (!cpu::winograd_applies(g)) return ConvAlgorithm::kGemm;
  if (forced == ConvAlgorithm::kWinograd) return forced;
  return winograd_pays(g, batch, out_channels, pass) ? ConvAlgorithm::kWinograd
                                                     : ConvAlgorithm::kGemm;
}

}  // namespace convpool
