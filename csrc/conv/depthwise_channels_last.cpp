// Lines as tap lists. Forward: line (n, od, oh) has one tap per (kd, kh, kw) whose row lies in
// the image; pixel ow of tap kw reads image column ow * stride + kw * dilation - pad, a run with
// step stride * C. conv_transpose (the input gradient) is a gather: image row (n, id, ih) is
// split by column phase (iw mod stride), and within a phase each kw that lands on it reads the
// consecutive grid columns ow0 + j, so a phase is a stride-1 line over the grid. Weight
// gradient: one task per block of 16 channels, walking samples and lines in order, so each sum
// runs in the same order whatever the thread count.
#include "depthwise_channels_last.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "../common/thread_scratch.h"
#include "blocked_transpose.h"
#include "channel_block_transpose.h"
#include "conv_lines.h"
#include "depthwise_cl_lines.h"

namespace convpool::cpu {
namespace {

// The channels a weight-gradient task and an NCHW block hold: one 64-byte vector of float32.
constexpr int64_t kBlock = 16;

// A task's scratch: the taps of a line, and the kernel rows that land on an image row.
template <typename T>
struct Scratch {
  std::vector<LineTap<T>> list;
  std::vector<std::pair<const T*, int64_t>> rows;  // (grid row, first tap of its kernel row)
};

// Pointers below address a sample (or a staged block of one) whose pixels are `C` elements
// apart, from its first computed channel on; `width` channels are computed. Weights: tap k's at
// w + k * w_stride.

// The taps of forward / weight-gradient grid line (od, oh): tap k's sums at sums + k * width.
template <typename T>
void grid_line_taps(const ConvGeometry& g, const T* sample, int64_t C, int64_t od, int64_t oh,
                    const T* w, int64_t w_stride, T* sums, int64_t width,
                    std::vector<LineTap<T>>& taps) {
  taps.clear();
  const int64_t KW = g.kernel[2];
  for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
    for (int64_t kh = 0; kh < g.kernel[1]; ++kh) {
      const int64_t row = tap_row(g, kd, kh, od, oh);
      if (row < 0) continue;
      for (int64_t kw = 0; kw < KW; ++kw) {
        const auto run = width_run(g, kw);
        if (run.lo >= run.hi) continue;
        const int64_t k = (kd * g.kernel[1] + kh) * KW + kw;
        taps.push_back({sample + (row + run.offset) * C, sums ? sums + k * width : nullptr,
                        w ? w + k * w_stride : nullptr, run.lo, run.hi});
      }
    }
  }
}

// Grid line `line` (= od * OH + oh) of one sample.
template <typename T>
void forward_line(const ConvGeometry& g, const T* sample, int64_t C, int64_t width, const T* w,
                  int64_t w_stride, T* out, int64_t line, Scratch<T>& scratch) {
  auto& list = scratch.list;
  grid_line_taps<T>(g, sample, C, line / g.grid[1], line % g.grid[1], w, w_stride, nullptr, 0,
                    list);
  depthwise_tap_line(out + line * g.grid[2] * C, C, g.grid[2], list.data(),
                     static_cast<int64_t>(list.size()), g.stride[2] * C, width,
                     {g.kernel[2], g.dilation[2] * C, w_stride});
}

// Image line `line` (= id * H + ih) of one sample's input gradient, from its grid `grid`.
template <typename T>
void transpose_line(const ConvGeometry& g, const T* grid, int64_t C, int64_t width, const T* w,
                    int64_t w_stride, T* out, int64_t line, Scratch<T>& scratch) {
  auto& [list, rows] = scratch;
  const int64_t W = g.image[2], OW = g.grid[2], KW = g.kernel[2];
  const int64_t s = g.stride[2], pad = g.pad[2], dil = g.dilation[2];
  const int64_t ih = line % g.image[1], id = line / g.image[1];
  rows.clear();
  for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
    const int64_t od = covering_grid_index(id, kd, g.stride[0], g.pad[0], g.dilation[0], g.grid[0]);
    if (od < 0) continue;
    for (int64_t kh = 0; kh < g.kernel[1]; ++kh) {
      const int64_t oh =
          covering_grid_index(ih, kh, g.stride[1], g.pad[1], g.dilation[1], g.grid[1]);
      if (oh < 0) continue;
      rows.emplace_back(grid + (od * g.grid[1] + oh) * OW * C, (kd * g.kernel[1] + kh) * KW);
    }
  }
  T* image_row = out + line * W * C;
  for (int64_t phase = 0; phase < std::min(s, W); ++phase) {
    const int64_t count = (W - phase + s - 1) / s;
    list.clear();
    for (const auto& [row, k0] : rows) {
      for (int64_t kw = 0; kw < KW; ++kw) {
        // image column phase + j * s is grid column first + j of tap kw
        const int64_t shifted = phase + pad - kw * dil;
        if (((shifted % s) + s) % s != 0) continue;
        const int64_t first = shifted / s;  // exact
        const int64_t lo = std::max<int64_t>(0, -first);
        const int64_t hi = std::min(count, OW - first);
        if (lo >= hi) continue;
        list.push_back({row + first * C, nullptr, w + (k0 + kw) * w_stride, lo, hi});
      }
    }
    // Stride 1: every kw of a row lands on the phase, one pixel back per kw.
    depthwise_tap_line(image_row + phase * C, s * C, count, list.data(),
                       static_cast<int64_t>(list.size()), C, width,
                       {s == 1 ? KW : 0, -dil * C, w_stride});
  }
}

