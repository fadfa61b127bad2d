#pragma once
// The device-independent half of the pooling family: argument checks, output allocation and
// memory format; each backend supplies the launchers, which see contiguous [planes, spatial]
// tensors and a PoolGeometry.
#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>
#include <torch/library.h>

#include <tuple>

#include "../common/pool_geometry.h"

namespace convpool {

struct PoolBackend {
  void (*max_forward)(const at::Tensor& input, const at::Tensor& output, const at::Tensor& indices,
                      const PoolGeometry& g);
  void (*average_forward)(const at::Tensor& input, const at::Tensor& output, const PoolGeometry& g);
  void (*max_backward)(const at::Tensor& grad_output, const at::Tensor& indices,
                       const at::Tensor& grad_input, const PoolGeometry& g);
  void (*average_backward)(const at::Tensor& grad_output, const at::Tensor& grad_input,
                           const PoolGeometry& g);
  // output[p, indices[p, j]] = input[p, j] for every plane p (output pre-zeroed, indices checked).
  void (*unpool)(const at::Tensor& input, const at::Tensor& indices, const at::Tensor& output);
  // Whether the pooling launchers take channels_last tensors as they are (g.channels_last) rather
  // than contiguous NCHW copies; nullptr: never.
  bool (*takes_channels_last)();
  // Max pooling that records nothing (no gradient needed), or the window position as uint8
  // (window_offsets.h, what autograd saves), and the backward from those positions. nullptr:
  // values come from max_forward with its indices dropped; the positions ops raise.
  void (*max_forward_values)(const at::Tensor& input, const at::Tensor& output,
                             const PoolGeometry& g) = nullptr;
  void (*max_forward_positions)(const at::Tensor& input, const at::Tensor& output,
                                const at::Tensor& positions, const PoolGeometry& g) = nullptr;
  void (*max_backward_positions)(const at::Tensor& grad_output, const at::Tensor& positions,
                                 const at::Tensor& grad_input, const PoolGeometry& g) = nullptr;
};

std::tuple<at::Tensor, at::Tensor> compute_max_pool(const at::Tensor& input, at::IntArrayRef kernel,
                                                    at::IntArrayRef stride, at::IntArrayRef padding,
                                                    at::IntArrayRef dilation, bool ceil_mode,
                                                    const PoolBackend& backend);
at::Tensor compute_max_pool_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                     const at::Tensor& indices, at::IntArrayRef kernel,
                                     at::IntArrayRef stride, at::IntArrayRef padding,
                                     at::IntArrayRef dilation, bool ceil_mode,
                                     const PoolBackend& backend);
at::Tensor compute_avg_pool(const at::Tensor& input, at::IntArrayRef kernel, at::IntArrayRef stride,
                            at::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                            c10::optional<int64_t> divisor_override, const PoolBackend& backend);
at::Tensor compute_avg_pool_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                     at::IntArrayRef kernel, at::IntArrayRef stride,
                                     at::IntArrayRef padding, bool ceil_mode,
                                     bool count_include_pad,
                                     c10::optional<int64_t> divisor_override,
                                     const PoolBackend& backend);
std::tuple<at::Tensor, at::Tensor> compute_adaptive_max_pool(const at::Tensor& input,
                                                             at::IntArrayRef output_size,
                                                             const PoolBackend& backend);
at::Tensor compute_adaptive_max_pool_backward(const at::Tensor& grad_output,
                                              const at::Tensor& input, const at::Tensor& indices,
                                              const PoolBackend& backend);
at::Tensor compute_adaptive_avg_pool(const at::Tensor& input, at::IntArrayRef output_size,
                                     const PoolBackend& backend);
at::Tensor compute_adaptive_avg_pool_backward(const at::Tensor& grad_output,
                                              const at::Tensor& input, const PoolBackend& backend);
at::Tensor compute_max_unpool(const at::Tensor& input, const at::Tensor& indices,
                              at::IntArrayRef output_size, const PoolBackend& backend);

at::Tensor compute_max_pool_values(const at::Tensor& input, at::IntArrayRef kernel,
                                   at::IntArrayRef stride, at::IntArrayRef padding,
                                   at::IntArrayRef dilation, bool ceil_mode,
                                   const PoolBackend& backend);
std::tuple<at::Tensor, at::Tensor> compute_max_pool_positions(
    const at::Tensor& input, at::IntArrayRef kernel, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode, const PoolBackend& backend);
at::Tensor compute_max_pool_positions_backward(const at::Tensor& grad_output,
                                               const at::Tensor& positions,
                                               at::IntArrayRef input_size, bool channels_last,
                                               at::IntArrayRef kernel, at::IntArrayRef stride,
                                               at::IntArrayRef padding, at::IntArrayRef dilation,
                                               bool ceil_mode, const PoolBackend& backend);
at::Tensor compute_adaptive_max_pool_values(const at::Tensor& input, at::IntArrayRef output_size,
                                            const PoolBackend& backend);
std::tuple<at::Tensor, at::Tensor> compute_adaptive_max_pool_positions(const at::Tensor& input,
                                                                       at::IntArrayRef output_size,
                                                                       const PoolBackend& backend);
