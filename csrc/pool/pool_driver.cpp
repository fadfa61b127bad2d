#include "pool_driver.h"

#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>

#include "../common/pool_shape.h"

namespace convpool {
namespace {

// Outputs keep the input's memory format, as torch's pooling does (allocated the way torch
// allocates them, so strides match even where formats coincide, e.g. a 1x1 output); kernels
// work on contiguous buffers.
at::Tensor in_format_of(const at::Tensor& result, const at::Tensor& like) {
  const auto format = like.suggest_memory_format();
  if (format == at::MemoryFormat::Contiguous) return result;
  return at::empty(result.sizes(), result.options().memory_format(format)).copy_(result);
}

std::tuple<at::Tensor, at::Tensor> run_max(const at::Tensor& input, const PoolGeometry& g,
                                           const PoolBackend& backend) {
  const c10::DeviceGuard guard(input.device());
  const auto sizes = pool_output_sizes(input, g);
  auto output = at::empty(sizes, input.options());
  auto indices = at::empty(sizes, input.options().dtype(at::kLong));
  if (output.numel() > 0) backend.max_forward(input.contiguous(), output, indices, g);
  return {in_format_of(output, input), in_format_of(indices, input)};
}

at::Tensor run_average(const at::Tensor& input, const PoolGeometry& g, const PoolBackend& backend) {
  const c10::DeviceGuard guard(input.device());
  auto output = at::empty(pool_output_sizes(input, g), input.options());
  if (output.numel() > 0) backend.average_forward(input.contiguous(), output, g);
  return in_format_of(output, input);
}

at::Tensor run_max_backward(const char* op, const at::Tensor& grad_output, const at::Tensor& input,
                            const at::Tensor& indices, const PoolGeometry& g,
                            const PoolBackend& backend) {
  check_pool_grad(op, input, g, grad_output, &indices);
  const c10::DeviceGuard guard(input.device());
  auto grad_input = at::empty(input.sizes(), input.options());
  if (grad_input.numel() > 0) {
    backend.max_backward(grad_output.contiguous(), indices.contiguous(), grad_input, g);
  }
  return in_format_of(grad_input, input);
}

at::Tensor run_average_backward(const char* op, const at::Tensor& grad_output,
                                const at::Tensor& input, const PoolGeometry& g,
                                const PoolBackend& backend) {
  check_pool_grad(op, input, g, grad_output, nullptr);
  const c10::DeviceGuard guard(input.device());
  auto grad_input = at::empty(input.sizes(), input.options());
  if (grad_input.numel() > 0) backend.average_backward(grad_output.contiguous(), grad_input, g);
  return in_format_of(grad_input, input);
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

std::tuple<at::Tensor, at::Tensor> max_pool(const at::Tensor& input, at::IntArrayRef kernel,
                                            at::IntArrayRef stride, at::IntArrayRef padding,
                                            at::IntArrayRef dilation, bool ceil_mode,
                                            const PoolBackend& backend) {
  return run_max(input,
                 pool_geometry("convpool::max_pool", input, kernel, stride, padding, dilation,
                               ceil_mode),
                 backend);
}

at::Tensor max_pool_backward(const at::Tensor& grad_output, const at::Tensor& input,
                             const at::Tensor& indices, at::IntArrayRef kernel,
                             at::IntArrayRef stride, at::IntArrayRef padding,
                             at::IntArrayRef dilation, bool ceil_mode, const PoolBackend& backend) {
  const char* op = "convpool::max_pool_backward";
  return run_max_backward(op, grad_output, input, indices,
                          pool_geometry(op, input, kernel, stride, padding, dilation, ceil_mode),
                          backend);
}

at::Tensor avg_pool(const at::Tensor& input, at::IntArrayRef kernel, at::IntArrayRef stride,
                    at::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                    c10::optional<int64_t> divisor_override, const PoolBackend& backend) {
  const char* op = "convpool::avg_pool";
  const std::vector<int64_t> no_dilation(kernel.size(), 1);
  const auto g = pool_geometry(op, input, kernel, stride, padding, no_dilation, ceil_mode);
  return run_average(input, with_divisor(g, op, count_include_pad, divisor_override), backend);
}

at::Tensor avg_pool_backward(const at::Tensor& grad_output, const at::Tensor& input,
                             at::IntArrayRef kernel, at::IntArrayRef stride,
                             at::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                             c10::optional<int64_t> divisor_override, const PoolBackend& backend) {
  const char* op = "convpool::avg_pool_backward";
  const std::vector<int64_t> no_dilation(kernel.size(), 1);
  const auto g = pool_geometry(op, input, kernel, stride, padding, no_dilation, ceil_mode);
  return run_average_backward(op, grad_output, input,
                              with_divisor(g, op, count_include_pad, divisor_override), backend);
}

std::tuple<at::Tensor, at::Tensor> adaptive_max_pool(const at::Tensor& input,
                                                     at::IntArrayRef output_size,
                                                     const PoolBackend& backend) {
  return run_max(input, adaptive_pool_geometry("convpool::adaptive_max_pool", input, output_size),
                 backend);
}

at::Tensor adaptive_max_pool_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                      const at::Tensor& indices, const PoolBackend& backend) {
  const char* op = "convpool::adaptive_max_pool_backward";
  TORCH_CHECK(grad_output.dim() == input.dim(), op, ": grad_output and input ranks differ");
  return run_max_backward(op, grad_output, input, indices,
                          adaptive_pool_geometry(op, input, grad_output.sizes().slice(2)),
                          backend);
}

at::Tensor adaptive_avg_pool(const at::Tensor& input, at::IntArrayRef output_size,
                             const PoolBackend& backend) {
  return run_average(
      input, adaptive_pool_geometry("convpool::adaptive_avg_pool", input, output_size), backend);
}

at::Tensor adaptive_avg_pool_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                      const PoolBackend& backend) {
  const char* op = "convpool::adaptive_avg_pool_backward";
  TORCH_CHECK(grad_output.dim() == input.dim(), op, ": grad_output and input ranks differ");
  return run_average_backward(op, grad_output, input,
                              adaptive_pool_geometry(op, input, grad_output.sizes().slice(2)),
                              backend);
}

at::Tensor max_unpool(const at::Tensor& input, const at::Tensor& indices,
                      at::IntArrayRef output_size, const PoolBackend& backend) {
  const char* op = "convpool::max_unpool";
  const int64_t dims = static_cast<int64_t>(output_size.size());
  TORCH_CHECK(dims >= 1 && dims <= kSpatialDims && input.dim() == dims + 2, op,
              ": expected a ", dims + 2, "-d input for ", dims, " output sizes, but got input of size ",
              input.sizes());
  TORCH_CHECK(indices.sizes() == input.sizes(), op,
              ": expected shape of indices to be same as that of the input tensor (", input.sizes(),
              ") but got indices tensor with shape: ", indices.sizes());
  TORCH_CHECK(indices.scalar_type() == at::kLong, op, ": expected int64 indices, but got ",
              indices.scalar_type());
  TORCH_CHECK(indices.device() == input.device(), op, ": indices and input must be on the same device");
  TORCH_CHECK(at::isFloatingType(input.scalar_type()), op,
              ": expected a floating point input, but got ", input.scalar_type());
  std::vector<int64_t> sizes{input.size(0), input.size(1)};
  int64_t plane = 1;
  for (const auto size : output_size) {
    TORCH_CHECK(size > 0, op, ": output_size must be positive, but got ", output_size);
    sizes.push_back(size);
    plane *= size;
  }
  const c10::DeviceGuard guard(input.device());
  auto output = at::zeros(sizes, input.options());
  if (indices.numel() > 0) {
    // One reduction up front keeps every launcher free of bounds checks (and a CUDA kernel
    // cannot raise).
    const auto [low, high] = at::aminmax(indices);
    const int64_t lo = low.item<int64_t>(), hi = high.item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < plane, op, ": found an invalid max index: ", lo < 0 ? lo : hi,
                " (output volumes are of size ", at::IntArrayRef(sizes).slice(2), ")");
    backend.unpool(input.contiguous(), indices.contiguous(), output);
  }
  return in_format_of(output, input);
}

}  // namespace convpool
