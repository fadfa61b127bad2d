// Depthwise convolution on the CPU (one image channel per group, any depth multiplier m):
// forward, conv_transpose (= the forward's input gradient) and weight gradient, NCHW and
// channels_last, 1-d to 3-d, any kernel, stride, dilation and padding.
//
// NCHW: one task per (sample, channel) plane. The plane is first copied into a small buffer,
// zero-padded to exactly the positions the taps reach and with its columns split by residue
// modulo the stride along w (PhasePlane). Every tap of an output row then reads (forward, weight
// gradient) or adds into (conv_transpose) one contiguous run of the buffer: a plain vectorised
// loop with no bounds logic, whatever the stride, dilation or padding. The buffer holds the
// accumulation type, so float16/bfloat16 accumulate in float32.
//
// channels_last: per output (or image) pixel, the taps' pixel addresses are worked out once per
// line and the channels are the vector (simd::depthwise_line keeps a channel block and its
// weights in registers along the line).
//
// Bound: memory (each input and output element is touched once from DRAM; the taps run out of
// L1/L2). The float32 loops are compiled per vector ISA.
#include "depthwise_cpu.h"

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "../common/dispatch.h"
#include "../common/isa_clones.h"
#include "../common/simd_loops.h"
#include "channels_last_staging.h"
#include "conv_driver.h"
#include "depthwise_channels_last.h"
#include "conv_lines.h"
#include "im2col.h"

#define CONVPOOL_ALWAYS_INLINE inline __attribute__((always_inline))

namespace convpool::cpu {

// One (sample, channel) image, zero-padded and split into stride-w phases: tap (kd, kh, kw) of
// grid line (od, oh) covers, for ow = 0 .. OW - 1, the elements
//   run(od * sd + kd * dd, oh * sh + kh * dh, kw)[ow].
template <typename acc_t>
struct PhasePlane {
  // The forward reads whole vectors past the end of a run (results it then drops): slack.
  static constexpr int64_t kSlack = 64;
  int64_t depth, height, phases, width;  // padded depth and height, phases, columns per phase
  std::vector<acc_t> data;
  std::vector<int64_t> tap_offset;  // run of tap k of grid line (0, 0), from data()
  std::vector<int64_t> row_offset;  // run of phase 0 of taps (kd, kh, *) of grid line (0, 0)
  std::vector<std::vector<std::pair<int64_t, int64_t>>> phase_taps;  // per phase: (kw, column)
  int64_t front = 0;  // the largest column: the zeros a conv_transpose line needs in front

  explicit PhasePlane(const ConvGeometry& g)
      : depth((g.grid[0] - 1) * g.stride[0] + (g.kernel[0] - 1) * g.dilation[0] + 1),
        height((g.grid[1] - 1) * g.stride[1] + (g.kernel[1] - 1) * g.dilation[1] + 1),
        phases(g.stride[2]),
        width(((g.grid[2] - 1) * g.stride[2] + (g.kernel[2] - 1) * g.dilation[2] + phases) /
              phases),
        data(depth * height * phases * width + kSlack),
        phase_taps(phases) {
    for (int64_t kw = 0; kw < g.kernel[2]; ++kw) {
      const int64_t column = kw * g.dilation[2];
      phase_taps[column % phases].emplace_back(kw, column / phases);
      front = std::max(front, column / phases);
    }
    for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
      for (int64_t kh = 0; kh < g.kernel[1]; ++kh) {
        row_offset.push_back((kd * g.dilation[0] * height + kh * g.dilation[1]) * phases * width);
        for (int64_t kw = 0; kw < g.kernel[2]; ++kw) {
          const int64_t column = kw * g.dilation[2];
          tap_offset.push_back(
              ((kd * g.dilation[0] * height + kh * g.dilation[1]) * phases + column % phases) *
                  width +
              column / phases);
        }
      }
    }
  }

  // Offset of grid line (od, oh)'s runs from those of line (0, 0).
  int64_t line_offset(const ConvGeometry& g, int64_t od, int64_t oh) const {
    return (od * g.stride[0] * height + oh * g.stride[1]) * phases * width;
  }

