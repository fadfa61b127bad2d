#include "few_outputs_cpu.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "../common/isa_clones.h"
#include "channels_last_staging.h"
#include "conv_algorithm.h"
#include "conv_driver.h"
#include "winograd_tiles.h"

namespace convpool::cpu {
namespace {

// Up to this many output channels (three passes of 4 over each row's windows). With 16 the
// passes cost more than the engine's or Winograd's GEMMs save (N4 channels_last, ms, ours
// against before: 3x3 32 -> 16 56x56 0.55 against Winograd's 0.31; 32 -> 12 0.39 against 0.76).
constexpr int64_t kFewOutputsMax = 12;
// Output channels per pass over a row's windows: each needs an accumulator per pixel of a block.
constexpr int kChannelsPerPass = 4;

// The generic vectors of the Winograd kernels (64 or 32 bytes, picked per ISA clone).
using winograd::load;
using winograd::Vec;

// The sum of a vector's lanes, by halves.
template <typename T, int B>
[[gnu::always_inline]] inline T lane_sum(const Vec<T, B>& v) {
  if constexpr (B * 2 <= static_cast<int>(4 * sizeof(T))) {
    T s = 0;
    for (int l = 0; l < B / static_cast<int>(sizeof(T)); ++l) s += v[l];
    return s;
  } else {
    Vec<T, B / 2> lo, hi;
    std::memcpy(&lo, &v, B / 2);
    std::memcpy(&hi, reinterpret_cast<const char*>(&v) + B / 2, B / 2);
    return lane_sum<T, B / 2>(lo + hi);
  }
}

// One run of a window: `len` consecutive input values from x (plus the pixel's and the group's
// offsets) against the same run of every output channel's weight, `w` values into the channel's
// [kernel..., C / groups].
template <typename T>
struct Run {
  const T* x;
  int64_t w;
  int64_t len;
};

// The runs of one output row, built once per row for all its groups and passes.
template <typename T>
struct RowRuns {
  std::vector<std::pair<const T*, int64_t>> rows;  // kernel rows inside the image: input row, w
  std::vector<Run<T>> interior;          // of a window inside the image (pixel offset iw0 * C)
  std::vector<Run<T>> clipped;           // of one column's window cut by the image's edge
  int64_t interior_begin, interior_end;  // the columns whose window lies inside the image
};

// x [N, D, H, W, C] channels_last, w [K, kernel..., C / groups], y and gy [N, OD, OH, OW, K]: the
// forward's output, the weight gradient's output gradient.
template <typename T>
struct Problem {
  const T* x;
  const T* w;
  const T* bias;
  T* y;
  const T* gy;
  ConvGeometry g;
  int64_t K;
};

// Whether a kernel row's taps read one run of kw x C values: all channels are the group's, and
// the width is not dilated.
inline bool merged_rows(const ConvGeometry& g) { return g.groups == 1 && g.dilation[2] == 1; }

// Fills lists.rows, lists.interior and the interior columns of output row `row` (n, od, oh), the
// runs of group 0 (a group adds its first channel to the pixel offset).
template <typename T>
void build_runs(const T* x, const ConvGeometry& g, int64_t row, RowRuns<T>& lists) {
  const int64_t C = g.channels, cg = C / g.groups, W = g.image[2], OW = g.grid[2];
  const int64_t KW = g.kernel[2], sw = g.stride[2], pw = g.pad[2], dw = g.dilation[2];
  const int64_t oh = row % g.grid[1], od = row / g.grid[1] % g.grid[0];
  const int64_t n = row / (g.grid[1] * g.grid[0]);
  lists.rows.clear();
  lists.interior.clear();
  for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
    const int64_t id = od * g.stride[0] - g.pad[0] + kd * g.dilation[0];
    if (id < 0 || id >= g.image[0]) continue;
    for (int64_t kh = 0; kh < g.kernel[1]; ++kh) {
      const int64_t ih = oh * g.stride[1] - g.pad[1] + kh * g.dilation[1];
      if (ih < 0 || ih >= g.image[1]) continue;
      const T* x_row = x + ((n * g.image[0] + id) * g.image[1] + ih) * W * C;
      const int64_t w_row = (kd * g.kernel[1] + kh) * KW * cg;
      lists.rows.emplace_back(x_row, w_row);
      if (merged_rows(g)) {
        lists.interior.push_back({x_row, w_row, KW * C});
      } else {
        for (int64_t kw = 0; kw < KW; ++kw) {
          lists.interior.push_back({x_row + kw * dw * C, w_row + kw * cg, cg});
        }
      }
    }
  }
  const int64_t last_start = W - 1 - (KW - 1) * dw + pw;  // of a window ending inside
  // (A stride-1 conv_transpose's conv has negative padding where the transpose's exceeds its
  // kernel's reach: it crops.)
  lists.interior_begin = pw > 0 ? std::min(OW, (pw + sw - 1) / sw) : 0;
  lists.interior_end = std::max(lists.interior_begin,
                                std::min(OW, last_start >= 0 ? last_start / sw + 1 : int64_t{0}));
}

// Fills lists.clipped with the runs of column c's window that lie inside the image (absolute
// for group 0).
template <typename T>
void clip_runs(const ConvGeometry& g, int64_t c, RowRuns<T>& lists) {
  const int64_t C = g.channels, cg = C / g.groups, W = g.image[2], KW = g.kernel[2];
  const int64_t dw = g.dilation[2];
  const int64_t iw0 = c * g.stride[2] - g.pad[2];
  const int64_t lo = iw0 >= 0 ? 0 : (-iw0 + dw - 1) / dw;
  const int64_t hi = W - 1 - iw0 >= 0 ? std::min(KW, (W - 1 - iw0) / dw + 1) : 0;
  lists.clipped.clear();
  for (const auto& [x_row, w_row] : lists.rows) {
    if (merged_rows(g) && hi > lo) {
      lists.clipped.push_back({x_row + (iw0 + lo) * C, w_row + lo * C, (hi - lo) * C});
    } else {
      for (int64_t kw = lo; kw < hi; ++kw) {
        lists.clipped.push_back({x_row + (iw0 + kw * dw) * C, w_row + kw * cg, cg});
      }
    }
  }
}

// Walks the columns of an output row whose window the image's edge cuts: c, or the first such
// column after it (the interior columns are [begin, end)). Lambdas are avoided in the kernels:
// GCC compiles them outside the ISA clones.
inline int64_t edge_column(int64_t c, int64_t begin, int64_t end) {
  return c >= begin && c < end ? end : c;
}

// Pixels a block holds in registers with `channels` accumulators each, beside the loaded weight
// and input vectors: 32 vector registers under AVX-512, 16 under AVX2.
constexpr int block_pixels(int B, int channels) {
  const int registers = B == 64 ? 32 : 16;
  return std::min(8, (registers - channels - 2) / channels);
}

// sums[p][k] = the dot products of pixels p < P (input at run.x + first + p * step) with output
// channels k < KC (weights w + k * weight_stride) over the runs.
template <typename T, int B, int KC, int P>
[[gnu::always_inline]] inline void dot_block(const Run<T>* runs, int64_t n_runs, int64_t first,
                                             int64_t step, const T* w, int64_t weight_stride,
                                             T (*sums)[KC]) {
  using V = Vec<T, B>;
  constexpr int64_t L = B / sizeof(T);
  V acc[P][KC] = {};
  T tail[P][KC] = {};
  for (int64_t r = 0; r < n_runs; ++r) {
    const T* x = runs[r].x + first;
    const T* wr = w + runs[r].w;
    const int64_t len = runs[r].len;
    int64_t i = 0;
    for (; i + L <= len; i += L) {
      V wv[KC];
      for (int k = 0; k < KC; ++k) wv[k] = load<B>(wr + k * weight_stride + i);
      for (int p = 0; p < P; ++p) {
        const V xv = load<B>(x + p * step + i);
        for (int k = 0; k < KC; ++k) acc[p][k] += xv * wv[k];
      }
    }
    for (; i < len; ++i) {
      for (int p = 0; p < P; ++p) {
        for (int k = 0; k < KC; ++k) tail[p][k] += x[p * step + i] * wr[k * weight_stride + i];
      }
    }
  }
  for (int p = 0; p < P; ++p) {
    for (int k = 0; k < KC; ++k) sums[p][k] = lane_sum<T, B>(acc[p][k]) + tail[p][k];
  }
}

// (A lambda would be compiled outside the ISA clones, and not inlined: 14 % of a 3x3 64 -> 3.)
template <typename T, int KC>
[[gnu::always_inline]] inline void store_pixel(T* y, const T* sums, const T* bias) {
  for (int k = 0; k < KC; ++k) y[k] = bias ? sums[k] + bias[k] : sums[k];
}

// Output row `row`, channels [k0, k0 + KC) of the group whose input channels start at c0, with
// lists built for the row.
template <typename T, int B, int KC>
[[gnu::always_inline]] inline void forward_row(const Problem<T>& a, int64_t row, int64_t c0,
                                               int64_t k0, RowRuns<T>& lists) {
  constexpr int P = block_pixels(B, KC);
  const ConvGeometry& g = a.g;
  const int64_t C = g.channels, OW = g.grid[2], sw = g.stride[2], pw = g.pad[2];
  const int64_t weight_stride = g.kernel_numel() * (C / g.groups);
  T* y = a.y + row * OW * a.K + k0;
  const T* w = a.w + k0 * weight_stride;
  const T* bias = a.bias ? a.bias + k0 : nullptr;
  const auto& runs = lists.interior;
  T sums[P][KC];
  int64_t ow = lists.interior_begin;
  for (; ow + P <= lists.interior_end; ow += P) {
    dot_block<T, B, KC, P>(runs.data(), runs.size(), (ow * sw - pw) * C + c0, sw * C, w,
                           weight_stride, sums);
    for (int p = 0; p < P; ++p) store_pixel<T, KC>(y + (ow + p) * a.K, sums[p], bias);
  }
  for (; ow < lists.interior_end; ++ow) {
    dot_block<T, B, KC, 1>(runs.data(), runs.size(), (ow * sw - pw) * C + c0, 0, w, weight_stride,
                           sums);
    store_pixel<T, KC>(y + ow * a.K, sums[0], bias);
  }
  const int64_t begin = lists.interior_begin, end = lists.interior_end;
  for (int64_t c = edge_column(0, begin, end); c < OW; c = edge_column(c + 1, begin, end)) {
    clip_runs(g, c, lists);
    dot_block<T, B, KC, 1>(lists.clipped.data(), lists.clipped.size(), c0, 0, w, weight_stride,
                           sums);
    store_pixel<T, KC>(y + c * a.K, sums[0], bias);
  }
}

// Vectors of a weight-gradient run a pass keeps in registers per output channel, beside the
// loaded input vectors and the broadcast gradients.
constexpr int run_vectors(int B, int channels) {
  const int registers = B == 64 ? 30 : 15;
  return std::min(8, (registers - channels) / (channels + 1));
}

// gw[k][run] += sum over pixels p < P of gy[p][k] x[p][run], for R vectors of one run from
// offset i, over `pixels` pixels (input at x + p * step, gradients at gy + p * K).
template <typename T, int B, int KC, int R>
[[gnu::always_inline]] inline void accumulate_vectors(const T* x, int64_t step, const T* gy,
                                                      int64_t K, int64_t pixels, T* gw,
                                                      int64_t weight_stride) {
  using V = Vec<T, B>;
  constexpr int64_t L = B / sizeof(T);
  V acc[KC][R];
  for (int k = 0; k < KC; ++k) {
    for (int j = 0; j < R; ++j) acc[k][j] = load<B>(gw + k * weight_stride + j * L);
  }
  for (int64_t p = 0; p < pixels; ++p) {
    V xv[R];
    for (int j = 0; j < R; ++j) xv[j] = load<B>(x + p * step + j * L);
    for (int k = 0; k < KC; ++k) {
      const T gk = gy[p * K + k];
      for (int j = 0; j < R; ++j) acc[k][j] += gk * xv[j];
    }
  }
  for (int k = 0; k < KC; ++k) {
    for (int j = 0; j < R; ++j) winograd::store(gw + k * weight_stride + j * L, acc[k][j]);
  }
}

// gw[k][run] += gy[p][k] x[p][run] over `pixels` pixels for every run of the list.
template <typename T, int B, int KC>
[[gnu::always_inline]] inline void accumulate_runs(const Run<T>* runs, int64_t n_runs,
                                                   int64_t first, int64_t step, const T* gy,
                                                   int64_t K, int64_t pixels, T* gw,
                                                   int64_t weight_stride) {
  constexpr int R = run_vectors(B, KC);
  constexpr int64_t L = B / sizeof(T);
  for (int64_t r = 0; r < n_runs; ++r) {
    const T* x = runs[r].x + first;
    T* w = gw + runs[r].w;
    const int64_t len = runs[r].len;
    int64_t i = 0;
    for (; i + R * L <= len; i += R * L) {
      accumulate_vectors<T, B, KC, R>(x + i, step, gy, K, pixels, w + i, weight_stride);
    }
    for (; i + L <= len; i += L) {
      accumulate_vectors<T, B, KC, 1>(x + i, step, gy, K, pixels, w + i, weight_stride);
    }
    for (; i < len; ++i) {
      for (int k = 0; k < KC; ++k) {
        T sum = w[k * weight_stride + i];
        for (int64_t p = 0; p < pixels; ++p) sum += gy[p * K + k] * x[p * step + i];
        w[k * weight_stride + i] = sum;
      }
    }
  }
}

// gw [K, kernel..., C] += the weight gradient of output row `row`, channels [k0, k0 + KC).
template <typename T, int B, int KC>
[[gnu::always_inline]] inline void weight_grad_row(const Problem<T>& a, int64_t row, int64_t c0,
                                                   int64_t k0, RowRuns<T>& lists, T* gw) {
  const ConvGeometry& g = a.g;
  const int64_t C = g.channels, OW = g.grid[2], sw = g.stride[2], pw = g.pad[2];
  const int64_t weight_stride = g.kernel_numel() * (C / g.groups);
  const T* gy = a.gy + row * OW * a.K + k0;
  T* w = gw + k0 * weight_stride;
  const int64_t begin = lists.interior_begin, end = lists.interior_end;
  if (end > begin) {
    accumulate_runs<T, B, KC>(lists.interior.data(), lists.interior.size(),
                              (begin * sw - pw) * C + c0, sw * C, gy + begin * a.K, a.K,
                              end - begin, w, weight_stride);
  }
  for (int64_t c = edge_column(0, begin, end); c < OW; c = edge_column(c + 1, begin, end)) {
    clip_runs(g, c, lists);
    accumulate_runs<T, B, KC>(lists.clipped.data(), lists.clipped.size(), c0, 0, gy + c * a.K, a.K,
                              1, w, weight_stride);
  }
}

// One pass of output row `row`: the forward into a.y, or (gw given) the weight gradient into gw.
template <typename T, int B, int KC>
[[gnu::always_inline]] inline void row_pass(const Problem<T>& a, int64_t row, int64_t c0,
                                            int64_t k0, RowRuns<T>& lists, T* gw) {
  if (gw) {
    weight_grad_row<T, B, KC>(a, row, c0, k0, lists, gw);
  } else {
    forward_row<T, B, KC>(a, row, c0, k0, lists);
  }
}

// Output rows [begin, end): the forward into a.y, or (gw given) the weight gradient into gw.
template <typename T, int B>
[[gnu::always_inline]] inline void rows_of(const Problem<T>& a, int64_t begin, int64_t end, T* gw) {
  RowRuns<T> lists;
  for (int64_t row = begin; row < end; ++row) {
    build_runs(a.x, a.g, row, lists);
    const int64_t groups = a.g.groups, cg = a.g.channels / groups, kg = a.K / groups;
    for (int64_t gi = 0; gi < groups; ++gi) {
      const int64_t c0 = gi * cg, k_end = (gi + 1) * kg;
      for (int64_t k0 = gi * kg; k0 < k_end; k0 += kChannelsPerPass) {
        switch (std::min<int64_t>(kChannelsPerPass, k_end - k0)) {
          case 1:
            row_pass<T, B, 1>(a, row, c0, k0, lists, gw);
            break;
          case 2:
            row_pass<T, B, 2>(a, row, c0, k0, lists, gw);
            break;
          case 3:
            row_pass<T, B, 3>(a, row, c0, k0, lists, gw);
            break;
          default:
            row_pass<T, B, 4>(a, row, c0, k0, lists, gw);
            break;
        }
      }
    }
  }
}

CONVPOOL_CLONES void rows_f32(const Problem<float>& a, int64_t begin, int64_t end, float* gw) {
  wide_vector_registers() ? rows_of<float, 64>(a, begin, end, gw)
                          : rows_of<float, 32>(a, begin, end, gw);
}
CONVPOOL_CLONES void rows_f64(const Problem<double>& a, int64_t begin, int64_t end, double* gw) {
  wide_vector_registers() ? rows_of<double, 64>(a, begin, end, gw)
                          : rows_of<double, 32>(a, begin, end, gw);
}
void rows_any(const Problem<float>& a, int64_t b, int64_t e, float* gw) { rows_f32(a, b, e, gw); }
void rows_any(const Problem<double>& a, int64_t b, int64_t e, double* gw) { rows_f64(a, b, e, gw); }

int64_t output_rows(const at::Tensor& t, const ConvGeometry& g) {
  return t.size(0) * g.grid[0] * g.grid[1];
}

// y = conv(x, w) + bias with w [K, kernel..., C] contiguous, on channels_last views.
void run_forward(const at::Tensor& input, const at::Tensor& w, const at::Tensor& bias,
                 const at::Tensor& output, const ConvGeometry& g) {
  const auto x = channels_last_view(input);
  const int64_t rows = output_rows(input, g);
  // Enough rows per task to amortise its setup, and at least two tasks per thread.
  const int64_t grain = std::max<int64_t>(1, std::min<int64_t>(rows / 8, 4096 / g.grid[2]));
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "few_outputs_conv", [&] {
    into_output(output, [&](const at::Tensor& y) {
      const Problem<scalar_t> a{x.const_data_ptr<scalar_t>(),
                                w.const_data_ptr<scalar_t>(),
                                bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr,
                                y.data_ptr<scalar_t>(),
                                nullptr,
                                g,
                                output.size(1)};
      at::parallel_for(0, rows, grain,
                       [&](int64_t b, int64_t e) { rows_any(a, b, e, (scalar_t*)nullptr); });
    });
  });
}

