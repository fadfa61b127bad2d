// CPU launchers of the pooling family (max pooling's forward is max_pool_cpu.cpp's).
//
// Forward: at::parallel_for over output lines, the outer window spans hoisted out of the inner
// loop, each window reduced by the shared element functions; a channels_last input is pooled in
// place, channels innermost (contiguous, vectorisable), with no layout copies.
// Backward: each plane (NCHW) or each (sample, channel block) (channels_last) is owned by one
// task and scattered into in order: deterministic, and one pass over the outputs instead of a
// gather over every input element. (The CUDA kernels' gathers run on the CPU under CUDA emulation:
// pool_emulated.cpp.)
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

#include "../common/dispatch.h"
#include "../common/cuda_emulation.h"
#include "../common/isa_clones.h"
#include "../common/tap_run.h"
#include "pool_driver.h"
#include "max_pool_cpu.h"
#include "pool_cpu_loops.h"
#include "pool_elements.h"

#pragma GCC diagnostic ignored "-Wpsabi"  // wide vectors never cross a call (always inlined)

namespace convpool {
namespace {

using namespace pool_cpu;

// ---- forward ---------------------------------------------------------------------------------
// NCHW, regular windows: a whole output line at a time; for each window row and kernel tap along
// w, one pass over the outputs that tap reaches (a strided, vectorisable loop). NCHW adaptive
// windows (sizes vary along the line) go window by window. channels_last: per output pixel, the
// window's pixels summed channels innermost (contiguous, vectorisable).

template <typename scalar_t>
struct AverageForward {
  const scalar_t* in;
  scalar_t* out;
  const PoolGeometry* g;
  const std::vector<TapRun>* runs;  // NCHW regular windows: the kernel taps along w
  // NCHW: each output's divisor factor along w (divisor_along), as integers and as the
  // accumulator type; average_divisor per output took two thirds of a 2x2/2 forward.
  const int64_t* w_factors;
  const void* w_factors_acc;
  bool exact_products;  // every divisor is below 2^24 (2^53 for double): a product of two
                        // factors in floating point is then exact
};

// The divisors of an NCHW output line: the line's (d, h) factor times each w factor, or
// divisor_override.
template <typename acc_t>
struct LineDivisors {
  int64_t line;
  const int64_t* w;  // nullptr with an override
  const acc_t* w_acc;
  bool exact;
  [[gnu::always_inline]] acc_t at(int64_t ow) const {
    if (!w) return static_cast<acc_t>(line);
    return exact ? static_cast<acc_t>(line) * w_acc[ow] : static_cast<acc_t>(line * w[ow]);
  }
};

template <typename acc_t, typename scalar_t>
[[gnu::always_inline]] inline LineDivisors<acc_t> line_divisors(const AverageForward<scalar_t>& a,
                                                                int64_t od, int64_t oh) {
  const PoolGeometry& g = *a.g;
  if (g.divisor_override != 0) return {g.divisor_override, nullptr, nullptr, true};
  return {divisor_along(g, 0, od) * divisor_along(g, 1, oh), a.w_factors,
          static_cast<const acc_t*>(a.w_factors_acc), a.exact_products};
}

// out[ow] = acc[ow] / divisor, 0 where the divisor is 0 (a vectorisable select).
template <typename scalar_t, typename acc_t>
[[gnu::always_inline]] inline void divide_line(const acc_t* __restrict__ acc,
                                               const LineDivisors<acc_t>& div, int64_t n,
                                               scalar_t* __restrict__ out) {
  if constexpr (std::is_floating_point_v<acc_t>) {
    // The cases of div.at hoisted, and no division by a zero divisor (it would be a trapping
    // operation to speculate), so that the loops vectorise: with the cases inside, a 2x2/2
    // forward spent a third of its time in this loop, a value at a time.
    const acc_t line = static_cast<acc_t>(div.line);
    if (div.w == nullptr) {
      const acc_t safe = line == acc_t(0) ? acc_t(1) : line;
      for (int64_t ow = 0; ow < n; ++ow) {
        out[ow] = static_cast<scalar_t>(line == acc_t(0) ? acc_t(0) : acc[ow] / safe);
      }
    } else if (div.exact) {
      for (int64_t ow = 0; ow < n; ++ow) {
        const acc_t d = line * div.w_acc[ow];
        const acc_t q = acc[ow] / (d == acc_t(0) ? acc_t(1) : d);
        out[ow] = static_cast<scalar_t>(d == acc_t(0) ? acc_t(0) : q);
      }
    } else {
      for (int64_t ow = 0; ow < n; ++ow) {
        const acc_t d = div.at(ow);
        out[ow] = static_cast<scalar_t>(d == acc_t(0) ? acc_t(0) : acc[ow] / d);
      }
    }
  } else {
    for (int64_t ow = 0; ow < n; ++ow) {
      out[ow] = static_cast<scalar_t>(divide(acc[ow], static_cast<int64_t>(div.at(ow))));
    }
  }
}

// kStride: the stride along w when known at compile time (1, 2: contiguous or two-way
// interleaved loads the vectoriser handles), else 0. acc: OW elements of scratch.
template <int kStride, typename scalar_t, typename acc_t>
[[gnu::always_inline]] inline void average_line_regular(const AverageForward<scalar_t>& a,
                                                        int64_t line, int64_t plane, int64_t od,
                                                        int64_t oh, acc_t* __restrict__ acc) {
  const PoolGeometry& g = *a.g;
  const int64_t OW = g.output[2], s = kStride > 0 ? kStride : g.stride[2];
  std::fill(acc, acc + OW, acc_t(0));
  const Span sd = window_span(g, 0, od), sh = window_span(g, 1, oh);
  const scalar_t* plane_in = a.in + plane * g.input_numel();
  // Row by row, tap by tap: each output adds its window in row-major order, as torch's does.
  for (int64_t id = sd.begin; id < sd.end; id += sd.step) {
    for (int64_t ih = sh.begin; ih < sh.end; ih += sh.step) {
      const scalar_t* __restrict__ r = plane_in + (id * g.input[1] + ih) * g.input[2];
      for (const auto& run : *a.runs) {
        const scalar_t* __restrict__ tap = r + run.offset;
        for (int64_t ow = run.lo; ow < run.hi; ++ow) acc[ow] += static_cast<acc_t>(tap[ow * s]);
      }
    }
  }
  divide_line(acc, line_divisors<acc_t>(a, od, oh), OW, a.out + line * OW);
}

// NCHW adaptive windows (their length varies along the line): the line's window rows summed
// into one input-width row first (contiguous, vectorisable), then each output's span of it. The
// order of the additions differs from torch's row-major one, by rounding only. rows: W elements
// of scratch, acc: OW.
template <typename scalar_t, typename acc_t>
[[gnu::always_inline]] inline void average_line_adaptive(const AverageForward<scalar_t>& a,
                                                         int64_t line, int64_t plane, int64_t od,
                                                         int64_t oh, acc_t* __restrict__ rows,
                                                         acc_t* __restrict__ acc) {
  const PoolGeometry& g = *a.g;
  const int64_t W = g.input[2], OW = g.output[2];
  const scalar_t* plane_in = a.in + plane * g.input_numel();
  const Span sd = window_span(g, 0, od), sh = window_span(g, 1, oh);
  std::fill(rows, rows + W, acc_t(0));
  for (int64_t id = sd.begin; id < sd.end; id += sd.step) {
    for (int64_t ih = sh.begin; ih < sh.end; ih += sh.step) {
      const scalar_t* __restrict__ r = plane_in + (id * g.input[1] + ih) * W;
      for (int64_t iw = 0; iw < W; ++iw) rows[iw] += static_cast<acc_t>(r[iw]);
    }
  }
  for (int64_t ow = 0; ow < OW; ++ow) {
    const Span sw = window_span(g, 2, ow);
    acc_t sum = acc_t(0);
    for (int64_t iw = sw.begin; iw < sw.end; ++iw) sum += rows[iw];
    acc[ow] = sum;
  }
  divide_line(acc, line_divisors<acc_t>(a, od, oh), OW, a.out + line * OW);
}

// The sum over a window's pixels of channels [c0, c0 + width) of a channels_last sample, the
// accumulators in registers while the window's pixels stream past.
template <typename scalar_t, typename acc_t, int64_t kWidth>
[[gnu::always_inline]] inline void window_channel_sums(const scalar_t* sample,
                                                       const PoolGeometry& g, const Window& win,
                                                       int64_t c0, int64_t width, acc_t* sums) {
  acc_t acc[kWidth > 0 ? kWidth : 1] = {};
  const int64_t n = kWidth > 0 ? kWidth : width;
  for (int64_t id = win.d.begin; id < win.d.end; id += win.d.step) {
    for (int64_t ih = win.h.begin; ih < win.h.end; ih += win.h.step) {
      const int64_t row = (id * g.input[1] + ih) * g.input[2];
      for (int64_t iw = win.w.begin; iw < win.w.end; iw += win.w.step) {
        const scalar_t* __restrict__ pixel = sample + (row + iw) * g.channels + c0;
        if constexpr (kWidth > 0) {
          for (int64_t c = 0; c < kWidth; ++c) acc[c] += static_cast<acc_t>(pixel[c]);
        } else {
          for (int64_t c = 0; c < n; ++c) sums[c] += static_cast<acc_t>(pixel[c]);
        }
      }
    }
  }
  if constexpr (kWidth > 0) std::copy_n(acc, kWidth, sums);
}

template <typename scalar_t>
[[gnu::always_inline]] inline void average_line_channels_last(const AverageForward<scalar_t>& a,
                                                              int64_t line, int64_t n, int64_t od,
                                                              int64_t oh) {
  using acc_t = at::opmath_type<scalar_t>;
  // Channels per register block: 32 floats are 4 AVX2 registers (2 AVX-512 ones).
  constexpr int64_t kBlock = 32;
  const PoolGeometry& g = *a.g;
  const int64_t C = g.channels;
  acc_t sum[kBlock];
  const scalar_t* sample = a.in + n * g.input_numel() * C;
  Window win{window_span(g, 0, od), window_span(g, 1, oh), {}};
  for (int64_t ow = 0; ow < g.output[2]; ++ow) {
    win.w = window_span(g, 2, ow);
    const int64_t divisor = average_divisor(g, od, oh, ow);
    scalar_t* __restrict__ dst = a.out + (line * g.output[2] + ow) * C;
    for (int64_t c0 = 0; c0 < C; c0 += kBlock) {
      const int64_t width = std::min(kBlock, C - c0);
      if (width == kBlock) {
        window_channel_sums<scalar_t, acc_t, kBlock>(sample, g, win, c0, width, sum);
      } else {
        std::fill_n(sum, width, acc_t(0));
        window_channel_sums<scalar_t, acc_t, 0>(sample, g, win, c0, width, sum);
      }
      for (int64_t c = 0; c < width; ++c)
        dst[c0 + c] = static_cast<scalar_t>(divide(sum[c], divisor));
    }
  }
}

// ---- float32 / float64 forward with explicit vectors ------------------------------------------
// B: the register width in bytes (64 with AVX-512, else 32; see wide_vector_registers()).

template <typename T, int B>
struct Vec {
  typedef T type __attribute__((vector_size(B)));
  static constexpr int64_t kLanes = B / static_cast<int64_t>(sizeof(T));
};

template <int B, typename T>
[[gnu::always_inline]] inline typename Vec<T, B>::type load(const T* p) {
  typename Vec<T, B>::type v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T, typename V>
[[gnu::always_inline]] inline void store(T* p, V v) {
  __builtin_memcpy(p, &v, sizeof(v));
}

// Channels c .. c + W * L of one channels_last output pixel: the sums stay in W registers while
// the window's pixels stream past, then one vector division (the same rounding as a scalar one).
// The scalar loop it replaced zeroed a 32-float array per block with `rep stos` and divided
// channel by channel: 2x2/2 over N32 C64 112x112 took 17.6 ms against torch's 12.5 (1 thread).
template <typename T, int B, int W>
[[gnu::always_inline]] inline void window_vectors(const T* sample, const PoolGeometry& g,
                                                  const Window& win, int64_t c, T divisor, T* dst) {
  using V = typename Vec<T, B>::type;
  constexpr int64_t L = Vec<T, B>::kLanes;
  V acc[W] = {};
  for (int64_t id = win.d.begin; id < win.d.end; id += win.d.step) {
    for (int64_t ih = win.h.begin; ih < win.h.end; ih += win.h.step) {
      const T* row = sample + (id * g.input[1] + ih) * g.input[2] * g.channels + c;
      for (int64_t iw = win.w.begin; iw < win.w.end; iw += win.w.step) {
        const T* px = row + iw * g.channels;
        for (int w = 0; w < W; ++w) acc[w] += load<B>(px + w * L);
      }
    }
  }
  for (int w = 0; w < W; ++w) store(dst + c + w * L, acc[w] / divisor);
}

// Output pixel ow of a channels_last line whose d and h windows are win.d and win.h.
template <typename T, int B>
[[gnu::always_inline]] inline void average_pixel_channels_last(const T* sample,
                                                               const PoolGeometry& g, Window win,
                                                               int64_t od, int64_t oh, int64_t ow,
                                                               T* __restrict__ dst) {
  // Up to 8 registers of sums per block, so that a pixel's channels are read as one run (blocks
  // of 128 bytes read a C64 pixel in two strided passes: adaptive 112 -> 7, N32 C64, took 1.75x
  // the memory floor).
  constexpr int64_t L = Vec<T, B>::kLanes;
  const int64_t C = g.channels;
  win.w = window_span(g, 2, ow);
  const int64_t divisor = average_divisor(g, od, oh, ow);
  if (divisor == 0) {  // divide()'s rule: an empty window averages to 0
    std::fill_n(dst, C, T(0));
    return;
  }
  const T d = static_cast<T>(divisor);
  int64_t c = 0;
  for (; c + 8 * L <= C; c += 8 * L) window_vectors<T, B, 8>(sample, g, win, c, d, dst);
  if (c + 4 * L <= C) window_vectors<T, B, 4>(sample, g, win, c, d, dst), c += 4 * L;
  if (c + 2 * L <= C) window_vectors<T, B, 2>(sample, g, win, c, d, dst), c += 2 * L;
  if (c + L <= C) window_vectors<T, B, 1>(sample, g, win, c, d, dst), c += L;
  for (; c < C; ++c) {
    T sum = T(0);
    for (int64_t id = win.d.begin; id < win.d.end; id += win.d.step) {
      for (int64_t ih = win.h.begin; ih < win.h.end; ih += win.h.step) {
        const T* row = sample + (id * g.input[1] + ih) * g.input[2] * C + c;
        for (int64_t iw = win.w.begin; iw < win.w.end; iw += win.w.step) sum += row[iw * C];
      }
    }
    dst[c] = sum / d;
  }
}

// Channels [c, c + W * L) of the outputs of one channels_last line, each window's pixels of input
// row `row` added to its running sums acc[ow * C + c ...] (in registers while the row's pixels
// stream past).
template <typename T, int B, int W>
[[gnu::always_inline]] inline void add_row_vectors(const T* row, const PoolGeometry& g,
                                                   const Span* w_spans, int64_t c, T* acc) {
  using V = typename Vec<T, B>::type;
  constexpr int64_t L = Vec<T, B>::kLanes;
  const int64_t C = g.channels;
  for (int64_t ow = 0; ow < g.output[2]; ++ow) {
    const Span sw = w_spans[ow];
    T* sums = acc + ow * C + c;
    V v[W];
    for (int w = 0; w < W; ++w) v[w] = load<B>(sums + w * L);
    for (int64_t iw = sw.begin; iw < sw.end; iw += sw.step) {
      const T* px = row + iw * C + c;
      for (int w = 0; w < W; ++w) v[w] += load<B>(px + w * L);
    }
    for (int w = 0; w < W; ++w) store(sums + w * L, v[w]);
  }
}

// Output lines [begin, end) of a channels_last volume whose windows are tall (more than two rows:
// adaptive ones, large kernels), swept input row by input row: a line's window rows are one
// contiguous run of the input, read front to back, where window by window each window row is a
// short run of its own (adaptive 112 -> 7, N32 C64: 16 runs of 4 KiB per window, each starting
// cold at a page the prefetcher had not followed: 1.6x the memory floor). Each output still adds
// its pixels in window order (the same sums). acc: output[2] * channels elements of scratch.
template <typename T, int B>
[[gnu::always_inline]] inline void average_lines_channels_last_rows(const AverageForward<T>& a,
                                                                    int64_t begin, int64_t end,
                                                                    T* acc, Span* w_spans) {
  constexpr int64_t L = Vec<T, B>::kLanes;
  const PoolGeometry& g = *a.g;
  const int64_t OW = g.output[2], C = g.channels;
  for (int64_t ow = 0; ow < OW; ++ow) w_spans[ow] = window_span(g, 2, ow);
  for (int64_t line = begin; line < end; ++line) {
    const int64_t oh = line % g.output[1], od = line / g.output[1] % g.output[0];
    const T* sample = a.in + line / (g.output[1] * g.output[0]) * g.input_numel() * C;
    const Span sd = window_span(g, 0, od), sh = window_span(g, 1, oh);
    std::fill_n(acc, OW * C, T(0));
    for (int64_t id = sd.begin; id < sd.end; id += sd.step) {
      for (int64_t ih = sh.begin; ih < sh.end; ih += sh.step) {
        const T* row = sample + (id * g.input[1] + ih) * g.input[2] * C;
        int64_t c = 0;
        for (; c + 8 * L <= C; c += 8 * L) add_row_vectors<T, B, 8>(row, g, w_spans, c, acc);
        if (c + 4 * L <= C) add_row_vectors<T, B, 4>(row, g, w_spans, c, acc), c += 4 * L;
        if (c + 2 * L <= C) add_row_vectors<T, B, 2>(row, g, w_spans, c, acc), c += 2 * L;
        if (c + L <= C) add_row_vectors<T, B, 1>(row, g, w_spans, c, acc), c += L;
        for (; c < C; ++c) {
          for (int64_t ow = 0; ow < OW; ++ow) {
            for (int64_t iw = w_spans[ow].begin; iw < w_spans[ow].end; iw += w_spans[ow].step)
              acc[ow * C + c] += row[iw * C + c];
          }
        }
      }
    }
    T* out = a.out + line * OW * C;
    for (int64_t ow = 0; ow < OW; ++ow) {
      const int64_t divisor = average_divisor(g, od, oh, ow);
      for (int64_t ch = 0; ch < C; ++ch) out[ow * C + ch] = divide(acc[ow * C + ch], divisor);
    }
  }
}

// Output lines [begin, end) of a channels_last volume, kLines at a time, their pixels
// interleaved: a 2x2/2 window reads two input rows per line, and one core reads memory faster
// from four streams than from two (1 thread, N32 C64 112x112: 11.7 -> 10.3 ms).
template <typename T, int B>
[[gnu::always_inline]] inline void average_lines_channels_last_vectors(const AverageForward<T>& a,
                                                                       int64_t begin, int64_t end) {
  const PoolGeometry& g = *a.g;
  const int64_t* sizes = g.output;
  const int64_t OW = sizes[2], C = g.channels;
  // Not more: four lines' eight rows, 28 KiB apart in N32 C64 112x112, share L1 sets (4 KiB
  // aliasing) and ran 1.6x slower than two.
  constexpr int64_t kLines = 2;
  for (int64_t line = begin; line < end; line += kLines) {
    const int64_t count = std::min<int64_t>(kLines, end - line);
    const T* sample[kLines];
    Window win[kLines];
    int64_t od[kLines], oh[kLines];
    for (int64_t k = 0; k < count; ++k) {
      const int64_t l = line + k;
      oh[k] = l % sizes[1];
      od[k] = l / sizes[1] % sizes[0];
      sample[k] = a.in + l / (sizes[1] * sizes[0]) * g.input_numel() * C;
      win[k] = {window_span(g, 0, od[k]), window_span(g, 1, oh[k]), {}};
    }
    for (int64_t ow = 0; ow < OW; ++ow) {
      for (int64_t k = 0; k < count; ++k) {
        average_pixel_channels_last<T, B>(sample[k], g, win[k], od[k], oh[k], ow,
                                          a.out + ((line + k) * OW + ow) * C);
      }
    }
  }
}

// Global averages of NCHW planes [begin, end) (one output per plane), kPlanes at a time: one
// core reads memory faster from several streams than from one (AMD EPYC, 1 thread, N32 C64
// 112x112: 8.2 ms one plane at a time, 5.4 ms four at a time; torch 7-8 ms).
template <typename T, int B>
[[gnu::always_inline]] inline void global_averages(const AverageForward<T>& a, int64_t begin,
                                                   int64_t end) {
  using V = typename Vec<T, B>::type;
  constexpr int64_t L = Vec<T, B>::kLanes, kPlanes = 4;
  const int64_t n = a.g->input_numel();
  const int64_t divisor = average_divisor(*a.g, 0, 0, 0);
  const auto finish = [&](int64_t p, T sum) { a.out[p] = divide(sum, divisor); };
  int64_t p = begin;
  for (; p + kPlanes <= end; p += kPlanes) {
    const T* in = a.in + p * n;
    V acc0[kPlanes] = {}, acc1[kPlanes] = {};
    int64_t i = 0;
    for (; i + 2 * L <= n; i += 2 * L) {
      for (int64_t k = 0; k < kPlanes; ++k) {
        acc0[k] += load<B>(in + k * n + i);
        acc1[k] += load<B>(in + k * n + i + L);
      }
    }
    for (int64_t k = 0; k < kPlanes; ++k) {
      const V v = acc0[k] + acc1[k];
      T sum = T(0);
      for (int64_t l = 0; l < L; ++l) sum += v[l];
      for (int64_t j = i; j < n; ++j) sum += in[k * n + j];
      finish(p + k, sum);
    }
  }
  for (; p < end; ++p) {
    const T* in = a.in + p * n;
    V acc = {};
    int64_t i = 0;
    for (; i + L <= n; i += L) acc += load<B>(in + i);
    T sum = T(0);
    for (int64_t l = 0; l < L; ++l) sum += acc[l];
    for (; i < n; ++i) sum += in[i];
    finish(p, sum);
  }
}

// W vectors of channels of one channels_last sample summed over its n pixels (`C` apart), one
// chain per vector, divided by `divisor`.
template <typename T, int B, int W>
[[gnu::always_inline]] inline void sum_pixels(const T* in, int64_t n, int64_t C, T divisor,
                                              T* out) {
  using V = typename Vec<T, B>::type;
  constexpr int64_t L = Vec<T, B>::kLanes;
  V acc[W] = {};
  for (int64_t p = 0; p < n; ++p, in += C) {
    for (int w = 0; w < W; ++w) acc[w] += load<B>(in + w * L);
  }
  for (int w = 0; w < W; ++w) store(out + w * L, acc[w] / divisor);
}

// The last `vectors` (< W) vectors of a sample's channels. Recursion, not a lambda over an index
// sequence: a lambda is compiled outside the ISA clone that calls it.
template <typename T, int B, int W>
[[gnu::always_inline]] inline void sum_last_vectors(int64_t vectors, const T* in, int64_t n,
                                                    int64_t C, T divisor, T* out) {
  if constexpr (W > 0) {
    if (vectors == W) return sum_pixels<T, B, W>(in, n, C, divisor, out);
    sum_last_vectors<T, B, W - 1>(vectors, in, n, C, divisor, out);
  }
}

// Global averages (adaptive output 1, 1x1, 1x1x1) of channels_last samples [begin, end): each
// pixel's channels read as one run, up to 8 vectors of sums at a time. (Blocks of 128 bytes, as
// window_vectors reads windows, read a C64 pixel's 256 bytes in two strided passes: N32 C64
// 112x112 took 1.8x the memory floor, torch's 1.6x.)
template <typename T, int B>
[[gnu::always_inline]] inline void global_averages_channels_last(const AverageForward<T>& a,
                                                                 int64_t begin, int64_t end) {
  constexpr int64_t L = Vec<T, B>::kLanes, kVectors = 8;
  const PoolGeometry& g = *a.g;
  const int64_t C = g.channels, n = g.input_numel();
  const int64_t divisor = average_divisor(g, 0, 0, 0);
  for (int64_t sample = begin; sample < end; ++sample) {
    const T* in = a.in + sample * n * C;
    T* out = a.out + sample * C;
    if (divisor == 0) {  // divide()'s rule: an empty window averages to 0
      std::fill_n(out, C, T(0));
      continue;
    }
    const T d = static_cast<T>(divisor);
    int64_t c = 0;
    for (; c + kVectors * L <= C; c += kVectors * L) {
      sum_pixels<T, B, kVectors>(in + c, n, C, d, out + c);
    }
    sum_last_vectors<T, B, kVectors - 1>((C - c) / L, in + c, n, C, d, out + c);
    for (c += (C - c) / L * L; c < C; ++c) {
      T sum = T(0);
      for (int64_t p = 0; p < n; ++p) sum += in[p * C + c];
      out[c] = sum / d;
    }
  }
}

// Output lines [begin, end): one task's work (lines as for_each_line numbers them). B: the
// vector width of the float32 / float64 kernels, 0 for the others (the scalar loops).
template <typename scalar_t, int B = 0>
[[gnu::always_inline]] inline void average_lines(const AverageForward<scalar_t>& a, int64_t begin,
                                                 int64_t end) {
  const PoolGeometry& g = *a.g;
  const int64_t* sizes = g.output;
  if constexpr (B > 0) {
    if (g.adaptive && g.output_numel() == 1) {
      return g.channels_last ? global_averages_channels_last<scalar_t, B>(a, begin, end)
                             : global_averages<scalar_t, B>(a, begin, end);
    }
  }
  if constexpr (B > 0) {
    if (g.channels_last && pool_cpu::sweep_rows(g, sizeof(scalar_t))) {
      std::vector<scalar_t> acc(g.output[2] * g.channels);
      std::vector<Span> w_spans(g.output[2]);
      return average_lines_channels_last_rows<scalar_t, B>(a, begin, end, acc.data(),
                                                           w_spans.data());
    }
    if (g.channels_last) return average_lines_channels_last_vectors<scalar_t, B>(a, begin, end);
  }
  using acc_t = at::opmath_type<scalar_t>;
  std::vector<acc_t> scratch(g.channels_last ? 0 : g.input[2] + g.output[2]);
  acc_t* acc = scratch.data();
  acc_t* rows = acc + g.output[2];
  for (int64_t line = begin; line < end; ++line) {
    const int64_t h = line % sizes[1], d = line / sizes[1] % sizes[0];
    const int64_t outer = line / (sizes[1] * sizes[0]);
    if (g.channels_last) {
      average_line_channels_last(a, line, outer, d, h);
    } else if (g.adaptive) {
      average_line_adaptive(a, line, outer, d, h, rows, acc);
    } else if (g.stride[2] == 1) {
      average_line_regular<1>(a, line, outer, d, h, acc);
    } else if (g.stride[2] == 2) {
      average_line_regular<2>(a, line, outer, d, h, acc);
    } else {
      average_line_regular<0>(a, line, outer, d, h, acc);
    }
  }
}

// float and double per vector ISA: a lambda handed to at::parallel_for would not inherit a
// clone's target, so the clones are whole chunks of lines. (Built for the baseline ISA only,
// a global average of N8 C64 112x112 took 1.7x torch's time, on an AVX2 CPU.)
CONVPOOL_CLONES void average_lines_f32(const AverageForward<float>& a, int64_t b, int64_t e) {
  if (wide_vector_registers()) return average_lines<float, 64>(a, b, e);
  average_lines<float, 32>(a, b, e);
}
CONVPOOL_CLONES void average_lines_f64(const AverageForward<double>& a, int64_t b, int64_t e) {
  if (wide_vector_registers()) return average_lines<double, 64>(a, b, e);
  average_lines<double, 32>(a, b, e);
}
template <typename scalar_t>
void average_lines_any(const AverageForward<scalar_t>& a, int64_t b, int64_t e) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    average_lines_f32(a, b, e);
  } else if constexpr (std::is_same_v<scalar_t, double>) {
    average_lines_f64(a, b, e);
  } else {
    average_lines(a, b, e);
  }
}

template <typename scalar_t>
void average_forward(const scalar_t* in, scalar_t* out, const PoolGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto runs = g.channels_last || g.adaptive ? std::vector<TapRun>{} : tap_runs(g);
  std::vector<int64_t> w_factors(g.output[2]);
  std::vector<acc_t> w_factors_acc(g.output[2]);
  int64_t largest_w = 0;
  for (int64_t ow = 0; ow < g.output[2]; ++ow) {
    w_factors[ow] = divisor_along(g, 2, ow);
    w_factors_acc[ow] = static_cast<acc_t>(w_factors[ow]);
    largest_w = std::max(largest_w, w_factors[ow]);
  }
  int64_t largest_line = 0;
  for (int64_t od = 0; od < g.output[0]; ++od) {
    for (int64_t oh = 0; oh < g.output[1]; ++oh) {
      largest_line = std::max(largest_line, divisor_along(g, 0, od) * divisor_along(g, 1, oh));
    }
  }
  constexpr int kDigits = std::is_floating_point_v<acc_t> ? std::numeric_limits<acc_t>::digits : 0;
  constexpr int64_t kExactBelow = int64_t{1} << kDigits;
  const bool exact =
      std::is_floating_point_v<acc_t> && largest_w > 0 && largest_line < kExactBelow / largest_w;
  const AverageForward<scalar_t> args{in,   out, &g, &runs, w_factors.data(), w_factors_acc.data(),
                                      exact};
  const int64_t outer = g.channels_last ? g.planes / g.channels : g.planes;
  const int64_t work = g.output[2] * window_numel(g) * (g.channels_last ? g.channels : 1);
  for_each_line_range(outer, g.output, work,
                      [&](int64_t b, int64_t e) { average_lines_any(args, b, e); });
}

// ---- backward: scatter, one task per plane (NCHW) or per (sample, channel block) ------------

// The indices were checked once by the driver (check_max_indices): every one of a non-empty
// window lies inside the plane, so the loops carry no bounds checks.
template <typename scalar_t>
void max_backward_planes(const scalar_t* grad, const int64_t* idx, scalar_t* grad_in,
                         const PoolGeometry& g) {
  const int64_t in_numel = g.input_numel(), out_numel = g.output_numel();
  const auto empty = empty_windows(g);
  at::parallel_for(0, g.planes, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      PlaneAccumulator<scalar_t> acc(grad_in + p * in_numel, in_numel);
      auto* dst = acc.data();
      const scalar_t* src = grad + p * out_numel;
      const int64_t* where = idx + p * out_numel;
      if (empty.empty()) {
        for (int64_t o = 0; o < out_numel; ++o) dst[where[o]] += src[o];
      } else {
        for (int64_t o = 0; o < out_numel; ++o) {
          if (!empty[o]) dst[where[o]] += src[o];
        }
      }
    }
  });
}

