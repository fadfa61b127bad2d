#pragma once
// NCHW <-> channels_last copies for the paths that compute a tensor of one layout in the other
// (Winograd and the grouped kernels in NCHW, small NCHW images through the channels_last engine).
// torch's permuting copy ran at 4.5-6 GB/s from channels_last to NCHW on an AMD EPYC, 2 threads
// (a 22 MB Winograd output: 7.7 ms of a 20 ms conv); these transpose each sample's [C, pixels]
// matrix in 16 x 16 register tiles, on all cores.
#include <ATen/core/Tensor.h>

namespace convpool::cpu {

// t in `format` (as t.contiguous(format)), the transposing copy done here where it is one.
at::Tensor contiguous_as(const at::Tensor& t, at::MemoryFormat format);

// dst.copy_(src) for tensors of equal sizes and dtype, the transposing copy done here where it is
// one.
void copy_layout(const at::Tensor& dst, const at::Tensor& src);

}  // namespace convpool::cpu
