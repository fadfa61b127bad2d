#include "gemm_conv_cpu.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <vector>

#include "../common/output_memory.h"
#include "../common/short_copy.h"
#include "../common/thread_scratch.h"
#include "blas_gemm.h"
#include "blocked_transpose.h"
#include "brgemm_conv_cpu.h"
#include "channels_last_staging.h"
#include "conv_algorithm.h"
#include "conv_driver.h"
#include "conv_lines.h"
#include "conv_phases.h"
#include "layout_copy.h"
#include "live_taps.h"
#include "small_image_gemm_cpu.h"
#include "tap_gemm_cpu.h"
#include "winograd_cpu.h"
#include "winograd_phases_cpu.h"

namespace convpool::cpu {
namespace {

// A column block of about this size stays in L2 (2 MiB per core on the machines measured) beside
// the weight panel and the output block the GEMM streams.
constexpr int64_t kColumnBytes = 1536 * 1024;
// BLAS packs the weight panel again for every block: below this many pixels per block that
// repacking (and, for the weight gradient, re-reading the accumulator) costs more than the
// column matrix's trip to L3.
constexpr int64_t kMinPixels = 256;
// Problems are cut into at least this many blocks when they are large enough, so every core works
// even at batch 1. A constant, not the thread count: the blocks decide the summation order.
constexpr int64_t kMinBlocks = 8;
// The weight gradient sums this many partial sums (each over a fixed run of blocks).
constexpr int64_t kWeightGradChunks = 4;
// Its blocks are this many times smaller than the forward's: its GEMM streams the gradient's block
// beside the columns and accumulates a small result, and with both in L2 it ran faster (1 thread,
// batch 8: 3x3 stride 2 C64@56 12.1 -> 10.5 ms channels_last, 18.4 -> 16.8 ms NCHW; the stem's
// NCHW weight gradient 42.7 -> 34.9 ms).
constexpr int64_t kWeightGradBlockShrink = 4;

// Where grid position o of the computed conv lands in the output tensor, per dim:
// o * step + offset inside an output of spatial size `dims`. Identity for a plain conv; the
// phases of a strided conv_transpose write every step-th position.
struct Placement {
  int64_t dims[kSpatialDims];
  int64_t step[kSpatialDims];
  int64_t offset[kSpatialDims];
  bool identity;

  int64_t numel() const { return dims[0] * dims[1] * dims[2]; }
  int64_t place(const ConvGeometry& g, int64_t q) const {
    const int64_t ow = q % g.grid[2], oh = q / g.grid[2] % g.grid[1];
    const int64_t od = q / (g.grid[2] * g.grid[1]);
    return ((od * step[0] + offset[0]) * dims[1] + oh * step[1] + offset[1]) * dims[2] +
           ow * step[2] + offset[2];
  }
};

Placement identity_placement(const ConvGeometry& g) {
  Placement p{};
  for (int d = 0; d < kSpatialDims; ++d) p.dims[d] = g.grid[d], p.step[d] = 1, p.offset[d] = 0;
  p.identity = true;
  return p;
}

// The pixels per block of `total` cut into blocks of about p: their count rounded up to an even
// number (two where there are 64+ pixels) and the blocks made equal, so that two cores finish
// together (392 pixels: 2 x 196, not 256 + 136).
int64_t equal_blocks(int64_t total, int64_t p) {
  int64_t blocks = (total + p - 1) / p;
  blocks += blocks % 2 == 1 && blocks > 1 ? 1 : 0;
  if (blocks == 1 && total >= 2 * 32) blocks = 2;
  return (total + blocks - 1) / blocks;
}

// Pixels per block: a column block of about kColumnBytes, and small enough for kMinBlocks blocks
// where every block still gets kMinPixels; equal blocks.
int64_t block_pixels(int64_t total, int64_t row_bytes) {
  int64_t p = std::max(kMinPixels, kColumnBytes / std::max<int64_t>(row_bytes, 1));
  p = std::min(p, std::max(kMinPixels, (total + kMinBlocks - 1) / kMinBlocks));
  return equal_blocks(total, std::max<int64_t>(1, std::min(p, total)));
}

// o[i] = r[S * i] for i in [lo, hi): the strided convs' gather (ResNet's downsampling and stem
// at stride 2, AlexNet's stem at 4), with the constant stride the compiler turns into vector
// shuffles; a strided scalar loop took longer than the GEMM it fed in the stem's weight gradient
// (stride 2), and a third of AlexNet's stem (11x11/4 3 -> 64, N4 NCHW: 3.2 -> 2.55 ms, torch
// 1.7; its GEMM alone runs at the float32 peak).
template <int S, typename T>
void copy_strided(const T* __restrict__ r, int64_t lo, int64_t hi, T* __restrict__ o) {
  for (int64_t i = lo; i < hi; ++i) o[i] = r[S * i];
}

// Column matrix [cg * taps, q1 - q0] (rows `ld` apart, by default q1 - q0) of grid positions
// [q0, q1) of one sample, channels [0, cg) of `image` (NCHW: channel c at image + c *
// image_numel). Row (c, tap) walks the grid lines the block touches: zeros, a strided copy of the
// input row, zeros.
template <typename T>
void gather_columns(const T* image, const ConvGeometry& g, int64_t cg, int64_t q0, int64_t q1,
                    T* col, int64_t ld = -1) {
  const int64_t taps = g.kernel_numel(), OW = g.grid[2], s = g.stride[2];
  const int64_t width = ld >= 0 ? ld : q1 - q0;
  for (int64_t c = 0; c < cg; ++c) {
    const T* channel = image + c * g.image_numel();
    for (int64_t k = 0; k < taps; ++k) {
      int64_t kd, kh, kw;
      split_tap(g, k, kd, kh, kw);
      const TapRun run = width_run(g, kw);
      T* out = col + (c * taps + k) * width - q0;  // out[q]: grid position q
      for (int64_t q = q0; q < q1;) {
        const int64_t line = q / OW, a = q % OW, b = std::min(OW, a + (q1 - q));
        const int64_t in_row = tap_row(g, kd, kh, line / g.grid[1], line % g.grid[1]);
        T* o = out + q - a;  // o[ow]: position ow of this line
        if (in_row < 0) {
          std::fill(o + a, o + b, T(0));
        } else {
          const int64_t lo = std::clamp(run.lo, a, b), hi = std::clamp(run.hi, lo, b);
          const T* __restrict__ r = channel + in_row + run.offset;
          std::fill(o + a, o + lo, T(0));
          if (s == 1) {
            std::copy(r + lo, r + hi, o + lo);
          } else if (s == 2) {
            copy_strided<2>(r, lo, hi, o);
          } else if (s == 4) {
            copy_strided<4>(r, lo, hi, o);
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) o[ow] = r[ow * s];
          }
          std::fill(o + hi, o + b, T(0));
        }
        q += b - a;
      }
    }
  }
}

// The window of grid position q: its first tap's image coordinates (bd, bh, bw), which may lie in
// the padding, and the taps [w_lo, w_hi) along W that land inside the image.
struct Window {
  int64_t bd, bh, bw, w_lo, w_hi;
};

inline void clip_width(const ConvGeometry& g, Window& w) {
  if (g.dilation[2] == 1) {
    w.w_lo = std::clamp<int64_t>(-w.bw, 0, g.kernel[2]);
    w.w_hi = std::clamp<int64_t>(g.image[2] - w.bw, w.w_lo, g.kernel[2]);
  } else {
    taps_inside(w.bw, g.kernel[2], g.dilation[2], g.image[2], w.w_lo, w.w_hi);
  }
}

inline Window window_of(const ConvGeometry& g, int64_t q) {
  const int64_t ow = q % g.grid[2], oh = q / g.grid[2] % g.grid[1];
  const int64_t od = q / (g.grid[2] * g.grid[1]);
  Window w{od * g.stride[0] - g.pad[0], oh * g.stride[1] - g.pad[1], ow * g.stride[2] - g.pad[2], 0,
           0};
  clip_width(g, w);
  return w;
}

// The windows of consecutive positions m, m + 1, ... flat over batch and grid, with the
// divisions done once per grid line rather than per position: for the stem's 27-value rows they
// cost as much as the copies.
class WindowWalk {
 public:
  WindowWalk(const ConvGeometry& g, int64_t m)
      : g_(g), sample_(m / g.grid_numel()), q_(m % g.grid_numel()) {
    start_line();
  }
  int64_t sample() const { return sample_; }
  const Window& window() const { return w_; }
  void next() {
    if (++q_ == g_.grid_numel()) q_ = 0, ++sample_;
    if (++ow_ == g_.grid[2]) return start_line();
    w_.bw += g_.stride[2];
    clip_width(g_, w_);
  }

 private:
  void start_line() {
    w_ = window_of(g_, q_);
    ow_ = q_ % g_.grid[2];
  }
  const ConvGeometry& g_;
  int64_t sample_, q_, ow_ = 0;
  Window w_{};
};

// Column rows [m1 - m0, taps * cg] of output pixels [m0, m1) (flat over batch and grid) from a
// channels_last input, channels [c0, c0 + cg): each row is tap by tap, cg channels per tap.
template <typename T>
void gather_rows_cl(const T* x, const ConvGeometry& g, int64_t c0, int64_t cg, int64_t m0,
                    int64_t m1, T* col) {
  const int64_t C = g.channels, KW = g.kernel[2];
  // With every channel and no dilation along W, a tap row (kd, kh) is one contiguous run.
  const bool contiguous_taps = cg == C && g.dilation[2] == 1;
  T* row = col;
  for (WindowWalk walk(g, m0); m0 < m1; ++m0, walk.next()) {
    const T* sample = x + walk.sample() * g.image_numel() * C + c0;
    const auto [bd, bh, bw, w_lo, w_hi] = walk.window();
    for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
      const int64_t id = bd + kd * g.dilation[0];
      for (int64_t kh = 0; kh < g.kernel[1]; ++kh, row += KW * cg) {
        const int64_t ih = bh + kh * g.dilation[1];
        if (id < 0 || id >= g.image[0] || ih < 0 || ih >= g.image[1] || w_lo == w_hi) {
          std::fill(row, row + KW * cg, T(0));
          continue;
        }
        const T* line = sample + (id * g.image[1] + ih) * g.image[2] * C;
        std::fill(row, row + w_lo * cg, T(0));
        if (contiguous_taps) {
          copy_short(line + (bw + w_lo) * C, (w_hi - w_lo) * C, row + w_lo * C);
        } else {
          for (int64_t kw = w_lo; kw < w_hi; ++kw) {
            const T* from = line + (bw + kw * g.dilation[2]) * C;
            copy_short(from, cg, row + kw * cg);
          }
        }
        std::fill(row + w_hi * cg, row + KW * cg, T(0));
      }
    }
  }
}