template <typename scalar_t>
void average_backward_planes(const scalar_t* grad, scalar_t* grad_in, const PoolGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t in_numel = g.input_numel(), out_numel = g.output_numel(), OW = g.output[2];
  const auto runs = g.adaptive ? std::vector<TapRun>{} : tap_runs(g);
  // Each output's divisor, the same in every plane: computed per plane and output, as the
  // windows' spans, it took longer than the scatter it scaled.
  std::vector<acc_t> divisors(out_numel);
  for (int64_t od = 0; od < g.output[0]; ++od) {
    for (int64_t oh = 0; oh < g.output[1]; ++oh) {
      for (int64_t ow = 0; ow < OW; ++ow) {
        divisors[(od * g.output[1] + oh) * OW + ow] =
            static_cast<acc_t>(average_divisor(g, od, oh, ow));
      }
    }
  }
  at::parallel_for(0, g.planes, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> share(OW);
    for (int64_t p = begin; p < end; ++p) {
      PlaneAccumulator<scalar_t> acc(grad_in + p * in_numel, in_numel);
      auto* dst = acc.data();
      const scalar_t* src = grad + p * out_numel;
      for (int64_t od = 0; od < g.output[0]; ++od) {
        for (int64_t oh = 0; oh < g.output[1]; ++oh) {
          const Span sd = window_span(g, 0, od), sh = window_span(g, 1, oh);
          const scalar_t* line = src + (od * g.output[1] + oh) * OW;
          const acc_t* line_divisors = divisors.data() + (od * g.output[1] + oh) * OW;
          for (int64_t ow = 0; ow < OW; ++ow) {  // divide(), with no division by 0 to speculate
            const acc_t d = line_divisors[ow];
            const acc_t q = static_cast<acc_t>(line[ow]) / (d == acc_t(0) ? acc_t(1) : d);
            share[ow] = d == acc_t(0) ? acc_t(0) : q;
          }
          for (int64_t id = sd.begin; id < sd.end; id += sd.step) {
            for (int64_t ih = sh.begin; ih < sh.end; ih += sh.step) {
              auto* __restrict__ row = dst + (id * g.input[1] + ih) * g.input[2];
              if (g.adaptive) {
                for (int64_t ow = 0; ow < OW; ++ow) {
                  const Span sw = window_span(g, 2, ow);
                  for (int64_t iw = sw.begin; iw < sw.end; ++iw) row[iw] += share[ow];
                }
                continue;
              }
              // One strided pass per kernel tap: the outputs of a pass write distinct elements.
              for (const auto& run : runs) {
                for (int64_t ow = run.lo; ow < run.hi; ++ow) {
                  row[ow * g.stride[2] + run.offset] += share[ow];
                }
              }
            }
          }
        }
      }
    }
  });
}

