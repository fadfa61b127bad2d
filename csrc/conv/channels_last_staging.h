#pragma once
// Computing an NCHW convolution on channels_last copies: where a channels_last kernel is so much
// faster than the NCHW one that two layout copies cost less than the difference (small images,
// whose NCHW planes give per-plane loops too little work).
#include <ATen/ATen.h>

#include <initializer_list>
#include <vector>

#include "../common/conv_geometry.h"
#include "../common/huge_pages.h"
#include "layout_copy.h"

namespace convpool {

inline at::MemoryFormat channels_last_format(const at::Tensor& t) {
  return t.dim() == 5 ? at::MemoryFormat::ChannelsLast3d : at::MemoryFormat::ChannelsLast;
}

// Runs `compute` on channels_last copies of `inputs` into a channels_last result, then copies
// that into `result` (NCHW).
template <typename Compute>
inline void via_channels_last(std::initializer_list<at::Tensor> inputs, const at::Tensor& result,
                              ConvGeometry g, Compute&& compute) {
  const auto format = channels_last_format(result.dim() >= 4 ? result : *inputs.begin());
  std::vector<at::Tensor> converted;
  for (const auto& t : inputs) converted.push_back(cpu::contiguous_as(t, format));
  auto staged =
      prefer_huge_pages(at::empty(result.sizes(), result.options().memory_format(format)));
  g.channels_last = true;
  compute(converted, staged, g);
  cpu::copy_layout(result, staged);
}

}  // namespace convpool
