#pragma once
// Typed handles on the pooling family's registered ops (see conv_ops.h for why).
#include <ATen/core/Tensor.h>
#include <c10/core/SymIntArrayRef.h>

#include <tuple>

namespace convpool::ops {

std::tuple<at::Tensor, at::Tensor> max_pool(const at::Tensor& input, at::IntArrayRef kernel,
                                            at::IntArrayRef stride, c10::SymIntArrayRef padding,
                                            at::IntArrayRef dilation, bool ceil_mode);
at::Tensor max_pool_backward(const at::Tensor& grad_output, const at::Tensor& input,
                             const at::Tensor& indices, at::IntArrayRef kernel,
                             at::IntArrayRef stride, c10::SymIntArrayRef padding,
                             at::IntArrayRef dilation, bool ceil_mode);
at::Tensor max_pool_values(const at::Tensor& input, at::IntArrayRef kernel, at::IntArrayRef stride,
                           c10::SymIntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode);
std::tuple<at::Tensor, at::Tensor> max_pool_positions(const at::Tensor& input,
                                                      at::IntArrayRef kernel,
                                                      at::IntArrayRef stride,
                                                      c10::SymIntArrayRef padding,
                                                      at::IntArrayRef dilation, bool ceil_mode);
at::Tensor max_pool_positions_backward(const at::Tensor& grad_output, const at::Tensor& positions,
                                       c10::SymIntArrayRef input_size, bool channels_last,
                                       at::IntArrayRef kernel, at::IntArrayRef stride,
                                       c10::SymIntArrayRef padding, at::IntArrayRef dilation,
                                       bool ceil_mode);
at::Tensor adaptive_max_pool_values(const at::Tensor& input, c10::SymIntArrayRef output_size);
std::tuple<at::Tensor, at::Tensor> adaptive_max_pool_positions(const at::Tensor& input,
                                                               c10::SymIntArrayRef output_size);
at::Tensor adaptive_max_pool_positions_backward(const at::Tensor& grad_output,
                                                const at::Tensor& positions,
                                                c10::SymIntArrayRef input_size, bool channels_last);
at::Tensor avg_pool(const at::Tensor& input, at::IntArrayRef kernel, at::IntArrayRef stride,
                    c10::SymIntArrayRef padding, bool ceil_mode, bool count_include_pad,
                    std::optional<int64_t> divisor_override);
at::Tensor avg_pool_backward(const at::Tensor& grad_output, const at::Tensor& input,
                             at::IntArrayRef kernel, at::IntArrayRef stride,
                             c10::SymIntArrayRef padding, bool ceil_mode, bool count_include_pad,
                             std::optional<int64_t> divisor_override);
std::tuple<at::Tensor, at::Tensor> adaptive_max_pool(const at::Tensor& input,
                                                     c10::SymIntArrayRef output_size);
at::Tensor adaptive_max_pool_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                      const at::Tensor& indices);
at::Tensor adaptive_avg_pool(const at::Tensor& input, c10::SymIntArrayRef output_size);
at::Tensor adaptive_avg_pool_backward(const at::Tensor& grad_output, const at::Tensor& input);
at::Tensor max_unpool(const at::Tensor& input, const at::Tensor& indices,
                      c10::SymIntArrayRef output_size);

}  // namespace convpool::ops
