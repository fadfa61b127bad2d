#pragma once
// The pooling family's backend for the CUDA kernel bodies (pool_kernels.h), written once over a
// launch policy: CudaLaunch (pool_cuda.cu) runs it on the GPU, EmulatedLaunch (pool_emulated.cpp)
// on the CPU. Each launcher picks the element types and the index space, nothing more.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include "../common/dispatch.h"
#include "pool_driver.h"
#include "pool_kernels.h"

namespace convpool {

template <typename Launch>
struct LaunchedPoolKernels {
  static void max_forward(const at::Tensor& input, const at::Tensor& output,
                          const at::Tensor& indices, const PoolGeometry& g) {
    CONVPOOL_DISPATCH_FLOATING_TYPES(input.scalar_type(), "max_pool", [&] {
      Launch::run(
          kernels::MaxPool<scalar_t, at::opmath_type<scalar_t>>{input.const_data_ptr<scalar_t>(),
                                                                output.data_ptr<scalar_t>(),
                                                                indices.data_ptr<int64_t>(), g},
          output.numel());
    });
  }

  static void average_forward(const at::Tensor& input, const at::Tensor& output,
                              const PoolGeometry& g) {
    CONVPOOL_DISPATCH_FLOATING_TYPES(input.scalar_type(), "avg_pool", [&] {
      Launch::run(
          kernels::AvgPool<scalar_t, at::opmath_type<scalar_t>>{input.const_data_ptr<scalar_t>(),
                                                                output.data_ptr<scalar_t>(), g},
          output.numel());
    });
  }

  static void max_backward(const at::Tensor& grad_output, const at::Tensor& indices,
                           const at::Tensor& grad_input, const PoolGeometry& g) {
    CONVPOOL_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "max_pool_backward", [&] {
      Launch::run(
          kernels::MaxPoolBackward<scalar_t, at::opmath_type<scalar_t>>{
              grad_output.const_data_ptr<scalar_t>(), indices.const_data_ptr<int64_t>(),
              grad_input.data_ptr<scalar_t>(), g},
          grad_input.numel());
    });
  }

  static void average_backward(const at::Tensor& grad_output, const at::Tensor& grad_input,
                               const PoolGeometry& g) {
    CONVPOOL_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "avg_pool_backward", [&] {
      Launch::run(
          kernels::AvgPoolBackward<scalar_t, at::opmath_type<scalar_t>>{
              grad_output.const_data_ptr<scalar_t>(), grad_input.data_ptr<scalar_t>(), g},
          grad_input.numel());
    });
  }

  static void unpool(const at::Tensor& input, const at::Tensor& indices, const at::Tensor& output) {
    const int64_t planes = input.size(0) * input.size(1);
    CONVPOOL_DISPATCH_FLOATING_TYPES(input.scalar_type(), "max_unpool", [&] {
      Launch::run(kernels::MaxUnpool<scalar_t>{input.const_data_ptr<scalar_t>(),
                                               indices.const_data_ptr<int64_t>(),
                                               output.data_ptr<scalar_t>(), input.numel() / planes,
                                               output.numel() / planes},
                  input.numel());
    });
  }

  // The kernels take contiguous NCHW tensors only.
  static constexpr PoolBackend backend{max_forward,
                                       average_forward,
                                       max_backward,
                                       average_backward,
                                       unpool,
                                       /*takes_channels_last=*/nullptr};
};

}  // namespace convpool
