#include "pool_driver.h"

#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>

#include <vector>

#include "../common/output_memory.h"
#include "../common/pool_shape.h"
#include "../conv/layout_copy.h"
#include "window_offsets.h"

namespace convpool {
namespace {

// Outputs keep the input's memory format, as torch's pooling does (allocated the way torch
// allocates them, so strides match even where formats coincide, e.g. a 1x1 output).
struct Layout {
  at::MemoryFormat format;
  bool in_place;  // the backend pools this format as it is; else it sees contiguous NCHW copies
};

Layout layout_of(const at::Tensor& input, const PoolBackend& backend) {
  const auto format = input.suggest_memory_format();
  const bool channels_last = format != at::MemoryFormat::Contiguous;
  return {format,
          channels_last && backend.takes_channels_last != nullptr && backend.takes_channels_last()};
}

at::Tensor empty_like_format(at::IntArrayRef sizes, const at::TensorOptions& options,
                             const Layout& layout) {
  return empty_output(
      sizes, options.memory_format(layout.in_place ? layout.format : at::MemoryFormat::Contiguous));
}

// The tensor a launcher reads: in the layout's format when pooled in place, else NCHW.
at::Tensor for_kernel(const at::Tensor& t, const Layout& layout) {
  return cpu::contiguous_as(t, layout.in_place ? layout.format : at::MemoryFormat::Contiguous);
}

at::Tensor in_format(const at::Tensor& result, const Layout& layout) {
  if (layout.in_place || layout.format == at::MemoryFormat::Contiguous) return result;
  const auto formatted =
      empty_output(result.sizes(), result.options().memory_format(layout.format));
  cpu::copy_layout(formatted, result);
  return formatted;
}

PoolGeometry with_layout(PoolGeometry g, const Layout& layout) {
  g.channels_last = layout.in_place;
  return g;
}

std::tuple<at::Tensor, at::Tensor> run_max(const at::Tensor& input, const PoolGeometry& g,
                                           const PoolBackend& backend) {
  const c10::DeviceGuard guard(input.device());
  const auto layout = layout_of(input, backend);
  const auto sizes = pool_output_sizes(input, g);
  auto output = empty_like_format(sizes, input.options(), layout);
  auto indices = empty_like_format(sizes, input.options().dtype(at::kLong), layout);
  if (output.numel() > 0) {
    backend.max_forward(for_kernel(input, layout), output, indices, with_layout(g, layout));
  }
  return {in_format(output, layout), in_format(indices, layout)};
}

at::Tensor run_max_values(const at::Tensor& input, const PoolGeometry& g,
                          const PoolBackend& backend) {
  const c10::DeviceGuard guard(input.device());
  const auto layout = layout_of(input, backend);
  auto output = empty_like_format(pool_output_sizes(input, g), input.options(), layout);
  if (output.numel() == 0) return in_format(output, layout);
  if (backend.max_forward_values != nullptr) {
    backend.max_forward_values(for_kernel(input, layout), output, with_layout(g, layout));
  } else {
    const auto indices = at::empty_like(output, output.options().dtype(at::kLong));
    backend.max_forward(for_kernel(input, layout), output, indices, with_layout(g, layout));
  }
  return in_format(output, layout);
}

void check_positions_fit(const char* op, const PoolGeometry& g) {
  TORCH_CHECK(window_positions(g) <= kMaxWindowPositions, op, ": a window spans ",
              window_positions(g), " positions, but positions are stored as uint8 (at most ",
              kMaxWindowPositions, ")");
}

std::tuple<at::Tensor, at::Tensor> run_max_positions(const char* op, const at::Tensor& input,
                                                     const PoolGeometry& g,
                                                     const PoolBackend& backend) {
  check_positions_fit(op, g);
  TORCH_CHECK(backend.max_forward_positions != nullptr, op,
              ": window positions are computed on the CPU only (CUDA and its emulation save "
              "indices)");
  const c10::DeviceGuard guard(input.device());
  const auto layout = layout_of(input, backend);
  const auto sizes = pool_output_sizes(input, g);
  auto output = empty_like_format(sizes, input.options(), layout);
  auto positions = empty_like_format(sizes, input.options().dtype(at::kByte), layout);
  if (output.numel() > 0) {
    backend.max_forward_positions(for_kernel(input, layout), output, positions,
                                  with_layout(g, layout));
  }
  return {in_format(output, layout), in_format(positions, layout)};
}

// `input` is a meta tensor of the forward input's sizes (input_shape()).
at::Tensor run_max_positions_backward(const char* op, const at::Tensor& grad_output,
                                      const at::Tensor& positions, const at::Tensor& input,
                                      bool channels_last, const PoolGeometry& g,
                                      const PoolBackend& backend) {
  const auto expected = pool_output_sizes(input, g);
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef(expected), op,
              ": expected grad_output of size ", at::IntArrayRef(expected), ", but got ",
              grad_output.sizes());
  TORCH_CHECK(positions.sizes() == grad_output.sizes(), op, ": positions (", positions.sizes(),
              ") must have grad_output's size (", grad_output.sizes(), ")");
  TORCH_CHECK(positions.scalar_type() == at::kByte, op, ": expected uint8 positions, but got ",
              positions.scalar_type());
  TORCH_CHECK(positions.device() == grad_output.device(), op,
              ": positions and grad_output must be on the same device");
  TORCH_CHECK(!channels_last || input.dim() >= 4, op,
              ": channels_last needs a 2-d or 3-d pooling, but the input has ", input.dim(),
              " dims");
  check_positions_fit(op, g);
  TORCH_CHECK(backend.max_backward_positions != nullptr, op,
              ": window positions are computed on the CPU only (CUDA and its emulation save "
              "indices)");
  const c10::DeviceGuard guard(grad_output.device());
  const auto format = !channels_last     ? at::MemoryFormat::Contiguous
                      : input.dim() == 5 ? at::MemoryFormat::ChannelsLast3d
                                         : at::MemoryFormat::ChannelsLast;
  const Layout layout{format, channels_last && backend.takes_channels_last != nullptr &&
                                  backend.takes_channels_last()};
  auto grad_input = empty_like_format(input.sizes(), grad_output.options(), layout);
  if (grad_input.numel() > 0) {
    backend.max_backward_positions(for_kernel(grad_output, layout), for_kernel(positions, layout),
                                   grad_input, with_layout(g, layout));
  }
  return in_format(grad_input, layout);
}

at::Tensor run_average(const at::Tensor& input, const PoolGeometry& g, const PoolBackend& backend) {
  const c10::DeviceGuard guard(input.device());
  const auto layout = layout_of(input, backend);
  auto output = empty_like_format(pool_output_sizes(input, g), input.options(), layout);
  if (output.numel() > 0) {
    backend.average_forward(for_kernel(input, layout), output, with_layout(g, layout));
  }
  return in_format(output, layout);
}

// One rule for the indices a max-pool backward gets, on every device, checked once here so that
// no launcher bounds-checks (a CUDA kernel cannot raise; a check per element in a CPU loop costs
// and throws from inside a parallel region): every index of a non-empty window lies inside the
// input plane; an empty window's index is ignored, as its gradient goes nowhere (torch's forward
// reports one outside the plane there). One reduction in the usual case.
void check_max_indices(const char* op, const at::Tensor& indices, const PoolGeometry& g) {
  if (indices.numel() == 0) return;
  const int64_t plane = g.input_numel();
  const auto [low, high] = at::aminmax(indices);
  if (low.item<int64_t>() >= 0 && high.item<int64_t>() < plane) return;
  // Which index is at fault is worked out on the host: a rare path, kept off the GPU.
  const auto host = indices.cpu();
  auto bad = host.lt(0).logical_or_(host.ge(plane));
  const int64_t dims = indices.dim() - 2;
  if (!g.adaptive) {
    // Empty windows along each spatial dim, broadcast over [N, C, spatial...].
    for (int64_t d = kSpatialDims - dims; d < kSpatialDims; ++d) {
      std::vector<uint8_t> empty(g.output[d]);
      for (int64_t o = 0; o < g.output[d]; ++o) {
        empty[o] = window_is_empty(g, static_cast<int>(d), o);
      }
      std::vector<int64_t> shape(indices.dim(), 1);
      shape[2 + d - (kSpatialDims - dims)] = g.output[d];
      const auto along = at::tensor(at::ArrayRef<uint8_t>(empty)).to(at::kBool).view(shape);
      bad.logical_and_(along.logical_not());
    }
  }
  if (!bad.any().item<bool>()) return;
  TORCH_CHECK(
      false, op, ": found an invalid max index: ", host.masked_select(bad)[0].item<int64_t>(),
      " (input planes are of size ", at::IntArrayRef(g.input + kSpatialDims - dims, dims), ")");
}

at::Tensor run_max_backward(const char* op, const at::Tensor& grad_output, const at::Tensor& input,
                            const at::Tensor& indices, const PoolGeometry& g,
                            const PoolBackend& backend) {
  check_pool_grad(op, input, g, grad_output, &indices);
  check_max_indices(op, indices, g);
  const c10::DeviceGuard guard(input.device());
  const auto layout = layout_of(input, backend);
  auto grad_input = empty_like_format(input.sizes(), input.options(), layout);
  if (grad_input.numel() > 0) {
    backend.max_backward(for_kernel(grad_output, layout), for_kernel(indices, layout), grad_input,
                         with_layout(g, layout));
  }
  return in_format(grad_input, layout);
}

at::Tensor run_average_backward(const char* op, const at::Tensor& grad_output,
                                const at::Tensor& input, const PoolGeometry& g,
                                const PoolBackend& backend) {
  check_pool_grad(op, input, g, grad_output, nullptr);
  const c10::DeviceGuard guard(input.device());
  const auto layout = layout_of(input, backend);
  auto grad_input = empty_like_format(input.sizes(), input.options(), layout);
  if (grad_input.numel() > 0) {
    backend.average_backward(for_kernel(grad_output, layout), grad_input, with_layout(g, layout));
  }
  return in_format(grad_input, layout);
}

// torch's adaptive backward raises for a zero output size (its forward answers with an empty
// tensor); so does ours, for the same inputs.
void check_adaptive_grad_nonempty(const char* op, const at::Tensor& grad_output) {
  for (int64_t d = 1; d < grad_output.dim(); ++d) {
    TORCH_CHECK(grad_output.size(d) > 0, op,
                ": Expected grad_output to have non-zero size for non-batch dimensions, but "
                "grad_output has sizes ",
                grad_output.sizes(), " with dimension ", d, " being empty");
  }
}

PoolGeometry with_divisor(PoolGeometry g, const char* op, bool count_include_pad,
                          c10::optional<int64_t> divisor_override) {
  TORCH_CHECK(!divisor_override.has_value() || *divisor_override != 0, op,
              ": divisor_override must not be zero");
  g.count_include_pad = count_include_pad;
  g.divisor_override = divisor_override.value_or(0);
  return g;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> compute_max_pool(const at::Tensor& input, at::IntArrayRef kernel,
                                                    at::IntArrayRef stride, at::IntArrayRef padding,
                                                    at::IntArrayRef dilation, bool ceil_mode,
                                                    const PoolBackend& backend) {
  return run_max(input,
                 pool_geometry("convpool::max_pool", input, kernel, stride, padding, dilation,
                               ceil_mode, PoolTypes::kFloatingOrIntegral),
                 backend);
}

at::Tensor compute_max_pool_values(const at::Tensor& input, at::IntArrayRef kernel,
                                   at::IntArrayRef stride, at::IntArrayRef padding,
                                   at::IntArrayRef dilation, bool ceil_mode,
                                   const PoolBackend& backend) {
  return run_max_values(input,
                        pool_geometry("convpool::max_pool_values", input, kernel, stride, padding,
                                      dilation, ceil_mode, PoolTypes::kFloatingOrIntegral),
                        backend);
}

std::tuple<at::Tensor, at::Tensor> compute_max_pool_positions(
    const at::Tensor& input, at::IntArrayRef kernel, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode, const PoolBackend& backend) {
  const char* op = "convpool::max_pool_positions";
  return run_max_positions(op, input,
                           pool_geometry(op, input, kernel, stride, padding, dilation, ceil_mode,
                                         PoolTypes::kFloatingOrIntegral),
                           backend);
}

at::Tensor compute_max_pool_positions_backward(const at::Tensor& grad_output,
                                               const at::Tensor& positions,
                                               at::IntArrayRef input_size, bool channels_last,
                                               at::IntArrayRef kernel, at::IntArrayRef stride,
                                               at::IntArrayRef padding, at::IntArrayRef dilation,
                                               bool ceil_mode, const PoolBackend& backend) {
  const char* op = "convpool::max_pool_positions_backward";
  const auto input = input_shape(input_size, grad_output);
  return run_max_positions_backward(
      op, grad_output, positions, input, channels_last,
      pool_geometry(op, input, kernel, stride, padding, dilation, ceil_mode), backend);
}

at::Tensor compute_max_pool_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                     const at::Tensor& indices, at::IntArrayRef kernel,
                                     at::IntArrayRef stride, at::IntArrayRef padding,
                                     at::IntArrayRef dilation, bool ceil_mode,
                                     const PoolBackend& backend) {
  const char* op = "convpool::max_pool_backward";
  return run_max_backward(op, grad_output, input, indices,
                          pool_geometry(op, input, kernel, stride, padding, dilation, ceil_mode),
                          backend);
}

at::Tensor compute_avg_pool(const at::Tensor& input, at::IntArrayRef kernel, at::IntArrayRef stride,
                            at::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                            c10::optional<int64_t> divisor_override, const PoolBackend& backend) {
  const char* op = "convpool::avg_pool";
  const std::vector<int64_t> no_dilation(kernel.size(), 1);
  const auto g = pool_geometry(op, input, kernel, stride, padding, no_dilation, ceil_mode,
                               PoolTypes::kFloatingOrInt64);
  return run_average(input, with_divisor(g, op, count_include_pad, divisor_override), backend);
}

at::Tensor compute_avg_pool_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                     at::IntArrayRef kernel, at::IntArrayRef stride,
                                     at::IntArrayRef padding, bool ceil_mode,
                                     bool count_include_pad,
                                     c10::optional<int64_t> divisor_override,
                                     const PoolBackend& backend) {
  const char* op = "convpool::avg_pool_backward";
  const std::vector<int64_t> no_dilation(kernel.size(), 1);
  const auto g = pool_geometry(op, input, kernel, stride, padding, no_dilation, ceil_mode);
  return run_average_backward(op, grad_output, input,
                              with_divisor(g, op, count_include_pad, divisor_override), backend);
}