  // Padded position (pd, ph, column j * phases + phase) is image (pd - pad0, ph - pad1,
  // j * phases + phase - pad2). Calls visit(run, image row or null, j_lo, j_hi, first column)
  // for every run of the buffer, where columns [j_lo, j_hi) of the run hold the image elements
  // row[first + (j - j_lo) * phases] and the others lie in the padding.
  template <typename scalar_t, typename Visit>
  void for_each_run(const ConvGeometry& g, scalar_t* image, Visit&& visit) {
    for (int64_t pd = 0; pd < depth; ++pd) {
      const int64_t id = pd - g.pad[0];
      for (int64_t ph = 0; ph < height; ++ph) {
        const int64_t ih = ph - g.pad[1];
        const bool inside = id >= 0 && id < g.image[0] && ih >= 0 && ih < g.image[1];
        scalar_t* row = inside ? image + (id * g.image[1] + ih) * g.image[2] : nullptr;
        for (int64_t phase = 0; phase < phases; ++phase) {
          acc_t* run = data.data() + ((pd * height + ph) * phases + phase) * width;
          // j * phases + phase - pad2 in [0, W)
          const int64_t shift = phase - g.pad[2];
          const int64_t lo = shift >= 0 ? 0 : (-shift + phases - 1) / phases;
          const int64_t hi = g.image[2] - 1 - shift < 0 ? 0 : (g.image[2] - 1 - shift) / phases + 1;
          const int64_t j_lo = std::min(lo, width), j_hi = std::clamp(hi, j_lo, width);
          visit(run, row, j_lo, j_hi, j_lo * phases + shift);
        }
      }
    }
  }

  template <typename scalar_t>
  void load(const ConvGeometry& g, const scalar_t* image) {
    for_each_run(g, image,
                 [&](acc_t* run, const scalar_t* row, int64_t lo, int64_t hi, int64_t first) {
                   if (row == nullptr) lo = hi = 0;
                   std::fill(run, run + lo, acc_t(0));
                   for (int64_t j = lo; j < hi; ++j)
                     run[j] = static_cast<acc_t>(row[first + (j - lo) * phases]);
                   std::fill(run + std::max(lo, hi), run + width, acc_t(0));
                 });
  }

  // Writes the buffer back to an image; image elements no tap reaches become zero.
  template <typename scalar_t>
  void store(const ConvGeometry& g, scalar_t* image) {
    std::fill(image, image + g.image_numel(), scalar_t(0));
    for_each_run(g, image,
                 [&](const acc_t* run, scalar_t* row, int64_t lo, int64_t hi, int64_t first) {
                   if (row == nullptr) return;
                   for (int64_t j = lo; j < hi; ++j)
                     row[first + (j - lo) * phases] = static_cast<scalar_t>(run[j]);
                 });
  }
};

