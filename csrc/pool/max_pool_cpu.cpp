// Max pooling on the CPU. The forward comes in three forms that differ only in what they record
// beside the maximum: nothing (no gradient needed: no index is computed or stored), the position
// in the window as one byte (what autograd saves), or torch's int64 index into the plane (what
// return_indices=True asks for). One loop body serves all three (Record), so they cannot drift.
//
// NCHW, regular windows: an output line at a time; for each window row and kernel tap along w,
// one strided pass over the outputs the tap reaches (a plain vectorisable loop), each output
// still seeing its taps in window order, so ties (the first wins) and NaN (the last NaN wins)
// resolve as torch's. Values only (NCHW, regular windows) reduce the window's rows into one row
// first, then take the taps along w over it: the same maxima (only the sign of a zero that ties,
// or which NaN, may differ), in a third of the strided passes. NCHW adaptive windows go window by
// window. channels_last: per output pixel, tap by tap, all channels at once (contiguous). The
// float32 loops are compiled per vector ISA.
//
// Backward from positions: each plane (NCHW) or (sample, channel block) (channels_last) is owned
// by one task that zeroes its block while it is in cache and adds each output's gradient at
// origin + displacement[position]: one write of grad_input, deterministic.
#include "max_pool_cpu.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <type_traits>
#include <variant>
#include <vector>

#include "../common/dispatch.h"
#include "../common/isa_clones.h"
#include "pool_cpu_loops.h"
#include "window_offsets.h"

#define CONVPOOL_ALWAYS_INLINE inline __attribute__((always_inline))

namespace convpool::cpu {

enum class Record { kNothing, kPosition, kIndex };

template <typename scalar_t>
struct MaxArgs {
  const scalar_t* in;
  scalar_t* out;
  uint8_t* positions;  // kPosition
  int64_t* indices;    // kIndex
  const PoolGeometry* g;
  const TapRun* runs;         // per kernel tap along w (regular NCHW windows)
  const int64_t* w_begin;     // per output along w: its window's first element along w
  const int64_t* w_position;  // and that element's position number along w
};

namespace {

using pool_cpu::for_each_line_range;

// Where a max starts: -inf, or an integer type's lowest value (which never loses a tie, so a
// window of lowest values reports its first element, as a window of -inf does).
template <typename T>
constexpr T lowest() {
  if constexpr (std::numeric_limits<T>::has_infinity) {
    return -std::numeric_limits<T>::infinity();
  } else {
    return std::numeric_limits<T>::lowest();
  }
}

template <typename T>
CONVPOOL_ALWAYS_INLINE bool beats(T v, T best) {
  if constexpr (std::numeric_limits<T>::has_quiet_NaN) {
    return (v > best) | (v != v);
  } else {
    return v > best;
  }
}

// What a window records for its first element before any element beats the start value: its
// index in the plane (kIndex) or its position number in the window (kPosition), from the first
// element's coordinates (id, ih, iw) and position numbers (pd, ph, pw) along each dim.
template <Record R>
CONVPOOL_ALWAYS_INLINE int64_t first_code(const PoolGeometry& g, int64_t id, int64_t ih, int64_t iw,
                                          int64_t pd, int64_t ph, int64_t pw) {
  if constexpr (R == Record::kIndex) return (id * g.input[1] + ih) * g.input[2] + iw;
  return (pd * window_extent(g, 1) + ph) * window_extent(g, 2) + pw;
}

// The max of runs of contiguous values (NaN if any is NaN), 32 bytes of lanes at a time, reduced
// across lanes once at the end: with no position to record, the order of the comparisons does not
// matter (beyond the sign of a zero that ties). A scalar compare-and-branch per element took 1.1 ns
// per element (adaptive 112 -> 7: windows of 16 x 16, 8x the memory floor).
template <typename T>
struct RunMax {
  typedef T V __attribute__((vector_size(32)));
  static constexpr int64_t L = 32 / sizeof(T);
  V lanes;
  T best;