template <typename scalar_t>
void max_backward_channels_last(const scalar_t* grad, const int64_t* idx, scalar_t* grad_in,
                                const PoolGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t C = g.channels, out_numel = g.output_numel();
  const auto empty = empty_windows(g);
  for_each_channel_block(g, [&](int64_t n, int64_t c0, int64_t c1) {
    const int64_t width = c1 - c0;
    const scalar_t* src = grad + n * out_numel * C + c0;
    const int64_t* where = idx + n * out_numel * C + c0;
    accumulate_channel_block(grad_in, g, n, c0, c1, [&](auto* acc, int64_t pitch) {
      for (int64_t o = 0; o < out_numel; ++o) {
        if (!empty.empty() && empty[o]) continue;
        for (int64_t c = 0; c < width; ++c) {
          acc[where[o * C + c] * pitch + c] += static_cast<acc_t>(src[o * C + c]);
        }
      }
    });
  });
}

template <typename scalar_t>
void average_backward_channels_last(const scalar_t* grad, scalar_t* grad_in,
                                    const PoolGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t C = g.channels, out_numel = g.output_numel();
  for_each_channel_block(g, [&](int64_t n, int64_t c0, int64_t c1) {
    const int64_t width = c1 - c0;
    const scalar_t* src = grad + n * out_numel * C + c0;
    accumulate_channel_block(grad_in, g, n, c0, c1, [&](auto* acc, int64_t pitch) {
      std::vector<acc_t> share(width);
      for (int64_t od = 0; od < g.output[0]; ++od) {
        for (int64_t oh = 0; oh < g.output[1]; ++oh) {
          Window win{window_span(g, 0, od), window_span(g, 1, oh), {}};
          for (int64_t ow = 0; ow < g.output[2]; ++ow) {
            win.w = window_span(g, 2, ow);
            const int64_t o = (od * g.output[1] + oh) * g.output[2] + ow;
            const int64_t divisor = average_divisor(g, od, oh, ow);
            for (int64_t c = 0; c < width; ++c)
              share[c] = divide(static_cast<acc_t>(src[o * C + c]), divisor);
            for (int64_t id = win.d.begin; id < win.d.end; id += win.d.step) {
              for (int64_t ih = win.h.begin; ih < win.h.end; ih += win.h.step) {
                const int64_t row = (id * g.input[1] + ih) * g.input[2];
                for (int64_t iw = win.w.begin; iw < win.w.end; iw += win.w.step) {
                  auto* __restrict__ px = acc + (row + iw) * pitch;
                  for (int64_t c = 0; c < width; ++c) px[c] += share[c];
                }
              }
            }
          }
        }
      }
    });
  });
}

