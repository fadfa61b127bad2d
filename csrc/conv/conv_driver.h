#pragma once
// The device-independent half of the convolution family: checks, output allocation, the
// im2col -> batched GEMM (at::bmm: MKL on CPU, cuBLAS on CUDA) -> col2im pipeline. Each backend
// supplies only its im2col and col2im launchers.
#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>
#include <torch/library.h>

#include "../common/conv_geometry.h"

namespace convpool {

// out = a @ b (batched) for float16/bfloat16 a and b into a float32 out, computed in float32.
using MixedPrecisionBmm = void (*)(at::Tensor& out, const at::Tensor& a, const at::Tensor& b);

struct ConvBackend {
  // col [C * K, G] <- image [C, image...] of one sample.
  void (*im2col)(const at::Tensor& image, const at::Tensor& col, const ConvGeometry& g);
  // image [C, image...] <- col [C * K, G] of one sample (gather: each image element sums the
  // column entries that read it).
  void (*col2im)(const at::Tensor& col, const at::Tensor& image, const ConvGeometry& g);
  // true: compute float16/bfloat16 in float32 and round once at the end, on every path that has
  // no reduced-precision kernel of its own (dense_engine_computes): the CPU. false: the kernels
  // read float16/bfloat16 as they are, sum in float32 and write float32 results, the GEMMs go
  // through mixed_precision_bmm, and the driver adds the bias in float32 and rounds once (the
  // CUDA kernels, on the GPU and emulated).
  bool upcast_reduced_precision;
  // Optional direct kernels for depthwise convolutions (one image channel per group), where
  // im2col + a batch of 1-row GEMMs wastes most of its time; nullptr: the im2col path.
  // conv: output [N, C * m, grid...] from input [N, C, image...], weight [C * m, 1, K...], plus
  // the bias (undefined: none), inside the kernel where it can (as dense_conv).
  void (*depthwise_conv)(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                         const at::Tensor& output, const ConvGeometry& g) = nullptr;
  // conv_transpose: output [N, C, image...] from input [N, C * m, grid...], weight [C * m, 1,
  // K...].
  void (*depthwise_conv_transpose)(const at::Tensor& input, const at::Tensor& weight,
                                   const at::Tensor& output, const ConvGeometry& g) = nullptr;
  // The depthwise kernels also take channels_last tensors as they are (g.channels_last). false:
  // they take NCHW tensors only, and every depthwise op goes to them in NCHW.
  bool depthwise_channels_last = false;
  // Optional: the depthwise weight gradient from grad_output and input, both in the layout
  // g.channels_last says (channels_last only where depthwise_channels_last), into a
  // [C * m, K] grad_weight.
  void (*depthwise_weight_grad)(const at::Tensor& grad_output, const at::Tensor& input,
                                const at::Tensor& grad_weight, const ConvGeometry& g) = nullptr;
  // Optional engine for the dense (non-depthwise) convs of the dtypes dense_engine_computes
  // names, computed in the input's memory format (g.channels_last): conv, conv_transpose and the
  // weight gradient, with the same arguments as the depthwise kernels. Used where
  // use_dense_engine(g) says so; elsewhere the im2col path.
  // dense_conv also adds the bias (undefined: none), inside its blocks where it can, so the
  // output is not read and written once more for it.
  void (*dense_conv)(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                     const at::Tensor& output, const ConvGeometry& g) = nullptr;
  void (*dense_conv_transpose)(const at::Tensor& input, const at::Tensor& weight,
                               const at::Tensor& output, const ConvGeometry& g) = nullptr;
  void (*dense_weight_grad)(const at::Tensor& grad_output, const at::Tensor& input,
                            const at::Tensor& grad_weight, const ConvGeometry& g) = nullptr;
  bool (*use_dense_engine)(const ConvGeometry& g) = nullptr;
  // Whether a tensor holds only finite values: the dense conv_transpose multiplies padding zeros
  // by the weight, which gives NaN for an inf weight where a scatter gives inf.
  bool (*all_finite)(const at::Tensor& t) = nullptr;
  // The dtypes the dense engine computes in as they are (bfloat16 included where it has a
  // bfloat16 GEMM); the others are cast to float32 or take the im2col path.
  bool (*dense_engine_computes)(at::ScalarType type) = nullptr;
  // Required where upcast_reduced_precision is false.
  MixedPrecisionBmm mixed_precision_bmm = nullptr;
  // Optional, where upcast_reduced_precision: whether depthwise_conv computes this float16 /
  // bfloat16 forward as it is (float32 sums, one rounding; the output in the input's dtype)
  // rather than on float32 copies.
  bool (*depthwise_conv_computes)(const at::Tensor& input, int64_t out_channels,
                                  const ConvGeometry& g) = nullptr;
};

// output [N, K, ...] += bias [K] (none, or undefined: nothing), either layout.
void add_bias(const at::Tensor& output, const c10::optional<at::Tensor>& bias);

// Whether a kernel can start its sums from bias's data as it is (else it calls add_bias after).
inline bool bias_fusable(const at::Tensor& bias, const at::Tensor& input) {
  return bias.defined() && bias.scalar_type() == input.scalar_type() && bias.dim() == 1 &&
         bias.is_contiguous();
}

at::Tensor compute_conv(const at::Tensor& input, const at::Tensor& weight,
                        const c10::optional<at::Tensor>& bias, at::IntArrayRef stride,
                        at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                        const ConvBackend& backend);

at::Tensor compute_conv_transpose(const at::Tensor& input, const at::Tensor& weight,
                                  const c10::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                  at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                  const ConvBackend& backend);

// d(conv output)/d(weight) contracted with grad_output: sum over batch and grid of
// grad_output x im2col(input). Deterministic: one GEMM accumulation per sample, in order.
at::Tensor compute_conv_weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                                    at::IntArrayRef weight_size, at::IntArrayRef stride,
                                    at::IntArrayRef padding, at::IntArrayRef dilation,
                                    int64_t groups, const ConvBackend& backend);

// The CUDA kernels' backend run on the CPU (conv_emulated.cpp): what the CPU registration
// delegates to while cuda_emulation() is on.
const ConvBackend& emulated_cuda_conv_backend();

// Registers the three conv ops for the dispatch key of the enclosing TORCH_LIBRARY_IMPL block,
// computed by the backend that `backend()` returns at each call.
template <const ConvBackend& (*backend)()>
void register_conv_kernels(torch::Library& m) {
  using at::IntArrayRef;
  using at::Tensor;
  m.impl(
      "conv", +[](const Tensor& input, const Tensor& weight, const c10::optional<Tensor>& bias,
                  IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation, int64_t groups) {
        return compute_conv(input, weight, bias, stride, padding, dilation, groups, backend());
      });
  m.impl(
      "conv_transpose",
      +[](const Tensor& input, const Tensor& weight, const c10::optional<Tensor>& bias,
          IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation, int64_t groups) {
        return compute_conv_transpose(input, weight, bias, stride, padding, dilation, groups,
                                      backend());
      });
  m.impl(
      "conv_weight_grad",
      +[](const Tensor& grad_output, const Tensor& input, IntArrayRef weight_size,
          IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation, int64_t groups) {
        return compute_conv_weight_grad(grad_output, input, weight_size, stride, padding, dilation,
                                        groups, backend());
      });
}

}  // namespace convpool
