// CPU launchers of the convolution family, plugged into the device-independent driver: im2col
// and col2im as line loops over strided runs (at::parallel_for over column rows / channels).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../common/cuda_emulation.h"
#include "../common/dispatch.h"
#include "../common/simd_loops.h"
#include "conv_algorithm.h"
#include "conv_driver.h"
#include "conv_lines.h"
#include "gemm_conv_cpu.h"
#include "im2col.h"

namespace convpool {
namespace {

// One task per column row (channel, tap); each grid line is three plain runs: zeros, a strided
// copy of the input row, zeros (the same positions conv_tap_offset names, without per-element
// bounds checks).
void im2col_cpu(const at::Tensor& image, const at::Tensor& col, const ConvGeometry& g) {
  CONVPOOL_DISPATCH_FLOATING_TYPES(image.scalar_type(), "im2col_cpu", [&] {
    const scalar_t* src = image.const_data_ptr<scalar_t>();
    scalar_t* dst = col.data_ptr<scalar_t>();
    const int64_t taps = g.kernel_numel(), OW = g.grid[2], s = g.stride[2];
    at::parallel_for(0, g.channels * taps, 1, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t c = row / taps, k = row % taps;
        int64_t kd, kh, kw;
        split_tap(g, k, kd, kh, kw);
        const TapRun run = width_run(g, kw);
        const scalar_t* channel = src + c * g.image_numel();
        scalar_t* out = dst + row * g.grid_numel();
        for (int64_t od = 0; od < g.grid[0]; ++od) {
          for (int64_t oh = 0; oh < g.grid[1]; ++oh, out += OW) {
            const int64_t in_row = tap_row(g, kd, kh, od, oh);
            if (in_row < 0) {
              std::fill(out, out + OW, scalar_t(0));
              continue;
            }
            const scalar_t* __restrict__ r = channel + in_row + run.offset;
            std::fill(out, out + run.lo, scalar_t(0));
            if (s == 1) {
              std::copy(r + run.lo, r + run.hi, out + run.lo);
            } else {
              for (int64_t ow = run.lo; ow < run.hi; ++ow) out[ow] = r[ow * s];
            }
            std::fill(out + run.hi, out + OW, scalar_t(0));
          }
        }
      }
    });
  });
}

// col2im as a scatter: one task per channel adds that channel's column rows into its image in
// a fixed order (deterministic).
void col2im_cpu(const at::Tensor& col, const at::Tensor& image, const ConvGeometry& g) {
  CONVPOOL_DISPATCH_FLOATING_TYPES(col.scalar_type(), "col2im_cpu", [&] {
    const scalar_t* src = col.const_data_ptr<scalar_t>();
    scalar_t* dst = image.data_ptr<scalar_t>();
    const int64_t taps = g.kernel_numel(), OW = g.grid[2], s = g.stride[2];
    at::parallel_for(0, g.channels, 1, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        scalar_t* channel = dst + c * g.image_numel();
        std::fill(channel, channel + g.image_numel(), scalar_t(0));
        for (int64_t k = 0; k < taps; ++k) {
          int64_t kd, kh, kw;
          split_tap(g, k, kd, kh, kw);
          const TapRun run = width_run(g, kw);
          const scalar_t* in = src + (c * taps + k) * g.grid_numel();
          for (int64_t od = 0; od < g.grid[0]; ++od) {
            for (int64_t oh = 0; oh < g.grid[1]; ++oh, in += OW) {
              const int64_t in_row = tap_row(g, kd, kh, od, oh);
              if (in_row < 0) continue;
              scalar_t* __restrict__ r = channel + in_row + run.offset;
              for (int64_t ow = run.lo; ow < run.hi; ++ow) r[ow * s] += in[ow];
            }
          }
        }
      }
    });
  });
}

// Weight [C * m, 1, K...] as [K, C * m]: channels_last kernels read one tap for all channels.
template <typename scalar_t>
std::vector<scalar_t> taps_by_channel(const at::Tensor& weight, int64_t taps) {
  const int64_t channels = weight.size(0);
  const scalar_t* w = weight.const_data_ptr<scalar_t>();
  std::vector<scalar_t> t(taps * channels);
  for (int64_t oc = 0; oc < channels; ++oc) {
    for (int64_t k = 0; k < taps; ++k) t[k * channels + oc] = w[oc * taps + k];
  }
  return t;
}