// Weights [K, cg, taps] (NCHW) <-> [K, taps, cg] (channels_last), output channel by output
// channel: every path takes the weight in its own layout, so a channels_last model's weights are
// used as they are.
template <typename T>
std::vector<T> relayout_weight(const T* w, int64_t K, int64_t cg, int64_t taps, bool to_cl) {
  std::vector<T> out(K * cg * taps);
  const int64_t grain = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, cg * taps));
  at::parallel_for(0, K, grain, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const T* from = w + k * cg * taps;
      T* to = out.data() + k * cg * taps;
      if (to_cl) {
        blocked_transpose(from, taps, int64_t{1}, cg, taps, to, cg, int64_t{1});
      } else {
        blocked_transpose(from, cg, int64_t{1}, taps, cg, to, taps, int64_t{1});
      }
    }
  });
  return out;
}

// Copies a block's staged rows [kg, q1 - q0] (grid positions q0..q1) to their places in the NCHW
// output: channel by channel, grid line by grid line, so the writes walk each output plane (the
// phases of a strided conv_transpose: every step-th position) instead of jumping a plane per value
// (that loop took a third of a stride-2 3x3 input gradient).
template <typename T>
void place_block(const T* staged, int64_t width, int64_t kg, const ConvGeometry& g,
                 const Placement& place, int64_t q0, int64_t q1, T* out, int64_t out_numel) {
  const int64_t OW = g.grid[2], step = place.step[2];
  for (int64_t k = 0; k < kg; ++k) {
    const T* __restrict__ from = staged + k * width - q0;
    T* __restrict__ plane = out + k * out_numel;
    for (int64_t q = q0; q < q1;) {
      const int64_t a = q % OW, b = std::min(OW, a + (q1 - q));
      T* __restrict__ line = plane + place.place(g, q - a);
      const T* __restrict__ src = from + q - a;
      if (step == 1) {
        std::copy(src + a, src + b, line + a);
      } else {
        for (int64_t ow = a; ow < b; ++ow) line[ow * step] = src[ow];
      }
      q += b - a;
    }
  }
}

struct Shape {
  int64_t batch, out_channels;
};

// Each group's weight operand [inner, cols] packed for our GEMM, where that computes T's
// products; empty where at::mm does.
template <typename T, typename Operand>
std::vector<PackedMatrix<T>> pack_weights(int64_t groups, Operand&& operand, int64_t inner,
                                          int64_t cols, bool packed_gemm) {
  std::vector<PackedMatrix<T>> packed;
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    if (packed_gemm) {
      packed.reserve(groups);
      for (int64_t gi = 0; gi < groups; ++gi) packed.emplace_back(operand(gi), inner, cols);
    }
  }
  return packed;
}

// out (row stride ldc) = lhs [height, inner] x group gi's weight operand [inner, cols], or +=
// when `accumulate`: packed for our GEMM where pack_weights packed it, else the strided view
// `weight` through at::mm.
template <typename T>
void multiply_by_weight(StridedMatrix<T> lhs, int64_t height,
                        const std::vector<PackedMatrix<T>>& packed, int64_t gi,
                        const at::Tensor& weight, T* out, int64_t ldc, bool accumulate) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    if (!packed.empty()) {
      packed_gemm(lhs, packed[gi], out, ldc, height, accumulate);
      return;
    }
  }
  gemm(matrix(lhs.data, height, weight.size(0), lhs.row, lhs.col), weight, out, ldc, accumulate);
}

// c[rows, cols] (row stride ldc) = bias[row] (NCHW blocks: a row per output channel) or
// bias[col] (channels_last blocks), for the block's GEMM to accumulate onto (beta = 1): the bias
// costs no pass of its own over the output, and MKL skips the pass that zeroes C for beta = 0
// (14 % of a 1x1 conv over 16 channels).
template <typename T>
void fill_bias_rows(T* c, int64_t ldc, int64_t rows, int64_t cols, const T* bias) {
  for (int64_t i = 0; i < rows; ++i) std::fill(c + i * ldc, c + i * ldc + cols, bias[i]);
}

template <typename T>
void fill_bias_columns(T* c, int64_t ldc, int64_t rows, int64_t cols, const T* bias) {
  for (int64_t i = 0; i < rows; ++i) std::copy(bias, bias + cols, c + i * ldc);
}

// f(n, q0, q1, at) for each sample n that the block of pixels [m0, m1) (flat over batch and
// grid) covers: its grid positions [q0, q1), which start `at` pixels into the block.
template <typename F>
void for_each_sample_run(int64_t m0, int64_t m1, int64_t grid, F&& f) {
  for (int64_t m = m0; m < m1;) {
    const int64_t n = m / grid, q0 = m % grid, q1 = std::min(grid, q0 + (m1 - m));
    f(n, q0, q1, m - m0);
    m += q1 - q0;
  }
}

// NCHW with the pixels as the GEMM's rows, for our GEMM, in blocks over the whole batch:
// staged[block, kg] = columns^T[block, cg * taps] x weight^T[cg * taps, kg], then transposed into
// each sample's output. For small maps (ResNet's 7x7 and 14x14 stages): the weights are packed
// once per call (at::mm repacked a weight of megabytes for every block, our GEMM with pixels as
// its columns a block's columns), the pixels need no padding to whole vector panels (a 7x7
// sample's 49 pixels made 64 columns), and a block of several samples passes the weight through
// the caches once instead of once per sample.
// `weight_operand(gi)`: group gi's weight^T [cg * taps, kg] (rows (c, tap)).
template <typename T, typename Operand>
void conv_nchw_pixel_rows(const T* x, Operand&& weight_operand, T* y, const ConvGeometry& g,
                          Shape s, const T* bias) {
  const int64_t C = g.channels, G = g.groups, K = s.out_channels, cg = C / G, kg = K / G;
  const int64_t rows = cg * g.kernel_numel(), grid = g.grid_numel(), total = s.batch * grid;
  const int64_t P = block_pixels(total, rows * static_cast<int64_t>(sizeof(T)));
  const auto packed_weights = pack_weights<T>(G, weight_operand, rows, kg, /*packed_gemm=*/true);
  at::parallel_for(0, (total + P - 1) / P, 1, [&](int64_t begin, int64_t end) {
    const ThreadScratch<T> col(0, rows * P);
    const ThreadScratch<T> staged(1, P * kg);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t m0 = b * P, m1 = std::min(total, m0 + P), height = m1 - m0;
      for (int64_t gi = 0; gi < G; ++gi) {
        for_each_sample_run(m0, m1, grid, [&](int64_t n, int64_t q0, int64_t q1, int64_t at) {
          gather_columns(x + (n * C + gi * cg) * g.image_numel(), g, cg, q0, q1, col.data() + at,
                         height);
        });
        if (bias) fill_bias_columns(staged.data(), kg, height, kg, bias + gi * kg);
        packed_gemm(StridedMatrix<T>{col.data(), 1, height}, packed_weights[gi], staged.data(), kg,
                    height, bias != nullptr);
        for_each_sample_run(m0, m1, grid, [&](int64_t n, int64_t q0, int64_t q1, int64_t at) {
          blocked_transpose(staged.data() + at * kg, kg, 1, q1 - q0, kg,
                            y + (n * K + gi * kg) * grid + q0, grid, 1);
        });
      }
    }
  });
}

// Whether an NCHW forward takes conv_nchw_pixel_rows: where our GEMM is the one chosen, for
// weights too large for it with the pixels as its columns (kMaxColumnsWeightBytes), which kept
// MKL: 1x1 convs, and small maps of at most 9 taps (which had gone through channels_last copies
// and a relayout of the weight; with 25 taps the NCHW gather lost). 2 threads, N8, ms before ->
// after (torch): 1x1 C1024 -> 2048 7x7 12.3 -> 9.6 (8.9), C2048 -> 512 7x7 6.2 -> 5.6 (4.9),
// C512 -> 2048 7x7 6.4 -> 5.2 (4.8); 3x3 stride 2 C256 -> 512 14x14 7.2-8.2 -> 6.7-7.0 (4.9),
// C512 -> 512 16.5 -> 14.6 (10.1); 5x5 stride 2 C192 14x14 even (0.6 of torch either way): left
// as it was.
bool pixel_rows_preferred(const ConvGeometry& g, int64_t batch, int64_t out_channels,
                          int64_t element_size) {
  // Too few pixels for a block per core (a 7x7 map at batch 1): MKL called outside a parallel
  // region runs on both cores (1x1 C1024 -> 2048, N1: 1.8 ms, ours on one core 2.5-4.1).
  if (g.channels_last || !packed_gemm_preferred(0) || batch * g.grid_numel() < 64) return false;
  const int64_t taps = g.kernel_numel();
  const int64_t weight_bytes =
      g.channels / g.groups * taps * (out_channels / g.groups) * element_size;
  return weight_bytes > kMaxColumnsWeightBytes &&
         (g.is_pointwise() || (g.grid_numel() < kMinPixels && taps <= 9));
}