  CONVPOOL_ALWAYS_INLINE RunMax() : best(lowest<T>()) {
    for (int64_t l = 0; l < L; ++l) lanes[l] = best;
  }
  CONVPOOL_ALWAYS_INLINE void add(const T* p, int64_t n) {
    int64_t i = 0;
    for (; i + L <= n; i += L) {
      V v;
      std::memcpy(&v, p + i, sizeof(V));
      lanes = (v > lanes) | (v != v) ? v : lanes;
    }
    for (; i < n; ++i) {
      if (beats(p[i], best)) best = p[i];
    }
  }
  CONVPOOL_ALWAYS_INLINE T result() const {
    T r = best;
    for (int64_t l = 0; l < L; ++l) {
      if (beats(lanes[l], r)) r = lanes[l];
    }
    return r;
  }
};

// Asks for the input rows of output line `line` (NCHW, flat over planes, depth and height): the
// hardware prefetcher stops at 4 KiB pages and restarts slowly, and a line's first reads waited on
// DRAM.
template <typename scalar_t>
CONVPOOL_ALWAYS_INLINE void prefetch_line_rows(const PoolGeometry& g, const scalar_t* in,
                                               int64_t line) {
  const int64_t oh = line % g.output[1], od = line / g.output[1] % g.output[0];
  const scalar_t* plane = in + line / (g.output[1] * g.output[0]) * g.input_numel();
  const Span sd = window_span(g, 0, od), sh = window_span(g, 1, oh);
  constexpr int64_t kLine = 64 / sizeof(scalar_t);
  for (int64_t id = sd.begin; id < sd.end; id += sd.step) {
    for (int64_t ih = sh.begin; ih < sh.end; ih += sh.step) {
      const scalar_t* row = plane + (id * g.input[1] + ih) * g.input[2];
      for (int64_t i = 0; i < g.input[2]; i += kLine) __builtin_prefetch(row + i);
    }
  }
}

// Output lines prefetched ahead of the one computed (1x1 stride 2, 1 thread: 25 -> 17 ms; 2 and
// 6 lines ahead measured the same).
constexpr int64_t kPrefetchLines = 2;

// NCHW, regular windows, output lines [begin, end). kStride: the stride along w when it is known
// at compile time (1, 2: contiguous or two-way interleaved loads), else 0.
template <typename scalar_t, Record R, typename code_t, int kStride>
CONVPOOL_ALWAYS_INLINE void max_lines_nchw(const MaxArgs<scalar_t>& a, int64_t begin, int64_t end) {
  using acc_t = at::opmath_type<scalar_t>;
  const PoolGeometry& g = *a.g;
  const int64_t OW = g.output[2], s = kStride > 0 ? kStride : g.stride[2], taps_w = g.kernel[2];
  const int64_t extent_h = window_extent(g, 1);
  std::vector<acc_t> best(OW);
  std::vector<code_t> code(R == Record::kNothing ? 0 : OW);
  acc_t* __restrict__ b = best.data();
  code_t* __restrict__ c = code.data();
  const int64_t W = g.input[2];
  // Values only: the row maxima sit between runs of the start value standing for the padding
  // (and ceil_mode's tail), as far as every tap of OW rounded up to whole vectors reaches, so that
  // each tap is one pass over all outputs with no scalar remainder (a third of a 3x3/2 forward's
  // time went to the remainders' compare-and-branch loops).
  constexpr int64_t kVector = 64 / sizeof(acc_t);
  const int64_t padded_ow = (OW + kVector - 1) / kVector * kVector;
  const int64_t pad_w = g.pad[2], dil_w = g.dilation[2];
  const int64_t padded_w = std::max(pad_w + W, (padded_ow - 1) * s + (taps_w - 1) * dil_w + 1);
  std::vector<acc_t> row_max(R == Record::kNothing ? padded_w + kVector : 0, lowest<acc_t>());
  // The row starts on a 64-byte boundary: its passes store whole vectors (at pad_w = 1 every store
  // straddled two cache lines).
  const int64_t misalign = static_cast<int64_t>(
      reinterpret_cast<uintptr_t>(row_max.data() + pad_w) % 64 / sizeof(acc_t));
  acc_t* const framed = row_max.data() + (misalign ? kVector - misalign : 0);
  acc_t* __restrict__ m = framed + (R == Record::kNothing ? pad_w : 0);
  if constexpr (R == Record::kNothing) best.resize(padded_ow);
  b = best.data();
  for (int64_t line = begin; line < std::min(end, begin + kPrefetchLines); ++line) {
    prefetch_line_rows(g, a.in, line);
  }
  for (int64_t line = begin; line < end; ++line) {
    if (line + kPrefetchLines < end) prefetch_line_rows(g, a.in, line + kPrefetchLines);
    const int64_t oh = line % g.output[1], od = line / g.output[1] % g.output[0];
    const scalar_t* plane_in = a.in + line / (g.output[1] * g.output[0]) * g.input_numel();
    const Span sd = window_span(g, 0, od), sh = window_span(g, 1, oh);
    std::fill(best.begin(), best.end(), lowest<acc_t>());
    // Nothing beats the start value in a window of -inf: it reports its first element.
    if constexpr (R == Record::kIndex) {
      const int64_t first_row = (sd.begin * g.input[1] + sh.begin) * g.input[2];
      for (int64_t ow = 0; ow < OW; ++ow) c[ow] = static_cast<code_t>(first_row + a.w_begin[ow]);
    } else if constexpr (R == Record::kPosition) {
      const int64_t first_row =
          (window_position(g, 0, od, sd.begin) * extent_h + window_position(g, 1, oh, sh.begin)) *
          taps_w;
      for (int64_t ow = 0; ow < OW; ++ow) c[ow] = static_cast<code_t>(first_row + a.w_position[ow]);
    }
    if constexpr (R == Record::kNothing) {
      // Values only: the window's rows reduced into one first (a contiguous pass each), then the
      // taps along w over that row; tap by tap over every row the strided passes cost ~12 cycles
      // a vector (3x3 stride 2 on 112x112: 780 cycles per 56-output line). Only the sign of a
      // zero that ties, or which NaN, can differ from window order.
      bool any = false;
      for (int64_t id = sd.begin; id < sd.end; id += sd.step) {
        for (int64_t ih = sh.begin; ih < sh.end; ih += sh.step) {
          const scalar_t* __restrict__ r = plane_in + (id * g.input[1] + ih) * g.input[2];
          if (!any) {
            for (int64_t i = 0; i < W; ++i) m[i] = static_cast<acc_t>(r[i]);
          } else {
            for (int64_t i = 0; i < W; ++i) {
              const acc_t v = static_cast<acc_t>(r[i]);
              m[i] = beats(v, m[i]) ? v : m[i];
            }
          }
          any = true;
        }
      }
      if (any) {
        for (int64_t kw = 0; kw < taps_w; ++kw) {
          const acc_t* __restrict__ tap = framed + kw * dil_w;
          for (int64_t ow = 0; ow < padded_ow; ++ow) {
            const acc_t v = tap[ow * s];
            b[ow] = beats(v, b[ow]) ? v : b[ow];
          }
        }
      }
    } else {
      for (int64_t id = sd.begin; id < sd.end; id += sd.step) {
        for (int64_t ih = sh.begin; ih < sh.end; ih += sh.step) {
          const int64_t row = (id * g.input[1] + ih) * g.input[2];
          const scalar_t* __restrict__ r = plane_in + row;
          const int64_t row_position =
              (window_position(g, 0, od, id) * extent_h + window_position(g, 1, oh, ih)) * taps_w;
          for (int64_t kw = 0; kw < taps_w; ++kw) {
            const TapRun run = a.runs[kw];
            const scalar_t* __restrict__ tap = r + run.offset;
            // What is recorded is linear in ow: the plane index row + offset + ow * s, or the
            // tap's position, the same for the whole pass.
            const code_t base =
                static_cast<code_t>(R == Record::kIndex ? row + run.offset : row_position + kw);
            const code_t step = static_cast<code_t>(R == Record::kIndex ? s : 0);
            for (int64_t ow = run.lo; ow < run.hi; ++ow) {
              const acc_t v = static_cast<acc_t>(tap[ow * s]);
              const bool take = beats(v, b[ow]);
              b[ow] = take ? v : b[ow];
              c[ow] = take ? static_cast<code_t>(base + step * static_cast<code_t>(ow)) : c[ow];
            }
          }
        }
      }
    }
    scalar_t* out = a.out + line * OW;
    for (int64_t ow = 0; ow < OW; ++ow) out[ow] = static_cast<scalar_t>(b[ow]);
    if constexpr (R == Record::kPosition) {
      uint8_t* p = a.positions + line * OW;
      for (int64_t ow = 0; ow < OW; ++ow) p[ow] = static_cast<uint8_t>(c[ow]);
    } else if constexpr (R == Record::kIndex) {
      int64_t* p = a.indices + line * OW;
      for (int64_t ow = 0; ow < OW; ++ow) p[ow] = c[ow];
    }
  }
}

// NCHW, any windows (adaptive ones: their length varies along the line). A block of outputs of
// a line at a time, input row by input row: each row is read once, front to back, for all the
// block's windows (window by window, each window's 16 rows of one cache line apiece defeated the
// prefetcher: adaptive 112 -> 7 ran at 5 GB/s). Each output still sees its taps in window order.
template <typename scalar_t, Record R, typename code_t>
CONVPOOL_ALWAYS_INLINE void max_windows_nchw(const MaxArgs<scalar_t>& a, int64_t begin,
                                             int64_t end) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int64_t kBlock = 32;
  // Values only, of a floating type computed in itself: whole vectors of lanes (RunMax).
  constexpr bool kLanes = R == Record::kNothing && std::is_same_v<scalar_t, acc_t> &&
                          std::is_floating_point_v<scalar_t>;
  const PoolGeometry& g = *a.g;
  const int64_t OW = g.output[2], extent_h = window_extent(g, 1), extent_w = window_extent(g, 2);
  for (int64_t line = begin; line < end; ++line) {
    const int64_t oh = line % g.output[1], od = line / g.output[1] % g.output[0];
    const scalar_t* plane_in = a.in + line / (g.output[1] * g.output[0]) * g.input_numel();
    const Span sd = window_span(g, 0, od), sh = window_span(g, 1, oh);
    // Positions count up by one per step along each dim.
    const int64_t pd0 = window_position(g, 0, od, sd.begin);
    const int64_t ph0 = window_position(g, 1, oh, sh.begin);
    for (int64_t ow0 = 0; ow0 < OW; ow0 += kBlock) {
      const int64_t n = std::min(kBlock, OW - ow0);
      Span sw[kBlock];
      int64_t pw0[kBlock], code[kBlock];
      acc_t best[kBlock];
      std::conditional_t<kLanes, RunMax<scalar_t>, std::monostate> run_max[kLanes ? kBlock : 1];
      for (int64_t j = 0; j < n; ++j) {
        sw[j] = window_span(g, 2, ow0 + j);
        pw0[j] = window_position(g, 2, ow0 + j, sw[j].begin);
        best[j] = lowest<acc_t>();
        code[j] = first_code<R>(g, sd.begin, sh.begin, sw[j].begin, pd0, ph0, pw0[j]);
      }
      for (int64_t id = sd.begin, pd = pd0; id < sd.end; id += sd.step, ++pd) {
        for (int64_t ih = sh.begin, ph = ph0; ih < sh.end; ih += sh.step, ++ph) {
          const int64_t row = (id * g.input[1] + ih) * g.input[2];
          const int64_t row_position = (pd * extent_h + ph) * extent_w;
          for (int64_t j = 0; j < n; ++j) {
            const Span& s = sw[j];
            if constexpr (kLanes) {
              if (s.step == 1) {
                run_max[j].add(plane_in + row + s.begin, s.end - s.begin);
                continue;
              }
            }
            for (int64_t iw = s.begin, pw = pw0[j]; iw < s.end; iw += s.step, ++pw) {
              const acc_t v = static_cast<acc_t>(plane_in[row + iw]);
              if (beats(v, best[j])) {
                best[j] = v;
                if constexpr (R != Record::kNothing) {
                  code[j] = R == Record::kIndex ? row + iw : row_position + pw;
                }
              }
            }
          }
        }
      }
      for (int64_t j = 0; j < n; ++j) {
        const int64_t o = line * OW + ow0 + j;
        if constexpr (kLanes) {
          if (beats(run_max[j].result(), best[j])) best[j] = run_max[j].result();
        }
        a.out[o] = static_cast<scalar_t>(best[j]);
        if constexpr (R == Record::kPosition) a.positions[o] = static_cast<uint8_t>(code[j]);
        if constexpr (R == Record::kIndex) a.indices[o] = code[j];
      }
    }
  }
}

// ---- channels_last float32 with AVX-512 ------------------------------------------------------
// The maxima (and codes) of 1-8 vectors of channels in registers while a window's pixels stream
// past; the generic loops below keep them in memory, a load and a store per vector and pixel.
// N32 C64 112x112, ms memory -> registers: 3x3/2 pad 1 values 5.5 -> 4.3 (the memory floor:
// 4.5), with positions 8.2 -> 5.4, with indices 6.7 -> 5.1; 2x2/2 4.1 -> 3.8.
// Written over GCC vectors in functions compiled for AVX-512 explicitly: inside target_clones a
// vector comparison is lowered for the baseline ISA before the clones exist (element by element,
// 3x slower than the memory loop).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CONVPOOL_MAX_VECTORS 1
#define CONVPOOL_AVX512 __attribute__((target("arch=x86-64-v4")))

// Whether the CPU runs what CONVPOOL_AVX512 code may use (x86-64-v4: AVX-512 F, BW, CD, DQ, VL),
// and the tests have not narrowed the vectors (wide_vector_registers).
bool avx512_v4_available() {
  static const bool v4 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
                         __builtin_cpu_supports("avx512vl");
  return v4 && wide_vector_registers();
}

typedef float Floats16 __attribute__((vector_size(64)));
typedef int32_t Ints16 __attribute__((vector_size(64)));

// The window of one channels_last output pixel: its spans and the position number of each span's
// first element.
struct PixelWindow {
  Span d, h, w;
  int64_t pd0, ph0, pw0, extent_h, extent_w;
};

// Channels [c, c + 16 W) of one output pixel `o` (its first element in the output): the same
// comparisons in the same order as compare_pixel, so ties and NaN resolve as there.
template <int W, Record R>
CONVPOOL_AVX512 CONVPOOL_ALWAYS_INLINE void max_window_vectors(const MaxArgs<float>& a,
                                                               const float* sample,
                                                               const PixelWindow& win, int64_t c,
                                                               int64_t o) {
  const PoolGeometry& g = *a.g;
  const int64_t C = g.channels;
  Floats16 best[W];
  Ints16 code[W];
  const int32_t first = static_cast<int32_t>(
      first_code<R>(g, win.d.begin, win.h.begin, win.w.begin, win.pd0, win.ph0, win.pw0));
  for (int v = 0; v < W; ++v) {
    best[v] = Floats16{} + lowest<float>();
    code[v] = Ints16{} + first;
  }
  for (int64_t id = win.d.begin, pd = win.pd0; id < win.d.end; id += win.d.step, ++pd) {
    for (int64_t ih = win.h.begin, ph = win.ph0; ih < win.h.end; ih += win.h.step, ++ph) {
      const int64_t row = (id * g.input[1] + ih) * g.input[2];
      const int64_t row_position = (pd * win.extent_h + ph) * win.extent_w;
      for (int64_t iw = win.w.begin, pw = win.pw0; iw < win.w.end; iw += win.w.step, ++pw) {
        const float* pixel = sample + (row + iw) * C + c;
        const int32_t here =
            static_cast<int32_t>(R == Record::kIndex ? row + iw : row_position + pw);
        for (int v = 0; v < W; ++v) {
          Floats16 x;
          std::memcpy(&x, pixel + 16 * v, sizeof(x));
          const Ints16 take = (x > best[v]) | (x != x);
          best[v] = take ? x : best[v];
          if constexpr (R != Record::kNothing) code[v] = take ? Ints16{} + here : code[v];
        }
      }
    }
  }
  for (int v = 0; v < W; ++v) {
    std::memcpy(a.out + o + c + 16 * v, &best[v], sizeof(best[v]));
    for (int l = 0; l < 16; ++l) {
      if constexpr (R == Record::kPosition) a.positions[o + c + 16 * v + l] = code[v][l];
      if constexpr (R == Record::kIndex) a.indices[o + c + 16 * v + l] = code[v][l];
    }
  }
}

// Channels [0, 16 * floor(C / 16)) of every output pixel of line `line`; returns that count.
template <Record R>
CONVPOOL_AVX512 int64_t max_line_vectors(const MaxArgs<float>& a, const float* sample, Span sd,
                                         Span sh, int64_t od, int64_t oh, int64_t line) {
  const PoolGeometry& g = *a.g;
  const int64_t C = g.channels, OW = g.output[2], vectors = C / 16;
  PixelWindow win{sd,
                  sh,
                  {},
                  window_position(g, 0, od, sd.begin),
                  window_position(g, 1, oh, sh.begin),
                  0,
                  window_extent(g, 1),
                  window_extent(g, 2)};
  for (int64_t ow = 0; ow < OW; ++ow) {
    win.w = window_span(g, 2, ow);
    win.pw0 = window_position(g, 2, ow, win.w.begin);
    const int64_t o = (line * OW + ow) * C;
    int64_t v = 0;
    for (; v + 8 <= vectors; v += 8) max_window_vectors<8, R>(a, sample, win, 16 * v, o);
    if (v + 4 <= vectors) max_window_vectors<4, R>(a, sample, win, 16 * v, o), v += 4;
    if (v + 2 <= vectors) max_window_vectors<2, R>(a, sample, win, 16 * v, o), v += 2;
    if (v + 1 <= vectors) max_window_vectors<1, R>(a, sample, win, 16 * v, o), v += 1;
  }
  return 16 * vectors;
}
#else
#define CONVPOOL_MAX_VECTORS 0
#endif

// One channels_last pixel's C channels compared into the running maxima b, and where one wins,
// its code c set to `here` (unless R is kNothing).
template <Record R, typename scalar_t, typename acc_t, typename code_t>
CONVPOOL_ALWAYS_INLINE void compare_pixel(const scalar_t* __restrict__ pixel, int64_t C,
                                          acc_t* __restrict__ b, code_t* __restrict__ c,
                                          code_t here) {
  for (int64_t ch = 0; ch < C; ++ch) {
    const acc_t v = static_cast<acc_t>(pixel[ch]);
    const bool take = beats(v, b[ch]);
    b[ch] = take ? v : b[ch];
    if constexpr (R != Record::kNothing) c[ch] = take ? here : c[ch];
  }
}

// channels_last, any windows: output lines [begin, end) of [N, D, H, W, C].
template <typename scalar_t, Record R, typename code_t>
CONVPOOL_ALWAYS_INLINE void max_pixels_channels_last(const MaxArgs<scalar_t>& a, int64_t begin,
                                                     int64_t end) {
  using acc_t = at::opmath_type<scalar_t>;
  const PoolGeometry& g = *a.g;
  const int64_t C = g.channels, OW = g.output[2];
  const int64_t extent_h = window_extent(g, 1), extent_w = window_extent(g, 2);
  std::vector<acc_t> best(C);
  std::vector<code_t> code(R == Record::kNothing ? 0 : C);
  acc_t* __restrict__ b = best.data();
  code_t* __restrict__ c = code.data();
  for (int64_t line = begin; line < end; ++line) {
    const int64_t oh = line % g.output[1], od = line / g.output[1] % g.output[0];
    const scalar_t* sample = a.in + line / (g.output[1] * g.output[0]) * g.input_numel() * C;
    const Span sd = window_span(g, 0, od), sh = window_span(g, 1, oh);
    int64_t c0 = 0;  // channels [0, c0) done in registers
#if CONVPOOL_MAX_VECTORS
    if constexpr (std::is_same_v<scalar_t, float> && std::is_same_v<code_t, int32_t>) {
      if (avx512_v4_available()) c0 = max_line_vectors<R>(a, sample, sd, sh, od, oh, line);
    }
#endif
    if (c0 == C) continue;
    for (int64_t ow = 0; ow < OW; ++ow) {
      const Span sw = window_span(g, 2, ow);
      std::fill(b + c0, b + C, lowest<acc_t>());
      const int64_t pd0 = window_position(g, 0, od, sd.begin);
      const int64_t ph0 = window_position(g, 1, oh, sh.begin);
      const int64_t pw0 = window_position(g, 2, ow, sw.begin);
      if constexpr (R != Record::kNothing) {
        const int64_t first = first_code<R>(g, sd.begin, sh.begin, sw.begin, pd0, ph0, pw0);
        std::fill(c + c0, c + C, static_cast<code_t>(first));
      }
      for (int64_t id = sd.begin, pd = pd0; id < sd.end; id += sd.step, ++pd) {
        for (int64_t ih = sh.begin, ph = ph0; ih < sh.end; ih += sh.step, ++ph) {
          const int64_t row = (id * g.input[1] + ih) * g.input[2];
          const int64_t row_position = (pd * extent_h + ph) * extent_w;
          for (int64_t iw = sw.begin, pw = pw0; iw < sw.end; iw += sw.step, ++pw) {
            const scalar_t* __restrict__ pixel = sample + (row + iw) * C + c0;
            compare_pixel<R>(
                pixel, C - c0, b + c0, R == Record::kNothing ? c : c + c0,
                static_cast<code_t>(R == Record::kIndex ? row + iw : row_position + pw));
          }
        }
      }
      const int64_t o = (line * OW + ow) * C;
      for (int64_t ch = c0; ch < C; ++ch) a.out[o + ch] = static_cast<scalar_t>(b[ch]);
      if constexpr (R == Record::kPosition) {
        for (int64_t ch = c0; ch < C; ++ch) a.positions[o + ch] = static_cast<uint8_t>(c[ch]);
      } else if constexpr (R == Record::kIndex) {
        for (int64_t ch = c0; ch < C; ++ch) a.indices[o + ch] = c[ch];
      }
    }
  }
}

// channels_last, tall windows (sweep_rows): output lines [begin, end) swept input row by input
// row, each row's pixels compared into the running maxima of the windows that hold them (a line's
// window rows are one contiguous run of the input, read front to back; window by window each
// window row is a short run that starts cold). N32 C64 112x112, ms window by window -> swept:
// adaptive 7 6.7 -> 3.5 (the read floor: 3.6), with positions 7.2 -> 3.9; 8x8/8 4.8 -> 3.7.
// Small or overlapping windows lose (3x3/2 with positions 7.0 -> 9.4, 2x2/2 6.1 -> 9.9). Each
// output still sees its pixels in window order: ties and NaN resolve as above.
template <typename scalar_t, Record R, typename code_t>
CONVPOOL_ALWAYS_INLINE void max_lines_channels_last_rows(const MaxArgs<scalar_t>& a, int64_t begin,
                                                         int64_t end) {
  using acc_t = at::opmath_type<scalar_t>;
  const PoolGeometry& g = *a.g;
  const int64_t C = g.channels, OW = g.output[2];
  const int64_t extent_h = window_extent(g, 1), extent_w = window_extent(g, 2);
  std::vector<acc_t> best(OW * C);
  std::vector<code_t> code(R == Record::kNothing ? 0 : OW * C);
  std::vector<Span> w_spans(OW);
  for (int64_t ow = 0; ow < OW; ++ow) w_spans[ow] = window_span(g, 2, ow);
  for (int64_t line = begin; line < end; ++line) {
    const int64_t oh = line % g.output[1], od = line / g.output[1] % g.output[0];
    const scalar_t* sample = a.in + line / (g.output[1] * g.output[0]) * g.input_numel() * C;
    const Span sd = window_span(g, 0, od), sh = window_span(g, 1, oh);
    const int64_t pd0 = window_position(g, 0, od, sd.begin);
    const int64_t ph0 = window_position(g, 1, oh, sh.begin);
    std::fill(best.begin(), best.end(), lowest<acc_t>());
    if constexpr (R != Record::kNothing) {
      for (int64_t ow = 0; ow < OW; ++ow) {
        const Span sw = w_spans[ow];
        const int64_t first = first_code<R>(g, sd.begin, sh.begin, sw.begin, pd0, ph0,
                                            window_position(g, 2, ow, sw.begin));
        std::fill_n(code.data() + ow * C, C, static_cast<code_t>(first));
      }
    }
    for (int64_t id = sd.begin, pd = pd0; id < sd.end; id += sd.step, ++pd) {
      for (int64_t ih = sh.begin, ph = ph0; ih < sh.end; ih += sh.step, ++ph) {
        const int64_t row = (id * g.input[1] + ih) * g.input[2];
        const int64_t row_position = (pd * extent_h + ph) * extent_w;
        for (int64_t ow = 0; ow < OW; ++ow) {
          const Span sw = w_spans[ow];
          acc_t* __restrict__ b = best.data() + ow * C;
          code_t* __restrict__ c = code.data() + (R == Record::kNothing ? 0 : ow * C);
          int64_t pw = window_position(g, 2, ow, sw.begin);
          for (int64_t iw = sw.begin; iw < sw.end; iw += sw.step, ++pw) {
            const scalar_t* __restrict__ pixel = sample + (row + iw) * C;
            compare_pixel<R>(
                pixel, C, b, c,
                static_cast<code_t>(R == Record::kIndex ? row + iw : row_position + pw));
          }
        }
      }
    }
    const int64_t o = line * OW * C;
    for (int64_t i = 0; i < OW * C; ++i) a.out[o + i] = static_cast<scalar_t>(best[i]);
    if constexpr (R == Record::kPosition) {
      for (int64_t i = 0; i < OW * C; ++i) a.positions[o + i] = static_cast<uint8_t>(code[i]);
    } else if constexpr (R == Record::kIndex) {
      for (int64_t i = 0; i < OW * C; ++i) a.indices[o + i] = code[i];
    }
  }
}

template <typename scalar_t, Record R, typename code_t>
CONVPOOL_ALWAYS_INLINE void max_chunk(const MaxArgs<scalar_t>& a, int64_t begin, int64_t end) {
  if (a.g->channels_last && pool_cpu::sweep_rows(*a.g, sizeof(scalar_t))) {
    return max_lines_channels_last_rows<scalar_t, R, code_t>(a, begin, end);
  }
  if (a.g->channels_last) return max_pixels_channels_last<scalar_t, R, code_t>(a, begin, end);
  if (a.g->adaptive) return max_windows_nchw<scalar_t, R, code_t>(a, begin, end);
  switch (a.g->stride[2]) {
    case 1:
      return max_lines_nchw<scalar_t, R, code_t, 1>(a, begin, end);
    case 2:
      return max_lines_nchw<scalar_t, R, code_t, 2>(a, begin, end);
    default:
      return max_lines_nchw<scalar_t, R, code_t, 0>(a, begin, end);
  }
}

}  // namespace