namespace {

// acc[0, OW) = sum over taps of w * run: one grid line of the forward.
// The line is computed in whole blocks of kLanes (the lanes past OW read the buffer's slack and
// are dropped), so short rows (7, 14, 28 outputs) need no scalar remainder loop.
constexpr int64_t kLanes = 16;

template <typename acc_t>
CONVPOOL_ALWAYS_INLINE void forward_line(const ConvGeometry& g, const PhasePlane<acc_t>& plane,
                                         const acc_t* w, int64_t od, int64_t oh, acc_t* acc) {
  const int64_t blocks = (g.grid[2] + kLanes - 1) / kLanes;
  const acc_t* base = plane.data.data() + plane.line_offset(g, od, oh);
  const int64_t taps = static_cast<int64_t>(plane.tap_offset.size());
  for (int64_t b = 0; b < blocks; ++b) {
    acc_t block[kLanes] = {};
    for (int64_t k = 0; k < taps; ++k) {
      const acc_t* __restrict__ src = base + plane.tap_offset[k] + b * kLanes;
      const acc_t wk = w[k];
      for (int64_t i = 0; i < kLanes; ++i) block[i] += wk * src[i];
    }
    for (int64_t i = 0; i < kLanes; ++i) acc[b * kLanes + i] = block[i];
  }
}

// run += w * line for every tap: one grid line of the conv_transpose, written as a gather per
// run (each element of a run sums its taps in registers, then is stored once: scattering tap
// by tap makes every store feed the next tap's overlapping load). `padded` holds the line at
// offset `front` with zeros around it.
template <typename acc_t, typename scalar_t>
CONVPOOL_ALWAYS_INLINE void transpose_line(const ConvGeometry& g, PhasePlane<acc_t>& plane,
                                           const acc_t* w, int64_t od, int64_t oh,
                                           const scalar_t* line, acc_t* padded) {
  const int64_t OW = g.grid[2], KW = g.kernel[2], front = plane.front;
  for (int64_t ow = 0; ow < OW; ++ow) padded[front + ow] = static_cast<acc_t>(line[ow]);
  acc_t* base = plane.data.data() + plane.line_offset(g, od, oh);
  for (int64_t r = 0; r < g.kernel[0] * g.kernel[1]; ++r) {
    const acc_t* wr = w + r * KW;
    for (int64_t phase = 0; phase < plane.phases; ++phase) {
      const auto& taps = plane.phase_taps[phase];  // (kw, column)
      if (taps.empty()) continue;
      acc_t* __restrict__ run = base + plane.row_offset[r] + phase * plane.width;
      const int64_t end = taps.back().second + OW;
      int64_t j = 0;
      for (; j + kLanes <= end; j += kLanes) {
        acc_t block[kLanes];
        for (int64_t i = 0; i < kLanes; ++i) block[i] = run[j + i];
        for (const auto& [kw, column] : taps) {
          const acc_t wk = wr[kw];
          const acc_t* __restrict__ src = padded + front + j - column;
          for (int64_t i = 0; i < kLanes; ++i) block[i] += wk * src[i];
        }
        for (int64_t i = 0; i < kLanes; ++i) run[j + i] = block[i];
      }
      for (; j < end; ++j) {
        acc_t sum = run[j];
        for (const auto& [kw, column] : taps) sum += wr[kw] * padded[front + j - column];
        run[j] = sum;
      }
    }
  }
}

// sums[k] += dot(grad line, run of tap k): one grid line of the weight gradient.
template <typename acc_t, typename scalar_t>
CONVPOOL_ALWAYS_INLINE void weight_grad_line(const ConvGeometry& g, PhasePlane<acc_t>& plane,
                                             int64_t od, int64_t oh, const scalar_t* line,
                                             acc_t* converted, acc_t* sums) {
  const int64_t OW = g.grid[2];
  for (int64_t ow = 0; ow < OW; ++ow) converted[ow] = static_cast<acc_t>(line[ow]);
  const acc_t* base = plane.data.data() + plane.line_offset(g, od, oh);
  const int64_t taps = static_cast<int64_t>(plane.tap_offset.size()), full = OW / kLanes * kLanes;
  // sums[k * kLanes + i]: lane i of tap k's sum; the lanes are added up once per channel.
  for (int64_t k = 0; k < taps; ++k) {
    const acc_t* __restrict__ src = base + plane.tap_offset[k];
    const acc_t* __restrict__ grad = converted;
    acc_t* __restrict__ lanes = sums + k * kLanes;
    for (int64_t b = 0; b < full; b += kLanes) {
      for (int64_t i = 0; i < kLanes; ++i) lanes[i] += grad[b + i] * src[b + i];
    }
    for (int64_t ow = full; ow < OW; ++ow) lanes[ow - full] += grad[ow] * src[ow];
  }
}

template <typename scalar_t>
CONVPOOL_ALWAYS_INLINE void forward_plane(const ConvGeometry& g,
                                          PhasePlane<at::opmath_type<scalar_t>>& plane,
                                          const at::opmath_type<scalar_t>* w, scalar_t* out,
                                          at::opmath_type<scalar_t>* acc) {
  for (int64_t od = 0; od < g.grid[0]; ++od) {
    for (int64_t oh = 0; oh < g.grid[1]; ++oh, out += g.grid[2]) {
      forward_line(g, plane, w, od, oh, acc);
      for (int64_t ow = 0; ow < g.grid[2]; ++ow) out[ow] = static_cast<scalar_t>(acc[ow]);
    }
  }
}

}  // namespace

// The float32 plane loops, compiled per vector ISA.
CONVPOOL_CLONES void depthwise_forward_plane_float(const ConvGeometry& g, PhasePlane<float>& plane,
                                                   const float* w, float* out, float* acc) {
  forward_plane<float>(g, plane, w, out, acc);
}

CONVPOOL_CLONES void depthwise_transpose_line_float(const ConvGeometry& g, PhasePlane<float>& plane,
                                                    const float* w, int64_t od, int64_t oh,
                                                    const float* line, float* converted) {
  transpose_line(g, plane, w, od, oh, line, converted);
}