// NCHW: blocks of grid positions inside one sample; per group
// out[kg, block] = weight[kg, cg * taps] x columns[cg * taps, block], w in NCHW layout.
template <typename T>
void conv_nchw(const T* x, const T* w, T* y, const ConvGeometry& g, Shape s, const Placement& place,
               const T* bias) {
  const int64_t C = g.channels, G = g.groups, K = s.out_channels, cg = C / G, kg = K / G;
  const int64_t rows = cg * g.kernel_numel(), grid = g.grid_numel(), out_numel = place.numel();
  const bool pointwise = g.is_pointwise();
  const int64_t P = block_pixels(grid * s.batch, rows * static_cast<int64_t>(sizeof(T)));
  const int64_t per_sample = (grid + P - 1) / P;
  const int64_t P_eff = std::min(P, grid);
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    if (place.identity && pixel_rows_preferred(g, s.batch, K, sizeof(T))) {
      const auto weight_t = [&](int64_t gi) {
        return StridedMatrix<T>{w + gi * kg * rows, 1, rows};
      };
      conv_nchw_pixel_rows(x, weight_t, y, g, s, bias);
      return;
    }
  }
  const bool packed_gemm = packed_gemm_preferred(rows * kg * static_cast<int64_t>(sizeof(T)));
  at::parallel_for(0, s.batch * per_sample, 1, [&](int64_t begin, int64_t end) {
    const ThreadScratch<T> col(0, pointwise ? 0 : rows * P_eff);
    const ThreadScratch<T> staged(1, place.identity ? 0 : kg * P_eff);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t n = b / per_sample, q0 = b % per_sample * P, q1 = std::min(grid, q0 + P);
      const int64_t width = q1 - q0;
      for (int64_t gi = 0; gi < G; ++gi) {
        const T* image = x + (n * C + gi * cg) * g.image_numel();
        at::Tensor columns;
        if (pointwise) {
          columns = matrix(image + q0, cg, width, g.image_numel(), 1);
        } else {
          gather_columns(image, g, cg, q0, q1, col.data());
          columns = matrix(col.data(), rows, width, width, 1);
        }
        const auto weight = matrix(w + gi * kg * rows, kg, rows, rows, 1);
        T* out = y + (n * K + gi * kg) * out_numel;
        if (place.identity) {
          if (bias) fill_bias_rows(out + q0, out_numel, kg, width, bias + gi * kg);
          gemm(weight, columns, out + q0, out_numel, bias != nullptr, packed_gemm);
          continue;
        }
        gemm(weight, columns, staged.data(), width, false, packed_gemm);
        place_block(staged.data(), width, kg, g, place, q0, q1, out, out_numel);
      }
    }
  });
}

// Where a problem has too few pixels for blocks of kMinPixels (a 7x7 map at batch 2: 98), cutting
// the pixels leaves each core a GEMM a few dozen rows tall, which BLAS runs far below its peak
// (1x1 C160 -> 960 on 7x7, N2: 0.41 ms in two blocks of 49 pixels, 0.22 in one block cut into two
// halves of the output channels). Such problems are cut along the output channels instead, into
// an even number of parts of at least kMinChannelPart channels; each output is still one GEMM's
// dot product, so the split changes no sum.
constexpr int64_t kMinChannelPart = 128;

int64_t channel_parts(int64_t total, int64_t channels) {
  if (total >= 2 * kMinPixels) return 1;
  const int64_t parts = std::min(kMinBlocks, channels / kMinChannelPart);
  return parts >= 2 ? parts / 2 * 2 : 1;
}

// The pixels per block of a channels_last forward's GEMMs, each row `rows` values. bfloat16
// GEMMs (oneDNN's, AMX where the CPU has it) pack their weight operand again in every call, so
// their blocks are four times as large (at most halves of the batch; float32 ones go through
// MKL or our GEMM on a weight packed once). N8, 2 threads, ms, blocks of block_pixels -> these
// (torch): 1x1 C256 -> 1024 14x14 0.90 -> 0.51-0.57 (0.54-0.61), C512 -> 128 28x28 0.92 ->
// 0.56-0.61 (0.57-0.60), C256 -> 64 56x56 0.94 -> 0.58-0.65 (0.60-0.69); 3x3 stride 2 C64 ->
// 128 56x56 1.16 -> 0.95 (0.73), C128 -> 256 28x28 1.09 -> 0.86 (0.63); 1x1 stride 2 C64 -> 128
// 56x56 0.47 -> 0.30 (0.28), C512 -> 1024 28x28 0.91 -> 0.71 (0.61). Every output is still one
// GEMM's dot product over a block fixed by the shapes.
template <typename T>
int64_t gemm_block_pixels(int64_t total, int64_t rows) {
  const int64_t p = block_pixels(total, rows * static_cast<int64_t>(sizeof(T)));
  return std::is_same_v<T, c10::BFloat16> ? equal_blocks(total, 4 * p) : p;
}

// channels_last: blocks of output pixels over the whole batch (or, for few pixels, of output
// channels: channel_parts); per group
// out[block, kg] = rows[block, taps * cg] x weight_t(group)[taps * cg, kg].
template <typename T, typename WeightT>
void conv_cl_with(const T* x, WeightT&& weight_t, T* y, const ConvGeometry& g, Shape s,
                  const Placement& place, const T* bias) {
  const int64_t C = g.channels, G = g.groups, K = s.out_channels, cg = C / G, kg = K / G;
  const int64_t taps = g.kernel_numel(), rows = taps * cg, grid = g.grid_numel();
  const int64_t total = s.batch * grid, out_numel = place.numel();
  const bool pointwise = g.is_pointwise();
  // Weights over packed_gemm_preferred's 2 MiB go through our GEMM too where the output is written
  // in place in blocks of pixels enough for both cores (they are packed once per call here; the
  // regions of live_taps.h, small blocks each, kept MKL: DeepLab's ASPP lost with ours). 2
  // threads, N8, ms MKL -> ours (torch): 3x3 stride 2 C256 -> 512 14x14 7.0 -> 5.9 (5.2), C512 ->
  // 512 14.0 -> 11.5 (10.1), C256 -> 256 28x28 12.3 -> 10.1 (9.2); 1x1 C1024 14x14 21.0 -> 17.6
  // (16.2), N2 C2048 -> 512 28x28 19.3 -> 16.6 (16.3); 7x7 maps even (C1024 -> 2048 9.4 -> 9.9).
  const bool packed_gemm =
      packed_gemm_preferred(rows * kg * static_cast<int64_t>(sizeof(T)), total) ||
      (packed_gemm_preferred(0) && place.identity && channel_parts(total, kg) == 1 && total >= 64);
  // The channel split is for BLAS's GEMM on outputs written in place.
  const bool bfloat16 = std::is_same_v<T, c10::BFloat16>;
  const int64_t parts =
      place.identity && !packed_gemm && !bfloat16 ? channel_parts(total, kg) : int64_t{1};
  const int64_t P = parts > 1 ? total : gemm_block_pixels<T>(total, rows);
  const int64_t part = (kg + parts - 1) / parts;
  // Our GEMM takes the weight packed once here rather than in every block.
  const auto weight_of = [&](int64_t gi) {
    const StridedMatrix<T> b = weight_t(gi);
    return matrix(b.data, rows, kg, b.row, b.col);
  };
  const auto packed_weights = pack_weights<T>(G, weight_t, rows, kg, packed_gemm);
  at::parallel_for(0, (total + P - 1) / P * parts, 1, [&](int64_t begin, int64_t end) {
    const ThreadScratch<T> col(0, pointwise ? 0 : rows * P);
    const ThreadScratch<T> staged(1, place.identity ? 0 : P * kg);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / parts, c0 = task % parts * part, cols = std::min(kg, c0 + part) - c0;
      const int64_t m0 = b * P, m1 = std::min(total, m0 + P), height = m1 - m0;
      for (int64_t gi = 0; gi < G; ++gi) {
        StridedMatrix<T> lhs{x + m0 * C + gi * cg, C, 1};
        if (!pointwise) {
          gather_rows_cl(x, g, gi * cg, cg, m0, m1, col.data());
          lhs = {col.data(), rows, 1};
        }
        T* out = place.identity ? y + m0 * K + gi * kg + c0 : staged.data();
        const int64_t ldc = place.identity ? K : kg;
        const bool with_bias = place.identity && bias;
        if (with_bias) fill_bias_columns(out, ldc, height, cols, bias + gi * kg + c0);
        const auto weight = parts > 1 ? weight_of(gi).narrow(1, c0, cols) : weight_of(gi);
        multiply_by_weight(lhs, height, packed_weights, gi, weight, out, ldc, with_bias);
        if (place.identity) continue;
        for (int64_t m = m0; m < m1; ++m) {
          const int64_t at = (m / grid) * out_numel + place.place(g, m % grid);
          std::copy_n(staged.data() + (m - m0) * kg, kg, y + at * K + gi * kg);
        }
      }
    }
  });
}

// conv_cl_with on the channels_last weight [kg, taps * cg] of each group, transposed: rows (tap,
// channel) like the gathered rows.
template <typename T>
void conv_cl(const T* x, const T* w, T* y, const ConvGeometry& g, Shape s, const Placement& place,
             const T* bias) {
  const int64_t rows = g.kernel_numel() * (g.channels / g.groups), kg = s.out_channels / g.groups;
  const auto weight_t = [&](int64_t gi) { return StridedMatrix<T>{w + gi * kg * rows, 1, rows}; };
  conv_cl_with(x, weight_t, y, g, s, place, bias);
}

// Whether every value is finite: no element has an all-ones exponent. Integer tests on the bits
// vectorise (a floating-point reduction would be one long dependency chain), one streaming pass,
// no temporaries (at::isfinite(w).all() took 13% of a 512-channel dgrad).
template <typename T>
bool all_finite(const T* data, int64_t n) {
  using Bits = std::conditional_t<sizeof(T) == 8, uint64_t,
                                  std::conditional_t<sizeof(T) == 4, uint32_t, uint16_t>>;
  constexpr Bits kExponent =
      static_cast<Bits>(std::is_same_v<T, double>          ? 0x7ff0000000000000ull
                        : std::is_same_v<T, float>         ? 0x7f800000ull
                        : std::is_same_v<T, c10::BFloat16> ? 0x7f80ull
                                                           : 0x7c00ull);  // c10::Half
  std::atomic<bool> finite{true};
  at::parallel_for(0, n, 1 << 16, [&](int64_t begin, int64_t end) {
    Bits non_finite = 0;
    for (int64_t i = begin; i < end; ++i) {
      Bits bits;
      std::memcpy(&bits, data + i, sizeof(T));
      non_finite |= static_cast<Bits>((bits & kExponent) == kExponent);
    }
    if (non_finite != 0) finite = false;
  });
  return finite;
}

// y = conv(x, w) with every tap, plus the bias where one is given (identity placement only).
template <typename T>
void conv_all_taps(const T* x, const T* w, T* y, const ConvGeometry& g, Shape s,
                   const Placement& place, const T* bias) {
  if (g.channels_last) {
    conv_cl(x, w, y, g, s, place, bias);
  } else {
    conv_nchw(x, w, y, g, s, place, bias);
  }
}

