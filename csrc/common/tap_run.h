#pragma once
// Along the innermost spatial dim, kernel tap k of output position o reads input position
// o * stride + offset, offset = k * dilation - pad. TapRun gives the outputs [lo, hi) for which
// that position is inside the input: the CPU line loops (im2col, col2im, pooling) then run over
// a plain strided range with no bounds checks.
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

}  // namespace convpool
