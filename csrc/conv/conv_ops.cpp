#include "conv_ops.h"

#include "../common/op_handle.h"

namespace convpool::ops {
namespace {

using ConvSignature = at::Tensor(const at::Tensor&, const at::Tensor&,
                                 const std::optional<at::Tensor>&, c10::SymIntArrayRef,
                                 c10::SymIntArrayRef, c10::SymIntArrayRef, int64_t);
using WeightGradSignature = at::Tensor(const at::Tensor&, const at::Tensor&, c10::SymIntArrayRef,
                                       c10::SymIntArrayRef, c10::SymIntArrayRef,
                                       c10::SymIntArrayRef, int64_t);

}  // namespace

at::Tensor conv(const at::Tensor& input, const at::Tensor& weight,
                const std::optional<at::Tensor>& bias, c10::SymIntArrayRef stride,
                c10::SymIntArrayRef padding, c10::SymIntArrayRef dilation, int64_t groups) {
  static const auto op = op_handle<ConvSignature>("convpool::conv");
  return op.call(input, weight, bias, stride, padding, dilation, groups);
}

at::Tensor conv_transpose(const at::Tensor& input, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias, c10::SymIntArrayRef stride,
                          c10::SymIntArrayRef padding, c10::SymIntArrayRef dilation,
                          int64_t groups) {
  static const auto op = op_handle<ConvSignature>("convpool::conv_transpose");
  return op.call(input, weight, bias, stride, padding, dilation, groups);
}

at::Tensor conv_weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                            c10::SymIntArrayRef weight_size, c10::SymIntArrayRef stride,
                            c10::SymIntArrayRef padding, c10::SymIntArrayRef dilation,
                            int64_t groups) {
  static const auto op = op_handle<WeightGradSignature>("convpool::conv_weight_grad");
  return op.call(grad_output, input, weight_size, stride, padding, dilation, groups);
}

}  // namespace convpool::ops