// float32 (the type that matters for speed) is compiled once per vector ISA; other types once.
CONVPOOL_CLONES void max_chunk_float_nothing(const MaxArgs<float>& a, int64_t begin, int64_t end) {
  max_chunk<float, Record::kNothing, int32_t>(a, begin, end);
}
CONVPOOL_CLONES void max_chunk_float_position(const MaxArgs<float>& a, int64_t begin, int64_t end) {
  max_chunk<float, Record::kPosition, int32_t>(a, begin, end);
}
CONVPOOL_CLONES void max_chunk_float_index(const MaxArgs<float>& a, int64_t begin, int64_t end) {
  max_chunk<float, Record::kIndex, int32_t>(a, begin, end);
}

namespace {

template <typename scalar_t, Record R, typename code_t>
void run_chunk(const MaxArgs<scalar_t>& a, int64_t begin, int64_t end) {
  if constexpr (std::is_same_v<scalar_t, float> && std::is_same_v<code_t, int32_t>) {
    if constexpr (R == Record::kNothing) return max_chunk_float_nothing(a, begin, end);
    if constexpr (R == Record::kPosition) return max_chunk_float_position(a, begin, end);
    if constexpr (R == Record::kIndex) return max_chunk_float_index(a, begin, end);
  } else {
    max_chunk<scalar_t, R, code_t>(a, begin, end);
  }
}

template <Record R>
void max_forward(const at::Tensor& input, const at::Tensor& output, const at::Tensor& positions,
                 const at::Tensor& indices, const PoolGeometry& g) {
  AT_DISPATCH_ALL_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "max_pool_cpu", [&] {
    const auto runs = pool_cpu::tap_runs(g);
    std::vector<int64_t> w_begin, w_position;
    for (int64_t ow = 0; ow < g.output[2]; ++ow) {
      w_begin.push_back(window_span(g, 2, ow).begin);
      w_position.push_back(window_position(g, 2, ow, w_begin.back()));
    }
    MaxArgs<scalar_t> a{input.const_data_ptr<scalar_t>(),
                        output.data_ptr<scalar_t>(),
                        R == Record::kPosition ? positions.data_ptr<uint8_t>() : nullptr,
                        R == Record::kIndex ? indices.data_ptr<int64_t>() : nullptr,
                        &g,
                        runs.data(),
                        w_begin.data(),
                        w_position.data()};
    const int64_t outer = g.channels_last ? g.planes / g.channels : g.planes;
    const int64_t work =
        g.output[2] * pool_cpu::window_numel(g) * (g.channels_last ? g.channels : 1);
    const bool wide = R == Record::kIndex && g.input_numel() > std::numeric_limits<int32_t>::max();
    for_each_line_range(outer, g.output, work, [&](int64_t begin, int64_t end) {
      if (wide) {
        run_chunk<scalar_t, R, int64_t>(a, begin, end);
      } else {
        run_chunk<scalar_t, R, int32_t>(a, begin, end);
      }
    });
  });
}

}  // namespace

