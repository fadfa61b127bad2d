// Autograd of the pooling family, every backward made of differentiable ops:
//   max_pool / adaptive_max_pool  -> *_backward (gather at the indices)  -> gather at the indices
//   avg_pool / adaptive_avg_pool  -> *_backward                          -> the forward op again
//   max_unpool                    -> gather at the indices
// (avg pooling is linear, so its backward's derivative is the forward; max pooling's backward
// is linear in grad_output with the indices fixed, so its derivative reads grad at the indices.)
#include <torch/autograd.h>
#include <torch/library.h>

#include <limits>
#include <vector>

#include "../common/cuda_emulation.h"
#include "pool_ops.h"
#include "window_offsets.h"

namespace convpool {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using SymInts = std::vector<c10::SymInt>;
using Ints = std::vector<int64_t>;

// out[n, c, o] = values[n, c, indices[n, c, o]] per plane: the adjoint of scattering to indices.
at::Tensor gather_at_indices(const at::Tensor& values, const at::Tensor& indices) {
  return values.flatten(2).gather(2, indices.flatten(2)).reshape_symint(indices.sym_sizes());
}

struct RegularWindow {
  Ints kernel, stride, dilation;
  SymInts padding;
  bool ceil_mode;
};

void save_window(AutogradContext* ctx, const RegularWindow& w) {
  ctx->saved_data["kernel"] = w.kernel;
  ctx->saved_data["stride"] = w.stride;
  ctx->saved_data["dilation"] = w.dilation;
  ctx->saved_data["padding"] = w.padding;
  ctx->saved_data["ceil_mode"] = w.ceil_mode;
}

RegularWindow load_window(AutogradContext* ctx) {
  return {ctx->saved_data["kernel"].toIntVector(), ctx->saved_data["stride"].toIntVector(),
          ctx->saved_data["dilation"].toIntVector(), ctx->saved_data["padding"].toSymIntVector(),
          ctx->saved_data["ceil_mode"].toBool()};
}

// True where a regular window holds at least one input element, shaped to broadcast over the
// pooled output. Emptiness is separable per dim, so each dim's is read off a 1-d max pool of a
// zero line (-inf exactly where the window is empty): a few tiny ops, symbolic shapes included.
at::Tensor nonempty_windows(const at::Tensor& input, const RegularWindow& w) {
  const int64_t dims = static_cast<int64_t>(w.kernel.size());
  at::Tensor mask;
  for (int64_t d = 0; d < dims; ++d) {
    const auto line = at::zeros_symint({1, 1, input.sym_size(2 + d)}, input.options());
    const auto pooled = std::get<0>(ops::max_pool(line, {w.kernel[d]}, {w.stride[d]},
                                                  {w.padding[d], w.padding[dims + d]},
                                                  {w.dilation[d]}, w.ceil_mode));
    std::vector<int64_t> shape(dims + 2, 1);
    shape[2 + d] = -1;
    const auto along = pooled.ne(-std::numeric_limits<double>::infinity()).view(shape);
    mask = mask.defined() ? mask.logical_and(along) : along;
  }
  return mask;
}

// The input gradient of max_pool (regular = true) or adaptive_max_pool; differentiable in
// grad_output.
class MaxBackwardFunction : public torch::autograd::Function<MaxBackwardFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad_output,
                            const at::Tensor& input, const at::Tensor& indices, bool regular,
                            const RegularWindow& w) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({indices, input});
    ctx->saved_data["regular"] = regular;
    if (regular) save_window(ctx, w);
    return regular ? ops::max_pool_backward(grad_output, input, indices, w.kernel, w.stride,
                                            w.padding, w.dilation, w.ceil_mode)
                   : ops::adaptive_max_pool_backward(grad_output, input, indices);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& indices = saved[0];
    if (!ctx->saved_data["regular"].toBool()) {
      return {gather_at_indices(grads[0], indices), at::Tensor(), at::Tensor(), at::Tensor(),
              at::Tensor()};
    }
    // An empty window's gradient went nowhere, so it reads nothing back; its index may lie
    // outside the plane (torch's forward reports one there), hence the clamp.
    const auto& input = saved[1];
    const auto w = load_window(ctx);
    c10::SymInt plane = 1;
    for (int64_t d = 2; d < input.dim(); ++d) plane = plane * input.sym_size(d);
    const auto inside = at::clamp(indices, at::Scalar(0), at::Scalar(plane - 1));
    return {at::where(nonempty_windows(input, w), gather_at_indices(grads[0], inside),
                      at::zeros({}, grads[0].options())),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// Whether max pooling's autograd saves window positions (uint8, window_offsets.h) instead of
// the input and torch's int64 indices: on the CPU's own kernels, where a window spans
// at most 256 positions. Adaptive windows are counted from concrete sizes; under symbolic ones
// the indices are saved.
bool saves_positions(const at::Tensor& input, bool regular, const RegularWindow& w,
                     const SymInts& output_size) {
  // Under CUDA emulation the CPU runs the CUDA kernels, which save indices as on the GPU.
  if (!input.is_cpu() || cuda_emulation()) return false;
  int64_t positions = 1;
  for (size_t d = 0; d < (regular ? w.kernel.size() : output_size.size()); ++d) {
    if (regular) {
      positions *= w.kernel[d];
      continue;
    }
    const auto length = input.sym_size(2 + static_cast<int64_t>(d)).maybe_as_int();
    const auto out = output_size[d].maybe_as_int();
    if (!length.has_value() || !out.has_value() || *out == 0) return false;
    positions *= *length % *out == 0 ? *length / *out : *length / *out + 2;
  }
  return positions <= kMaxWindowPositions;
}

// torch's flat in-plane indices of the elements that saved positions point at (the double
// backward reads its gradient there): the inverse of window_offsets.h's numbering, in ATen ops.
at::Tensor indices_from_positions(const at::Tensor& positions, const SymInts& input_size,
                                  bool regular, const RegularWindow& w) {
  const int64_t dims = positions.dim() - 2;
  const auto longs = positions.options().dtype(at::kLong);
  auto rest = positions.to(at::kLong);
  std::vector<at::Tensor> coordinate(dims);
  for (int64_t d = dims - 1; d >= 0; --d) {
    const auto out = positions.sym_size(2 + d);
    const auto o = at::arange(c10::Scalar(out), longs);
    at::Tensor origin;
    int64_t extent, step;
    if (regular) {
      extent = w.kernel[d];
      step = w.dilation[d];
      origin = o.mul(w.stride[d]).sub(c10::Scalar(w.padding[d]));
    } else {
      const int64_t length = input_size[2 + d].guard_int(__FILE__, __LINE__);
      const int64_t count = out.guard_int(__FILE__, __LINE__);
      extent = length % count == 0 ? length / count : length / count + 2;
      step = 1;
      origin = o.mul(length).div(count, "floor");
    }
    std::vector<int64_t> shape(dims + 2, 1);
    shape[2 + d] = -1;
    coordinate[d] = origin.view(shape).add(rest.remainder(extent).mul(step));
    rest = rest.div(extent, "floor");
  }
  auto index = coordinate[0];
  for (int64_t d = 1; d < dims; ++d) {
    index = index.mul(c10::Scalar(input_size[2 + d])).add(coordinate[d]);
  }
  return index.expand_symint(positions.sym_sizes()).contiguous();
}

// The input gradient of max pooling from saved positions; differentiable in grad_output.
class MaxPositionsBackwardFunction
    : public torch::autograd::Function<MaxPositionsBackwardFunction> {
 public:
  // `anchor` (graph_anchor()) ties the result to the forward input, as torch's backward, which
  // takes the input itself: differentiating it again with respect to the input gives zeros.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad_output,
                            const at::Tensor& positions, const at::Tensor& anchor,
                            const SymInts& input_size, bool channels_last, bool regular,
                            const RegularWindow& w) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({positions, anchor});
    ctx->saved_data["input_size"] = input_size;
    ctx->saved_data["regular"] = regular;
    if (regular) save_window(ctx, w);
    return regular ? ops::max_pool_positions_backward(grad_output, positions, input_size,
                                                      channels_last, w.kernel, w.stride, w.padding,
                                                      w.dilation, w.ceil_mode)
                   : ops::adaptive_max_pool_positions_backward(grad_output, positions, input_size,
                                                               channels_last);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& positions = saved[0];
    const auto& anchor = saved[1];
    const auto input_size = ctx->saved_data["input_size"].toSymIntVector();
    const bool regular = ctx->saved_data["regular"].toBool();
    const auto w = regular ? load_window(ctx) : RegularWindow{};
    const auto indices = indices_from_positions(positions, input_size, regular, w);
    variable_list result{at::Tensor(), at::Tensor(),
                         anchor.defined() ? at::zeros_like(anchor) : at::Tensor()};
    if (!regular) {
      result[0] = gather_at_indices(grads[0], indices);
    } else {
      // An empty window's gradient went nowhere and reads nothing back (its position is
      // meaningless, hence the clamp).
      c10::SymInt plane = 1;
      for (size_t d = 2; d < input_size.size(); ++d) plane = plane * input_size[d];
      const auto inside = at::clamp(indices, at::Scalar(0), at::Scalar(plane - 1));
      result[0] = at::where(nonempty_windows(grads[0], w), gather_at_indices(grads[0], inside),
                            at::zeros({}, grads[0].options()));
    }
    result.resize(8);
    return result;
  }
};