// Calls f(whole, part) for every weight entry of region r's live taps: its index in the full
// weight and in the region's, both in the path's layout ([K, cg, taps] NCHW, [K, taps, cg]
// channels_last), taps in (kd, kh, kw) order.
template <typename F>
void for_each_live_weight(const ConvGeometry& g, int64_t out_channels, const ConvGeometry& sub,
                          const Region& r, F&& f) {
  const int64_t cg = g.channels / g.groups, taps = g.kernel_numel(), live = sub.kernel_numel();
  for (int64_t k = 0; k < out_channels; ++k) {
    for (int64_t t = 0; t < live; ++t) {
      int64_t kd, kh, kw;
      split_tap(sub, t, kd, kh, kw);
      const int64_t from =
          ((kd + r[0].k0) * g.kernel[1] + kh + r[1].k0) * g.kernel[2] + kw + r[2].k0;
      for (int64_t c = 0; c < cg; ++c) {
        if (g.channels_last) {
          f((k * taps + from) * cg + c, (k * live + t) * cg + c);
        } else {
          f((k * cg + c) * taps + from, (k * cg + c) * live + t);
        }
      }
    }
  }
}

// Zeros the outputs of a region none of whose taps lands inside the image.
template <typename T>
void zero_region(T* y, const ConvGeometry& sub, Shape s, const Placement& place) {
  const int64_t K = s.out_channels, out_numel = place.numel();
  for (int64_t n = 0; n < s.batch; ++n) {
    for (int64_t q = 0; q < sub.grid_numel(); ++q) {
      const int64_t at = place.place(sub, q);
      for (int64_t k = 0; k < K; ++k) {
        y[sub.channels_last ? (n * out_numel + at) * K + k : (n * K + k) * out_numel + at] = T(0);
      }
    }
  }
}

// y = conv(x, w), plus the bias where one is given (a forward conv: identity placement), and
// returns whether it added it (a conv by several regions leaves it to the caller). Where windows
// reach far into the padding, region by region with only the taps inside the image
// (live_taps.h): the GEMMs skip the products by padding zeros.
template <typename T>
bool conv_any(const T* x, const T* w, T* y, const ConvGeometry& g, Shape s, const Placement& place,
              const T* bias = nullptr) {
  const int64_t cg = g.channels / g.groups;
  const auto regions = live_tap_regions(g, s.batch * cg * s.out_channels, cg * s.out_channels);
  if (!regions) return conv_all_taps(x, w, y, g, s, place, bias), bias != nullptr;
  bool bias_added = false;
  for (const Region& r : *regions) {
    const ConvGeometry sub = region_geometry(g, r);
    Placement at = place;
    bool whole = true;
    for (int d = 0; d < kSpatialDims; ++d) {
      at.offset[d] += r[d].o0 * place.step[d];
      whole &= sub.grid[d] == g.grid[d];
    }
    at.identity = place.identity && whole;
    if (sub.kernel_numel() == 0) {
      zero_region(y, sub, s, at);
      continue;
    }
    std::vector<T> live_w(s.out_channels * cg * sub.kernel_numel());
    for_each_live_weight(g, s.out_channels, sub, r,
                         [&](int64_t whole, int64_t part) { live_w[part] = w[whole]; });
    bias_added = at.identity && bias;
    conv_all_taps(x, live_w.data(), y, sub, s, at, at.identity ? bias : nullptr);
  }
  return bias_added;
}

template <typename T>
void conv_transpose_phases(const T* x, const T* w, bool w_channels_last, T* y,
                           const ConvGeometry& g, Shape s) {
  const int64_t C = g.channels, G = g.groups, K = s.out_channels, cg = C / G, kg = K / G;
  const int64_t taps = g.kernel_numel();
  bool every_position_reached = true;
  for (int d = 0; d < kSpatialDims; ++d) {
    for (int64_t r = 0; r < g.stride[d]; ++r) {
      const Phase p = phase_of(g, d, r);
      if (p.positions > 0 && p.taps == 0) every_position_reached = false;
    }
  }
  if (!every_position_reached) std::fill(y, y + s.batch * C * g.image_numel(), T(0));

  for (int64_t r0 = 0; r0 < g.stride[0]; ++r0) {
    for (int64_t r1 = 0; r1 < g.stride[1]; ++r1) {
      for (int64_t r2 = 0; r2 < g.stride[2]; ++r2) {
        const int64_t r[kSpatialDims] = {r0, r1, r2};
        Phase ph[kSpatialDims];
        Placement place{};
        bool empty = false;
        for (int d = 0; d < kSpatialDims; ++d) {
          ph[d] = phase_of(g, d, r[d]);
          empty |= ph[d].taps == 0 || ph[d].positions == 0;
          place.dims[d] = g.image[d];
          place.step[d] = g.stride[d];
          place.offset[d] = r[d];
        }
        if (empty) continue;
        place.identity = true;
        for (int d = 0; d < kSpatialDims; ++d) place.identity &= g.stride[d] == 1;
        const ConvGeometry sub = phase_geometry(g, ph, K);
        // The sub-conv's weight [C, kg, sub taps] (or [C, sub taps, kg] in channels_last):
        // transposed per group, flipped, subsampled; one [kg, cg] transpose per sub-tap and
        // group, spread over the threads: at small batches this relayout is a large part of the
        // input gradient (N2 C512 7x7: 9 transposes of 512 x 512, once 6 of its 9.5 ms).
        // NCHW's [C, kg, sub taps] is written in channels_last order and relaid: written
        // directly, each transpose stores with a stride of sub taps (N1 C512 7x7: 64 % of the
        // input gradient in the stores).
        const int64_t sub_taps = sub.kernel_numel();
        // Uninitialised, from the output cache: every element is written below, and fresh pages
        // for a weight of megabytes cost a fault per 4 KiB on every call.
        const at::Tensor sub_w_memory = empty_output(
            {C * kg * sub_taps}, at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
        T* sub_w = sub_w_memory.template mutable_data_ptr<T>();
        const bool restage = !g.channels_last && sub_taps > 1;
        const int64_t w_k = cg * taps, w_c = w_channels_last ? 1 : taps;
        const int64_t w_t = w_channels_last ? cg : 1;
        const bool built_cl = g.channels_last || restage;
        const int64_t s_c = kg * sub_taps, s_k = built_cl ? 1 : sub_taps;
        const int64_t s_t = built_cl ? kg : 1;
        const int64_t grain = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, kg * cg));
        at::parallel_for(0, sub_taps * G, grain, [&](int64_t begin, int64_t end) {
          for (int64_t task = begin; task < end; ++task) {
            const int64_t m = task / G, gi = task % G;
            const int64_t t = phase_kernel_tap(g, ph, m);
            blocked_transpose(w + gi * kg * w_k + t * w_t, w_k, w_c, kg, cg,
                              sub_w + gi * cg * s_c + m * s_t, s_c, s_k);
          }
        });
        std::vector<T> restaged;
        if (restage) restaged = relayout_weight(sub_w, C, kg, sub_taps, /*to_cl=*/false);
        conv_any(x, restage ? restaged.data() : sub_w, y, sub, Shape{s.batch, C}, place);
      }
    }
  }
}

// conv_transpose by col2im: each block of grid positions multiplies out its whole column matrix,
// rows (channel, tap), in one GEMM with C * taps columns, and col2im adds it into the image.
// Against the phases (a gather of K * taps values per position for a GEMM with C columns) it wins
// in NCHW, whose phases also place every step-th output, and with few image channels in either
// layout (the ResNet stem's input gradient: 3 channels, 7x7 stride 2). Measured at batch 8,
// 1 thread, phases -> col2im (torch): stem NCHW 105 -> 27 ms (85), channels_last 184 -> 40 (81);
// NCHW 3x3 stride 2 C64@56 18.1 -> 13.3 (18.4), 1x1 stride 2 C64@56 3.4 -> 1.8 (9.2). A
// channels_last 3x3 stride 2 with 64 channels lost (11.4 -> 12.1): it keeps the phases.
// A sample's blocks run in order on one thread (samples in parallel), so every image element
// sums its terms in the same order for any thread count; a single sample keeps the phases, which
// split it across threads. bfloat16 too: col2im would round its running sums at every term.
constexpr int64_t kCol2imMaxChannelsLast = 8;

// Strided only: a stride-1 conv_transpose is one phase, a plain conv that Winograd may take.
template <typename T>
bool col2im_transpose_for(const ConvGeometry& g, int64_t batch) {
  bool strided = false;
  for (int d = 0; d < kSpatialDims; ++d) strided |= g.stride[d] > 1;
  return !std::is_same_v<T, c10::BFloat16> && strided && g.groups == 1 && batch > 1 &&
         (!g.channels_last || g.channels <= kCol2imMaxChannelsLast);
}

// image[c, ...] += col[(c * taps + tap), q - q0] (NCHW) for grid positions [q0, q1) of one
// sample: gather_columns run backwards.
template <typename T>
void scatter_columns(const T* col, const ConvGeometry& g, int64_t q0, int64_t q1, T* image) {
  const int64_t taps = g.kernel_numel(), width = q1 - q0, OW = g.grid[2], s = g.stride[2];
  for (int64_t c = 0; c < g.channels; ++c) {
    T* channel = image + c * g.image_numel();
    for (int64_t k = 0; k < taps; ++k) {
      int64_t kd, kh, kw;
      split_tap(g, k, kd, kh, kw);
      const TapRun run = width_run(g, kw);
      const T* from = col + (c * taps + k) * width - q0;
      for (int64_t q = q0; q < q1;) {
        const int64_t line = q / OW, a = q % OW, b = std::min(OW, a + (q1 - q));
        const int64_t in_row = tap_row(g, kd, kh, line / g.grid[1], line % g.grid[1]);
        if (in_row >= 0) {
          const int64_t lo = std::clamp(run.lo, a, b), hi = std::clamp(run.hi, lo, b);
          T* __restrict__ r = channel + in_row + run.offset;
          const T* __restrict__ o = from + q - a;
          for (int64_t ow = lo; ow < hi; ++ow) r[ow * s] += o[ow];
        }
        q += b - a;
      }
    }
  }
}

