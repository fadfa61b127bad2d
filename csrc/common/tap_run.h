#pragma once
// Tap arithmetic along one dim, shared by convolution and pooling: kernel tap k of output
// position o reads input position o * stride + k * dilation - pad. TapRun gives the outputs
// [lo, hi) for which that position is inside the input (the CPU line loops then run over a plain
// strided range with no bounds checks); covering_grid_index inverts the map (the gathers).
#include <algorithm>
#include <cstdint>

#include "host_device.h"

namespace convpool {

struct TapRun {
  int64_t lo, hi, offset;
};

CONVPOOL_HOST_DEVICE TapRun tap_run(int64_t tap, int64_t stride, int64_t pad, int64_t dilation,
                                    int64_t input, int64_t output) {
  const int64_t offset = tap * dilation - pad;
  // Both ends are clamped to [0, output]: a tap that starts past the output (padding wider than
  // the grid) has an empty run at the end, never a run that starts beyond the line.
  int64_t lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  lo = lo < output ? lo : output;
  int64_t hi = input - 1 - offset < 0 ? 0 : (input - 1 - offset) / stride + 1;
  hi = hi < output ? hi : output;
  return {lo, hi > lo ? hi : lo, offset};
}

// Output position along one dim whose tap `k` reads input position `i`, or -1 when none does
// (i is not on that tap's stride, or the position is past the last output).
CONVPOOL_HOST_DEVICE int64_t covering_grid_index(int64_t i, int64_t k, int64_t stride, int64_t pad,
                                                 int64_t dilation, int64_t grid) {
  const int64_t shifted = i + pad - k * dilation;
  if (shifted < 0 || shifted % stride != 0) return -1;
  const int64_t o = shifted / stride;
  return o < grid ? o : -1;
}

}  // namespace convpool