CONVPOOL_CLONES void depthwise_weight_grad_line_float(const ConvGeometry& g,
                                                      PhasePlane<float>& plane, int64_t od,
                                                      int64_t oh, const float* line,
                                                      float* converted, float* sums) {
  weight_grad_line(g, plane, od, oh, line, converted, sums);
}

namespace {

// Weight [C * m, 1, K...] converted to the accumulation type, in its own layout [C * m, K].
template <typename scalar_t>
std::vector<at::opmath_type<scalar_t>> converted_weight(const at::Tensor& weight) {
  const scalar_t* w = weight.const_data_ptr<scalar_t>();
  return std::vector<at::opmath_type<scalar_t>>(w, w + weight.numel());
}

template <typename scalar_t>
void forward_nchw(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
                  const ConvGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* x = input.const_data_ptr<scalar_t>();
  scalar_t* y = output.data_ptr<scalar_t>();
  const auto w = converted_weight<scalar_t>(weight);
  const int64_t out_channels = output.size(1), m = out_channels / g.channels;
  const int64_t taps = g.kernel_numel();
  at::parallel_for(0, output.size(0) * out_channels, 1, [&](int64_t begin, int64_t end) {
    PhasePlane<acc_t> plane(g);
    std::vector<acc_t> acc((g.grid[2] + kLanes - 1) / kLanes * kLanes);
    int64_t loaded = -1;  // the (sample, image channel) in the buffer: multipliers share it
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / out_channels, oc = p % out_channels, image = n * g.channels + oc / m;
      if (image != loaded) plane.load(g, x + image * g.image_numel());
      loaded = image;
      scalar_t* out = y + p * g.grid_numel();
      if constexpr (std::is_same_v<scalar_t, float>) {
        depthwise_forward_plane_float(g, plane, w.data() + oc * taps, out, acc.data());
      } else {
        forward_plane<scalar_t>(g, plane, w.data() + oc * taps, out, acc.data());
      }
    }
  });
}

template <typename scalar_t>
void transpose_nchw(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
                    const ConvGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* x = input.const_data_ptr<scalar_t>();
  scalar_t* y = output.data_ptr<scalar_t>();
  const auto w = converted_weight<scalar_t>(weight);
  const int64_t in_channels = input.size(1), m = in_channels / g.channels;
  const int64_t taps = g.kernel_numel();
  at::parallel_for(0, output.size(0) * g.channels, 1, [&](int64_t begin, int64_t end) {
    PhasePlane<acc_t> plane(g);
    std::vector<acc_t> padded(plane.front + g.grid[2] + plane.front + kLanes, acc_t(0));
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / g.channels, c = p % g.channels;
      std::fill(plane.data.begin(), plane.data.end(), acc_t(0));
      for (int64_t j = 0; j < m; ++j) {
        const int64_t ic = c * m + j;
        const scalar_t* line = x + (n * in_channels + ic) * g.grid_numel();
        for (int64_t od = 0; od < g.grid[0]; ++od) {
          for (int64_t oh = 0; oh < g.grid[1]; ++oh, line += g.grid[2]) {
            if constexpr (std::is_same_v<scalar_t, float>) {
              depthwise_transpose_line_float(g, plane, w.data() + ic * taps, od, oh, line,
                                             padded.data());
            } else {
              transpose_line(g, plane, w.data() + ic * taps, od, oh, line, padded.data());
            }
          }
        }
      }
      plane.store(g, y + p * g.image_numel());
    }
  });
}

// One task per output channel, walking the samples in order: deterministic whatever the
// thread count.
template <typename scalar_t>
void weight_grad_nchw(const at::Tensor& grad_output, const at::Tensor& input,
                      const at::Tensor& grad_weight, const ConvGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
  const scalar_t* x = input.const_data_ptr<scalar_t>();
  scalar_t* gw = grad_weight.data_ptr<scalar_t>();
  const int64_t out_channels = grad_output.size(1), m = out_channels / g.channels;
  const int64_t taps = g.kernel_numel(), batch = input.size(0);
  at::parallel_for(0, out_channels, 1, [&](int64_t begin, int64_t end) {
    PhasePlane<acc_t> plane(g);
    std::vector<acc_t> converted(g.grid[2]), sums(taps * kLanes);
    for (int64_t oc = begin; oc < end; ++oc) {
      std::fill(sums.begin(), sums.end(), acc_t(0));
      for (int64_t n = 0; n < batch; ++n) {
        plane.load(g, x + (n * g.channels + oc / m) * g.image_numel());
        const scalar_t* line = go + (n * out_channels + oc) * g.grid_numel();
        for (int64_t od = 0; od < g.grid[0]; ++od) {
          for (int64_t oh = 0; oh < g.grid[1]; ++oh, line += g.grid[2]) {
            if constexpr (std::is_same_v<scalar_t, float>) {
              depthwise_weight_grad_line_float(g, plane, od, oh, line, converted.data(),
                                               sums.data());
            } else {
              weight_grad_line(g, plane, od, oh, line, converted.data(), sums.data());
            }
          }
        }
      }
      for (int64_t k = 0; k < taps; ++k) {
        acc_t sum = acc_t(0);
        for (int64_t i = 0; i < kLanes; ++i) sum += sums[k * kLanes + i];
        gw[oc * taps + k] = static_cast<scalar_t>(sum);
      }
    }
  });
}