// Max pooling for callers that want no indices (return_indices=False): saves positions where
// it can (saves_positions), else the input and torch's indices.
class MaxPoolValuesFunction : public torch::autograd::Function<MaxPoolValuesFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& anchor,
                            bool positions, bool regular, const RegularWindow& w,
                            const SymInts& output_size) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->saved_data["regular"] = regular;
    ctx->saved_data["positions"] = positions;
    if (regular) save_window(ctx, w);
    at::Tensor output, record;
    if (positions) {
      std::tie(output, record) = regular
                                     ? ops::max_pool_positions(input, w.kernel, w.stride, w.padding,
                                                               w.dilation, w.ceil_mode)
                                     : ops::adaptive_max_pool_positions(input, output_size);
      ctx->save_for_backward({record, anchor});
      ctx->saved_data["input_size"] = input.sym_sizes().vec();
      ctx->saved_data["channels_last"] =
          input.suggest_memory_format() != at::MemoryFormat::Contiguous;
    } else {
      std::tie(output, record) =
          regular ? ops::max_pool(input, w.kernel, w.stride, w.padding, w.dilation, w.ceil_mode)
                  : ops::adaptive_max_pool(input, output_size);
      ctx->save_for_backward({input, record});
    }
    return output;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const bool regular = ctx->saved_data["regular"].toBool();
    const auto w = regular ? load_window(ctx) : RegularWindow{};
    at::Tensor grad_input;
    if (ctx->saved_data["positions"].toBool()) {
      grad_input = MaxPositionsBackwardFunction::apply(
          grads[0], saved[0], saved[1], ctx->saved_data["input_size"].toSymIntVector(),
          ctx->saved_data["channels_last"].toBool(), regular, w);
    } else {
      grad_input = MaxBackwardFunction::apply(grads[0], saved[0], saved[1], regular, w);
    }
    return {grad_input, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// A one-element copy of the input's first element: a graph edge to the input that keeps 4
// bytes alive instead of the input (as_strided's backward records only the geometry).
at::Tensor graph_anchor(const at::Tensor& input) {
  const bool empty = TORCH_GUARD_SIZE_OBLIVIOUS(input.sym_numel().sym_eq(0));
  return empty ? input : input.as_strided({1}, {1}).clone();
}

// No gradient needed: the maximum alone, no indices computed or stored.
bool needs_grad(const at::Tensor& input) {
  return at::GradMode::is_enabled() && input.requires_grad();
}

class MaxPoolFunction : public torch::autograd::Function<MaxPoolFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& input,
                               const RegularWindow& w) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [output, indices] =
        ops::max_pool(input, w.kernel, w.stride, w.padding, w.dilation, w.ceil_mode);
    ctx->save_for_backward({input, indices});
    ctx->mark_non_differentiable({indices});
    save_window(ctx, w);
    return {output, indices};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    return {MaxBackwardFunction::apply(grads[0], saved[0], saved[1], true, load_window(ctx)),
            at::Tensor()};
  }
};

