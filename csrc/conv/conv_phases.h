#pragma once
// A strided conv_transpose as stride-1 convs, one per phase: the output positions of one residue
// modulo the stride per dim, each reached by every stride-th tap of the flipped kernel. The
// engines that compute a phase as a plain conv (gemm_conv_cpu.cpp's conv_transpose_phases, the
// bfloat16 AMX path in brgemm_conv_cpu.cpp) share this geometry.
#include <cstdint>
#include <numeric>

#include "../common/conv_geometry.h"

namespace convpool::cpu {

// One residue class of a strided conv_transpose along one dim: the taps that reach image
// positions s * j + r, as a stride-1 sub-kernel.
struct Phase {
  int64_t first_tap = 0, taps = 0, tap_step = 1;  // taps first_tap + m * tap_step, m < taps
  int64_t positions = 0;                          // image positions with this residue
  int64_t pad = 0, dilation = 1;                  // of the stride-1 sub-conv over the grid
};

inline Phase phase_of(const ConvGeometry& g, int d, int64_t r) {
  Phase p;
  const int64_t s = g.stride[d], dil = g.dilation[d], pad = g.pad[d];
  p.positions = r < g.image[d] ? (g.image[d] - r + s - 1) / s : 0;
  const int64_t common = std::gcd(s, dil);
  p.tap_step = s / common;
  p.dilation = dil / common;
  p.first_tap = -1;
  for (int64_t t = 0; t < g.kernel[d] && p.first_tap < 0; ++t) {
    if (((r + pad - t * dil) % s + s) % s == 0) p.first_tap = t;
  }
  if (p.first_tap < 0) return p;
  p.taps = (g.kernel[d] - 1 - p.first_tap) / p.tap_step + 1;
  // Tap m reads grid position j + c0 - m * dilation; flipped (m' = taps - 1 - m) it is a conv.
  const int64_t c0 = (r + pad - p.first_tap * dil) / s;
  p.pad = (p.taps - 1) * p.dilation - c0;
  return p;
}

// The kernel tap (flat, of g's kernel) of the phases' sub-kernel tap m (flat, of their taps):
// per dim, the phase's taps flipped.
inline int64_t phase_kernel_tap(const ConvGeometry& g, const Phase (&ph)[kSpatialDims], int64_t m) {
  int64_t t = 0;
  for (int d = kSpatialDims - 1, step = 1; d >= 0; step *= g.kernel[d], --d) {
    const int64_t md = m % ph[d].taps;
    m /= ph[d].taps;
    t += (ph[d].first_tap + (ph[d].taps - 1 - md) * ph[d].tap_step) * step;
  }
  return t;
}

// The stride-1 conv one phase (a residue per dim) of a conv_transpose computes: the phase's taps
// of the flipped kernel over the transpose's input, which has `channels` channels.
inline ConvGeometry phase_geometry(const ConvGeometry& g, const Phase (&ph)[kSpatialDims],
                                   int64_t channels) {
  ConvGeometry sub = g;
  for (int d = 0; d < kSpatialDims; ++d) {
    sub.image[d] = g.grid[d];
    sub.grid[d] = ph[d].positions;
    sub.kernel[d] = ph[d].taps;
    sub.stride[d] = 1;
    sub.pad[d] = ph[d].pad;
    sub.dilation[d] = ph[d].dilation;
  }
  sub.channels = channels;
  return sub;
}

// The conv weight of one phase, [C, K / G, sub taps] (output c of group gi, reduced k), from the
// transpose's contiguous weight [K, C / G, taps]: input gi * K / G + k, output c, and per
// sub-kernel tap m the kernel's tap phase_kernel_tap(m). C: the transpose's output channels.
template <typename T>
void phase_weight(const ConvGeometry& g, const Phase (&ph)[kSpatialDims], int64_t K, const T* w,
                  T* sub_w) {
  const int64_t G = g.groups, kg = K / G, cg = g.channels / G, taps = g.kernel_numel();
  const int64_t sub_taps = ph[0].taps * ph[1].taps * ph[2].taps;
  for (int64_t m = 0; m < sub_taps; ++m) {
    const int64_t t = phase_kernel_tap(g, ph, m);
    for (int64_t gi = 0; gi < G; ++gi) {
      for (int64_t c = 0; c < cg; ++c) {
        for (int64_t k = 0; k < kg; ++k) {
          sub_w[((gi * cg + c) * kg + k) * sub_taps + m] = w[((gi * kg + k) * cg + c) * taps + t];
        }
      }
    }
  }
}

}  // namespace convpool::cpu
