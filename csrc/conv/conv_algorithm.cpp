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
// both sides (the GEMMs' inner and outer sizes), and at least 16 tiles of 4x4 outputs per image
// (below, the transformed weights are used too few times and partial tiles waste most of the
// work: ResNet's 7x7 stage stays on the GEMM engine; measured in BENCHMARKS.md).
bool winograd_pays(const ConvGeometry& g, int64_t out_channels) {
  const int64_t tiles = g.grid[0] * ((g.grid[1] + 3) / 4) * ((g.grid[2] + 3) / 4);
  return g.channels >= 16 && out_channels >= 16 && tiles >= 16;
}

ConvAlgorithm conv_algorithm_for(const ConvGeometry& g, int64_t out_channels) {
  const ConvAlgorithm forced = g_algorithm;
  if (forced == ConvAlgorithm::kIm2col || forced == ConvAlgorithm::kGemm) return forced;
  if (!cpu::winograd_applies(g)) return ConvAlgorithm::kGemm;
  if (forced == ConvAlgorithm::kWinograd) return forced;
  return winograd_pays(g, out_channels) ? ConvAlgorithm::kWinograd : ConvAlgorithm::kGemm;
}

}  // namespace convpool