std::tuple<at::Tensor, at::Tensor> compute_adaptive_max_pool(const at::Tensor& input,
                                                             at::IntArrayRef output_size,
                                                             const PoolBackend& backend) {
  return run_max(input, adaptive_pool_geometry("convpool::adaptive_max_pool", input, output_size),
                 backend);
}

at::Tensor compute_adaptive_max_pool_backward(const at::Tensor& grad_output,
                                              const at::Tensor& input, const at::Tensor& indices,
                                              const PoolBackend& backend) {
  const char* op = "convpool::adaptive_max_pool_backward";
  TORCH_CHECK(grad_output.dim() == input.dim(), op, ": grad_output and input ranks differ");
  check_adaptive_grad_nonempty(op, grad_output);
  return run_max_backward(op, grad_output, input, indices,
                          adaptive_pool_geometry(op, input, grad_output.sizes().slice(2)), backend);
}

at::Tensor compute_adaptive_max_pool_values(const at::Tensor& input, at::IntArrayRef output_size,
                                            const PoolBackend& backend) {
  return run_max_values(
      input, adaptive_pool_geometry("convpool::adaptive_max_pool_values", input, output_size),
      backend);
}

std::tuple<at::Tensor, at::Tensor> compute_adaptive_max_pool_positions(const at::Tensor& input,
                                                                       at::IntArrayRef output_size,
                                                                       const PoolBackend& backend) {
  const char* op = "convpool::adaptive_max_pool_positions";
  return run_max_positions(op, input, adaptive_pool_geometry(op, input, output_size), backend);
}