// ---- backward from positions ---------------------------------------------------------------

namespace {

// Plane displacement of each window position, and each output's window origin along w.
struct PositionTable {
  std::vector<int64_t> displacement;
  std::vector<int64_t> origin_w;
  explicit PositionTable(const PoolGeometry& g) {
    for (int64_t p = 0; p < window_positions(g); ++p) {
      displacement.push_back(position_displacement(g, p));
    }
    displacement.resize(kMaxWindowPositions, -1);  // a corrupt position reads a bad address flag
    for (int64_t ow = 0; ow < g.output[2]; ++ow) origin_w.push_back(window_origin(g, 2, ow));
  }
};

// Input element of output (od, oh, ow) at `position`, or -1 where that is not in the plane
// (positions do not come from our forward: the op is public).
CONVPOOL_ALWAYS_INLINE int64_t target_of(const PoolGeometry& g, const PositionTable& t,
                                         int64_t row_origin, int64_t ow, uint8_t position) {
  const int64_t d = t.displacement[position];
  const int64_t i = row_origin + t.origin_w[ow] + d;
  return d < 0 || i < 0 || i >= g.input_numel() ? -1 : i;
}

template <typename scalar_t>
void backward_positions_nchw(const scalar_t* grad, const uint8_t* positions, scalar_t* grad_in,
                             const PoolGeometry& g, std::atomic<bool>& bad) {
  const PositionTable table(g);
  const auto empty = pool_cpu::empty_windows(g);
  const int64_t in_numel = g.input_numel(), out_numel = g.output_numel(), OW = g.output[2];
  at::parallel_for(0, g.planes, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      pool_cpu::PlaneAccumulator<scalar_t> acc(grad_in + p * in_numel, in_numel);
      auto* __restrict__ dst = acc.data();
      const scalar_t* src = grad + p * out_numel;
      const uint8_t* pos = positions + p * out_numel;
      for (int64_t od = 0; od < g.output[0]; ++od) {
        for (int64_t oh = 0; oh < g.output[1]; ++oh) {
          const int64_t row_origin = origin_index(g, od, oh, 0) - table.origin_w[0];
          const int64_t first = (od * g.output[1] + oh) * OW;
          for (int64_t ow = 0; ow < OW; ++ow) {
            const int64_t o = first + ow;
            if (!empty.empty() && empty[o]) continue;
            const int64_t i = target_of(g, table, row_origin, ow, pos[o]);
            if (i < 0) {
              bad = true;
              continue;
            }
            dst[i] += src[o];
          }
        }
      }
    }
  });
}

