#pragma once
// The convolution family's backend for the CUDA kernel bodies (conv_kernels.h), written once over
// a launch policy: CudaLaunch (conv_cuda.cu) runs it on the GPU, EmulatedLaunch (conv_emulated.cpp)
// on the CPU. Each launcher picks the element types and the index space, nothing more.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include <type_traits>

#include "../common/dispatch.h"
#include "conv_driver.h"
#include "conv_kernels.h"

namespace convpool {

template <typename Launch>
struct LaunchedConvKernels {
  static void im2col(const at::Tensor& image, const at::Tensor& col, const ConvGeometry& g) {
    CONVPOOL_DISPATCH_FLOATING_TYPES(image.scalar_type(), "im2col", [&] {
      Launch::run(
          kernels::Im2col<scalar_t>{image.const_data_ptr<scalar_t>(), col.data_ptr<scalar_t>(), g},
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
                             const at::Tensor& bias, const at::Tensor& output,
                             const ConvGeometry& g) {
    launch_depthwise<kernels::DepthwiseConv>(input, weight, output, g, output.size(1) / g.channels);
    add_bias(output, bias);
  }

  static void depthwise_conv_transpose(const at::Tensor& input, const at::Tensor& weight,
                                       const at::Tensor& output, const ConvGeometry& g) {
    launch_depthwise<kernels::DepthwiseConvTranspose>(input, weight, output, g,
                                                      input.size(1) / g.channels);
  }

  static void depthwise_weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                                    const at::Tensor& grad_weight, const ConvGeometry& g) {
    launch_depthwise<kernels::DepthwiseWeightGrad>(grad_output, input, grad_weight, g,
                                                   grad_output.size(1) / g.channels, input.size(0));
  }

 private:
  // Launches Kernel<scalar_t, acc_t, out_t>{a, b, result, g, multiplier, extra...} over the
  // elements of `result`. out_t is the result's dtype: the inputs' or, for float16/bfloat16,
  // float32 (the driver adds the bias and rounds it).
  template <template <typename, typename, typename> class Kernel, typename... Extra>
  static void launch_depthwise(const at::Tensor& a, const at::Tensor& b, const at::Tensor& result,
                               const ConvGeometry& g, int64_t multiplier, Extra... extra) {
    CONVPOOL_DISPATCH_FLOATING_TYPES(a.scalar_type(), "depthwise", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const auto run = [&](auto* out) {
        using out_t = std::remove_pointer_t<decltype(out)>;
        Launch::run(Kernel<scalar_t, acc_t, out_t>{a.const_data_ptr<scalar_t>(),
                                                   b.const_data_ptr<scalar_t>(), out, g, multiplier,
                                                   extra...},
                    result.numel());
      };
      if (result.scalar_type() == a.scalar_type()) return run(result.data_ptr<scalar_t>());
      TORCH_INTERNAL_ASSERT(result.scalar_type() == at::kFloat, "unexpected result dtype ",
                            result.scalar_type(), " for ", a.scalar_type());
      run(result.data_ptr<float>());
    });
  }
};

// The backend over these kernels. `mixed_precision_bmm` is the one GEMM the launch policy cannot
// express: float16/bfloat16 operands, float32 compute and result.
template <typename Launch>
ConvBackend launched_conv_backend(MixedPrecisionBmm mixed_precision_bmm) {
  using K = LaunchedConvKernels<Launch>;
  ConvBackend backend{K::im2col,
                      K::col2im,
                      /*upcast_reduced_precision=*/false,
                      K::depthwise_conv,
                      K::depthwise_conv_transpose,
                      /*depthwise_channels_last=*/false,
                      K::depthwise_weight_grad};
  backend.mixed_precision_bmm = mixed_precision_bmm;
  return backend;
}

}  // namespace convpool
