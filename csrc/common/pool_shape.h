#pragma once
// Shape rules and argument checks of the pooling family: the one place every backend learns
// its geometry (mirrored for the fakes in torch_convpool/_shapes.py).
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include "pool_geometry.h"

namespace convpool {

// torch's rule (aten Pool.h): with ceil_mode the last window must start inside the input or its
// before-padding. `pad_before + pad_after` replaces torch's 2 * pad.
int64_t pool_output_length(int64_t input, int64_t kernel, int64_t stride, int64_t pad_before,
                           int64_t pad_after, int64_t dilation, bool ceil_mode);

// The element types an op takes, as torch's CPU pooling: floating point everywhere; max pooling
// also the integer types, average pooling also int64. Anything else is NotImplementedError.
enum class PoolTypes { kFloating, kFloatingOrInt64, kFloatingOrIntegral };

// Regular windows. Checks input rank, positive kernel/stride/dilation, padding at most half the
// effective kernel and a positive output size.
PoolGeometry pool_geometry(const char* op, const at::Tensor& input, at::IntArrayRef kernel,
                           at::IntArrayRef stride, at::IntArrayRef padding,
                           at::IntArrayRef dilation, bool ceil_mode,
                           PoolTypes types = PoolTypes::kFloating);

// Adaptive windows; output sizes must be non-negative.
PoolGeometry adaptive_pool_geometry(const char* op, const at::Tensor& input,
                                    at::IntArrayRef output_size);

// The geometry a backward op needs, from the forward input's sizes alone (a meta tensor of them
// carries the shape through the same checks).
at::Tensor input_shape(at::IntArrayRef input_size, const at::Tensor& like);

// [N, C, output...] for an input of `spatial_dims` spatial dims.
std::vector<int64_t> pool_output_sizes(const at::Tensor& input, const PoolGeometry& g);

// A backward op's grad_output (and indices) must be shaped like the forward output.
void check_pool_grad(const char* op, const at::Tensor& input, const PoolGeometry& g,
                     const at::Tensor& grad_output, const at::Tensor* indices);

}  // namespace convpool
