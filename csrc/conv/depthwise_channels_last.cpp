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

#include "../common/isa_clones.h"
#include "../common/short_copy.h"
#include "../common/thread_scratch.h"
#include "blocked_transpose.h"
#include "channel_block_transpose.h"
#include "conv_driver.h"
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
  bool streams = false;                            // TapRows::streams
};

// Whether an op reading and writing `bytes` streams them from memory: past 24 MiB, where the
// crossover of depthwise_cl_lines.cpp's row kernels measured (N4 C96 112x112 stride 2, a 32 MiB
// L3). A constant: sysconf's L3 size is the whole host's on VMs (320 MiB here for a guest that
// sees 32).
bool streams_from_memory(int64_t bytes) { return bytes > (int64_t{24} << 20); }

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

// Grid line `line` (= od * OH + oh) of one sample; its sums start from bias[0, width) (nullptr:
// zero).
template <typename T>
void forward_line(const ConvGeometry& g, const T* sample, int64_t C, int64_t width, const T* w,
                  int64_t w_stride, const T* bias, T* out, int64_t line, Scratch<T>& scratch) {
  auto& list = scratch.list;
  grid_line_taps<T>(g, sample, C, line / g.grid[1], line % g.grid[1], w, w_stride, nullptr, 0,
                    list);
  depthwise_tap_line(out + line * g.grid[2] * C, C, g.grid[2], list.data(),
                     static_cast<int64_t>(list.size()), g.stride[2] * C, width,
                     {g.kernel[2], g.dilation[2] * C, w_stride, scratch.streams}, bias);
}

// Image line `line` (= id * H + ih) of one sample's input gradient, from its grid `grid` (no
// bias: null).
template <typename T>
void transpose_line(const ConvGeometry& g, const T* grid, int64_t C, int64_t width, const T* w,
                    int64_t w_stride, const T*, T* out, int64_t line, Scratch<T>& scratch) {
  auto& list = scratch.list;
  auto& rows = scratch.rows;
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
                     g.stride[2] * C, width, {g.kernel[2], g.dilation[2] * C, 0});
}

// Every output line of every sample (lines: per sample; pixels: of a sample's input and
// output), in channels_last as it is.
template <typename T, typename LineOp>
void run_channels_last(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
                       const ConvGeometry& g, int64_t in_pixels, int64_t out_pixels, int64_t lines,
                       LineOp line_op, const T* bias) {
  const T* x = input.const_data_ptr<T>();
  T* y = output.data_ptr<T>();
  const int64_t C = g.channels;
  const auto w = weights_by_tap<T>(weight, g.kernel_numel());
  const bool streams = streams_from_memory(input.nbytes() + output.nbytes());
  at::parallel_for(0, output.size(0) * lines, 1, [&](int64_t begin, int64_t end) {
    Scratch<T> scratch;
    scratch.streams = streams;
    for (int64_t i = begin; i < end; ++i) {
      const int64_t n = i / lines;
      line_op(g, x + n * in_pixels * C, C, C, w.data(), C, bias, y + n * out_pixels * C, i % lines,
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
                 LineOp line_op, const T* bias) {
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
        line_op(g, in.data(), kBlock, width, w.data() + c0, C, bias ? bias + c0 : nullptr,
                out.data(), line, scratch);
      }
      stage_out(out.data(), out_pixels, width, y + (n * C + c0) * out_pixels);
    }
  });
}

// ---- Small 2-d maps: channel blocks staged zero-padded --------------------------------------
// Where most windows overhang the image (7x7 maps under 5x5 and 7x7 kernels: ConvNeXt's and
// EfficientNet's last stages), the lines spend their time in the edge-pixel loop. Instead each
// (sample, 64-byte block of channels) is staged in the windows' whole reach, padding as zeros,
// in L1 or L2, and every output pixel is computed with no bound checks
// (depthwise_padded_plane). Both layouts; the forward and the stride-1 input gradient.
constexpr int64_t kMaxPaddedBlockBytes = int64_t{256} << 10;