// image[pixel, c] += col[q - q0, tap * C + c] (channels_last) for grid positions [q0, q1) of one
// sample: gather_rows_cl run backwards.
template <typename T>
void scatter_rows_cl(const T* col, const ConvGeometry& g, int64_t q0, int64_t q1, T* image) {
  const int64_t C = g.channels, KW = g.kernel[2];
  const T* row = col;
  for (WindowWalk walk(g, q0); q0 < q1; ++q0, walk.next()) {
    const auto [bd, bh, bw, w_lo, w_hi] = walk.window();
    for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
      const int64_t id = bd + kd * g.dilation[0];
      for (int64_t kh = 0; kh < g.kernel[1]; ++kh, row += KW * C) {
        const int64_t ih = bh + kh * g.dilation[1];
        if (id < 0 || id >= g.image[0] || ih < 0 || ih >= g.image[1]) continue;
        T* line = image + (id * g.image[1] + ih) * g.image[2] * C;
        for (int64_t kw = w_lo; kw < w_hi; ++kw) {
          T* __restrict__ to = line + (bw + kw * g.dilation[2]) * C;
          const T* __restrict__ from = row + kw * C;
          for (int64_t c = 0; c < C; ++c) to[c] += from[c];
        }
      }
    }
  }
}

// x: [N, K, grid] (the conv's output side), w: [K, C * taps] in the path's layout, y: [N, C,
// image].
template <typename T>
void conv_transpose_col2im(const T* x, const T* w, T* y, const ConvGeometry& g, Shape s) {
  const int64_t C = g.channels, K = s.out_channels, taps = g.kernel_numel(), rows = C * taps;
  const int64_t grid = g.grid_numel(), image = C * g.image_numel();
  const int64_t P = std::min(grid, block_pixels(grid, rows * static_cast<int64_t>(sizeof(T))));
  at::parallel_for(0, s.batch, 1, [&](int64_t begin, int64_t end) {
    const ThreadScratch<T> col(0, rows * P);
    for (int64_t n = begin; n < end; ++n) {
      T* out = y + n * image;
      std::fill(out, out + image, T(0));
      for (int64_t q0 = 0; q0 < grid; q0 += P) {
        const int64_t q1 = std::min(grid, q0 + P), width = q1 - q0;
        if (g.channels_last) {
          gemm(matrix(x + (n * grid + q0) * K, width, K, K, 1), matrix(w, K, rows, rows, 1),
               col.data(), rows, false);
          scatter_rows_cl(col.data(), g, q0, q1, out);
        } else {
          gemm(matrix(w, rows, K, 1, rows), matrix(x + n * K * grid + q0, K, width, grid, 1),
               col.data(), width, false);
          scatter_columns(col.data(), g, q0, q1, out);
        }
      }
    }
  });
}

// Sums `chunks` accumulations, each over its own fixed run of blocks, then adds the partial sums
// in order: the same bits for any thread count. accumulate(chunk, block, acc, first) adds one
// block into acc (overwriting it when `first`).
template <typename T, typename Accumulate>
void sum_over_blocks(int64_t blocks, T* result, int64_t size, Accumulate&& accumulate) {
  const int64_t chunks = std::max<int64_t>(1, std::min(blocks, kWeightGradChunks));
  // The calling thread's slot 3: the chunks' own scratch (slots 0 and 1) may run on it too.
  const ThreadScratch<T> partial(3, (chunks - 1) * size);
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      T* acc = c == 0 ? result : partial.data() + (c - 1) * size;
      const int64_t b0 = blocks * c / chunks, b1 = blocks * (c + 1) / chunks;
      for (int64_t b = b0; b < b1; ++b) accumulate(c, b, acc, b == b0);
    }
  });
  for (int64_t c = 1; c < chunks; ++c) {
    const T* p = partial.data() + (c - 1) * size;
    for (int64_t i = 0; i < size; ++i) result[i] += p[i];
  }
}

// The type a weight gradient is summed in: its own for float32/float64, float32 for bfloat16.
template <typename T>
using Accumulator = std::conditional_t<std::is_floating_point_v<T>, T, float>;

// acc [a.rows, b.cols] (row stride ldc) = a x b, or += when `accumulate`.
// bfloat16: each GEMM sums its own products in float32 (oneDNN, AMX) but hands back its result
// rounded once to bfloat16, into `scratch`; the sum across GEMM calls (pixel blocks, chunks) is
// float32. Error: with u = 2^-8 (bfloat16's unit roundoff) a block's partial sum S_b comes back
// within u|S_b|, and float32 additions cost ~2^-24 each, so before the final rounding to bfloat16
// (which adds u|S| itself) the total is off by at most u * sum_b |S_b|: u|S| when the partials
// share a sign, and about u|S| / sqrt(B) for B blocks whose roundings are independent. Summing in
// bfloat16 instead (a beta = 1 GEMM into a bfloat16 accumulator) rounds the running sum at every
// one of the B additions: up to u * B / 2 * |S|, growing with the batch.
template <typename T, typename Acc>
void accumulate_gemm(const at::Tensor& a, const at::Tensor& b, Acc* acc, int64_t ldc,
                     bool accumulate, std::vector<T>& scratch,
                     bool packed = packed_gemm_selected()) {
  if constexpr (std::is_same_v<T, Acc>) {
    gemm(a, b, acc, ldc, accumulate, packed);
  } else {
    const int64_t rows = a.size(0), cols = b.size(1);
    scratch.resize(rows * cols);
    gemm(a, b, scratch.data(), cols, false, packed);
    for (int64_t i = 0; i < rows; ++i) {
      Acc* __restrict__ out = acc + i * ldc;
      const T* __restrict__ in = scratch.data() + i * cols;
      if (accumulate) {
        for (int64_t j = 0; j < cols; ++j) out[j] += static_cast<Acc>(in[j]);
      } else {
        for (int64_t j = 0; j < cols; ++j) out[j] = static_cast<Acc>(in[j]);
      }
    }
  }
}

template <typename T>
void weight_grad_nchw(const T* go, const T* x, Accumulator<T>* gw, const ConvGeometry& g, Shape s) {
  const int64_t C = g.channels, G = g.groups, K = s.out_channels, cg = C / G, kg = K / G;
  const int64_t rows = cg * g.kernel_numel(), grid = g.grid_numel();
  const bool pointwise = g.is_pointwise();
  const int64_t P =
      block_pixels(grid * s.batch, kWeightGradBlockShrink * rows * static_cast<int64_t>(sizeof(T)));
  const int64_t per_sample = (grid + P - 1) / P;
  std::vector<std::vector<T>> scratch(kWeightGradChunks);
  sum_over_blocks(
      s.batch * per_sample, gw, K * rows,
      [&](int64_t chunk, int64_t b, Accumulator<T>* acc, bool first) {
        const int64_t n = b / per_sample, q0 = b % per_sample * P, q1 = std::min(grid, q0 + P);
        const int64_t width = q1 - q0;
        const ThreadScratch<T> col(0, pointwise ? 0 : rows * std::min(P, grid));
        for (int64_t gi = 0; gi < G; ++gi) {
          const T* image = x + (n * C + gi * cg) * g.image_numel();
          at::Tensor columns_t;  // [width, rows]
          if (pointwise) {
            columns_t = matrix(image + q0, width, cg, 1, g.image_numel());
          } else {
            gather_columns(image, g, cg, q0, q1, col.data());
            columns_t = matrix(col.data(), width, rows, 1, width);
          }
          const auto grad = matrix(go + (n * K + gi * kg) * grid + q0, kg, width, grid, 1);
          accumulate_gemm(grad, columns_t, acc + gi * kg * rows, rows, !first, scratch[chunk]);
        }
      });
}

// channels_last: per group grad_weight[kg, taps * cg] (channels_last layout, written as it is)
// = grad_output^T[kg, pixels] x rows[pixels, taps * cg], summed over pixel blocks.
template <typename T>
void weight_grad_cl(const T* go, const T* x, Accumulator<T>* gw, const ConvGeometry& g, Shape s) {
  const int64_t C = g.channels, G = g.groups, K = s.out_channels, cg = C / G, kg = K / G;
  const int64_t taps = g.kernel_numel(), rows = taps * cg, total = s.batch * g.grid_numel();
  const bool pointwise = g.is_pointwise();
  const int64_t P =
      block_pixels(total, kWeightGradBlockShrink * rows * static_cast<int64_t>(sizeof(T)));
  // Whatever the weight's size: here neither operand is the weight (packed_gemm_preferred's
  // limit is for products that stream it once per block). Weights over 2 MiB, 2 threads, N8, ms
  // MKL -> ours (torch): 1x1 C512 -> 2048 7x7 7.8 -> 6.2 (9.1), C1024 -> 2048 14x14 stride 2
  // 21.7 -> 18.1 (20.8); 3x3 stride 2 C256 -> 512 14x14 7.4 -> 5.8 (10.4); N2 1x1 C2048 -> 512
  // 28x28 23.3 -> 19.0 (20.3). Not with too few pixels for a block per core, where MKL runs on
  // both.
  const bool packed_gemm = total >= 64
                               ? packed_gemm_preferred(0)
                               : packed_gemm_preferred(rows * kg * static_cast<int64_t>(sizeof(T)));
  std::vector<std::vector<T>> scratch(kWeightGradChunks);
  sum_over_blocks((total + P - 1) / P, gw, K * rows,
                  [&](int64_t chunk, int64_t b, Accumulator<T>* acc, bool first) {
                    const int64_t m0 = b * P, m1 = std::min(total, m0 + P), height = m1 - m0;
                    const ThreadScratch<T> col(0, pointwise ? 0 : rows * P);
                    for (int64_t gi = 0; gi < G; ++gi) {
                      at::Tensor pixels;  // [height, rows]
                      if (pointwise) {
                        pixels = matrix(x + m0 * C + gi * cg, height, cg, C, 1);
                      } else {
                        gather_rows_cl(x, g, gi * cg, cg, m0, m1, col.data());
                        pixels = matrix(col.data(), height, rows, rows, 1);
                      }
                      const auto grad_t = matrix(go + m0 * K + gi * kg, kg, height, 1, K);
                      accumulate_gemm(grad_t, pixels, acc + gi * kg * rows, rows, !first,
                                      scratch[chunk], packed_gemm);
                    }
                  });
}

// bfloat16 weight gradient in channels_last when the column matrix of the whole batch fits in
// kWholeColumnBytes: every pixel's row is gathered once, then grad_weight is one GEMM over all
// pixels. Each entry is rounded once (as in torch's), and there are no bfloat16 partial sums to
// widen and add: with few pixels and many weights (C512 7x7 at batch 8: 392 pixels, 2.4M
// weights) those passes cost more than the GEMMs. One call, which oneDNN spreads over the cores
// itself: 8 column slices, one core's GEMM each, ran at a third of its speed on a Xeon with AMX
// (N8 ms: 1x1 C256 -> 1024 14x14 2.40 -> 0.86, torch 0.98; 3x3 C512 7x7 2.00 -> 1.76, torch 4.7).
constexpr int64_t kWholeColumnBytes = 16 << 20;