// sums[k * width + c] += grid line `line`'s products for tap k.
template <typename T>
void weight_grad_line(const ConvGeometry& g, const T* sample, const T* grad, int64_t C,
                      int64_t width, T* sums, int64_t line, std::vector<LineTap<T>>& list) {
  grid_line_taps<T>(g, sample, C, line / g.grid[1], line % g.grid[1], nullptr, 0, sums, width,
                    list);
  depthwise_tap_sums(grad + line * g.grid[2] * C, C, list.data(), static_cast<int64_t>(list.size()),
                     g.stride[2] * C, width);
}

// Every output line of every sample (lines: per sample; pixels: of a sample's input and
// output), in channels_last as it is.
template <typename T, typename LineOp>
void run_channels_last(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
                       const ConvGeometry& g, int64_t in_pixels, int64_t out_pixels, int64_t lines,
                       LineOp line_op) {
  const T* x = input.const_data_ptr<T>();
  T* y = output.data_ptr<T>();
  const int64_t C = g.channels;
  const auto w = weights_by_tap<T>(weight, g.kernel_numel());
  at::parallel_for(0, output.size(0) * lines, 1, [&](int64_t begin, int64_t end) {
    Scratch<T> scratch;
    for (int64_t i = begin; i < end; ++i) {
      const int64_t n = i / lines;
      line_op(g, x + n * in_pixels * C, C, C, w.data(), C, y + n * out_pixels * C, i % lines,
              scratch);
    }
  });
}

// Weight-gradient sums [taps, width] (tap-major, as the lines accumulate them) into
// grad_weight's rows [width, taps].
template <typename T>
void write_sums(const T* sums, int64_t width, int64_t taps, T* gw) {
  for (int64_t c = 0; c < width; ++c) {
    for (int64_t k = 0; k < taps; ++k) gw[c * taps + k] = sums[k * width + c];
  }
}

// One task per block of kBlock channels, walking samples and lines in order: each sum runs in
// the same order whatever the thread count.
template <typename T>
void weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                 const at::Tensor& grad_weight, const ConvGeometry& g) {
  const T* go = grad_output.const_data_ptr<T>();
  const T* x = input.const_data_ptr<T>();
  T* gw = grad_weight.data_ptr<T>();
  const int64_t C = g.channels, taps = g.kernel_numel(), lines = g.grid[0] * g.grid[1];
  at::parallel_for(0, (C + kBlock - 1) / kBlock, 1, [&](int64_t begin, int64_t end) {
    const int64_t c0 = begin * kBlock, width = std::min(C, end * kBlock) - c0;
    std::vector<T> sums(taps * width, T(0));
    std::vector<LineTap<T>> list;
    list.reserve(taps);
    for (int64_t n = 0; n < input.size(0); ++n) {
      for (int64_t line = 0; line < lines; ++line) {
        weight_grad_line<T>(g, x + n * g.image_numel() * C + c0, go + n * g.grid_numel() * C + c0,
                            C, width, sums.data(), line, list);
      }
    }
    write_sums(sums.data(), width, taps, gw + c0 * taps);
  });
}

// ---- NCHW through channel blocks ------------------------------------------------------------
// An NCHW sample's planes c0 .. c0 + width are transposed into a [pixels, kBlock] block (in
// cache), computed there by the lines above, and the result transposed back: the layout change
// costs no trip to memory, unlike staging whole tensors in channels_last.

template <typename T>
void stage_in(const T* planes, int64_t pixels, int64_t width, T* block) {
  if constexpr (std::is_same_v<T, float>) {
    if (width == kBlock) return planes_to_block16(planes, pixels, pixels, block);
  }
  blocked_transpose(planes, pixels, 1, width, pixels, block, kBlock, 1);
}

template <typename T>
void stage_out(const T* block, int64_t pixels, int64_t width, T* planes) {
  if constexpr (std::is_same_v<T, float>) {
    if (width == kBlock) return block16_to_planes(block, pixels, planes, pixels);
  }
  blocked_transpose(block, kBlock, 1, pixels, width, planes, pixels, 1);
}