// Taken for kernels of 25 taps and more where under two thirds of the output pixels are
// interior (every tap inside the image). N8 channels_last, 2 threads, Zen 4, lines -> staged
// blocks ms (torch): 7x7 C768@7 0.39-0.45 -> 0.26 (0.19), C384@14 0.54 -> 0.44 (0.38), C192@28
// 1.00 -> 0.76 (0.74); 5x5 C1152@7 0.36 -> 0.25 (0.20), C960@7 0.31 -> 0.21 (0.17), C672@14
// 0.52 -> 0.43 (0.34). Kept on the lines: 3x3 (C576@7 0.070 against 0.089: the staging costs as
// much as the taps), 5x5 C240@28 (73 % interior: 0.51 against 0.56), 7x7 C96@56 (1.86 against
// 2.2: its staged block, 246 KiB, leaves L2's fast reach), stride 2 (5x5 C672 14x14 -> 7x7:
// 0.22 against 0.26). AVX2 (vector_width(256)) gains alike: C768@7 7x7 0.50 -> 0.42 ms. NCHW
// blocks transpose in and out around the same kernel (run_blocked's lines before, ms forward /
// forward + input gradient): 7x7 C768@7 0.71 / 1.52 -> 0.36 / 0.78, 5x5 C960@7 0.60 / 1.31 ->
// 0.37 / 0.81, C672@14 1.15 / 2.55 -> 0.90 / 2.10.
bool padded_blocks_apply(const ConvGeometry& g) {
  // 2-d: one plane in and out (a 3-d conv of depth 1 padded in depth has more output planes).
  if (g.image[0] != 1 || g.kernel[0] != 1 || g.grid[0] != 1) return false;
  if (g.kernel_numel() < 25 || g.stride[1] != 1 || g.stride[2] != 1) return false;
  int64_t interior = 1;
  for (int d = 1; d < kSpatialDims; ++d) {
    const int64_t reach = (g.kernel[d] - 1) * g.dilation[d];
    int64_t inside = 0;
    for (int64_t o = 0; o < g.grid[d]; ++o) {
      const int64_t first = o * g.stride[d] - g.pad[d];
      inside += first >= 0 && first + reach < g.image[d];
    }
    interior *= inside;
  }
  const int64_t rows = (g.grid[1] - 1) * g.stride[1] + (g.kernel[1] - 1) * g.dilation[1] + 1;
  const int64_t cols = (g.grid[2] - 1) * g.stride[2] + (g.kernel[2] - 1) * g.dilation[2] + 1;
  return 3 * interior < 2 * g.grid_numel() && rows * cols * 64 <= kMaxPaddedBlockBytes;
}

// A stride-1 conv_transpose (the input gradient of a stride-1 conv) is the forward conv of its
// input with the kernel flipped and padding dilation * (kernel - 1) - padding: its output pixel
// i gets tap k from input pixel i + padding - k * dilation. Returns that conv's geometry, or
// channels 0 where the transpose is strided or 3-d, or the padding would be negative.
ConvGeometry stride_one_transpose_as_conv(const ConvGeometry& g) {
  ConvGeometry f = g;
  for (int d = 0; d < kSpatialDims; ++d) {
    f.image[d] = g.grid[d];
    f.grid[d] = g.image[d];
    f.pad[d] = g.dilation[d] * (g.kernel[d] - 1) - g.pad[d];
    if (g.stride[d] != 1 || f.pad[d] < 0) f.channels = 0;
  }
  return f;
}