// ---- channels_last ---------------------------------------------------------------------------

// For one grid line (n, od, oh): the first pixel of the image row each (kd, kh) reads, or null.
template <typename scalar_t>
void tap_rows(const ConvGeometry& g, const scalar_t* sample, int64_t channels, int64_t od,
              int64_t oh, std::vector<const scalar_t*>& rows) {
  rows.clear();
  for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
    for (int64_t kh = 0; kh < g.kernel[1]; ++kh) {
      const int64_t row = tap_row(g, kd, kh, od, oh);
      rows.push_back(row < 0 ? nullptr : sample + row * channels);
    }
  }
}

// A line of channels_last pixels from their taps' pixel pointers (null: padding). Forward: the
// C * m outputs of image channel c read its pixel channel c; transpose: the C outputs sum the m
// grid channels of their group. acc: C * m scratch.
template <typename scalar_t, typename acc_t>
void pixel_line(scalar_t* out, const scalar_t* const* pixels, const std::vector<scalar_t>& wt,
                int64_t count, int64_t taps, int64_t C, int64_t m, bool transpose, acc_t* acc) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    if (m == 1) return simd::depthwise_line(out, pixels, wt.data(), count, taps, C);
  }
  const int64_t wide = C * m, narrow = transpose ? C : wide;
  for (int64_t p = 0; p < count; ++p, out += narrow) {
    std::fill(acc, acc + narrow, acc_t(0));
    for (int64_t k = 0; k < taps; ++k) {
      const scalar_t* __restrict__ px = pixels[p * taps + k];
      if (px == nullptr) continue;
      const scalar_t* __restrict__ wk = wt.data() + k * wide;
      for (int64_t i = 0; i < wide; ++i) {
        const acc_t product =
            static_cast<acc_t>(wk[i]) * static_cast<acc_t>(px[transpose ? i : i / m]);
        acc[transpose ? i / m : i] += product;
      }
    }
    for (int64_t i = 0; i < narrow; ++i) out[i] = static_cast<scalar_t>(acc[i]);
  }
}

template <typename scalar_t>
void forward_channels_last(const at::Tensor& input, const at::Tensor& weight,
                           const at::Tensor& output, const ConvGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* x = input.const_data_ptr<scalar_t>();
  scalar_t* y = output.data_ptr<scalar_t>();
  const int64_t C = g.channels, Cout = output.size(1), m = Cout / C, taps = g.kernel_numel();
  const int64_t KW = g.kernel[2], OW = g.grid[2];
  const auto wt = weights_by_tap<scalar_t>(weight, taps);
  const int64_t lines = output.size(0) * g.grid[0] * g.grid[1];
  at::parallel_for(0, lines, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(Cout);
    std::vector<const scalar_t*> rows, pixels(OW * taps);
    for (int64_t line = begin; line < end; ++line) {
      const int64_t oh = line % g.grid[1], od = line / g.grid[1] % g.grid[0];
      tap_rows(g, x + line / (g.grid[1] * g.grid[0]) * g.image_numel() * C, C, od, oh, rows);
      for (int64_t ow = 0; ow < OW; ++ow) {
        for (int64_t r = 0; r < static_cast<int64_t>(rows.size()); ++r) {
          for (int64_t kw = 0; kw < KW; ++kw) {
            const int64_t iw = ow * g.stride[2] - g.pad[2] + kw * g.dilation[2];
            pixels[ow * taps + r * KW + kw] =
                rows[r] == nullptr || iw < 0 || iw >= g.image[2] ? nullptr : rows[r] + iw * C;
          }
        }
      }
      pixel_line(y + line * OW * Cout, pixels.data(), wt, OW, taps, C, m, /*transpose=*/false,
                 acc.data());
    }
  });
}