// The weight gradient sums a fixed number of chunks of output rows, each into its own partial
// [K, kernel..., C / groups] in one task, and adds the partials in order: the same bits for any
// number of threads.
constexpr int64_t kWeightGradChunks = 8;

void run_weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                     const at::Tensor& grad_weight, const ConvGeometry& g) {
  const auto x = channels_last_view(input);
  const auto gy = channels_last_view(grad_output);
  const int64_t K = grad_output.size(1), cg = g.channels / g.groups;
  const int64_t size = K * g.kernel_numel() * cg;
  const int64_t rows = output_rows(input, g), chunks = std::min(kWeightGradChunks, rows);
  const auto partials = at::zeros({std::max<int64_t>(chunks, 1), size}, input.options());
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "few_outputs_weight_grad", [&] {
    const Problem<scalar_t> a{x.const_data_ptr<scalar_t>(),  nullptr, nullptr, nullptr,
                              gy.const_data_ptr<scalar_t>(), g,       K};
    scalar_t* sums = partials.data_ptr<scalar_t>();
    at::parallel_for(0, chunks, 1, [&](int64_t b, int64_t e) {
      for (int64_t chunk = b; chunk < e; ++chunk) {
        rows_any(a, rows * chunk / chunks, rows * (chunk + 1) / chunks, sums + chunk * size);
      }
    });
    for (int64_t chunk = 1; chunk < chunks; ++chunk) {
      const scalar_t* partial = sums + chunk * size;
      for (int64_t i = 0; i < size; ++i) sums[i] += partial[i];
    }
  });
  // [K, kernel..., C / groups] into grad_weight [K, C / groups, kernel...] (either layout).
  std::vector<int64_t> sizes{K};
  for (int64_t d = 2; d < grad_weight.dim(); ++d) sizes.push_back(grad_weight.size(d));
  sizes.push_back(cg);
  grad_weight.copy_(partials[0].view(sizes).movedim(-1, 1));
}

}  // namespace

