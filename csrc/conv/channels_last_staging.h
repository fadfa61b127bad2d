#pragma once
// Computing an NCHW convolution on channels_last copies: where a channels_last kernel is so much
// faster than the NCHW one that two layout copies cost less than the difference (small images,
// whose NCHW planes give per-plane loops too little work).
#include <ATen/ATen.h>

#include <initializer_list>
#include <vector>

#include "../common/conv_geometry.h"
#include "../common/output_memory.h"
#include "layout_copy.h"

namespace convpool {

inline at::MemoryFormat channels_last_format(const at::Tensor& t) {
  return t.dim() == 5 ? at::MemoryFormat::ChannelsLast3d : at::MemoryFormat::ChannelsLast;
}

// A weight as the kernels that read either layout take it: as it lies where it is channels_last
// (a channels_last model's, also under autocast), else contiguous. A weight that is both (one
// input channel, or 1x1) counts as plain.
struct WeightLayout {
  at::Tensor tensor;
  bool channels_last;
};

inline WeightLayout weight_in_own_layout(const at::Tensor& weight) {
  const bool cl = weight.dim() >= 4 && !weight.is_contiguous() &&
                  weight.is_contiguous(channels_last_format(weight));
  return {cl ? weight : weight.contiguous(), cl};
}

// Runs `compute` on channels_last copies of `inputs` into a channels_last result, then copies
// that into `result` (NCHW).
template <typename Compute>
inline void via_channels_last(std::initializer_list<at::Tensor> inputs, const at::Tensor& result,
                              ConvGeometry g, Compute&& compute) {
  const auto format = channels_last_format(result.dim() >= 4 ? result : *inputs.begin());
  std::vector<at::Tensor> converted;
  for (const auto& t : inputs) converted.push_back(cpu::contiguous_as(t, format));
  auto staged = empty_output(result.sizes(), result.options().memory_format(format));
  g.channels_last = true;
  compute(converted, staged, g);
  cpu::copy_layout(result, staged);
}

// Runs `compute(input, result, g)` for Winograd, which gathers whole vectors of channels: on the
// tensors as they are where they are channels_last (or 1-d), else on a channels_last copy of the
// input into a channels_last result copied back (C512 7x7: 18.0 ms native NCHW against 14.4
// through the copies, one thread). `compute` may decline (a value not finite): false, result
// untouched.
template <typename Compute>
inline bool winograd_in_layout(const at::Tensor& input, const at::Tensor& result,
                               const ConvGeometry& g, Compute&& compute) {
  if (g.channels_last || input.dim() < 4) return compute(input, result, g);
  const auto format = channels_last_format(input);
  const auto staged = empty_output(result.sizes(), result.options().memory_format(format));
  ConvGeometry cl = g;
  cl.channels_last = true;
  if (!compute(cpu::contiguous_as(input, format), staged, cl)) return false;
  cpu::copy_layout(result, staged);
  return true;
}

// The [N, spatial..., C] view of an NCHW or channels_last tensor, contiguous.
// The 1-d case has no channels_last memory format: [N, C, L] becomes [N, L, C].
inline at::Tensor channels_last_view(const at::Tensor& t) {
  if (t.dim() < 4) return t.movedim(1, -1).contiguous();
  return cpu::contiguous_as(t, channels_last_format(t));
}

// Runs fill(out) on a contiguous [N, spatial..., C] tensor and leaves the result in `output`.
template <typename Fill>
inline void into_output(const at::Tensor& output, Fill&& fill) {
  if (output.dim() < 4) {
    auto view = output.movedim(1, -1);
    if (view.is_contiguous()) return fill(view);
    auto tmp = at::empty(view.sizes(), view.options());
    fill(tmp);
    view.copy_(tmp);
    return;
  }
  const auto format = channels_last_format(output);
  if (output.is_contiguous(format)) return fill(output);
  const auto tmp = at::empty(output.sizes(), output.options().memory_format(format));
  fill(tmp);
  cpu::copy_layout(output, tmp);
}

}  // namespace convpool