at::Tensor compute_adaptive_max_pool_positions_backward(const at::Tensor& grad_output,
                                                        const at::Tensor& positions,
                                                        at::IntArrayRef input_size,
                                                        bool channels_last,
                                                        const PoolBackend& backend) {
  const char* op = "convpool::adaptive_max_pool_positions_backward";
  const auto input = input_shape(input_size, grad_output);
  TORCH_CHECK(grad_output.dim() == input.dim(), op, ": grad_output and input ranks differ");
  check_adaptive_grad_nonempty(op, grad_output);
  return run_max_positions_backward(op, grad_output, positions, input, channels_last,
                                    adaptive_pool_geometry(op, input, grad_output.sizes().slice(2)),
                                    backend);
}

at::Tensor compute_adaptive_avg_pool(const at::Tensor& input, at::IntArrayRef output_size,
                                     const PoolBackend& backend) {
  return run_average(
      input, adaptive_pool_geometry("convpool::adaptive_avg_pool", input, output_size), backend);
}

at::Tensor compute_adaptive_avg_pool_backward(const at::Tensor& grad_output,
                                              const at::Tensor& input, const PoolBackend& backend) {
  const char* op = "convpool::adaptive_avg_pool_backward";
  TORCH_CHECK(grad_output.dim() == input.dim(), op, ": grad_output and input ranks differ");
  check_adaptive_grad_nonempty(op, grad_output);
  return run_average_backward(op, grad_output, input,
                              adaptive_pool_geometry(op, input, grad_output.sizes().slice(2)),
                              backend);
}