// Depthwise conv on channels_last tensors: per output pixel, tap by tap, all channels at once
// (contiguous, vectorisable).
template <typename scalar_t>
void depthwise_conv_channels_last(const at::Tensor& input, const at::Tensor& weight,
                                  const at::Tensor& output, const ConvGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* x = input.const_data_ptr<scalar_t>();
  scalar_t* y = output.data_ptr<scalar_t>();
  const int64_t C = g.channels, Cout = output.size(1), m = Cout / C, taps = g.kernel_numel();
  const auto wt = taps_by_channel<scalar_t>(weight, taps);
  const int64_t lines = output.size(0) * g.grid[0] * g.grid[1];
  at::parallel_for(0, lines, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(Cout);
    for (int64_t line = begin; line < end; ++line) {
      const int64_t oh = line % g.grid[1], od = line / g.grid[1] % g.grid[0];
      const int64_t n = line / (g.grid[1] * g.grid[0]);
      const scalar_t* sample = x + n * g.image_numel() * C;
      std::vector<const scalar_t*> pixels(taps);
      for (int64_t ow = 0; ow < g.grid[2]; ++ow) {
        for (int64_t k = 0; k < taps; ++k) {
          int64_t kd, kh, kw;
          split_tap(g, k, kd, kh, kw);
          const int64_t pixel = conv_tap_offset(g, kd, kh, kw, od, oh, ow);
          pixels[k] = pixel < 0 ? nullptr : sample + pixel * C;
        }
        scalar_t* out = y + (line * g.grid[2] + ow) * Cout;
        if constexpr (std::is_same_v<scalar_t, acc_t>) {
          if (m == 1) {
            simd::depthwise_pixel(out, pixels.data(), wt.data(), taps, C);
            continue;
          }
        }
        std::fill(acc.begin(), acc.end(), acc_t(0));
        acc_t* __restrict__ a = acc.data();
        for (int64_t k = 0; k < taps; ++k) {
          const scalar_t* __restrict__ px = pixels[k];
          if (px == nullptr) continue;
          const scalar_t* __restrict__ wk = wt.data() + k * Cout;
          if (m == 1) {
            simd::accumulate_products(a, wk, px, C);
          } else {
            for (int64_t oc = 0; oc < Cout; ++oc) {
              a[oc] += static_cast<acc_t>(wk[oc]) * static_cast<acc_t>(px[oc / m]);
            }
          }
        }
        for (int64_t oc = 0; oc < Cout; ++oc) out[oc] = static_cast<scalar_t>(a[oc]);
      }
    }
  });
}

// Depthwise conv_transpose on channels_last tensors, as a gather per image pixel.
template <typename scalar_t>
void depthwise_conv_transpose_channels_last(const at::Tensor& input, const at::Tensor& weight,
                                            const at::Tensor& output, const ConvGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* x = input.const_data_ptr<scalar_t>();
  scalar_t* y = output.data_ptr<scalar_t>();
  const int64_t C = g.channels, Cin = input.size(1), m = Cin / C, taps = g.kernel_numel();
  const auto wt = taps_by_channel<scalar_t>(weight, taps);
  const int64_t lines = output.size(0) * g.image[0] * g.image[1];
  at::parallel_for(0, lines, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(C);
    for (int64_t line = begin; line < end; ++line) {
      const int64_t ih = line % g.image[1], id = line / g.image[1] % g.image[0];
      const int64_t n = line / (g.image[1] * g.image[0]);
      const scalar_t* sample = x + n * g.grid_numel() * Cin;
      for (int64_t iw = 0; iw < g.image[2]; ++iw) {
        std::fill(acc.begin(), acc.end(), acc_t(0));
        acc_t* __restrict__ a = acc.data();
        for (int64_t k = 0; k < taps; ++k) {
          int64_t kd, kh, kw;
          split_tap(g, k, kd, kh, kw);
          const int64_t od = covering_grid_index(id, kd, g.stride[0], g.pad[0], g.dilation[0], g.grid[0]);
          const int64_t oh = covering_grid_index(ih, kh, g.stride[1], g.pad[1], g.dilation[1], g.grid[1]);
          const int64_t ow = covering_grid_index(iw, kw, g.stride[2], g.pad[2], g.dilation[2], g.grid[2]);
          if (od < 0 || oh < 0 || ow < 0) continue;
          const scalar_t* __restrict__ px = sample + ((od * g.grid[1] + oh) * g.grid[2] + ow) * Cin;
          const scalar_t* __restrict__ wk = wt.data() + k * Cin;
          if (m == 1) {
            simd::accumulate_products(a, wk, px, C);
          } else {
            for (int64_t ic = 0; ic < Cin; ++ic) {
              a[ic / m] += static_cast<acc_t>(wk[ic]) * static_cast<acc_t>(px[ic]);
            }
          }
        }
        scalar_t* out = y + (line * g.image[2] + iw) * C;
        for (int64_t c = 0; c < C; ++c) out[c] = static_cast<scalar_t>(a[c]);
      }
    }
  });
}

