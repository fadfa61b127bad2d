#pragma once
// The geometry every pooling kernel gets, and the window arithmetic shared by the CPU loops and
// the CUDA kernels. Two kinds of windows: regular (kernel / stride / padding / dilation, torch's
// MaxPool and AvgPool) and adaptive (torch's AdaptiveAvgPool / AdaptiveMaxPool: output o along a
// dim of length L covers [floor(o * L / O), ceil((o + 1) * L / O))).
#include <cstdint>

#include "conv_geometry.h"  // kSpatialDims
#include "host_device.h"
#include "tap_run.h"

namespace convpool {

struct PoolGeometry {
  int64_t planes;    // batch * channels: every plane is pooled on its own
  int64_t channels;  // the C of the planes (channels_last kernels step over it)
  int64_t input[kSpatialDims];
  int64_t output[kSpatialDims];
  int64_t kernel[kSpatialDims];
  int64_t stride[kSpatialDims];
  int64_t pad[kSpatialDims];      // padding before each dim
  int64_t pad_end[kSpatialDims];  // input + padding after: where count_include_pad windows stop
  int64_t dilation[kSpatialDims];
  bool adaptive;
  bool channels_last;  // tensors are [N, D, H, W, C] in memory (else [N, C, D, H, W])
  bool count_include_pad;
  int64_t divisor_override;  // 0: none

  CONVPOOL_HOST_DEVICE int64_t input_numel() const { return input[0] * input[1] * input[2]; }
  CONVPOOL_HOST_DEVICE int64_t output_numel() const { return output[0] * output[1] * output[2]; }
};

// Positions begin, begin + step, ... < end of one window along one dim, inside the input.
struct Span {
  int64_t begin, end, step;
  CONVPOOL_HOST_DEVICE int64_t count() const {
    return end > begin ? (end - begin + step - 1) / step : 0;
  }
};

CONVPOOL_HOST_DEVICE Span window_span(const PoolGeometry& g, int d, int64_t o) {
  if (g.adaptive) {
    return {o * g.input[d] / g.output[d], ((o + 1) * g.input[d] + g.output[d] - 1) / g.output[d],
            1};
  }
  const int64_t start = o * g.stride[d] - g.pad[d];
  const int64_t step = g.dilation[d];
  // First tap inside the input, last tap + 1 clipped to it.
  const int64_t begin = start < 0 ? start + (-start + step - 1) / step * step : start;
  const int64_t last = start + (g.kernel[d] - 1) * step + 1;
  return {begin, last < g.input[d] ? last : g.input[d], step};
}

// Whether output o's window along dim d holds no input element: padding and dilation can put
// every tap outside (kernel 2, dilation 3, padding 1 over a length-2 input). Such a window's max
// is -inf at an index outside the window (torch's rule), and its gradient goes nowhere.
CONVPOOL_HOST_DEVICE bool window_is_empty(const PoolGeometry& g, int d, int64_t o) {
  return window_span(g, d, o).count() == 0;
}

// The factor of an average's divisor along dim d at output o (the divisor is their product, or
// divisor_override): the window's elements inside the input, or with count_include_pad its
// elements inside the padding too.
CONVPOOL_HOST_DEVICE int64_t divisor_along(const PoolGeometry& g, int d, int64_t o) {
  if (!g.adaptive && g.count_include_pad) {
    // torch's rule: the window counts its padding, but not past the end of the padding.
    const int64_t start = o * g.stride[d] - g.pad[d];
    const int64_t end = start + g.kernel[d] < g.pad_end[d] ? start + g.kernel[d] : g.pad_end[d];
    return end - start;
  }
  return window_span(g, d, o).count();
}

// Number of elements an average divides by at output (od, oh, ow).
CONVPOOL_HOST_DEVICE int64_t average_divisor(const PoolGeometry& g, int64_t od, int64_t oh,
                                             int64_t ow) {
  if (g.divisor_override != 0) return g.divisor_override;
  return divisor_along(g, 0, od) * divisor_along(g, 1, oh) * divisor_along(g, 2, ow);
}

// How many outputs along dim d can have input position i in their window (an upper bound for
// regular windows: one per kernel tap), and the t-th of them (-1 when that tap covers nothing),
// in ascending output order: a gather then adds the outputs' gradients in the order the CPU's
// scatter (and torch's) adds them, and gets the same float sum, bit for bit.
CONVPOOL_HOST_DEVICE int64_t covering_candidates(const PoolGeometry& g, int d, int64_t i) {
  if (g.adaptive) {
    return ((i + 1) * g.output[d] + g.input[d] - 1) / g.input[d] - i * g.output[d] / g.input[d];
  }
  return g.kernel[d];
}

CONVPOOL_HOST_DEVICE int64_t covering_output(const PoolGeometry& g, int d, int64_t i, int64_t t) {
  if (g.adaptive) return i * g.output[d] / g.input[d] + t;
  return covering_grid_index(i, g.kernel[d] - 1 - t, g.stride[d], g.pad[d], g.dilation[d],
                             g.output[d]);
}

}  // namespace convpool