template <typename T>
bool whole_columns_fit(const ConvGeometry& g, Shape s) {
  const int64_t rows = g.kernel_numel() * (g.channels / g.groups);
  return g.channels_last &&
         s.batch * g.grid_numel() * rows * static_cast<int64_t>(sizeof(T)) <= kWholeColumnBytes;
}

template <typename T>
void weight_grad_cl_whole(const T* go, const T* x, T* gw, const ConvGeometry& g, Shape s) {
  const int64_t C = g.channels, G = g.groups, K = s.out_channels, cg = C / G, kg = K / G;
  const int64_t rows = g.kernel_numel() * cg, total = s.batch * g.grid_numel();
  const bool pointwise = g.is_pointwise();
  const int64_t P = block_pixels(total, rows * static_cast<int64_t>(sizeof(T)));
  // Uninitialised, and megabytes: from the output cache, already faulted in (a zero-filled
  // vector of fresh pages took a third of a C128 28x28 weight gradient).
  const auto col = empty_output({pointwise ? 0 : total * rows},
                                at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
  for (int64_t gi = 0; gi < G; ++gi) {
    at::Tensor pixels;  // [total, rows]
    if (pointwise) {
      pixels = matrix(x + gi * cg, total, cg, C, 1);
    } else {
      at::parallel_for(0, (total + P - 1) / P, 1, [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) {
          const int64_t m0 = b * P, m1 = std::min(total, m0 + P);
          gather_rows_cl(x, g, gi * cg, cg, m0, m1, static_cast<T*>(col.data_ptr()) + m0 * rows);
        }
      });
      pixels = matrix(static_cast<const T*>(col.const_data_ptr()), total, rows, rows, 1);
    }
    const auto grad_t = matrix(go + gi * kg, kg, total, 1, K);
    gemm(grad_t, pixels, gw + gi * kg * rows, rows, false);
  }
}

template <typename T>
void weight_grad_any(const T* go, const T* x, Accumulator<T>* gw, const ConvGeometry& g, Shape s) {
  if (g.channels_last) {
    weight_grad_cl(go, x, gw, g, s);
  } else {
    weight_grad_nchw(go, x, gw, g, s);
  }
}

// Where the conv runs by regions (live_taps.h), so does its weight gradient: each region's
// grad_output against the image over the region's live taps, added into those taps' entries; the
// taps no window of a region reads inside the image get nothing from it (padding zeros).
template <typename T>
void weight_grad_live(const T* go, const T* x, Accumulator<T>* gw, const ConvGeometry& g, Shape s) {
  using Acc = Accumulator<T>;
  const int64_t K = s.out_channels, cg = g.channels / g.groups, taps = g.kernel_numel();
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    if (g.channels_last &&
        taps_engine_for(g, s.batch, K, /*floating=*/true, ConvPass::kWeightGrad)) {
      return weight_grad_by_taps(go, x, gw, g, s.batch, K);
    }
  }
  const auto regions = live_tap_regions(g, s.batch * cg * K, cg * K);
  if (!regions) return weight_grad_any(go, x, gw, g, s);
  std::fill(gw, gw + K * cg * taps, Acc(0));
  for (const Region& r : *regions) {
    const ConvGeometry sub = region_geometry(g, r);
    const int64_t live = sub.kernel_numel(), grid = sub.grid_numel();
    if (live == 0) continue;
    Placement from = identity_placement(g);
    for (int d = 0; d < kSpatialDims; ++d) from.offset[d] = r[d].o0;
    const int64_t full = g.grid_numel();
    std::vector<T> region_go(s.batch * K * grid);
    for (int64_t n = 0; n < s.batch; ++n) {
      for (int64_t q = 0; q < grid; ++q) {
        const int64_t at = from.place(sub, q);
        if (g.channels_last) {
          std::copy_n(go + (n * full + at) * K, K, region_go.data() + (n * grid + q) * K);
        } else {
          for (int64_t k = 0; k < K; ++k) {
            region_go[(n * K + k) * grid + q] = go[(n * K + k) * full + at];
          }
        }
      }
    }
    std::vector<Acc> region_gw(K * cg * live);
    weight_grad_any(region_go.data(), x, region_gw.data(), sub, s);
    for_each_live_weight(g, K, sub, r,
                         [&](int64_t whole, int64_t part) { gw[whole] += region_gw[part]; });
  }
}

void check_dtype(const at::Tensor& t, const char* who) {
  TORCH_CHECK(gemm_engine_computes(t.scalar_type()), who,
              ": the GEMM engine computes float32, float64 and bfloat16, but got ",
              t.scalar_type());
}

// The weight's data in the layout the path of `channels_last` multiplies by: as it is when it
// already has that layout (a channels_last model), else relaid into `storage`.
template <typename T>
const T* weight_in_layout(const at::Tensor& weight, bool channels_last, std::vector<T>& storage) {
  const int64_t K = weight.size(0), cg = weight.size(1), taps = weight.numel() / (K * cg);
  const bool is_cl = weight.dim() >= 4 && weight.is_contiguous(channels_last_format(weight));
  if (channels_last ? is_cl : weight.is_contiguous()) return weight.const_data_ptr<T>();
  if (is_cl) {
    storage = relayout_weight(weight.const_data_ptr<T>(), K, cg, taps, /*to_cl=*/false);
    return storage.data();
  }
  const auto contiguous = weight.contiguous();
  const T* data = contiguous.const_data_ptr<T>();
  if (channels_last) {
    storage = relayout_weight(data, K, cg, taps, /*to_cl=*/true);
  } else {
    storage.assign(data, data + weight.numel());
  }
  return storage.data();
}

// NCHW blocks cannot span samples, so with small images (ResNet's 7x7 stage) every block of a few
// dozen pixels would stream the whole weight again; copying such small tensors to channels_last
// and back costs far less (C512 7x7: 10.2 ms NCHW vs 8.2 ms channels_last). A 1x1 conv gathers
// nothing: its per-sample GEMMs read the NCHW image as it is, and the copies would cost more
// than they save (mobilenet_v2's 14x14 and 7x7 stages). A single sample keeps NCHW in the
// forward (even: C512 7x7 2.8 NCHW against 3.0 ms, C256 14x14 1.8 against 1.6).
bool small_nchw_image(const at::Tensor& t, const ConvGeometry& g, int64_t pixels,
                      int64_t min_batch = 2) {
  return !g.channels_last && t.dim() >= 4 && t.size(0) >= min_batch && pixels < kMinPixels &&
         !g.is_pointwise();
}

// A 1x1 conv in NCHW on small maps with a weight of megabytes (ResNet-50's last stage) runs on
// channels_last copies too, forward and input gradient, where its GEMMs do not take the pixels as
// rows (pixel_rows_preferred): per sample, MKL's [K, C] x [C, 49] streamed the whole weight for
// 49 columns; in channels_last it is one [N * 49, C] x [C, K] over the batch. N8 7x7, ms, NCHW
// -> copies (torch), forward: C2048 -> 512 4.72 -> 3.82 (3.45), C512 -> 2048 4.69 -> 3.70
// (3.14), C1024 -> 2048 9.08 -> 6.87 (6.50); input gradient: C2048 -> 512 5.65 -> 3.73
// (3.34-3.59), C512 -> 2048 5.68 -> 3.36 (3.36-3.81), C1024 -> 2048 11.9 -> 7.4 (6.0-7.1). With
// smaller weights the copies cost more than they save (C160 -> 960 0.67 -> 0.73, C1024 -> 256
// 14x14 3.22 -> 3.91).
bool large_pointwise_nchw(const at::Tensor& t, const ConvGeometry& g, int64_t out_channels) {
  const int64_t weight_bytes =
      g.channels / g.groups * (out_channels / g.groups) * static_cast<int64_t>(t.element_size());
  return !g.channels_last && t.dim() >= 4 && t.size(0) >= 2 && g.is_pointwise() &&
         g.grid_numel() < kMinPixels && weight_bytes > kMaxColumnsWeightBytes;
}

// The weight gradient of an NCHW 1x1 conv on maps of fewer than 64 pixels also runs on
// channels_last copies: per sample it is a GEMM over a few dozen pixels that reads and writes the
// whole gradient; in channels_last, one over a block of the batch. 2 threads, N8, 7x7 maps, ms
// NCHW -> through channels_last (torch): C160 -> 960 0.78-0.81 -> 0.71 (0.75), C960 -> 160 0.84 ->
// 0.78 (0.84), C320 -> 1280 2.23 -> 1.94 (1.92), C1024 -> 2048 12.7 -> 11.7 (11.7). On 14x14 maps
// it lost (C256 -> 1024 4.9 -> 5.4).
bool tiny_pointwise_nchw(const at::Tensor& t, const ConvGeometry& g) {
  return !g.channels_last && t.dim() >= 4 && t.size(0) >= 2 && g.is_pointwise() &&
         4 * g.grid_numel() < kMinPixels;
}

// NCHW convs with many taps over at least kMinStagedChannels channels on each side also run on
// channels_last copies: the NCHW product [kg, taps * cg] x columns keeps M at the few output
// channels of a group, where MKL ran slower than on channels_last's [pixels, taps * cg] x weights,
// and its gather copies taps * cg short line segments per block. 2 threads, N8 C64 28x28 5x5,
// NCHW -> channels_last (copies included), ms forward / input gradient / weight gradient:
// 14.0 / 16.1 / 15.7 -> 10.4 / 10.4 / 11.8 (torch 10.5 / 8.7 / 7.0); inception_v3's 1x7 over
// 192 channels forward 4.6 -> 3.8. With fewer taps the gradients were even or slower (3x3
// dilation 2 input gradient 13.7 -> 14.4; 1x7 input gradient 5.4 -> 6.0), so those keep NCHW;
// with few channels (the stem's 3) the channels_last gather is the slower one.
constexpr int64_t kMinStagedChannels = 16;
constexpr int64_t kMinStagedTapsForward = 7;
constexpr int64_t kMinStagedTapsGradients = 25;