class AdaptiveMaxPoolFunction : public torch::autograd::Function<AdaptiveMaxPoolFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& input,
                               const SymInts& output_size) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [output, indices] = ops::adaptive_max_pool(input, output_size);
    ctx->save_for_backward({input, indices});
    ctx->mark_non_differentiable({indices});
    return {output, indices};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    return {MaxBackwardFunction::apply(grads[0], saved[0], saved[1], false, RegularWindow{}),
            at::Tensor()};
  }
};

struct AverageWindow {
  RegularWindow window;
  bool count_include_pad;
  std::optional<int64_t> divisor_override;
};

at::Tensor average(const at::Tensor& input, const AverageWindow& a) {
  const auto& w = a.window;
  return ops::avg_pool(input, w.kernel, w.stride, w.padding, w.ceil_mode, a.count_include_pad,
                       a.divisor_override);
}

void save_average(AutogradContext* ctx, const AverageWindow& a) {
  save_window(ctx, a.window);
  ctx->saved_data["count_include_pad"] = a.count_include_pad;
  ctx->saved_data["divisor_override"] = a.divisor_override;
}

AverageWindow load_average(AutogradContext* ctx) {
  const auto& divisor = ctx->saved_data["divisor_override"];
  return {load_window(ctx), ctx->saved_data["count_include_pad"].toBool(),
          divisor.isNone() ? std::nullopt : std::optional<int64_t>(divisor.toInt())};
}