at::Tensor compute_max_unpool(const at::Tensor& input, const at::Tensor& indices,
                              at::IntArrayRef output_size, const PoolBackend& backend) {
  const char* op = "convpool::max_unpool";
  const int64_t dims = static_cast<int64_t>(output_size.size());
  TORCH_CHECK(dims >= 1 && dims <= kSpatialDims && input.dim() == dims + 2, op, ": expected a ",
              dims + 2, "-d input for ", dims, " output sizes, but got input of size ",
              input.sizes());
  TORCH_CHECK(indices.sizes() == input.sizes(), op,
              ": expected shape of indices to be same as that of the input tensor (", input.sizes(),
              ") but got indices tensor with shape: ", indices.sizes());
  TORCH_CHECK(indices.scalar_type() == at::kLong, op, ": expected int64 indices, but got ",
              indices.scalar_type());
  TORCH_CHECK(indices.device() == input.device(), op,
              ": indices and input must be on the same device");
  TORCH_CHECK_NOT_IMPLEMENTED(at::isFloatingType(input.scalar_type()), op,
                              ": expected a floating point input, but got ", input.scalar_type());
  std::vector<int64_t> sizes{input.size(0), input.size(1)};
  int64_t plane = 1;
  for (const auto size : output_size) {
    // torch returns an empty tensor for a zero size (its default size can be 0), whatever the
    // indices: nothing is written.
    TORCH_CHECK(size >= 0, op, ": output_size must be non-negative, but got ", output_size);
    sizes.push_back(size);
    plane *= size;
  }
  const c10::DeviceGuard guard(input.device());
  auto output = empty_output(sizes, input.options()).zero_();
  if (indices.numel() > 0 && plane > 0) {
    // One reduction up front keeps every launcher free of bounds checks (and a CUDA kernel
    // cannot raise).
    const auto [low, high] = at::aminmax(indices);
    const int64_t lo = low.item<int64_t>(), hi = high.item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < plane, op, ": found an invalid max index: ", lo < 0 ? lo : hi,
                " (output volumes are of size ", at::IntArrayRef(sizes).slice(2), ")");
    backend.unpool(input.contiguous(), indices.contiguous(), output);
  }
  return in_format(output, Layout{input.suggest_memory_format(), false});
}

}  // namespace convpool