// conv_transpose as a gather per image pixel: the grid pixels whose windows cover it.
template <typename scalar_t>
void transpose_channels_last(const at::Tensor& input, const at::Tensor& weight,
                             const at::Tensor& output, const ConvGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* x = input.const_data_ptr<scalar_t>();
  scalar_t* y = output.data_ptr<scalar_t>();
  const int64_t C = g.channels, Cin = input.size(1), m = Cin / C, taps = g.kernel_numel();
  const int64_t KW = g.kernel[2], W = g.image[2];
  const auto wt = weights_by_tap<scalar_t>(weight, taps);
  // covering[iw * KW + kw]: the grid column whose tap kw lands on image column iw, or -1.
  std::vector<int64_t> covering(W * KW);
  for (int64_t iw = 0; iw < W; ++iw) {
    for (int64_t kw = 0; kw < KW; ++kw) {
      covering[iw * KW + kw] =
          covering_grid_index(iw, kw, g.stride[2], g.pad[2], g.dilation[2], g.grid[2]);
    }
  }
  const int64_t lines = output.size(0) * g.image[0] * g.image[1];
  at::parallel_for(0, lines, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(C);
    std::vector<const scalar_t*> rows, pixels(W * taps);
    for (int64_t line = begin; line < end; ++line) {
      const int64_t ih = line % g.image[1], id = line / g.image[1] % g.image[0];
      const scalar_t* sample = x + line / (g.image[1] * g.image[0]) * g.grid_numel() * Cin;
      rows.clear();
      for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
        const int64_t od =
            covering_grid_index(id, kd, g.stride[0], g.pad[0], g.dilation[0], g.grid[0]);
        for (int64_t kh = 0; kh < g.kernel[1]; ++kh) {
          const int64_t oh =
              covering_grid_index(ih, kh, g.stride[1], g.pad[1], g.dilation[1], g.grid[1]);
          rows.push_back(od < 0 || oh < 0 ? nullptr
                                          : sample + (od * g.grid[1] + oh) * g.grid[2] * Cin);
        }
      }
      for (int64_t iw = 0; iw < W; ++iw) {
        for (int64_t r = 0; r < static_cast<int64_t>(rows.size()); ++r) {
          for (int64_t kw = 0; kw < KW; ++kw) {
            const int64_t ow = covering[iw * KW + kw];
            pixels[iw * taps + r * KW + kw] =
                rows[r] == nullptr || ow < 0 ? nullptr : rows[r] + ow * Cin;
          }
        }
      }
      pixel_line(y + line * W * C, pixels.data(), wt, W, taps, C, m, /*transpose=*/true,
                 acc.data());
    }
  });
}

// grad_weight[oc, k] = sum over samples and grid pixels of grad_output[oc] * input[oc / m] at
// tap k. One task per channel block, walking samples and pixels in order: deterministic.
template <typename scalar_t>
void weight_grad_channels_last(const at::Tensor& grad_output, const at::Tensor& input,
                               const at::Tensor& grad_weight, const ConvGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
  const scalar_t* x = input.const_data_ptr<scalar_t>();
  scalar_t* gw = grad_weight.data_ptr<scalar_t>();
  const int64_t C = g.channels, Cout = grad_output.size(1), m = Cout / C;
  const int64_t taps = g.kernel_numel(), batch = input.size(0), KW = g.kernel[2];
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (Cout + kBlock - 1) / kBlock;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<const scalar_t*> rows;
    for (int64_t b = begin; b < end; ++b) {
      const int64_t c0 = b * kBlock, width = std::min(Cout, c0 + kBlock) - c0;
      std::vector<acc_t> acc(taps * width, acc_t(0));
      for (int64_t n = 0; n < batch; ++n) {
        const scalar_t* sample = x + n * g.image_numel() * C;
        for (int64_t od = 0; od < g.grid[0]; ++od) {
          for (int64_t oh = 0; oh < g.grid[1]; ++oh) {
            tap_rows(g, sample, C, od, oh, rows);
            const scalar_t* line =
                go + ((n * g.grid[0] + od) * g.grid[1] + oh) * g.grid[2] * Cout + c0;
            for (int64_t ow = 0; ow < g.grid[2]; ++ow) {
              const scalar_t* grad = line + ow * Cout;
              for (int64_t r = 0; r < static_cast<int64_t>(rows.size()); ++r) {
                if (rows[r] == nullptr) continue;
                for (int64_t kw = 0; kw < KW; ++kw) {
                  const int64_t iw = ow * g.stride[2] - g.pad[2] + kw * g.dilation[2];
                  if (iw < 0 || iw >= g.image[2]) continue;
                  const scalar_t* px = rows[r] + iw * C;
                  acc_t* a = acc.data() + (r * KW + kw) * width;
                  if (m == 1) {
                    simd::accumulate_products(a, grad, px + c0, width);
                  } else {
                    for (int64_t c = 0; c < width; ++c) {
                      a[c] += static_cast<acc_t>(grad[c]) * static_cast<acc_t>(px[(c0 + c) / m]);
                    }
                  }
                }
              }
            }
          }
        }
      }
      for (int64_t c = 0; c < width; ++c) {
        for (int64_t k = 0; k < taps; ++k)
          gw[(c0 + c) * taps + k] = static_cast<scalar_t>(acc[k * width + c]);
      }
    }
  });
}