// Scatters one (sample, channel block) of a channels_last backward into acc (pitch elements per
// input pixel). zero_rows(r) is called before any output reaches input row r or beyond (rows
// flattened over d and h): a block larger than the cache is zeroed row by row just before use.
template <typename scalar_t, typename acc_t, typename ZeroRows>
void scatter_positions_channels_last(const scalar_t* src, const uint8_t* pos, acc_t* acc,
                                     int64_t pitch, int64_t width, const PoolGeometry& g,
                                     const PositionTable& table, const std::vector<uint8_t>& empty,
                                     ZeroRows&& zero_rows, std::atomic<bool>& bad) {
  const int64_t C = g.channels, OW = g.output[2];
  for (int64_t od = 0; od < g.output[0]; ++od) {
    const Span sd = window_span(g, 0, od);
    for (int64_t oh = 0; oh < g.output[1]; ++oh) {
      const Span sh = window_span(g, 1, oh);
      zero_rows(std::max<int64_t>(sd.end - 1, 0) * g.input[1] + sh.end);
      const int64_t row_origin = origin_index(g, od, oh, 0) - table.origin_w[0];
      const int64_t first = (od * g.output[1] + oh) * OW;
      for (int64_t ow = 0; ow < OW; ++ow) {
        const int64_t o = first + ow;
        if (!empty.empty() && empty[o]) continue;
        for (int64_t c = 0; c < width; ++c) {
          const int64_t i = target_of(g, table, row_origin, ow, pos[o * C + c]);
          if (i < 0) {
            bad = true;
            continue;
          }
          acc[i * pitch + c] += static_cast<acc_t>(src[o * C + c]);
        }
      }
    }
  }
}