at::Tensor compute_adaptive_max_pool_positions_backward(const at::Tensor& grad_output,
                                                        const at::Tensor& positions,
                                                        at::IntArrayRef input_size,
                                                        bool channels_last,
                                                        const PoolBackend& backend);

// The CUDA kernels' backend run on the CPU (pool_emulated.cpp): what the CPU registration
// delegates to while cuda_emulation() is on.
const PoolBackend& emulated_cuda_pool_backend();

// Registers every pooling op for the dispatch key of the enclosing TORCH_LIBRARY_IMPL block,
// computed by the backend that `backend()` returns at each call.
template <const PoolBackend& (*backend)()>
void register_pool_kernels(torch::Library& m) {
  using at::IntArrayRef;
  using at::Tensor;
  m.impl(
      "max_pool", +[](const Tensor& input, IntArrayRef kernel, IntArrayRef stride,
                      IntArrayRef padding, IntArrayRef dilation, bool ceil_mode) {
        return compute_max_pool(input, kernel, stride, padding, dilation, ceil_mode, backend());
      });
  m.impl(
      "max_pool_backward",
      +[](const Tensor& grad_output, const Tensor& input, const Tensor& indices, IntArrayRef kernel,
          IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation, bool ceil_mode) {
        return compute_max_pool_backward(grad_output, input, indices, kernel, stride, padding,
                                         dilation, ceil_mode, backend());
      });
  m.impl(
      "max_pool_values", +[](const Tensor& input, IntArrayRef kernel, IntArrayRef stride,
                             IntArrayRef padding, IntArrayRef dilation, bool ceil_mode) {
        return compute_max_pool_values(input, kernel, stride, padding, dilation, ceil_mode,
                                       backend());
      });
  m.impl(
      "adaptive_max_pool_values", +[](const Tensor& input, IntArrayRef output_size) {
        return compute_adaptive_max_pool_values(input, output_size, backend());
      });
  {
    m.impl(
        "max_pool_positions", +[](const Tensor& input, IntArrayRef kernel, IntArrayRef stride,
                                  IntArrayRef padding, IntArrayRef dilation, bool ceil_mode) {
          return compute_max_pool_positions(input, kernel, stride, padding, dilation, ceil_mode,
                                            backend());
        });
    m.impl(
        "max_pool_positions_backward",
        +[](const Tensor& grad_output, const Tensor& positions, IntArrayRef input_size,
            bool channels_last, IntArrayRef kernel, IntArrayRef stride, IntArrayRef padding,
            IntArrayRef dilation, bool ceil_mode) {
          return compute_max_pool_positions_backward(grad_output, positions, input_size,
                                                     channels_last, kernel, stride, padding,
                                                     dilation, ceil_mode, backend());
        });
    m.impl(
        "adaptive_max_pool_positions", +[](const Tensor& input, IntArrayRef output_size) {
          return compute_adaptive_max_pool_positions(input, output_size, backend());
        });
    m.impl(
        "adaptive_max_pool_positions_backward",
        +[](const Tensor& grad_output, const Tensor& positions, IntArrayRef input_size,
            bool channels_last) {
          return compute_adaptive_max_pool_positions_backward(grad_output, positions, input_size,
                                                              channels_last, backend());
        });
  }
  m.impl(
      "avg_pool",
      +[](const Tensor& input, IntArrayRef kernel, IntArrayRef stride, IntArrayRef padding,
          bool ceil_mode, bool count_include_pad, c10::optional<int64_t> divisor_override) {
        return compute_avg_pool(input, kernel, stride, padding, ceil_mode, count_include_pad,
                                divisor_override, backend());
      });
  m.impl(
      "avg_pool_backward", +[](const Tensor& grad_output, const Tensor& input, IntArrayRef kernel,
                               IntArrayRef stride, IntArrayRef padding, bool ceil_mode,
                               bool count_include_pad, c10::optional<int64_t> divisor_override) {
        return compute_avg_pool_backward(grad_output, input, kernel, stride, padding, ceil_mode,
                                         count_include_pad, divisor_override, backend());
      });
  m.impl(
      "adaptive_max_pool", +[](const Tensor& input, IntArrayRef output_size) {
        return compute_adaptive_max_pool(input, output_size, backend());
      });
  m.impl(
      "adaptive_max_pool_backward",
      +[](const Tensor& grad_output, const Tensor& input, const Tensor& indices) {
        return compute_adaptive_max_pool_backward(grad_output, input, indices, backend());
      });
  m.impl(
      "adaptive_avg_pool", +[](const Tensor& input, IntArrayRef output_size) {
        return compute_adaptive_avg_pool(input, output_size, backend());
      });
  m.impl(
      "adaptive_avg_pool_backward", +[](const Tensor& grad_output, const Tensor& input) {
        return compute_adaptive_avg_pool_backward(grad_output, input, backend());
      });
  m.impl(
      "max_unpool", +[](const Tensor& input, const Tensor& indices, IntArrayRef output_size) {
        return compute_max_unpool(input, indices, output_size, backend());
      });
}

}  // namespace convpool