bool few_outputs_applies(const at::Tensor& t, const ConvGeometry& g, int64_t out_channels,
                         FewOutputsPass pass) {
  if (conv_algorithm() != ConvAlgorithm::kAuto) return false;
  if (t.scalar_type() != at::kFloat && t.scalar_type() != at::kDouble) return false;
  // Groups of 16+ input channels into up to 12 each (the grouped kernels take multiples of 4 up
  // to 64 channels per group first): a grouped_cpu.h kernel computes in vectors of output
  // channels, which here would be mostly empty.
  const int64_t groups = g.groups;
  if (out_channels % groups != 0 || out_channels / groups > kFewOutputsMax) return false;
  if (groups > 1 && pass == FewOutputsPass::kTranspose) return false;
  // Runs of whole vectors: with fewer than 16 input channels a kernel row's run ends in scalar
  // steps (3 -> 3 9x9 224x224 N4 channels_last: weight gradient 26.6 ms against the engine's
  // 8.1; 4 -> 4 3x3 112x112 forward 1.0 against 0.2 in NCHW).
  const int64_t in_channels = pass == FewOutputsPass::kTranspose ? t.size(1) : g.channels;
  if (in_channels / groups < 16) return false;
  // A 1x1 conv is memory-bound: one pass over a channels_last input (up to 4 outputs) beats a
  // GEMM 3 columns wide (256 -> 3 200x200 N2, a detector's objectness head: 4.4 -> 2.0 ms,
  // torch 2.7); NCHW runs it as GEMMs along the planes, at speed; the weight gradient's GEMM
  // reads the input once for every output channel (1.2 ms against the runs' 2.3).
  if (g.is_pointwise()) {
    return pass == FewOutputsPass::kForward && g.channels_last && out_channels <= kChannelsPerPass;
  }
  if (pass == FewOutputsPass::kTranspose) {
    for (int d = 0; d < kSpatialDims; ++d) {
      if (g.stride[d] != 1) return false;
    }
  }
  return true;
}

void few_outputs_conv(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
                      const ConvGeometry& g, const at::Tensor& bias) {
  const bool fused = bias_fusable(bias, input);
  run_forward(input, weight.movedim(1, -1).contiguous(), fused ? bias : at::Tensor(), output, g);
  if (!fused) add_bias(output, bias);
}

void few_outputs_weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                             const at::Tensor& grad_weight, const ConvGeometry& g) {
  run_weight_grad(grad_output, input, grad_weight, g);
}

}  // namespace convpool::cpu