// NCHW planes this small give the per-plane loops too little work: the channels_last kernels on
// copies are faster, copies included (1 thread, 3x3, N8, forward + both gradients: C960 7x7
// 10.0 ms NCHW, 2.5 ms staged; C576 14x14 9.8 / 6.5; C192 28x28 13.9 / 13.5; C144 56x56 29 /
// 38, where the copies cost more than the kernels save). The forward's NCHW kernel holds up to
// smaller planes than the gradients' (2 threads, C256 28x28: forward 1.08 ms NCHW vs 1.86 staged;
// forward + both gradients 7.4 ms with the gradients staged vs 9.8 ms without).
constexpr int64_t kStagedPixelsForward = 16 * 16;
constexpr int64_t kStagedPixelsGradients = 32 * 32;

bool staged(const at::Tensor& t, const ConvGeometry& g, int64_t below) {
  return !g.channels_last && t.dim() >= 4 && g.image_numel() < below;
}

// Depth multiplier m > 1 on the vector kernels, which take one output channel per image channel:
// output channel c * m + j reads image channel c, so the image with each channel repeated m
// times is a depthwise conv of C * m channels (forward, weight gradient), and the input gradient
// is that conv's, summed over each channel's m copies. The copies cost m passes over the image;
// the per-pixel scalar loops below cost far more. N8, ms, before -> after (torch): C256 -> 512
// 32x32 7x7 channels_last forward 151 -> 10 (40); C128 -> 256 28x28 3x3 channels_last forward
// 16.3 -> 3.0 (7.5), NCHW input gradient 17.7 -> 2.6 and weight gradient 19.2 -> 3.5; C32 -> 96
// 56x56 5x5 NCHW gradients 11.3 -> 4.2 and 20.9 -> 7.2.
//
// t [N, C, S...] as [N, C, m, S...]: the view of a tensor of C * m channels whose channel c * m + j
// is (c, j), in t's memory layout.
at::Tensor split_channels(const at::Tensor& t, int64_t m) {
  auto sizes = t.sizes().vec(), strides = t.strides().vec();
  sizes[1] /= m;
  sizes.insert(sizes.begin() + 2, m);
  strides.insert(strides.begin() + 2, strides[1]);
  strides[1] *= m;
  return t.as_strided(sizes, strides);
}

// A tensor like t with m times its channels, in the layout g.channels_last says.
at::Tensor widened_like(const at::Tensor& t, int64_t m, const ConvGeometry& g) {
  auto sizes = t.sizes().vec();
  sizes[1] *= m;
  const auto format = g.channels_last ? channels_last_format(t) : at::MemoryFormat::Contiguous;
  return at::empty(sizes, t.options().memory_format(format));
}

at::Tensor repeat_channels(const at::Tensor& input, int64_t m, const ConvGeometry& g) {
  auto repeated = widened_like(input, m, g);
  const auto copies = split_channels(repeated, m);
  copies.copy_(input.unsqueeze(2).expand(copies.sizes()));
  return repeated;
}

ConvGeometry widened(const ConvGeometry& g, int64_t m) {
  ConvGeometry wide = g;
  wide.channels = wide.groups = g.channels * m;
  return wide;
}

