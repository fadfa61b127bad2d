#pragma once
// Typed handles on the convolution family's registered ops, so autograd (and anything else in
// C++) calls them through the dispatcher and gets autograd, fakes and every backend for free.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/Tensor.h>

namespace convpool::ops {

at::Tensor conv(const at::Tensor& input, const at::Tensor& weight,
                const std::optional<at::Tensor>& bias, c10::SymIntArrayRef stride,
                c10::SymIntArrayRef padding, c10::SymIntArrayRef dilation, int64_t groups);

at::Tensor conv_transpose(const at::Tensor& input, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias, c10::SymIntArrayRef stride,
                          c10::SymIntArrayRef padding, c10::SymIntArrayRef dilation,
                          int64_t groups);

at::Tensor conv_weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                            c10::SymIntArrayRef weight_size, c10::SymIntArrayRef stride,
                            c10::SymIntArrayRef padding, c10::SymIntArrayRef dilation,
                            int64_t groups);

}  // namespace convpool::ops