template <typename scalar_t>
void backward_positions_channels_last(const scalar_t* grad, const uint8_t* positions,
                                      scalar_t* grad_in, const PoolGeometry& g,
                                      std::atomic<bool>& bad) {
  using acc_t = at::opmath_type<scalar_t>;
  const PositionTable table(g);
  const auto empty = pool_cpu::empty_windows(g);
  const int64_t C = g.channels, out_numel = g.output_numel(), rows = g.input[0] * g.input[1];
  pool_cpu::for_each_channel_block(g, [&](int64_t n, int64_t c0, int64_t c1) {
    const int64_t width = c1 - c0;
    const scalar_t* src = grad + n * out_numel * C + c0;
    const uint8_t* pos = positions + n * out_numel * C + c0;
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      scalar_t* dst = grad_in + n * g.input_numel() * C + c0;
      int64_t zeroed = 0;
      const auto zero_rows = [&](int64_t until) {
        for (until = std::min(until, rows); zeroed < until; ++zeroed) {
          for (int64_t iw = 0; iw < g.input[2]; ++iw) {
            scalar_t* px = dst + (zeroed * g.input[2] + iw) * C;
            std::fill(px, px + width, scalar_t(0));
          }
        }
      };
      scatter_positions_channels_last(src, pos, dst, C, width, g, table, empty, zero_rows, bad);
      zero_rows(rows);
    } else {
      pool_cpu::accumulate_channel_block(grad_in, g, n, c0, c1, [&](acc_t* acc, int64_t pitch) {
        scatter_positions_channels_last(
            src, pos, acc, pitch, width, g, table, empty, [](int64_t) {}, bad);
      });
    }
  });
}

}  // namespace

