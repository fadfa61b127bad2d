// CPU launchers of the convolution family, plugged into the device-independent driver: im2col
// and col2im as line loops over strided runs (at::parallel_for over column rows / channels).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../common/cuda_emulation.h"
#include "../common/dispatch.h"
#include "../common/simd_loops.h"
#include "conv_algorithm.h"
#include "conv_driver.h"
#include "conv_lines.h"
#include "depthwise_channels_last.h"
#include "depthwise_cpu.h"
#include "few_outputs_cpu.h"
#include "grouped_cpu.h"
#include "grouped_lanes_cpu.h"
#include "grouped_patch_cpu.h"
#include "gemm_conv_cpu.h"
#include "im2col.h"
#include "live_taps.h"

namespace convpool {
namespace {

// One task per column row (channel, tap): gather_tap_lines over the grid.
void im2col_cpu(const at::Tensor& image, const at::Tensor& col, const ConvGeometry& g) {
  CONVPOOL_DISPATCH_FLOATING_TYPES(image.scalar_type(), "im2col_cpu", [&] {
    const scalar_t* src = image.const_data_ptr<scalar_t>();
    scalar_t* dst = col.data_ptr<scalar_t>();
    const int64_t taps = g.kernel_numel();
    at::parallel_for(0, g.channels * taps, 1, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t c = row / taps, k = row % taps;
        int64_t kd, kh, kw;
        split_tap(g, k, kd, kh, kw);
        gather_tap_lines(src + c * g.image_numel(), dst + row * g.grid_numel(), g, kd, kh,
                         width_run(g, kw));
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

// Kernel rows, columns or planes that read only padding for every output pixel are dropped
// before any kernel is chosen (live_kernel): ASPP's dilation 24 and 36 on DeepLabV3-MobileNet's
// 14x14 maps leave a 3x3 kernel only its centre tap, and the conv runs as the 1x1 conv it is (N2
// C960 -> 256 channels_last: 1.95 -> 0.86 ms, torch 1.2; NCHW 2.8 -> 0.8, torch 6.8).
// The live taps of a weight-shaped tensor: a view.
at::Tensor live_window(const at::Tensor& weight, const LiveKernel& live) {
  const int64_t spatial = weight.dim() - 2;
  at::Tensor w = weight;
  for (int64_t i = 0; i < spatial; ++i) {
    const int d = static_cast<int>(kSpatialDims - spatial + i);
    w = w.narrow(2 + i, live.first[d], live.g.kernel[d]);
  }
  return w;
}

at::Tensor live_weight(const at::Tensor& weight, const LiveKernel& live) {
  return live_window(weight, live).contiguous(weight.suggest_memory_format());
}

// Grouped convs with few channels per group take the direct grouped kernels (stride 1:
// grouped_patch_cpu.h, else grouped_cpu.h), the
// other dense convs the GEMM engine. The kernels compute in channels_last; NCHW gradients go
// through our transposing copies (layout_copy.h), NCHW forwards transpose band by band inside
// their tasks; both are cheaper than the GEMM engine's per-group gathers (2 threads, N4, 8 per
// group: C208 14x14 6.7 -> 2.1 ms forward through whole copies, torch 2.8).
// 1-d convs reach the GEMM engine as 2-d ones of height 1 (the geometry is the same: 1-d and 2-d
// problems both have leading spatial dims of 1), where its channels_last staging of short
// sequences and its pixel-row GEMMs over the batch apply; as 3-d tensors they ran one GEMM per
// sample over a few dozen pixels.
at::Tensor as_2d(const at::Tensor& t) { return t.dim() == 3 ? t.unsqueeze(2) : t; }

void dense_conv_cpu(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                    const at::Tensor& output, const ConvGeometry& g) {
  if (const LiveKernel live = live_kernel(g); live.cropped) {
    return dense_conv_cpu(input, live_weight(weight, live), bias, output, live.g);
  }
  if (cpu::grouped_patch_applies(input, g, output.size(1))) {
    return cpu::grouped_patch_conv(input, weight, output, g, bias);
  }
  if (cpu::grouped_applies(input, g, output.size(1)) ||
      cpu::few_channels_applies(input, g, output.size(1))) {
    return cpu::grouped_conv(input, weight, output, g, bias);
  }
  if (cpu::few_outputs_applies(input, g, output.size(1), cpu::FewOutputsPass::kForward)) {
    return cpu::few_outputs_conv(input, weight, output, g, bias);
  }
  if (cpu::grouped_lanes_apply(input, weight, g, output.size(1))) {
    return cpu::grouped_lanes_conv(input, weight, output, g, bias);
  }
  cpu::gemm_conv(as_2d(input), as_2d(weight), as_2d(output), g, bias);
}

// A stride-1 conv_transpose as the conv of its input with the flipped, transposed weight, where
// that conv has a direct kernel: into few channels (the input gradient of a conv from few
// channels), the few-output kernel; from few channels per group (the input gradient of a conv
// into few channels), the forward's line kernel, where the transpose's phases would reduce over
// only those few channels per tap and gather them one by one.
// With one group, where few_channels_applies picks the line kernel (N4 channels_last, ms: 9x9 3
// -> 32 224x224 12.8 -> 8.0, torch 7.4; 3x3 8 -> 32 112x112 1.25 -> 0.72, torch 0.68); grouped,
// for the convs whose forward few_outputs_cpu.h computes (groups of 16+ channels into up to 12:
// 3x3 512 -> 32 in 32 groups 56x56 7.5 -> 1.4, torch 1.4; in channels_last: NCHW's engine was
// faster than the line kernel's staged bands there, 1.3 against 1.8). The line kernel not where
// the transpose's padding exceeds the kernel's reach (the conv would crop; the few-output kernel
// crops).
bool transpose_as_conv(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
                       const ConvGeometry& g) {
  for (int d = 0; d < kSpatialDims; ++d) {
    if (g.stride[d] != 1) return false;
  }
  const int64_t G = g.groups, K = input.size(1), C = g.channels;
  const ConvGeometry conv = cpu::stride_one_transpose_geometry(g, K);
  if (cpu::few_outputs_applies(input, g, C, cpu::FewOutputsPass::kTranspose)) {
    cpu::few_outputs_conv(input, cpu::stride_one_transpose_weight(weight, G), output, conv,
                          at::Tensor());
    return true;
  }
  for (int d = 0; d < kSpatialDims; ++d) {
    if (conv.pad[d] < 0) return false;
  }
  if (G == 1 ? !cpu::few_channels_applies(input, conv, C)
             : !g.channels_last ||
                   !cpu::few_outputs_applies(output, g, K, cpu::FewOutputsPass::kForward)) {
    return false;
  }
  cpu::grouped_conv(input, cpu::stride_one_transpose_weight(weight, G), output, conv, at::Tensor());
  return true;
}

// The strided input gradients of bfloat16 grouped convs with few channels per group that the
// patch kernel's phases do not take (16+ channels per group on AMX, groups of unequal width, ...)
// run on the float32 line kernels through float32 copies, rounded once: the phases of the
// bfloat16 GEMM kernels reduce over a group's few channels per tap (N4 channels_last 3x3 stride
// 2, ms: 16 per group 28x28 -> 14x14 7.9 -> 2.4, torch 1.05).
bool strided_bfloat16_grouped(const at::Tensor& input, const ConvGeometry& g) {
  bool strided = false;
  for (int d = 0; d < kSpatialDims; ++d) strided = strided || g.stride[d] != 1;
  return strided && input.scalar_type() == at::kBFloat16 &&
         cpu::grouped_shape_applies(g, input.size(1));
}

void dense_conv_transpose_cpu(const at::Tensor& input, const at::Tensor& weight,
                              const at::Tensor& output, const ConvGeometry& g) {
  if (const LiveKernel live = live_kernel(g); live.cropped) {
    return dense_conv_transpose_cpu(input, live_weight(weight, live), output, live.g);
  }
  if (cpu::grouped_patch_transpose_applies(input, g, input.size(1))) {
    return cpu::grouped_patch_conv_transpose(input, weight, output, g);
  }
  if (cpu::grouped_applies(input, g, input.size(1))) {
    return cpu::grouped_conv_transpose(input, weight, output, g);
  }
  if (strided_bfloat16_grouped(input, g)) {
    const auto widened = at::empty_like(output, output.options().dtype(at::kFloat));
    cpu::grouped_conv_transpose(input.to(at::kFloat), weight.to(at::kFloat), widened, g);
    return output.copy_(widened), void();
  }
  if (cpu::grouped_lanes_apply(input, weight, g, input.size(1))) {
    return cpu::grouped_lanes_conv_transpose(input, weight, output, g);
  }
  if (transpose_as_conv(input, weight, output, g)) return;
  cpu::gemm_conv_transpose(as_2d(input), as_2d(weight), as_2d(output), g);
}

void dense_weight_grad_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                           const at::Tensor& grad_weight, const ConvGeometry& g) {
  // The dropped taps' gradients are sums of products with padding zeros: zero.
  if (const LiveKernel live = live_kernel(g); live.cropped) {
    const auto window = live_window(grad_weight, live);
    const auto live_grad = at::empty(
        window.sizes(), grad_weight.options().memory_format(grad_weight.suggest_memory_format()));
    dense_weight_grad_cpu(grad_output, input, live_grad, live.g);
    grad_weight.zero_();
    window.copy_(live_grad);
    return;
  }
  if (cpu::grouped_patch_weight_grad_applies(input, g, grad_output.size(1))) {
    return cpu::grouped_patch_weight_grad(grad_output, input, grad_weight, g);
  }
  if (cpu::grouped_applies(input, g, grad_output.size(1))) {
    return cpu::grouped_weight_grad(grad_output, input, grad_weight, g);
  }
  if (cpu::few_outputs_applies(input, g, grad_output.size(1), cpu::FewOutputsPass::kWeightGrad)) {
    return cpu::few_outputs_weight_grad(grad_output, input, grad_weight, g);
  }
  if (cpu::grouped_lanes_apply(input, grad_output, g, grad_output.size(1))) {
    return cpu::grouped_lanes_weight_grad(grad_output, input, grad_weight, g);
  }
  cpu::gemm_conv_weight_grad(as_2d(grad_output), as_2d(input), as_2d(grad_weight), g);
}

bool use_gemm_engine(const ConvGeometry&) { return conv_algorithm() != ConvAlgorithm::kIm2col; }

const ConvBackend kCpuBackend{im2col_cpu,
                              col2im_cpu,
                              /*upcast_reduced_precision=*/true,
                              cpu::depthwise_conv,
                              cpu::depthwise_conv_transpose,
                              /*depthwise_channels_last=*/true,
                              cpu::depthwise_weight_grad,
                              dense_conv_cpu,
                              dense_conv_transpose_cpu,
                              dense_weight_grad_cpu,
                              use_gemm_engine,
                              cpu::all_finite,
                              cpu::gemm_engine_computes,
                              /*mixed_precision_bmm=*/nullptr,
                              cpu::depthwise_bfloat16_forward_applies};

// CPU tensors take the CPU's kernels, or the CUDA kernels' bodies while CUDA emulation is on.
const ConvBackend& cpu_or_emulated_backend() {
  return cuda_emulation() ? emulated_cuda_conv_backend() : kCpuBackend;
}

}  // namespace

TORCH_LIBRARY_IMPL(convpool, CPU, m) { register_conv_kernels<cpu_or_emulated_backend>(m); }

}  // namespace convpool
