#pragma once
// The convolution family's backend for the CUDA kernel bodies (conv_kernels.h), written once over
// a launch policy: CudaLaunch (conv_cuda.cu) runs it on the GPU, EmulatedLaunch (conv_emulated.cpp)
// on the CPU. Each launcher picks the element types and the index space, nothing more.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include "../common/dispatch.h"
#include "conv_driver.h"
#include "conv_kernels.h"

namespace convpool {

template <typename Launch>
struct LaunchedConvKernels {
  static void im2col(const at::Tensor& image, const at::Tensor& col, const ConvGeometry& g) {
    CONVPOOL_DISPATCH_FLOATING_TYPES(image.scalar_type(), "im2col", [&] {
      Launch::run(kernels::Im2col<scalar_t>{image.const_data_ptr<scalar_t>(),
                                            col.data_ptr<scalar_t>(), g},
                  col.numel());
    });
  }

  static void col2im(const at::Tensor& col, const at::Tensor& image, const ConvGeometry& g) {
    CONVPOOL_DISPATCH_FLOATING_TYPES(col.scalar_type(), "col2im", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      Launch::run(kernels::Col2im<scalar_t, acc_t>{col.const_data_ptr<scalar_t>(),
                                                   image.data_ptr<scalar_t>(), g},
                  image.numel());
    });
  }

  static void depthwise_conv(const at::Tensor& input, const at::Tensor& weight,
                             const at::Tensor& output, const ConvGeometry& g) {
    with_types(input, output, "depthwise_conv", [&](auto scalar, auto acc, auto out) {
      using scalar_t = decltype(scalar);
      using out_t = decltype(out);
      Launch::run(kernels::DepthwiseConv<scalar_t, decltype(acc), out_t>{
                      input.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(),
                      output.data_ptr<out_t>(), g, output.size(1) / g.channels},
                  output.numel());
    });
  }

  static void depthwise_conv_transpose(const at::Tensor& input, const at::Tensor& weight,
                                       const at::Tensor& output, const ConvGeometry& g) {
    with_types(input, output, "depthwise_conv_transpose", [&](auto scalar, auto acc, auto out) {
      using scalar_t = decltype(scalar);
      using out_t = decltype(out);
      Launch::run(kernels::DepthwiseConvTranspose<scalar_t, decltype(acc), out_t>{
                      input.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(),
                      output.data_ptr<out_t>(), g, input.size(1) / g.channels},
                  output.numel());
    });
  }

  static void depthwise_weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                                    const at::Tensor& grad_weight, const ConvGeometry& g) {
    with_types(input, grad_weight, "depthwise_weight_grad", [&](auto scalar, auto acc, auto out) {
      using scalar_t = decltype(scalar);
      using out_t = decltype(out);
      Launch::run(kernels::DepthwiseWeightGrad<scalar_t, decltype(acc), out_t>{
                      grad_output.const_data_ptr<scalar_t>(), input.const_data_ptr<scalar_t>(),
                      grad_weight.data_ptr<out_t>(), g, grad_output.size(1) / g.channels,
                      input.size(0)},
                  grad_weight.numel());
    });
  }

 private:
  // Calls f(scalar_t{}, acc_t{}, out_t{}) for the input's dtype; out_t is the result's dtype,
  // which is the input's or, for float16/bfloat16, float32 (the driver rounds it).
  template <typename F>
  static void with_types(const at::Tensor& input, const at::Tensor& result, const char* name,
                         F&& f) {
    CONVPOOL_DISPATCH_FLOATING_TYPES(input.scalar_type(), "depthwise", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      if (result.scalar_type() == input.scalar_type()) return f(scalar_t{}, acc_t{}, scalar_t{});
      TORCH_INTERNAL_ASSERT(result.scalar_type() == at::kFloat, name, ": unexpected result dtype ",
                            result.scalar_type(), " for ", input.scalar_type());
      f(scalar_t{}, acc_t{}, float{});
    });
  }
};

// The backend over these kernels. `mixed_precision_bmm` is the one GEMM the launch policy cannot
// express: float16/bfloat16 operands, float32 compute and result.
template <typename Launch>
ConvBackend launched_conv_backend(MixedPrecisionBmm mixed_precision_bmm) {
  using K = LaunchedConvKernels<Launch>;
  ConvBackend backend{K::im2col, K::col2im, /*upcast_reduced_precision=*/false,
                      K::depthwise_conv, K::depthwise_conv_transpose,
                      /*depthwise_channels_last=*/false, K::depthwise_weight_grad};
  backend.mixed_precision_bmm = mixed_precision_bmm;
  return backend;
}

}  // namespace convpool