bool many_taps_nchw(const at::Tensor& t, const ConvGeometry& g, int64_t other_channels,
                    int64_t min_taps) {
  return !g.channels_last && t.dim() >= 4 && g.groups == 1 && g.kernel_numel() >= min_taps &&
         g.channels >= kMinStagedChannels && other_channels >= kMinStagedChannels;
}

// NCHW weight gradients that weight_grad_by_taps computes run on channels_last copies (its rows
// are pixels' channels). 2 threads, N2 C2048 -> 256 28x28 dilation 12: see tap_gemm_cpu.h.
bool weight_grad_by_taps_nchw(const at::Tensor& t, const ConvGeometry& g, int64_t out_channels) {
  const auto type = t.scalar_type();
  return !g.channels_last && t.dim() >= 4 &&
         taps_engine_for(g, t.size(0), out_channels, type == at::kFloat || type == at::kDouble,
                         ConvPass::kWeightGrad);
}

bool stride_one(const ConvGeometry& g) {
  for (int d = 0; d < kSpatialDims; ++d) {
    if (g.stride[d] != 1) return false;
  }
  return true;
}

// Runs Winograd where the algorithm rule picks it (winograd_cpu.h) and returns whether it did:
// y = conv(x, weight), or for `transposed` the stride-1 conv_transpose (a 3x3 conv's input
// gradient), on the tensors as they are: either layout, the weight in its own, so no weight
// relayout. Float32 and float64 only: the transforms lose about a decimal digit, which bfloat16's
// three cannot spare (and AMX makes its GEMM fast anyway). Where a value is not finite Winograd
// declines, and the GEMM engine computes (and overwrites) y. A bias (defined: bias_fusable's) is
// added as the tiles are written.
bool run_winograd(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& y,
                  const ConvGeometry& g, bool transposed, const at::Tensor& bias = {}) {
  const auto type = x.scalar_type();
  if ((type != at::kFloat && type != at::kDouble) || weight.scalar_type() != type) return false;
  if (transposed && !stride_one(g)) return false;
  const int64_t batch = x.size(0), out_channels = y.size(1);
  const ConvGeometry conv = transposed ? stride_one_transpose_geometry(g, x.size(1)) : g;
  if (conv_algorithm_for(conv, batch, out_channels, ConvPass::kForward) != ConvAlgorithm::kWinograd)
    return false;
  const WeightLayout staged = weight_in_own_layout(weight);
  const at::Tensor& w = staged.tensor;
  const bool w_cl = staged.channels_last;
  return winograd_in_layout(
      x, y, conv, [&](const at::Tensor& in, const at::Tensor& out, const ConvGeometry& c) {
        bool ran = false;
        AT_DISPATCH_FLOATING_TYPES(type, "winograd_conv", [&] {
          const WinogradOutput<scalar_t> output{
              1, bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr};
          ran = winograd_conv(in.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
                              out.data_ptr<scalar_t>(), c, batch, out_channels, {w_cl, transposed},
                              output);
        });
        return ran;
      });
}

// grad_weight by Winograd where the rule picks it (as run_winograd), in g's layout.
bool run_winograd_weight_grad(const at::Tensor& grad_output, const at::Tensor& x,
                              const at::Tensor& grad_weight, const ConvGeometry& g) {
  const auto type = x.scalar_type();
  if (type != at::kFloat && type != at::kDouble) return false;
  const int64_t batch = x.size(0), out_channels = grad_output.size(1);
  if (conv_algorithm_for(g, batch, out_channels, ConvPass::kWeightGrad) != ConvAlgorithm::kWinograd)
    return false;
  bool ran = false;
  const auto compute = [&](const at::Tensor& go, const at::Tensor& in, const at::Tensor& gw,
                           const ConvGeometry& c) {
    AT_DISPATCH_FLOATING_TYPES(type, "winograd_weight_grad", [&] {
      ran = winograd_weight_grad(go.const_data_ptr<scalar_t>(), in.const_data_ptr<scalar_t>(),
                                 gw.data_ptr<scalar_t>(), c, batch, out_channels);
    });
  };
  if (!g.channels_last && x.dim() >= 4) {
    const auto format = channels_last_format(x);
    const auto staged = at::empty(grad_weight.sizes(), grad_weight.options().memory_format(format));
    ConvGeometry cl = g;
    cl.channels_last = true;
    compute(contiguous_as(grad_output, format), contiguous_as(x, format), staged, cl);
    if (ran) copy_layout(grad_weight, staged);
  } else {
    TORCH_CHECK(grad_weight.is_contiguous(channels_last_format(grad_weight)),
                "gemm_conv_weight_grad: grad_weight must have the input's memory format");
    compute(grad_output, x, grad_weight, g);
  }
  return ran;
}

}  // namespace

// The one phase of conv_transpose_phases.
ConvGeometry stride_one_transpose_geometry(const ConvGeometry& g, int64_t channels) {
  Phase ph[kSpatialDims];
  for (int d = 0; d < kSpatialDims; ++d) ph[d] = phase_of(g, d, 0);
  return phase_geometry(g, ph, channels);
}

at::Tensor stride_one_transpose_weight(const at::Tensor& weight, int64_t groups) {
  const int64_t K = weight.size(0), C = weight.size(1) * groups;
  std::vector<int64_t> spatial, grouped{groups, K / groups, C / groups}, conv_sizes{C, K / groups};
  for (int64_t d = 2; d < weight.dim(); ++d) {
    spatial.push_back(d);
    grouped.push_back(weight.size(d));
    conv_sizes.push_back(weight.size(d));
  }
  return weight.view(grouped).transpose(1, 2).reshape(conv_sizes).flip(spatial);
}

// bfloat16 GEMMs only where the CPU multiplies bfloat16 natively (AVX512-BF16; AMX-BF16 comes
// with it). Elsewhere at::mm emulates them, 30x slower than float32 (3x3 C64 56x56: 563 against
// 17 ms on an AVX2 EPYC), and the conv is computed in float32 and rounded once, as float16 is:
// the same products, accumulated in float32 either way.
bool native_bfloat16_gemm() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool native =
      __builtin_cpu_supports("avx512bf16") || __builtin_cpu_supports("amx-bf16");
  return native;
#else
  return false;
#endif
}

bool gemm_engine_computes(at::ScalarType type) {
  return type == at::kFloat || type == at::kDouble ||
         (type == at::kBFloat16 && native_bfloat16_gemm());
}

bool all_finite(const at::Tensor& t) {
  bool result = true;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.scalar_type(), "all_finite", [&] {
    // A dense tensor (channels_last too) is checked in its own memory order: no copy.
    const auto dense = t.is_non_overlapping_and_dense() ? t : t.contiguous();
    result = all_finite(dense.const_data_ptr<scalar_t>(), dense.numel());
  });
  return result;
}

// The forward by conv_by_taps where taps_engine_for picks it, the weight read in its own layout
// (an NCHW weight's relayout to channels_last took 2-3 ms of a C512 -> 512 3x3 stride 2 on 14x14
// maps, N8), an NCHW input and output through channels_last copies.
bool conv_by_taps_for(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
                      const ConvGeometry& g, const at::Tensor& bias) {
  const auto type = input.scalar_type();
  const bool floating = (type == at::kFloat || type == at::kDouble) && weight.scalar_type() == type;
  if ((!g.channels_last && input.dim() < 4) ||
      !taps_engine_for(g, input.size(0), output.size(1), floating)) {
    return false;
  }
  if (!g.channels_last) {
    via_channels_last({input}, output, g, [&](auto& in, auto& out, auto& cl) {
      conv_by_taps_for(in[0], weight, out, cl, bias);
    });
    return true;
  }
  const WeightLayout staged = weight_in_own_layout(weight);
  const at::Tensor& w = staged.tensor;
  const bool w_cl = staged.channels_last;
  const int64_t K = output.size(1), cg = g.channels / g.groups, kg = K / g.groups;
  const int64_t taps = g.kernel_numel();
  const bool fusable = bias_fusable(bias, input);
  AT_DISPATCH_FLOATING_TYPES(type, "conv_by_taps", [&] {
    const scalar_t* data = w.const_data_ptr<scalar_t>();
    // Element (c, k) of tap t in group gi: w[gi * kg + k, c, t].
    const TapWeights<scalar_t> taps_of =
        w_cl ? TapWeights<scalar_t>{data, kg * taps * cg, cg, 1, taps * cg}
             : TapWeights<scalar_t>{data, kg * cg * taps, 1, taps, cg * taps};
    conv_by_taps(input.const_data_ptr<scalar_t>(), taps_of, output.data_ptr<scalar_t>(), g,
                 TapProduct{input.size(0), K, /*transposed=*/false},
                 fusable ? bias.const_data_ptr<scalar_t>() : nullptr);
  });
  if (!fusable) add_bias(output, bias);
  return true;
}

void gemm_conv(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
               const ConvGeometry& g, const at::Tensor& bias) {
  check_dtype(input, "gemm_conv");
  const bool fusable = bias_fusable(bias, input);
  if (run_winograd(input, weight, output, g, /*transposed=*/false, fusable ? bias : at::Tensor())) {
    if (!fusable) add_bias(output, bias);
    return;
  }
  if (brgemm_conv(input, weight, output, g)) return add_bias(output, bias);
  if (conv_by_taps_for(input, weight, output, g, bias)) return;
  if (small_image_conv(input, weight, bias, output, g)) return;
  const bool pixel_rows =
      (input.scalar_type() == at::kFloat || input.scalar_type() == at::kDouble) &&
      pixel_rows_preferred(g, input.size(0), output.size(1), input.element_size());
  if (!pixel_rows && (small_nchw_image(input, g, g.grid_numel()) ||
                      large_pointwise_nchw(input, g, output.size(1)) ||
                      many_taps_nchw(input, g, output.size(1), kMinStagedTapsForward))) {
    return via_channels_last({input}, output, g, [&](auto& in, auto& out, auto& cl) {
      gemm_conv(in[0], weight, out, cl, bias);
    });
  }
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, input.scalar_type(), "gemm_conv", [&] {
    std::vector<scalar_t> storage;
    const bool added = conv_any(
        input.const_data_ptr<scalar_t>(), weight_in_layout(weight, g.channels_last, storage),
        output.data_ptr<scalar_t>(), g, Shape{input.size(0), output.size(1)}, identity_placement(g),
        fusable ? bias.const_data_ptr<scalar_t>() : nullptr);
    if (!added) add_bias(output, bias);
  });
}

