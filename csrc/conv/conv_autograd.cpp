// Autograd of the convolution family. The three ops are each other's derivatives:
//   conv            d/dinput: conv_transpose        d/dweight: conv_weight_grad
//   conv_transpose  d/dinput: conv                  d/dweight: conv_weight_grad (roles swapped)
//   conv_weight_grad (bilinear) d/dgrad_output: conv   d/dinput: conv_transpose
// so every backward is built from differentiable ops and double backward comes for free.
// Sizes are SymInts throughout: the same code traces under torch.compile with dynamic shapes.
#include <torch/autograd.h>
#include <torch/library.h>

#include "conv_ops.h"

namespace convpool {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using SymInts = std::vector<c10::SymInt>;

// The after-padding that makes conv_transpose(grad_output) come out at exactly the conv input's
// length: the conv dropped `remainder` trailing input elements that no window reached.
SymInts input_grad_padding(c10::SymIntArrayRef input_sizes, c10::SymIntArrayRef weight_sizes,
                           const SymInts& stride, const SymInts& padding, const SymInts& dilation) {
  const size_t dims = stride.size();
  SymInts result(padding.begin(), padding.end());
  for (size_t d = 0; d < dims; ++d) {
    const c10::SymInt span = dilation[d] * (weight_sizes[d + 2] - 1) + 1;
    const c10::SymInt remainder =
        (input_sizes[d + 2] + padding[d] + padding[dims + d] - span) % stride[d];
    result[dims + d] = padding[dims + d] - remainder;
  }
  return result;
}

at::Tensor bias_grad(const at::Tensor& grad_output) {
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < grad_output.dim(); ++d) dims.push_back(d);
  return grad_output.sum(dims);
}

void save_sizes(AutogradContext* ctx, const SymInts& stride, const SymInts& padding,
                const SymInts& dilation, int64_t groups) {
  ctx->saved_data["stride"] = stride;
  ctx->saved_data["padding"] = padding;
  ctx->saved_data["dilation"] = dilation;
  ctx->saved_data["groups"] = groups;
}

struct SavedSizes {
  SymInts stride, padding, dilation;
  int64_t groups;
  explicit SavedSizes(AutogradContext* ctx)
      : stride(ctx->saved_data["stride"].toSymIntVector()),
        padding(ctx->saved_data["padding"].toSymIntVector()),
        dilation(ctx->saved_data["dilation"].toSymIntVector()),
        groups(ctx->saved_data["groups"].toInt()) {}
};