// Depthwise weight gradient on channels_last tensors: grad_weight[oc, k] = sum over samples and
// output pixels of grad_output[oc] * input[oc / m] at tap k. One task per channel block, walking
// samples and pixels in order: deterministic whatever the thread count.
void depthwise_weight_grad_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                               const at::Tensor& grad_weight, const ConvGeometry& g) {
  CONVPOOL_DISPATCH_FLOATING_TYPES(input.scalar_type(), "depthwise_weight_grad_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
    const scalar_t* x = input.const_data_ptr<scalar_t>();
    scalar_t* gw = grad_weight.data_ptr<scalar_t>();
    const int64_t C = g.channels, Cout = grad_output.size(1), m = Cout / C;
    const int64_t taps = g.kernel_numel(), batch = input.size(0);
    constexpr int64_t kBlock = 64;
    const int64_t blocks = (Cout + kBlock - 1) / kBlock;
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const int64_t c0 = b * kBlock, width = std::min(Cout, c0 + kBlock) - c0;
        std::vector<acc_t> acc(taps * width, acc_t(0));
        for (int64_t n = 0; n < batch; ++n) {
          const scalar_t* sample = x + n * g.image_numel() * C;
          for (int64_t o = 0; o < g.grid_numel(); ++o) {
            const int64_t ow = o % g.grid[2], oh = o / g.grid[2] % g.grid[1];
            const int64_t od = o / (g.grid[2] * g.grid[1]);
            const scalar_t* grad = go + (n * g.grid_numel() + o) * Cout + c0;
            for (int64_t k = 0; k < taps; ++k) {
              int64_t kd, kh, kw;
              split_tap(g, k, kd, kh, kw);
              const int64_t pixel = conv_tap_offset(g, kd, kh, kw, od, oh, ow);
              if (pixel < 0) continue;
              const scalar_t* px = sample + pixel * C;
              acc_t* a = acc.data() + k * width;
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
        for (int64_t c = 0; c < width; ++c) {
          for (int64_t k = 0; k < taps; ++k) gw[(c0 + c) * taps + k] = static_cast<scalar_t>(acc[k * width + c]);
        }
      }
    });
  });
}

// Depthwise conv: one task per (sample, output channel) plane, each output line accumulated
// tap by tap over strided runs (vectorisable), no column matrix.
void depthwise_conv_cpu(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
                        const ConvGeometry& g) {
  CONVPOOL_DISPATCH_FLOATING_TYPES(input.scalar_type(), "depthwise_conv_cpu", [&] {
    if (g.channels_last) return depthwise_conv_channels_last<scalar_t>(input, weight, output, g);
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* x = input.const_data_ptr<scalar_t>();
    const scalar_t* w = weight.const_data_ptr<scalar_t>();
    scalar_t* y = output.data_ptr<scalar_t>();
    const int64_t out_channels = output.size(1), multiplier = out_channels / g.channels;
    const int64_t taps = g.kernel_numel(), OW = g.grid[2], s = g.stride[2];
    const int64_t planes = output.size(0) * out_channels;
    at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
      std::vector<acc_t> acc(OW);
      for (int64_t p = begin; p < end; ++p) {
        const int64_t n = p / out_channels, oc = p % out_channels;
        const scalar_t* image = x + (n * g.channels + oc / multiplier) * g.image_numel();
        const scalar_t* kernel = w + oc * taps;
        scalar_t* out = y + p * g.grid_numel();
        for (int64_t od = 0; od < g.grid[0]; ++od) {
          for (int64_t oh = 0; oh < g.grid[1]; ++oh, out += OW) {
            std::fill(acc.begin(), acc.end(), acc_t(0));
            acc_t* __restrict__ a = acc.data();
            for (int64_t k = 0; k < taps; ++k) {
              int64_t kd, kh, kw;
              split_tap(g, k, kd, kh, kw);
              const int64_t in_row = tap_row(g, kd, kh, od, oh);
              if (in_row < 0) continue;
              const TapRun run = width_run(g, kw);
              const acc_t wk = static_cast<acc_t>(kernel[k]);
              const scalar_t* __restrict__ r = image + in_row + run.offset;
              simd::accumulate_scaled(a + run.lo, wk, r + run.lo * s, s, run.hi - run.lo);
            }
            for (int64_t ow = 0; ow < OW; ++ow) out[ow] = static_cast<scalar_t>(a[ow]);
          }
        }
      }
    });
  });
}