class AvgPoolBackwardFunction : public torch::autograd::Function<AvgPoolBackwardFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad_output,
                            const at::Tensor& input, const AverageWindow& a) {
    at::AutoDispatchBelowADInplaceOrView guard;
    save_average(ctx, a);
    const auto& w = a.window;
    return ops::avg_pool_backward(grad_output, input, w.kernel, w.stride, w.padding, w.ceil_mode,
                                  a.count_include_pad, a.divisor_override);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {average(grads[0], load_average(ctx)), at::Tensor(), at::Tensor()};
  }
};

class AvgPoolFunction : public torch::autograd::Function<AvgPoolFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const AverageWindow& a) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({input});
    save_average(ctx, a);
    return average(input, a);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto input = ctx->get_saved_variables()[0];
    return {AvgPoolBackwardFunction::apply(grads[0], input, load_average(ctx)), at::Tensor()};
  }
};

class AdaptiveAvgPoolBackwardFunction
    : public torch::autograd::Function<AdaptiveAvgPoolBackwardFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad_output,
                            const at::Tensor& input) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->saved_data["output_size"] = grad_output.sym_sizes().slice(2).vec();
    return ops::adaptive_avg_pool_backward(grad_output, input);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {ops::adaptive_avg_pool(grads[0], ctx->saved_data["output_size"].toSymIntVector()),
            at::Tensor()};
  }
};

class AdaptiveAvgPoolFunction : public torch::autograd::Function<AdaptiveAvgPoolFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input,
                            const SymInts& output_size) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({input});
    return ops::adaptive_avg_pool(input, output_size);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto input = ctx->get_saved_variables()[0];
    return {AdaptiveAvgPoolBackwardFunction::apply(grads[0], input), at::Tensor()};
  }
};

class MaxUnpoolFunction : public torch::autograd::Function<MaxUnpoolFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input,
                            const at::Tensor& indices, const SymInts& output_size) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({indices});
    return ops::max_unpool(input, indices, output_size);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto indices = ctx->get_saved_variables()[0];
    return {gather_at_indices(grads[0], indices), at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> pair(const variable_list& v) { return {v[0], v[1]}; }

}  // namespace