// ---- the backend --------------------------------------------------------------------------

void average_forward_cpu(const at::Tensor& input, const at::Tensor& output, const PoolGeometry& g) {
  // torch's CPU average pooling also takes int64 (a truncating division).
  AT_DISPATCH_FLOATING_TYPES_AND3(at::kHalf, at::kBFloat16, at::kLong, input.scalar_type(),
                                  "avg_pool_cpu", [&] {
                                    const auto* in = input.const_data_ptr<scalar_t>();
                                    auto* out = output.data_ptr<scalar_t>();
                                    average_forward(in, out, g);
                                  });
}

void max_backward_cpu(const at::Tensor& grad_output, const at::Tensor& indices,
                      const at::Tensor& grad_input, const PoolGeometry& g) {
  CONVPOOL_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "max_pool_backward_cpu", [&] {
    const auto* grad = grad_output.const_data_ptr<scalar_t>();
    const auto* idx = indices.const_data_ptr<int64_t>();
    auto* out = grad_input.data_ptr<scalar_t>();
    if (g.channels_last) {
      max_backward_channels_last(grad, idx, out, g);
    } else {
      max_backward_planes(grad, idx, out, g);
    }
  });
}

void average_backward_cpu(const at::Tensor& grad_output, const at::Tensor& grad_input,
                          const PoolGeometry& g) {
  CONVPOOL_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "avg_pool_backward_cpu", [&] {
    const auto* grad = grad_output.const_data_ptr<scalar_t>();
    auto* out = grad_input.data_ptr<scalar_t>();
    if (g.channels_last) {
      average_backward_channels_last(grad, out, g);
    } else {
      average_backward_planes(grad, out, g);
    }
  });
}