// Whether the forward / weight gradient with image `input` and grid `grid` (C * m channels)
// runs on the vector kernels with the image's channels repeated.
bool repeats_pay(const at::Tensor& input, const at::Tensor& grid, const ConvGeometry& g) {
  const int64_t m = grid.size(1) / g.channels;
  // The repeated image has the grid's channels and dtype.
  return m > 1 && input.scalar_type() == grid.scalar_type() &&
         depthwise_vector_kernels(grid, grid, widened(g, m));
}

}  // namespace

void depthwise_conv(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                    const at::Tensor& output, const ConvGeometry& g) {
  if (g.channels_last && depthwise_bfloat16_forward_applies(input, output.size(1), g)) {
    return depthwise_forward_bfloat16(input, weight, bias, output, g);
  }
  if (depthwise_vector_kernels(input, output, g)) {
    return depthwise_forward_vectors(input, weight, bias, output, g);
  }
  // NCHW: the planes' own forward shares each loaded plane among its m outputs, and beats the
  // copies (N8 C64 x 4 56x56 stride 2 forward 2.2 against 4.9 ms; C128 x 2 28x28 1.7 / 1.9).
  if (g.channels_last && repeats_pay(input, output, g)) {
    const int64_t m = output.size(1) / g.channels;
    return depthwise_forward_vectors(repeat_channels(input, m, g), weight, bias, output,
                                     widened(g, m));
  }
  if (staged(input, g, kStagedPixelsForward)) {
    return via_channels_last({input}, output, g, [&](auto& in, auto& out, auto& cl) {
      depthwise_conv(in[0], weight, bias, out, cl);
    });
  }
  CONVPOOL_DISPATCH_FLOATING_TYPES(input.scalar_type(), "depthwise_conv_cpu", [&] {
    g.channels_last ? forward_channels_last<scalar_t>(input, weight, output, g)
                    : forward_nchw<scalar_t>(input, weight, output, g);
  });
  add_bias(output, bias);
}

void depthwise_conv_transpose(const at::Tensor& input, const at::Tensor& weight,
                              const at::Tensor& output, const ConvGeometry& g) {
  if (depthwise_vector_kernels(input, output, g)) {
    return depthwise_transpose_vectors(input, weight, output, g);
  }
  if (repeats_pay(output, input, g)) {
    const int64_t m = input.size(1) / g.channels;
    const auto copies = widened_like(output, m, g);
    depthwise_transpose_vectors(input, weight, copies, widened(g, m));
    at::Tensor out = output;
    at::sum_out(out, split_channels(copies, m), at::IntArrayRef{2});
    return;
  }
  if (staged(input, g, kStagedPixelsGradients)) {
    return via_channels_last({input}, output, g, [&](auto& in, auto& out, auto& cl) {
      depthwise_conv_transpose(in[0], weight, out, cl);
    });
  }
  CONVPOOL_DISPATCH_FLOATING_TYPES(input.scalar_type(), "depthwise_conv_transpose_cpu", [&] {
    g.channels_last ? transpose_channels_last<scalar_t>(input, weight, output, g)
                    : transpose_nchw<scalar_t>(input, weight, output, g);
  });
}

void depthwise_weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                           const at::Tensor& grad_weight, const ConvGeometry& g) {
  if (depthwise_vector_kernels(input, grad_output, g) &&
      grad_weight.scalar_type() == input.scalar_type()) {
    return depthwise_weight_grad_vectors(grad_output, input, grad_weight, g);
  }
  if (repeats_pay(input, grad_output, g) && grad_weight.scalar_type() == input.scalar_type()) {
    const int64_t m = grad_output.size(1) / g.channels;
    return depthwise_weight_grad_vectors(grad_output, repeat_channels(input, m, g), grad_weight,
                                         widened(g, m));
  }
  if (staged(input, g, kStagedPixelsGradients)) {
    ConvGeometry cl = g;
    cl.channels_last = true;
    const auto format = channels_last_format(input);
    return depthwise_weight_grad(contiguous_as(grad_output, format), contiguous_as(input, format),
                                 grad_weight, cl);
  }
  CONVPOOL_DISPATCH_FLOATING_TYPES(input.scalar_type(), "depthwise_weight_grad_cpu", [&] {
    g.channels_last ? weight_grad_channels_last<scalar_t>(grad_output, input, grad_weight, g)
                    : weight_grad_nchw<scalar_t>(grad_output, input, grad_weight, g);
  });
}

}  // namespace convpool::cpu
