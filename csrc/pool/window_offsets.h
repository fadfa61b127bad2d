#pragma once
// Where in its window a max-pooling output found its maximum, counted in window positions:
// p = (pd * extent_h + ph) * extent_w + pw, with pd the tap number along d (regular windows) or
// the distance from the window's first element (adaptive ones). This is what autograd saves for
// max pooling's backward on the CPU: one byte per output where a window holds at most 256
// positions, against torch's eight-byte index into the plane (and torch also keeps the input).
#include <cstdint>

#include "../common/pool_geometry.h"

namespace convpool {

// Offsets are saved as uint8.
constexpr int64_t kMaxWindowPositions = 256;

// Positions a window has along dim d: the kernel for regular windows; for adaptive ones the
// longest window, L / O when O divides L and at most ceil(L / O) + 1 otherwise.
CONVPOOL_HOST_DEVICE int64_t window_extent(const PoolGeometry& g, int d) {
  if (!g.adaptive) return g.kernel[d];
  if (g.output[d] == 0) return 1;  // no windows at all
  const int64_t quotient = g.input[d] / g.output[d];
  return g.input[d] % g.output[d] == 0 ? quotient : quotient + 2;
}

CONVPOOL_HOST_DEVICE int64_t window_positions(const PoolGeometry& g) {
  return window_extent(g, 0) * window_extent(g, 1) * window_extent(g, 2);
}

// Input coordinate of position 0 along dim d (in the padding when negative), and the distance
// between neighbouring positions.
CONVPOOL_HOST_DEVICE int64_t window_origin(const PoolGeometry& g, int d, int64_t o) {
  return g.adaptive ? o * g.input[d] / g.output[d] : o * g.stride[d] - g.pad[d];
}

CONVPOOL_HOST_DEVICE int64_t window_step(const PoolGeometry& g, int d) {
  return g.adaptive ? 1 : g.dilation[d];
}

// Position number of input coordinate i along dim d in output o's window.
CONVPOOL_HOST_DEVICE int64_t window_position(const PoolGeometry& g, int d, int64_t o, int64_t i) {
  return (i - window_origin(g, d, o)) / window_step(g, d);
}

// Distance in the plane, in elements, from a window's origin to its position p.
CONVPOOL_HOST_DEVICE int64_t position_displacement(const PoolGeometry& g, int64_t p) {
  const int64_t pw = p % window_extent(g, 2);
  const int64_t ph = p / window_extent(g, 2) % window_extent(g, 1);
  const int64_t pd = p / (window_extent(g, 2) * window_extent(g, 1));
  return (pd * window_step(g, 0) * g.input[1] + ph * window_step(g, 1)) * g.input[2] +
         pw * window_step(g, 2);
}

// Flat in-plane index of output (od, oh, ow)'s window origin (may be negative or point past a
// row: only origin + displacement of a position inside the input is ever used as an address).
CONVPOOL_HOST_DEVICE int64_t origin_index(const PoolGeometry& g, int64_t od, int64_t oh,
                                          int64_t ow) {
  return (window_origin(g, 0, od) * g.input[1] + window_origin(g, 1, oh)) * g.input[2] +
         window_origin(g, 2, ow);
}

}  // namespace convpool