// bias: [C], or nullptr.
template <typename T>
void run_padded_blocks(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
                       const ConvGeometry& g, const T* bias = nullptr) {
  constexpr int64_t lanes = kPaddedLanes<T>;
  const T* x = input.const_data_ptr<T>();
  T* y = output.data_ptr<T>();
  const int64_t C = g.channels, H = g.image[1], W = g.image[2], taps = g.kernel_numel();
  const PaddedPlane p{(g.grid[2] - 1) * g.stride[2] + (g.kernel[2] - 1) * g.dilation[2] + 1,
                      g.grid[1],
                      g.grid[2],
                      g.kernel[1],
                      g.kernel[2],
                      g.stride[1],
                      g.stride[2],
                      g.dilation[1],
                      g.dilation[2]};
  const int64_t rows = (g.grid[1] - 1) * g.stride[1] + (g.kernel[1] - 1) * g.dilation[1] + 1;
  const int64_t blocks = (C + lanes - 1) / lanes;
  const auto wt = weights_by_tap<T>(weight, taps);
  const int64_t image = H * W, grid = g.grid_numel();
  at::parallel_for(0, output.size(0) * blocks, 1, [&](int64_t begin, int64_t end) {
    const ThreadScratch<T> staged(0, rows * p.width * lanes), w(1, (taps + 1) * lanes);
    T* b = bias ? w.data() + taps * lanes : nullptr;
    // NCHW: the block's planes are transposed in and its outputs computed into `block` and
    // transposed out, as run_blocked does.
    const ThreadScratch<T> block(2, g.channels_last ? 0 : grid * lanes);
    // The padding is zeroed once per run of tasks: every task copies the same inside pixels.
    // Lanes past a last block's channels hold whatever an earlier block left: each lane is
    // its own channel's sum, and those lanes are never stored.
    std::fill(staged.data(), staged.data() + rows * p.width * lanes, T(0));
    const int64_t y0 = std::max<int64_t>(0, g.pad[1]), y1 = std::min(rows, g.pad[1] + H);
    const int64_t x0 = std::max<int64_t>(0, g.pad[2]), x1 = std::min(p.width, g.pad[2] + W);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t n = i / blocks, c0 = i % blocks * lanes, width = std::min(lanes, C - c0);
      for (int64_t k = 0; k < taps; ++k) {
        copy_short(wt.data() + k * C + c0, width, w.data() + k * lanes);
      }
      if (b) std::copy_n(bias + c0, width, b);
      if (!g.channels_last) {
        const T* planes = x + (n * C + c0) * image;
        for (int64_t r = y0; r < y1; ++r) {
          blocked_transpose(planes + (r - g.pad[1]) * W + x0 - g.pad[2], image, 1, width, x1 - x0,
                            staged.data() + (r * p.width + x0) * lanes, lanes, 1);
        }
        depthwise_padded_plane(staged.data(), w.data(), b, p, block.data(), lanes, width);
        blocked_transpose(block.data(), 1, lanes, width, grid, y + (n * C + c0) * grid, 1, grid);
        continue;
      }
      const T* sample = x + n * image * C + c0;
      for (int64_t r = y0; r < y1; ++r) {
        const T* in = sample + ((r - g.pad[1]) * W + x0 - g.pad[2]) * C;
        T* out = staged.data() + (r * p.width + x0) * lanes;
        for (int64_t col = x0; col < x1; ++col, in += C, out += lanes) copy_short(in, width, out);
      }
      depthwise_padded_plane(staged.data(), w.data(), b, p, y + n * grid * C + c0, C, width);
    }
  });
}

// forward: the grid lines over the image, their sums started from bias [C] (nullptr: zero);
// conv_transpose: the image lines over the grid (no bias).
template <typename T>
void run_lines(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
               const ConvGeometry& g, bool transposed, const T* bias = nullptr) {
  const int64_t image = g.image_numel(), grid = g.grid_numel();
  const int64_t lines = transposed ? g.image[0] * g.image[1] : g.grid[0] * g.grid[1];
  const int64_t in_pixels = transposed ? grid : image, out_pixels = transposed ? image : grid;
  if (!transposed && padded_blocks_apply(g)) {
    return run_padded_blocks<T>(input, weight, output, g, bias);
  }
  if (transposed) {
    const ConvGeometry forward = stride_one_transpose_as_conv(g);
    if (forward.channels > 0 && padded_blocks_apply(forward)) {
      return run_padded_blocks<T>(input, weight.flip({-2, -1}), output, forward);
    }
  }
  const auto op = transposed ? transpose_line<T> : forward_line<T>;
  g.channels_last
      ? run_channels_last<T>(input, weight, output, g, in_pixels, out_pixels, lines, op, bias)
      : run_blocked<T>(input, weight, output, g, in_pixels, out_pixels, lines, op, bias);
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

// ---- bfloat16 forward, channels_last ------------------------------------------------------
// Bands of output rows: a band's input rows are widened to float32 in L2, its lines computed by
// the float32 kernels above (sums from the bias, every channel at once) into a float32 band
// rounded once to bfloat16 on the way out. The sums and their order are those of the float32
// conv, so the results are the bits of computing in float32 and rounding the output, which ran
// before as whole-tensor copies to float32 and back around the kernel: 3.3x the time of the
// float32 conv (MobileNetV2's 3x3 stride 2 C96 112x112 N4 1.65 ms against torch's 0.37).
using bf16 = c10::BFloat16;

// A band's widened input rows stay within this (L2 beside the output band).
constexpr int64_t kBandBytes = int64_t{512} << 10;

CONVPOOL_CLONES void widen(const bf16* src, int64_t n, float* dst) {
  const auto* bits = reinterpret_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t wide = uint32_t{bits[i]} << 16;
    __builtin_memcpy(dst + i, &wide, sizeof(wide));
  }
}

