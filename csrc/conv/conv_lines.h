#pragma once
// Line-level tap arithmetic of the CPU convolution loops: which input row a tap reads for a grid
// line, and the run of grid positions along the row for which a tap lands inside the input.
#include <algorithm>

#include "../common/conv_geometry.h"
#include "../common/tap_run.h"

namespace convpool {

// Tap (kd, kh, *) of grid line (od, oh): the offset of the input row it reads, or -1 when that
// row lies in the padding.
inline int64_t tap_row(const ConvGeometry& g, int64_t kd, int64_t kh, int64_t od, int64_t oh) {
  const int64_t id = od * g.stride[0] - g.pad[0] + kd * g.dilation[0];
  const int64_t ih = oh * g.stride[1] - g.pad[1] + kh * g.dilation[1];
  if (id < 0 || id >= g.image[0] || ih < 0 || ih >= g.image[1]) return -1;
  return (id * g.image[1] + ih) * g.image[2];
}

inline TapRun width_run(const ConvGeometry& g, int64_t kw) {
  return tap_run(kw, g.stride[2], g.pad[2], g.dilation[2], g.image[2], g.grid[2]);
}

// im2col's rows: tap (kd, kh, kw) of one channel over the whole grid, `run` = width_run(g, kw),
// into out (grid_numel values): per grid line three plain runs, zeros, a strided copy of the
// input row, zeros (the positions conv_tap_offset names, without per-element bounds checks).
template <typename T>
void gather_tap_lines(const T* channel, T* out, const ConvGeometry& g, int64_t kd, int64_t kh,
                      const TapRun& run) {
  const int64_t OW = g.grid[2], s = g.stride[2];
  for (int64_t od = 0; od < g.grid[0]; ++od) {
    for (int64_t oh = 0; oh < g.grid[1]; ++oh, out += OW) {
      const int64_t in_row = tap_row(g, kd, kh, od, oh);
      if (in_row < 0) {
        std::fill(out, out + OW, T(0));
        continue;
      }
      const T* __restrict__ r = channel + in_row + run.offset;
      std::fill(out, out + run.lo, T(0));
      if (s == 1) {
        std::copy(r + run.lo, r + run.hi, out + run.lo);
      } else {
        for (int64_t ow = run.lo; ow < run.hi; ++ow) out[ow] = r[ow * s];
      }
      std::fill(out + run.hi, out + OW, T(0));
    }
  }
}

// The taps [lo, hi) of a `taps`-long kernel whose input position base + t * dilation lies in
// [0, size), for a window that starts at `base` (= o * stride - pad).
inline void taps_inside(int64_t base, int64_t taps, int64_t dilation, int64_t size, int64_t& lo,
                        int64_t& hi) {
  lo = base >= 0 ? 0 : (-base + dilation - 1) / dilation;
  hi = base > size - 1 ? 0 : (size - 1 - base) / dilation + 1;
  lo = lo < taps ? lo : taps;
  hi = hi < taps ? hi : taps;
  if (hi < lo) hi = lo;
}

}  // namespace convpool
