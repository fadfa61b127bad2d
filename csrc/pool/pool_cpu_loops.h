#pragma once
// Loop scaffolding shared by the CPU pooling kernels (pool_cpu.cpp, max_pool_cpu.cpp): how work
// is split into lines and channel blocks, and where a backward accumulates.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../common/pool_geometry.h"
#include "../common/tap_run.h"
#include "window_offsets.h"

namespace convpool::pool_cpu {

constexpr int64_t kWorkPerTask = 1 << 15;  // elements touched per parallel_for chunk, roughly

inline int64_t window_numel(const PoolGeometry& g) {
  if (g.adaptive) {
    int64_t n = 1;
    for (int d = 0; d < kSpatialDims; ++d)
      n *= (g.input[d] + g.output[d] - 1) / std::max<int64_t>(1, g.output[d]) + 1;
    return n;
  }
  return g.kernel[0] * g.kernel[1] * g.kernel[2];
}

// Whether a channels_last pooling forward sweeps its lines input row by input row (pool_cpu.cpp's
// average_lines_channels_last_rows, max_pool_cpu.cpp's max_lines_channels_last_rows) rather than
// window by window: windows of at least 6 x 6
// that overlap by at most half along w, whose rows are runs of at most 8 KiB. N32 C64 112x112,
// ms window by window -> swept: adaptive 7 (16 x 16) 4.8 -> 3.2 (the read floor: 3.6), 8x8/8
// 4.2 -> 2.6, 7x7/7 3.8 -> 3.0; these stay window by window: 4x4/4 2.6 -> 3.3, (8, 2) 3.7 -> 4.3,
// 7x7/1 20.5 -> 22.9 (the sweep loads and stores each window's sums once per row, where window
// by window they stay in registers), 7x7/7 over C512 14x14 0.26 -> 0.27 (2 KiB pixel runs).
inline bool sweep_rows(const PoolGeometry& g, int64_t element_size) {
  const int64_t extent_h = window_extent(g, 1), extent_w = window_extent(g, 2);
  const int64_t step_w = g.adaptive ? g.input[2] / std::max<int64_t>(g.output[2], 1) : g.stride[2];
  return extent_h >= 6 && extent_w >= 6 && 2 * step_w >= extent_w &&
         extent_w * g.channels * element_size <= 8192;
}

// Runs chunk(begin, end) over ranges of the lines (outer, d, h) of an [outer, d, h, w] volume,
// `work_per_line` elements each, in parallel.
template <typename Chunk>
void for_each_line_range(int64_t outer, const int64_t* sizes, int64_t work_per_line,
                         Chunk&& chunk) {
  const int64_t lines = outer * sizes[0] * sizes[1];
  const int64_t grain = std::max<int64_t>(1, kWorkPerTask / std::max<int64_t>(1, work_per_line));
  at::parallel_for(0, lines, grain, chunk);
}

// Runs body(line, sample_or_plane, d, h) for every line of such a volume.
template <typename Body>
void for_each_line(int64_t outer, const int64_t* sizes, int64_t work_per_line, Body&& body) {
  for_each_line_range(outer, sizes, work_per_line, [&](int64_t begin, int64_t end) {
    for (int64_t line = begin; line < end; ++line) {
      const int64_t h = line % sizes[1];
      const int64_t d = line / sizes[1] % sizes[0];
      body(line, line / (sizes[1] * sizes[0]), d, h);
    }
  });
}

inline std::vector<TapRun> tap_runs(const PoolGeometry& g) {
  std::vector<TapRun> runs;
  for (int64_t kw = 0; kw < g.kernel[2]; ++kw) {
    runs.push_back(tap_run(kw, g.stride[2], g.pad[2], g.dilation[2], g.input[2], g.output[2]));
  }
  return runs;
}

// The per-plane accumulator: grad_input itself, or a float32 buffer for float16/bfloat16.
template <typename scalar_t>
struct PlaneAccumulator {
  using acc_t = at::opmath_type<scalar_t>;
  static constexpr bool kDirect = std::is_same_v<scalar_t, acc_t>;
  scalar_t* dst;
  std::vector<acc_t> buffer;
  int64_t n;
  PlaneAccumulator(scalar_t* dst, int64_t n) : dst(dst), n(n) {
    if constexpr (kDirect) {
      std::fill(dst, dst + n, scalar_t(0));
    } else {
      buffer.assign(n, acc_t(0));
    }
  }
  acc_t* data() {
    if constexpr (kDirect)
      return dst;
    else
      return buffer.data();
  }
  ~PlaneAccumulator() {
    if constexpr (!kDirect) {
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<scalar_t>(buffer[i]);
    }
  }
};

// One flag per output of a plane: 1 where the window is empty (its gradient goes nowhere). Empty
// when no window is, which is almost always: the loops below then skip the test.
inline std::vector<uint8_t> empty_windows(const PoolGeometry& g) {
  if (g.adaptive) return {};
  bool any = false;
  std::vector<uint8_t> empty_along[kSpatialDims];
  for (int d = 0; d < kSpatialDims; ++d) {
    for (int64_t o = 0; o < g.output[d]; ++o) {
      empty_along[d].push_back(window_is_empty(g, d, o));
      any = any || empty_along[d].back();
    }
  }
  if (!any) return {};
  std::vector<uint8_t> empty(g.output_numel());
  for (int64_t o = 0; o < g.output_numel(); ++o) {
    const int64_t ow = o % g.output[2], oh = o / g.output[2] % g.output[1];
    const int64_t od = o / (g.output[2] * g.output[1]);
    empty[o] = empty_along[0][od] | empty_along[1][oh] | empty_along[2][ow];
  }
  return empty;
}

constexpr int64_t kChannelBlock = 64;

// Runs body(n, c_begin, c_end) for every (sample, channel block) of a channels_last volume.
template <typename Body>
void for_each_channel_block(const PoolGeometry& g, Body&& body) {
  const int64_t C = g.channels;
  const int64_t blocks = (C + kChannelBlock - 1) / kChannelBlock;
  at::parallel_for(0, g.planes / C * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t c0 = task % blocks * kChannelBlock;
      body(task / blocks, c0, std::min(C, c0 + kChannelBlock));
    }
  });
}

// Each (sample, channel block) task owns its columns of grad_input: float and double accumulate
// in place; float16/bfloat16 in a float32 block first.
template <typename scalar_t, typename Body>
void accumulate_channel_block(scalar_t* grad_in, const PoolGeometry& g, int64_t n, int64_t c0,
                              int64_t c1, Body&& body) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t C = g.channels, in_numel = g.input_numel(), width = c1 - c0;
  scalar_t* dst = grad_in + n * in_numel * C + c0;
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    for (int64_t i = 0; i < in_numel; ++i) std::fill(dst + i * C, dst + i * C + width, scalar_t(0));
    body(dst, C);
  } else {
    std::vector<acc_t> acc(in_numel * width, acc_t(0));
    body(acc.data(), width);
    for (int64_t i = 0; i < in_numel; ++i) {
      for (int64_t c = 0; c < width; ++c)
        dst[i * C + c] = static_cast<scalar_t>(acc[i * width + c]);
    }
  }
}

}  // namespace convpool::pool_cpu