// The same in NCHW: one task per (sample, block of kBlock channels).
template <typename T, typename LineOp>
void run_blocked(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
                 const ConvGeometry& g, int64_t in_pixels, int64_t out_pixels, int64_t lines,
                 LineOp line_op) {
  const T* x = input.const_data_ptr<T>();
  T* y = output.data_ptr<T>();
  const int64_t C = g.channels, blocks = (C + kBlock - 1) / kBlock;
  const auto w = weights_by_tap<T>(weight, g.kernel_numel());
  at::parallel_for(0, output.size(0) * blocks, 1, [&](int64_t begin, int64_t end) {
    Scratch<T> scratch;
    const ThreadScratch<T> in(0, in_pixels * kBlock), out(1, out_pixels * kBlock);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t n = i / blocks, c0 = i % blocks * kBlock, width = std::min(kBlock, C - c0);
      stage_in(x + (n * C + c0) * in_pixels, in_pixels, width, in.data());
      for (int64_t line = 0; line < lines; ++line) {
        line_op(g, in.data(), kBlock, width, w.data() + c0, C, out.data(), line, scratch);
      }
      stage_out(out.data(), out_pixels, width, y + (n * C + c0) * out_pixels);
    }
  });
}

// forward: the grid lines over the image; conv_transpose: the image lines over the grid.
template <typename T>
void run_lines(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
               const ConvGeometry& g, bool transposed) {
  const int64_t image = g.image_numel(), grid = g.grid_numel();
  const int64_t lines = transposed ? g.image[0] * g.image[1] : g.grid[0] * g.grid[1];
  const int64_t in_pixels = transposed ? grid : image, out_pixels = transposed ? image : grid;
  const auto op = transposed ? transpose_line<T> : forward_line<T>;
  g.channels_last ? run_channels_last<T>(input, weight, output, g, in_pixels, out_pixels, lines, op)
                  : run_blocked<T>(input, weight, output, g, in_pixels, out_pixels, lines, op);
}

template <typename T>
void weight_grad_blocked(const at::Tensor& grad_output, const at::Tensor& input,
                         const at::Tensor& grad_weight, const ConvGeometry& g) {
  const T* go = grad_output.const_data_ptr<T>();
  const T* x = input.const_data_ptr<T>();
  T* gw = grad_weight.data_ptr<T>();
  const int64_t C = g.channels, taps = g.kernel_numel(), lines = g.grid[0] * g.grid[1];
  at::parallel_for(0, (C + kBlock - 1) / kBlock, 1, [&](int64_t begin, int64_t end) {
    std::vector<LineTap<T>> list;
    const ThreadScratch<T> in(0, g.image_numel() * kBlock), grad(1, g.grid_numel() * kBlock);
    const ThreadScratch<T> sums(2, taps * kBlock);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t c0 = b * kBlock, width = std::min(kBlock, C - c0);
      std::fill(sums.data(), sums.data() + taps * kBlock, T(0));
      for (int64_t n = 0; n < input.size(0); ++n) {
        stage_in(x + (n * C + c0) * g.image_numel(), g.image_numel(), width, in.data());
        stage_in(go + (n * C + c0) * g.grid_numel(), g.grid_numel(), width, grad.data());
        for (int64_t line = 0; line < lines; ++line) {
          weight_grad_line<T>(g, in.data(), grad.data(), kBlock, width, sums.data(), line, list);
        }
      }
      write_sums(sums.data(), width, taps, gw + c0 * taps);
    }
  });
}

template <typename Fn>
void dispatch(const at::Tensor& t, Fn&& fn) {
  if (t.scalar_type() == at::kFloat) return fn(float());
  fn(double());
}

}  // namespace

bool depthwise_vector_kernels(const at::Tensor& input, const at::Tensor& output,
                              const ConvGeometry& g) {
  const auto type = input.scalar_type();
  if (input.size(1) != output.size(1) || output.scalar_type() != type ||
      (type != at::kFloat && type != at::kDouble)) {
    return false;
  }
  if (g.channels_last) return true;
  // NCHW blocks: a sample's planes of kBlock channels must sit in cache.
  constexpr int64_t kMaxBlockBytes = int64_t{4} << 20;
  const int64_t bytes = std::max(g.image_numel(), g.grid_numel()) * kBlock * input.element_size();
  return bytes <= kMaxBlockBytes;
}

void depthwise_forward_vectors(const at::Tensor& input, const at::Tensor& weight,
                               const at::Tensor& output, const ConvGeometry& g) {
  dispatch(input, [&](auto t) { run_lines<decltype(t)>(input, weight, output, g, false); });
}

void depthwise_transpose_vectors(const at::Tensor& input, const at::Tensor& weight,
                                 const at::Tensor& output, const ConvGeometry& g) {
  dispatch(input, [&](auto t) { run_lines<decltype(t)>(input, weight, output, g, true); });
}

void depthwise_weight_grad_vectors(const at::Tensor& grad_output, const at::Tensor& input,
                                   const at::Tensor& grad_weight, const ConvGeometry& g) {
  dispatch(input, [&](auto t) {
    using T = decltype(t);
    g.channels_last ? weight_grad<T>(grad_output, input, grad_weight, g)
                    : weight_grad_blocked<T>(grad_output, input, grad_weight, g);
  });
}

}  // namespace convpool::cpu