TORCH_LIBRARY_IMPL(convpool, Autograd, m) {
  using at::IntArrayRef;
  using at::Tensor;
  using c10::SymIntArrayRef;
  m.impl(
      "max_pool", +[](const Tensor& input, IntArrayRef kernel, IntArrayRef stride,
                      SymIntArrayRef padding, IntArrayRef dilation, bool ceil_mode) {
        return pair(MaxPoolFunction::apply(
            input,
            RegularWindow{kernel.vec(), stride.vec(), dilation.vec(), padding.vec(), ceil_mode}));
      });
  m.impl(
      "max_pool_backward",
      +[](const Tensor& grad_output, const Tensor& input, const Tensor& indices, IntArrayRef kernel,
          IntArrayRef stride, SymIntArrayRef padding, IntArrayRef dilation, bool ceil_mode) {
        return MaxBackwardFunction::apply(
            grad_output, input, indices, true,
            RegularWindow{kernel.vec(), stride.vec(), dilation.vec(), padding.vec(), ceil_mode});
      });
  m.impl(
      "adaptive_max_pool", +[](const Tensor& input, SymIntArrayRef output_size) {
        return pair(AdaptiveMaxPoolFunction::apply(input, output_size.vec()));
      });
  m.impl(
      "adaptive_max_pool_backward",
      +[](const Tensor& grad_output, const Tensor& input, const Tensor& indices) {
        return MaxBackwardFunction::apply(grad_output, input, indices, false, RegularWindow{});
      });
  m.impl(
      "max_pool_values", +[](const Tensor& input, IntArrayRef kernel, IntArrayRef stride,
                             SymIntArrayRef padding, IntArrayRef dilation, bool ceil_mode) {
        if (!needs_grad(input)) {
          at::AutoDispatchBelowADInplaceOrView guard;
          return ops::max_pool_values(input, kernel, stride, padding, dilation, ceil_mode);
        }
        const RegularWindow w{kernel.vec(), stride.vec(), dilation.vec(), padding.vec(), ceil_mode};
        const bool positions = saves_positions(input, true, w, SymInts{});
        return MaxPoolValuesFunction::apply(input, positions ? graph_anchor(input) : input,
                                            positions, true, w, SymInts{});
      });
  m.impl(
      "adaptive_max_pool_values", +[](const Tensor& input, SymIntArrayRef output_size) {
        if (!needs_grad(input)) {
          at::AutoDispatchBelowADInplaceOrView guard;
          return ops::adaptive_max_pool_values(input, output_size);
        }
        const auto sizes = output_size.vec();
        const bool positions = saves_positions(input, false, RegularWindow{}, sizes);
        return MaxPoolValuesFunction::apply(input, positions ? graph_anchor(input) : input,
                                            positions, false, RegularWindow{}, sizes);
      });
  m.impl(
      "max_pool_positions_backward",
      +[](const Tensor& grad_output, const Tensor& positions, SymIntArrayRef input_size,
          bool channels_last, IntArrayRef kernel, IntArrayRef stride, SymIntArrayRef padding,
          IntArrayRef dilation, bool ceil_mode) {
        return MaxPositionsBackwardFunction::apply(
            grad_output, positions, grad_output, input_size.vec(), channels_last, true,
            RegularWindow{kernel.vec(), stride.vec(), dilation.vec(), padding.vec(), ceil_mode});
      });
  m.impl(
      "adaptive_max_pool_positions_backward",
      +[](const Tensor& grad_output, const Tensor& positions, SymIntArrayRef input_size,
          bool channels_last) {
        // Called directly there is no forward input to tie to: grad_output stands in (the
        // zeros it gets back add nothing).
        return MaxPositionsBackwardFunction::apply(grad_output, positions, grad_output,
                                                   input_size.vec(), channels_last, false,
                                                   RegularWindow{});
      });
  m.impl(
      "avg_pool",
      +[](const Tensor& input, IntArrayRef kernel, IntArrayRef stride, SymIntArrayRef padding,
          bool ceil_mode, bool count_include_pad, std::optional<int64_t> divisor_override) {
        return AvgPoolFunction::apply(
            input, AverageWindow{RegularWindow{kernel.vec(), stride.vec(), Ints(kernel.size(), 1),
                                               padding.vec(), ceil_mode},
                                 count_include_pad, divisor_override});
      });
  m.impl(
      "avg_pool_backward", +[](const Tensor& grad_output, const Tensor& input, IntArrayRef kernel,
                               IntArrayRef stride, SymIntArrayRef padding, bool ceil_mode,
                               bool count_include_pad, std::optional<int64_t> divisor_override) {
        return AvgPoolBackwardFunction::apply(
            grad_output, input,
            AverageWindow{RegularWindow{kernel.vec(), stride.vec(), Ints(kernel.size(), 1),
                                        padding.vec(), ceil_mode},
                          count_include_pad, divisor_override});
      });
  m.impl(
      "adaptive_avg_pool", +[](const Tensor& input, SymIntArrayRef output_size) {
        return AdaptiveAvgPoolFunction::apply(input, output_size.vec());
      });
  m.impl(
      "adaptive_avg_pool_backward", +[](const Tensor& grad_output, const Tensor& input) {
        return AdaptiveAvgPoolBackwardFunction::apply(grad_output, input);
      });
  m.impl(
      "max_unpool", +[](const Tensor& input, const Tensor& indices, SymIntArrayRef output_size) {
        return MaxUnpoolFunction::apply(input, indices, output_size.vec());
      });
}

}  // namespace convpool
