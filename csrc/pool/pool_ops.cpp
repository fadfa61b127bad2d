#include "pool_ops.h"

#include "../common/op_handle.h"

namespace convpool::ops {
namespace {

using at::IntArrayRef;
using at::Tensor;
using c10::SymIntArrayRef;
using TensorPair = std::tuple<Tensor, Tensor>;

}  // namespace

TensorPair max_pool(const Tensor& input, IntArrayRef kernel, IntArrayRef stride,
                    SymIntArrayRef padding, IntArrayRef dilation, bool ceil_mode) {
  static const auto op =
      op_handle<TensorPair(const Tensor&, IntArrayRef, IntArrayRef, SymIntArrayRef, IntArrayRef,
                           bool)>("convpool::max_pool");
  return op.call(input, kernel, stride, padding, dilation, ceil_mode);
}

Tensor max_pool_backward(const Tensor& grad_output, const Tensor& input, const Tensor& indices,
                         IntArrayRef kernel, IntArrayRef stride, SymIntArrayRef padding,
                         IntArrayRef dilation, bool ceil_mode) {
  static const auto op =
      op_handle<Tensor(const Tensor&, const Tensor&, const Tensor&, IntArrayRef, IntArrayRef,
                       SymIntArrayRef, IntArrayRef, bool)>("convpool::max_pool_backward");
  return op.call(grad_output, input, indices, kernel, stride, padding, dilation, ceil_mode);
}

Tensor max_pool_values(const Tensor& input, IntArrayRef kernel, IntArrayRef stride,
                       SymIntArrayRef padding, IntArrayRef dilation, bool ceil_mode) {
  static const auto op =
      op_handle<Tensor(const Tensor&, IntArrayRef, IntArrayRef, SymIntArrayRef, IntArrayRef, bool)>(
          "convpool::max_pool_values");
  return op.call(input, kernel, stride, padding, dilation, ceil_mode);
}

TensorPair max_pool_positions(const Tensor& input, IntArrayRef kernel, IntArrayRef stride,
                              SymIntArrayRef padding, IntArrayRef dilation, bool ceil_mode) {
  static const auto op =
      op_handle<TensorPair(const Tensor&, IntArrayRef, IntArrayRef, SymIntArrayRef, IntArrayRef,
                           bool)>("convpool::max_pool_positions");
  return op.call(input, kernel, stride, padding, dilation, ceil_mode);
}

Tensor max_pool_positions_backward(const Tensor& grad_output, const Tensor& positions,
                                   SymIntArrayRef input_size, bool channels_last,
                                   IntArrayRef kernel, IntArrayRef stride, SymIntArrayRef padding,
                                   IntArrayRef dilation, bool ceil_mode) {
  static const auto op =
      op_handle<Tensor(const Tensor&, const Tensor&, SymIntArrayRef, bool, IntArrayRef, IntArrayRef,
                       SymIntArrayRef, IntArrayRef, bool)>("convpool::max_pool_positions_backward");
  return op.call(grad_output, positions, input_size, channels_last, kernel, stride, padding,
                 dilation, ceil_mode);
}

Tensor adaptive_max_pool_values(const Tensor& input, SymIntArrayRef output_size) {
  static const auto op =
      op_handle<Tensor(const Tensor&, SymIntArrayRef)>("convpool::adaptive_max_pool_values");
  return op.call(input, output_size);
}

TensorPair adaptive_max_pool_positions(const Tensor& input, SymIntArrayRef output_size) {
  static const auto op =
      op_handle<TensorPair(const Tensor&, SymIntArrayRef)>("convpool::adaptive_max_pool_positions");
  return op.call(input, output_size);
}

Tensor adaptive_max_pool_positions_backward(const Tensor& grad_output, const Tensor& positions,
                                            SymIntArrayRef input_size, bool channels_last) {
  static const auto op = op_handle<Tensor(const Tensor&, const Tensor&, SymIntArrayRef, bool)>(
      "convpool::adaptive_max_pool_positions_backward");
  return op.call(grad_output, positions, input_size, channels_last);
}

Tensor avg_pool(const Tensor& input, IntArrayRef kernel, IntArrayRef stride, SymIntArrayRef padding,
                bool ceil_mode, bool count_include_pad, std::optional<int64_t> divisor_override) {
  static const auto op =
      op_handle<Tensor(const Tensor&, IntArrayRef, IntArrayRef, SymIntArrayRef, bool, bool,
                       std::optional<int64_t>)>("convpool::avg_pool");
  return op.call(input, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override);
}

Tensor avg_pool_backward(const Tensor& grad_output, const Tensor& input, IntArrayRef kernel,
                         IntArrayRef stride, SymIntArrayRef padding, bool ceil_mode,
                         bool count_include_pad, std::optional<int64_t> divisor_override) {
  static const auto op =
      op_handle<Tensor(const Tensor&, const Tensor&, IntArrayRef, IntArrayRef, SymIntArrayRef, bool,
                       bool, std::optional<int64_t>)>("convpool::avg_pool_backward");
  return op.call(grad_output, input, kernel, stride, padding, ceil_mode, count_include_pad,
                 divisor_override);
}

TensorPair adaptive_max_pool(const Tensor& input, SymIntArrayRef output_size) {
  static const auto op =
      op_handle<TensorPair(const Tensor&, SymIntArrayRef)>("convpool::adaptive_max_pool");
  return op.call(input, output_size);
}

Tensor adaptive_max_pool_backward(const Tensor& grad_output, const Tensor& input,
                                  const Tensor& indices) {
  static const auto op = op_handle<Tensor(const Tensor&, const Tensor&, const Tensor&)>(
      "convpool::adaptive_max_pool_backward");
  return op.call(grad_output, input, indices);
}

Tensor adaptive_avg_pool(const Tensor& input, SymIntArrayRef output_size) {
  static const auto op =
      op_handle<Tensor(const Tensor&, SymIntArrayRef)>("convpool::adaptive_avg_pool");
  return op.call(input, output_size);
}

Tensor adaptive_avg_pool_backward(const Tensor& grad_output, const Tensor& input) {
  static const auto op =
      op_handle<Tensor(const Tensor&, const Tensor&)>("convpool::adaptive_avg_pool_backward");
  return op.call(grad_output, input);
}

Tensor max_unpool(const Tensor& input, const Tensor& indices, SymIntArrayRef output_size) {
  static const auto op =
      op_handle<Tensor(const Tensor&, const Tensor&, SymIntArrayRef)>("convpool::max_unpool");
  return op.call(input, indices, output_size);
}

}  // namespace convpool::ops