class ConvFunction : public torch::autograd::Function<ConvFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, const SymInts& stride,
                            const SymInts& padding, const SymInts& dilation, int64_t groups) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({input, weight});
    save_sizes(ctx, stride, padding, dilation, groups);
    ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
    return ops::conv(input, weight, bias, stride, padding, dilation, groups);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& input = saved[0];
    const auto& weight = saved[1];
    const auto& grad = grads[0];
    const SavedSizes s(ctx);
    at::Tensor grad_input, grad_weight, grad_bias;
    if (input.sym_size(1) == 0) {
      // No input channels: torch's empty result (no output channels) depends on nothing.
      return {ctx->needs_input_grad(0) ? at::zeros_like(input) : at::Tensor(),
              ctx->needs_input_grad(1) ? at::zeros_like(weight) : at::Tensor(),
              ctx->needs_input_grad(2) ? at::zeros_symint({weight.sym_size(0)}, weight.options())
                                       : at::Tensor(),
              at::Tensor(),
              at::Tensor(),
              at::Tensor(),
              at::Tensor()};
    }
    if (ctx->needs_input_grad(0)) {
      grad_input = ops::conv_transpose(grad, weight, std::nullopt, s.stride,
                                       input_grad_padding(input.sym_sizes(), weight.sym_sizes(),
                                                          s.stride, s.padding, s.dilation),
                                       s.dilation, s.groups);
    }
    if (ctx->needs_input_grad(1)) {
      grad_weight = ops::conv_weight_grad(grad, input, weight.sym_sizes(), s.stride, s.padding,
                                          s.dilation, s.groups);
    }
    if (ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2)) {
      grad_bias = bias_grad(grad);
    }
    return {grad_input,   grad_weight,  grad_bias,   at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

class ConvTransposeFunction : public torch::autograd::Function<ConvTransposeFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, const SymInts& stride,
                            const SymInts& padding, const SymInts& dilation, int64_t groups) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({input, weight});
    save_sizes(ctx, stride, padding, dilation, groups);
    ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
    return ops::conv_transpose(input, weight, bias, stride, padding, dilation, groups);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& input = saved[0];
    const auto& weight = saved[1];
    const auto& grad = grads[0];
    const SavedSizes s(ctx);
    at::Tensor grad_input, grad_weight, grad_bias;
    // conv_transpose is conv's input-gradient map, so its own input gradient is that conv, whose
    // output comes out at exactly the conv_transpose input's length.
    if (ctx->needs_input_grad(0)) {
      grad_input = ops::conv(grad, weight, std::nullopt, s.stride, s.padding, s.dilation, s.groups);
    }
    if (ctx->needs_input_grad(1)) {
      grad_weight = ops::conv_weight_grad(input, grad, weight.sym_sizes(), s.stride, s.padding,
                                          s.dilation, s.groups);
    }
    if (ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2)) {
      grad_bias = bias_grad(grad);
    }
    return {grad_input,   grad_weight,  grad_bias,   at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

class ConvWeightGradFunction : public torch::autograd::Function<ConvWeightGradFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad_output,
                            const at::Tensor& input, const SymInts& weight_size,
                            const SymInts& stride, const SymInts& padding, const SymInts& dilation,
                            int64_t groups) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({grad_output, input});
    save_sizes(ctx, stride, padding, dilation, groups);
    ctx->saved_data["weight_size"] = weight_size;
    return ops::conv_weight_grad(grad_output, input, weight_size, stride, padding, dilation,
                                 groups);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& grad_output = saved[0];
    const auto& input = saved[1];
    const auto& grad = grads[0];  // shaped like the weight
    const SavedSizes s(ctx);
    at::Tensor grad_grad_output, grad_input;
    if (ctx->needs_input_grad(0)) {
      grad_grad_output =
          ops::conv(input, grad, std::nullopt, s.stride, s.padding, s.dilation, s.groups);
    }
    if (ctx->needs_input_grad(1)) {
      grad_input = ops::conv_transpose(
          grad_output, grad, std::nullopt, s.stride,
          input_grad_padding(input.sym_sizes(), grad.sym_sizes(), s.stride, s.padding, s.dilation),
          s.dilation, s.groups);
    }
    return {grad_grad_output, grad_input,   at::Tensor(), at::Tensor(),
            at::Tensor(),     at::Tensor(), at::Tensor()};
  }
};

at::Tensor conv_autograd(const at::Tensor& input, const at::Tensor& weight,
                         const std::optional<at::Tensor>& bias, c10::SymIntArrayRef stride,
                         c10::SymIntArrayRef padding, c10::SymIntArrayRef dilation,
                         int64_t groups) {
  return ConvFunction::apply(input, weight, bias, stride.vec(), padding.vec(), dilation.vec(),
                             groups);
}

at::Tensor conv_transpose_autograd(const at::Tensor& input, const at::Tensor& weight,
                                   const std::optional<at::Tensor>& bias,
                                   c10::SymIntArrayRef stride, c10::SymIntArrayRef padding,
                                   c10::SymIntArrayRef dilation, int64_t groups) {
  return ConvTransposeFunction::apply(input, weight, bias, stride.vec(), padding.vec(),
                                      dilation.vec(), groups);
}

at::Tensor conv_weight_grad_autograd(const at::Tensor& grad_output, const at::Tensor& input,
                                     c10::SymIntArrayRef weight_size, c10::SymIntArrayRef stride,
                                     c10::SymIntArrayRef padding, c10::SymIntArrayRef dilation,
                                     int64_t groups) {
  return ConvWeightGradFunction::apply(grad_output, input, weight_size.vec(), stride.vec(),
                                       padding.vec(), dilation.vec(), groups);
}

}  // namespace

TORCH_LIBRARY_IMPL(convpool, Autograd, m) {
  m.impl("conv", &conv_autograd);
  m.impl("conv_transpose", &conv_transpose_autograd);
  m.impl("conv_weight_grad", &conv_weight_grad_autograd);
}

}  // namespace convpool
