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

#include <type_traits>
#include <vector>

#include "../common/isa_clones.h"

#include "../common/dispatch.h"
#include "../common/cuda_emulation.h"
#include "../common/tap_run.h"
#include "pool_driver.h"
#include "max_pool_cpu.h"
#include "pool_cpu_loops.h"
#include "pool_elements.h"

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
};

template <typename scalar_t>
[[gnu::always_inline]] inline void average_line_regular(const AverageForward<scalar_t>& a,
                                                        int64_t line, int64_t plane, int64_t od,
                                                        int64_t oh) {
  using acc_t = at::opmath_type<scalar_t>;
  const PoolGeometry& g = *a.g;
  const int64_t OW = g.output[2], s = g.stride[2];
  std::vector<acc_t> sum(OW, acc_t(0));
  acc_t* __restrict__ acc = sum.data();
  const Span sd = window_span(g, 0, od), sh = window_span(g, 1, oh);
  const scalar_t* plane_in = a.in + plane * g.input_numel();
  for (int64_t id = sd.begin; id < sd.end; id += sd.step) {
    for (int64_t ih = sh.begin; ih < sh.end; ih += sh.step) {
      const scalar_t* __restrict__ r = plane_in + (id * g.input[1] + ih) * g.input[2];
      for (const auto& run : *a.runs) {
        for (int64_t ow = run.lo; ow < run.hi; ++ow)
          acc[ow] += static_cast<acc_t>(r[ow * s + run.offset]);
      }
    }
  }
  for (int64_t ow = 0; ow < OW; ++ow) {
    a.out[line * OW + ow] = static_cast<scalar_t>(divide(acc[ow], average_divisor(g, od, oh, ow)));
  }
}

template <typename scalar_t>
[[gnu::always_inline]] inline void average_line_adaptive(const AverageForward<scalar_t>& a,
                                                         int64_t line, int64_t plane, int64_t od,
                                                         int64_t oh) {
  using acc_t = at::opmath_type<scalar_t>;
  const PoolGeometry& g = *a.g;
  const scalar_t* plane_in = a.in + plane * g.input_numel();
  Window win{window_span(g, 0, od), window_span(g, 1, oh), {}};
  for (int64_t ow = 0; ow < g.output[2]; ++ow) {
    win.w = window_span(g, 2, ow);
    const acc_t sum = sum_over<scalar_t, acc_t>(plane_in, 1, g, win);
    a.out[line * g.output[2] + ow] =
        static_cast<scalar_t>(divide(sum, average_divisor(g, od, oh, ow)));
  }
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

// Output lines [begin, end): one task's work (lines as for_each_line numbers them).
template <typename scalar_t>
[[gnu::always_inline]] inline void average_lines(const AverageForward<scalar_t>& a, int64_t begin,
                                                 int64_t end) {
  const int64_t* sizes = a.g->output;
  for (int64_t line = begin; line < end; ++line) {
    const int64_t h = line % sizes[1], d = line / sizes[1] % sizes[0];
    const int64_t outer = line / (sizes[1] * sizes[0]);
    if (a.g->channels_last) {
      average_line_channels_last(a, line, outer, d, h);
    } else if (a.g->adaptive) {
      average_line_adaptive(a, line, outer, d, h);
    } else {
      average_line_regular(a, line, outer, d, h);
    }
  }
}

// float and double per vector ISA: a lambda handed to at::parallel_for would not inherit a
// clone's target, so the clones are whole chunks of lines. (Built for the baseline ISA only,
// a global average of N8 C64 112x112 took 1.7x torch's time, on an AVX2 CPU.)
CONVPOOL_CLONES void average_lines_f32(const AverageForward<float>& a, int64_t b, int64_t e) {
  average_lines(a, b, e);
}
CONVPOOL_CLONES void average_lines_f64(const AverageForward<double>& a, int64_t b, int64_t e) {
  average_lines(a, b, e);
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
  const auto runs = g.channels_last || g.adaptive ? std::vector<TapRun>{} : tap_runs(g);
  const AverageForward<scalar_t> args{in, out, &g, &runs};
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
          for (int64_t ow = 0; ow < OW; ++ow) {
            share[ow] = divide(static_cast<acc_t>(line[ow]), average_divisor(g, od, oh, ow));
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