// Planes in parallel, each written in order, so repeated indices resolve as torch's CPU kernel
// does (the last one wins).
void unpool_cpu(const at::Tensor& input, const at::Tensor& indices, const at::Tensor& output) {
  CONVPOOL_DISPATCH_FLOATING_TYPES(input.scalar_type(), "max_unpool_cpu", [&] {
    const scalar_t* in = input.const_data_ptr<scalar_t>();
    const int64_t* idx = indices.const_data_ptr<int64_t>();
    scalar_t* out = output.data_ptr<scalar_t>();
    const int64_t planes = input.size(0) * input.size(1);
    const int64_t in_plane = planes == 0 ? 0 : input.numel() / planes;
    const int64_t out_plane = planes == 0 ? 0 : output.numel() / planes;
    at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        for (int64_t j = 0; j < in_plane; ++j) {
          out[p * out_plane + idx[p * in_plane + j]] = in[p * in_plane + j];
        }
      }
    });
  });
}

// The channels_last kernels pool in place.
bool cpu_takes_channels_last() { return true; }

const PoolBackend kCpuBackend{cpu::max_pool_forward,
                              average_forward_cpu,
                              max_backward_cpu,
                              average_backward_cpu,
                              unpool_cpu,
                              cpu_takes_channels_last,
                              cpu::max_pool_forward_values,
                              cpu::max_pool_forward_positions,
                              cpu::max_pool_backward_positions};

// CPU tensors take the CPU's kernels, or the CUDA kernels' bodies while CUDA emulation is on.
const PoolBackend& cpu_or_emulated_backend() {
  return cuda_emulation() ? emulated_cuda_pool_backend() : kCpuBackend;
}

}  // namespace

TORCH_LIBRARY_IMPL(convpool, CPU, m) { register_pool_kernels<cpu_or_emulated_backend>(m); }

}  // namespace convpool