void max_pool_forward(const at::Tensor& input, const at::Tensor& output, const at::Tensor& indices,
                      const PoolGeometry& g) {
  max_forward<Record::kIndex>(input, output, at::Tensor(), indices, g);
}

void max_pool_forward_values(const at::Tensor& input, const at::Tensor& output,
                             const PoolGeometry& g) {
  max_forward<Record::kNothing>(input, output, at::Tensor(), at::Tensor(), g);
}

void max_pool_forward_positions(const at::Tensor& input, const at::Tensor& output,
                                const at::Tensor& positions, const PoolGeometry& g) {
  max_forward<Record::kPosition>(input, output, positions, at::Tensor(), g);
}

void max_pool_backward_positions(const at::Tensor& grad_output, const at::Tensor& positions,
                                 const at::Tensor& grad_input, const PoolGeometry& g) {
  std::atomic<bool> bad{false};
  CONVPOOL_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "max_pool_backward_positions_cpu",
                                   [&] {
                                     const auto* grad = grad_output.const_data_ptr<scalar_t>();
                                     const auto* pos = positions.const_data_ptr<uint8_t>();
                                     auto* out = grad_input.data_ptr<scalar_t>();
                                     if (g.channels_last) {
                                       backward_positions_channels_last(grad, pos, out, g, bad);
                                     } else {
                                       backward_positions_nchw(grad, pos, out, g, bad);
                                     }
                                   });
  TORCH_CHECK(!bad.load(),
              "max_pool_positions_backward: found a window position outside the "
              "input (positions must come from max_pool_positions with the same arguments)");
}

}  // namespace convpool::cpu