// c10's rounding to nearest even (NaN to its quiet NaN), as at::Tensor::to rounds.
CONVPOOL_CLONES void narrow(const float* src, int64_t n, bf16* dst) {
  auto* bits = reinterpret_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    __builtin_memcpy(&u, src + i, sizeof(u));
    const uint16_t rounded = static_cast<uint16_t>((u + ((u >> 16) & 1) + 0x7FFFu) >> 16);
    bits[i] = (u & 0x7FFFFFFFu) > 0x7F800000u ? uint16_t{0x7FC0} : rounded;
  }
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

bool depthwise_bfloat16_forward_applies(const at::Tensor& input, int64_t out_channels,
                                        const ConvGeometry& g) {
  // 2-d (bands of rows), a row of the input small enough for a band.
  return input.scalar_type() == at::kBFloat16 && input.size(1) == out_channels &&
         input.dim() == 4 && input.suggest_memory_format() == at::MemoryFormat::ChannelsLast &&
         ((g.kernel[1] - 1) * g.dilation[1] + 1) * g.image[2] * g.channels *
                 int64_t{sizeof(float)} <=
             kBandBytes;
}

void depthwise_forward_bfloat16(const at::Tensor& input, const at::Tensor& weight,
                                const at::Tensor& bias, const at::Tensor& output,
                                const ConvGeometry& g) {
  const bf16* x = input.const_data_ptr<bf16>();
  bf16* y = output.data_ptr<bf16>();
  const int64_t C = g.channels, H = g.image[1], W = g.image[2], OH = g.grid[1], OW = g.grid[2];
  const int64_t reach = (g.kernel[1] - 1) * g.dilation[1] + 1, sh = g.stride[1];
  // Output rows per band: their input rows within kBandBytes, and at least 4 bands per thread.
  const int64_t fit = (kBandBytes / (W * C * int64_t{sizeof(float)}) - reach) / sh + 1;
  const int64_t tasks = 4 * at::get_num_threads();
  const int64_t spread = (output.size(0) * OH + tasks - 1) / tasks;
  const int64_t band = std::clamp<int64_t>(std::min(fit, spread), 1, OH);
  const int64_t bands = (OH + band - 1) / band;
  const int64_t rows_max = (band - 1) * sh + reach;
  const auto w = weights_by_tap<float>(weight.to(at::kFloat).contiguous(), g.kernel_numel());
  const at::Tensor b = bias.defined() ? bias.to(at::kFloat).contiguous() : at::Tensor();
  const float* bias_data = b.defined() ? b.const_data_ptr<float>() : nullptr;
  at::parallel_for(0, output.size(0) * bands, 1, [&](int64_t begin, int64_t end) {
    Scratch<float> scratch;
    const ThreadScratch<float> in(0, std::min(rows_max, H) * W * C), out(1, band * OW * C);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t n = i / bands, oh0 = i % bands * band, oh1 = std::min(OH, oh0 + band);
      const int64_t r0 = std::clamp<int64_t>(oh0 * sh - g.pad[1], 0, H);
      const int64_t r1 = std::clamp<int64_t>((oh1 - 1) * sh - g.pad[1] + reach, r0, H);
      widen(x + (n * H + r0) * W * C, (r1 - r0) * W * C, in.data());
      // The band's rows where the whole sample's would be: tap rows are absolute.
      const float* sample = in.data() - r0 * W * C;
      float* lines = out.data() - oh0 * OW * C;
      for (int64_t oh = oh0; oh < oh1; ++oh) {
        forward_line<float>(g, sample, C, C, w.data(), C, bias_data, lines, oh, scratch);
      }
      narrow(out.data(), (oh1 - oh0) * OW * C, y + (n * OH + oh0) * OW * C);
    }
  });
}

void depthwise_forward_vectors(const at::Tensor& input, const at::Tensor& weight,
                               const at::Tensor& bias, const at::Tensor& output,
                               const ConvGeometry& g) {
  // The sums start from the bias: a separate pass over the output cost a fifth of the conv on a
  // 7x7 map (C768 7x7 0.35 -> 0.43 ms) and a third on the lines (3x3 C256 28x28 channels_last
  // 0.34 -> 0.48).
  const bool fused = bias_fusable(bias, input);
  dispatch(input, [&](auto t) {
    using T = decltype(t);
    run_lines<T>(input, weight, output, g, false, fused ? bias.const_data_ptr<T>() : nullptr);
  });
  if (!fused) add_bias(output, bias);
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