// Depthwise conv_transpose (the depthwise conv's input gradient): one task per (sample, image
// channel), scattering each of its `multiplier` input planes through its kernel.
void depthwise_conv_transpose_cpu(const at::Tensor& input, const at::Tensor& weight,
                                  const at::Tensor& output, const ConvGeometry& g) {
  CONVPOOL_DISPATCH_FLOATING_TYPES(input.scalar_type(), "depthwise_conv_transpose_cpu", [&] {
    if (g.channels_last) {
      return depthwise_conv_transpose_channels_last<scalar_t>(input, weight, output, g);
    }
    const scalar_t* x = input.const_data_ptr<scalar_t>();
    const scalar_t* w = weight.const_data_ptr<scalar_t>();
    scalar_t* y = output.data_ptr<scalar_t>();
    const int64_t in_channels = input.size(1), multiplier = in_channels / g.channels;
    const int64_t taps = g.kernel_numel(), OW = g.grid[2], s = g.stride[2];
    at::parallel_for(0, output.size(0) * g.channels, 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t n = p / g.channels, c = p % g.channels;
        scalar_t* image = y + p * g.image_numel();
        std::fill(image, image + g.image_numel(), scalar_t(0));
        for (int64_t j = 0; j < multiplier; ++j) {
          const int64_t ic = c * multiplier + j;
          const scalar_t* grid = x + (n * in_channels + ic) * g.grid_numel();
          for (int64_t k = 0; k < taps; ++k) {
            int64_t kd, kh, kw;
            split_tap(g, k, kd, kh, kw);
            const TapRun run = width_run(g, kw);
            const scalar_t wk = w[ic * taps + k];
            const scalar_t* line = grid;
            for (int64_t od = 0; od < g.grid[0]; ++od) {
              for (int64_t oh = 0; oh < g.grid[1]; ++oh, line += OW) {
                const int64_t in_row = tap_row(g, kd, kh, od, oh);
                if (in_row < 0) continue;
                scalar_t* __restrict__ r = image + in_row + run.offset;
                for (int64_t ow = run.lo; ow < run.hi; ++ow) r[ow * s] += wk * line[ow];
              }
            }
          }
        }
      }
    });
  });
}

bool use_gemm_engine(const ConvGeometry&) { return conv_algorithm() != ConvAlgorithm::kIm2col; }

const ConvBackend kCpuBackend{im2col_cpu,
                              col2im_cpu,
                              /*upcast_reduced_precision=*/true,
                              depthwise_conv_cpu,
                              depthwise_conv_transpose_cpu,
                              /*depthwise_channels_last=*/true,
                              depthwise_weight_grad_cpu,
                              cpu::gemm_conv,
                              cpu::gemm_conv_transpose,
                              cpu::gemm_conv_weight_grad,
                              use_gemm_engine,
                              cpu::all_finite};

// CPU tensors take the CPU's kernels, or the CUDA kernels' bodies while CUDA emulation is on.
const ConvBackend& cpu_or_emulated_backend() {
  return cuda_emulation() ? emulated_cuda_conv_backend() : kCpuBackend;
}

}  // namespace

TORCH_LIBRARY_IMPL(convpool, CPU, m) { register_conv_kernels<cpu_or_emulated_backend>(m); }

}  // namespace convpool