// A 1x1 stride-1 conv_transpose (a 1x1 conv's input gradient) is the 1x1 conv of its input with
// the weight transposed per group; with pixels as the GEMM's rows that transposed operand is the
// weight as it lies, [K, C / G] per group, packed straight from it (the phases first transposed
// it into a fresh weight of their own). Input gradients of 1x1 convs on 7x7 maps, N8, ms: C2048
// -> 512 7.2-7.7 -> 5.7-6.0 (torch 5.3-5.9), C512 -> 2048 7.7-8.8 -> 6.6 (5.2-5.8). In
// channels_last, the forward's blocks of pixels over the whole batch (conv_cl_with) on that
// operand (N4, ms: C2048 -> 1024 7x7 4.4 -> 3.25, torch 4.3; C1024 -> 512 14x14 3.3 -> 2.8,
// torch 2.8).
bool pointwise_transpose_by_pixel_rows(const at::Tensor& input, const at::Tensor& weight,
                                       const at::Tensor& output, const ConvGeometry& g) {
  const auto type = input.scalar_type();
  if ((type != at::kFloat && type != at::kDouble) || weight.scalar_type() != type ||
      input.size(0) == 0) {
    return false;
  }
  for (int d = 0; d < kSpatialDims; ++d) {
    if (g.kernel[d] != 1 || g.stride[d] != 1 || g.pad[d] != 0) return false;
  }
  const int64_t K = input.size(1), C = g.channels, G = g.groups;
  const ConvGeometry sub = stride_one_transpose_geometry(g, K);
  if (!g.channels_last && !pixel_rows_preferred(sub, input.size(0), C, input.element_size())) {
    return false;
  }
  const auto w = weight.contiguous();
  AT_DISPATCH_FLOATING_TYPES(type, "pointwise_transpose_by_pixel_rows", [&] {
    const scalar_t* data = w.const_data_ptr<scalar_t>();
    const int64_t kg = K / G, cg = C / G;
    const auto weight_t = [&](int64_t gi) {
      return StridedMatrix<scalar_t>{data + gi * kg * cg, cg, 1};
    };
    const scalar_t* x = input.const_data_ptr<scalar_t>();
    scalar_t* y = output.data_ptr<scalar_t>();
    const Shape shape{input.size(0), C};
    if (g.channels_last) {
      conv_cl_with(x, weight_t, y, sub, shape, identity_placement(sub),
                   static_cast<const scalar_t*>(nullptr));
    } else {
      conv_nchw_pixel_rows(x, weight_t, y, sub, shape, static_cast<const scalar_t*>(nullptr));
    }
  });
  return true;
}

// A bfloat16 1x1 stride-1 conv_transpose in channels_last (a 1x1 conv's input gradient) is, per
// group, y [pixels, cg] = x [pixels, kg] x w [kg, cg]: the weight as it lies, one GEMM over the
// whole batch that oneDNN spreads over the cores (AMX). The phases first transposed it into a
// sub-weight element by element and ran a GEMM per block of pixels on one core each: 1x1 C256 ->
// 1024 14x14 N8 input gradient 0.84-0.94 ms against torch's 0.55-0.58 on a Xeon.
bool pointwise_transpose_bfloat16_cl(const at::Tensor& input, const at::Tensor& weight,
                                     const at::Tensor& output, const ConvGeometry& g) {
  if (!g.channels_last || !g.is_pointwise() || input.scalar_type() != at::kBFloat16 ||
      weight.scalar_type() != at::kBFloat16 || !native_bfloat16_gemm()) {
    return false;
  }
  using bf16 = c10::BFloat16;
  const int64_t K = input.size(1), C = g.channels, G = g.groups, kg = K / G, cg = C / G;
  const int64_t total = input.size(0) * g.image_numel();
  const auto w = weight.contiguous();  // [K, cg]: a 1x1 weight's layouts are one
  const bf16* x = input.const_data_ptr<bf16>();
  bf16* y = output.data_ptr<bf16>();
  for (int64_t gi = 0; gi < G; ++gi) {
    gemm(matrix(x + gi * kg, total, kg, K, 1),
         matrix(w.const_data_ptr<bf16>() + gi * kg * cg, kg, cg, cg, 1), y + gi * cg, C, false);
  }
  return true;
}

// A conv_transpose (an input gradient) by conv_by_taps's transposed product, where the taps
// engine computes the stride-1 conv of the flipped kernel it equals (ASPP's input gradient), or
// a strided one over enough channels (strided_transpose_by_taps): the weight read where it lies
// (no sub-weights of phases), an NCHW input and output through channels_last copies.
bool transpose_by_taps(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
                       const ConvGeometry& g) {
  const auto type = input.scalar_type();
  const bool floating = (type == at::kFloat || type == at::kDouble) && weight.scalar_type() == type;
  const int64_t N = input.size(0), K = input.size(1), C = g.channels;
  if (!g.channels_last && input.dim() < 4) return false;
  if (stride_one(g) ? !taps_engine_for(stride_one_transpose_geometry(g, K), N, C, floating)
                    : !strided_transpose_by_taps(g, N, K, floating)) {
    return false;
  }
  if (!g.channels_last) {
    via_channels_last({input}, output, g, [&](auto& in, auto& out, auto& cl) {
      transpose_by_taps(in[0], weight, out, cl);
    });
    return true;
  }
  const WeightLayout staged = weight_in_own_layout(weight);
  const at::Tensor& w = staged.tensor;
  const bool w_cl = staged.channels_last;
  const int64_t G = g.groups, kg = K / G, cg = C / G, taps = g.kernel_numel();
  AT_DISPATCH_FLOATING_TYPES(type, "transpose_by_taps", [&] {
    const scalar_t* data = w.const_data_ptr<scalar_t>();
    // Element (k, c) of tap t in group gi: w[gi * kg + k, c, t].
    const TapWeights<scalar_t> taps_of =
        w_cl ? TapWeights<scalar_t>{data, kg * taps * cg, cg, taps * cg, 1}
             : TapWeights<scalar_t>{data, kg * cg * taps, 1, cg * taps, taps};
    conv_by_taps(input.const_data_ptr<scalar_t>(), taps_of, output.data_ptr<scalar_t>(), g,
                 TapProduct{N, K, /*transposed=*/true}, static_cast<const scalar_t*>(nullptr));
  });
  return true;
}

void gemm_conv_transpose(const at::Tensor& input, const at::Tensor& weight,
                         const at::Tensor& output, const ConvGeometry& g) {
  check_dtype(input, "gemm_conv_transpose");
  if (run_winograd(input, weight, output, g, /*transposed=*/true) ||
      winograd_conv_transpose_phases(input, weight, output, g)) {
    return;
  }
  if (brgemm_conv_transpose(input, weight, output, g)) return;
  if (pointwise_transpose_by_pixel_rows(input, weight, output, g) ||
      pointwise_transpose_bfloat16_cl(input, weight, output, g)) {
    return;
  }
  if (transpose_by_taps(input, weight, output, g)) return;
  // A single sample takes the channels_last route too: its NCHW phases ran one task (N1 C512
  // 7x7 input gradient: 20.5 ms NCHW, 4.9 through channels_last, torch 2.2).
  if (small_nchw_image(input, g, g.image_numel(), /*min_batch=*/1) ||
      large_pointwise_nchw(input, g, input.size(1)) ||
      many_taps_nchw(input, g, input.size(1), kMinStagedTapsGradients)) {
    return via_channels_last({input}, output, g, [&](auto& in, auto& out, auto& cl) {
      gemm_conv_transpose(in[0], weight, out, cl);
    });
  }
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, input.scalar_type(), "gemm_conv_transpose", [&] {
    if (col2im_transpose_for<scalar_t>(g, input.size(0))) {
      std::vector<scalar_t> storage;
      return conv_transpose_col2im(
          input.const_data_ptr<scalar_t>(), weight_in_layout(weight, g.channels_last, storage),
          output.data_ptr<scalar_t>(), g, Shape{input.size(0), input.size(1)});
    }
    // The phases' sub-weights are built from either layout directly: no relayout pass.
    const WeightLayout staged = weight_in_own_layout(weight);
    const at::Tensor& w = staged.tensor;
    const bool w_cl = staged.channels_last;
    conv_transpose_phases(input.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(), w_cl,
                          output.data_ptr<scalar_t>(), g, Shape{input.size(0), input.size(1)});
  });
}

void gemm_conv_weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                           const at::Tensor& grad_weight, const ConvGeometry& g) {
  check_dtype(input, "gemm_conv_weight_grad");
  if (run_winograd_weight_grad(grad_output, input, grad_weight, g)) return;
  if (brgemm_conv_weight_grad(grad_output, input, grad_weight, g)) return;
  if (tiny_pointwise_nchw(input, g) || small_nchw_image(input, g, g.grid_numel()) ||
      weight_grad_by_taps_nchw(input, g, grad_output.size(1)) ||
      many_taps_nchw(input, g, grad_output.size(1), kMinStagedTapsGradients)) {
    return via_channels_last(
        {grad_output, input}, grad_weight, g,
        [&](auto& in, auto& out, auto& cl) { gemm_conv_weight_grad(in[0], in[1], out, cl); });
  }
  TORCH_CHECK(g.channels_last ? grad_weight.is_contiguous(channels_last_format(grad_weight))
                              : grad_weight.is_contiguous(),
              "gemm_conv_weight_grad: grad_weight must have the input's memory format");
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, input.scalar_type(), "gemm_conv_weight_grad", [&] {
    using Acc = Accumulator<scalar_t>;
    const Shape s{input.size(0), grad_output.size(1)};
    const auto* go = grad_output.const_data_ptr<scalar_t>();
    const auto* x = input.const_data_ptr<scalar_t>();
    constexpr bool in_place = std::is_same_v<Acc, scalar_t>;
    if (!in_place && whole_columns_fit<scalar_t>(g, s)) {
      return weight_grad_cl_whole(go, x, grad_weight.data_ptr<scalar_t>(), g, s);
    }
    // Otherwise bfloat16 is summed in a float32 copy of grad_weight's layout, rounded once at
    // the end.
    const auto summed = in_place
                            ? grad_weight
                            : at::empty_like(grad_weight, grad_weight.options().dtype(at::kFloat));
    weight_grad_live(go, x, summed.data_ptr<Acc>(), g, s);
    if (!in_place) grad_weight.copy_(summed);
  });
}

}  // namespace convpool::cpu
