#pragma once
// CPU kernels of max pooling's forward (three forms) and of its backward from window positions;
// the backward from int64 indices is pool_cpu.cpp's. Shapes and layouts as PoolBackend's.
#include <ATen/core/Tensor.h>

#include "../common/pool_geometry.h"

namespace convpool::cpu {

// The maximum and torch's int64 index into the plane (return_indices=True).
void max_pool_forward(const at::Tensor& input, const at::Tensor& output, const at::Tensor& indices,
                      const PoolGeometry& g);
// The maximum alone (no gradient needed).
void max_pool_forward_values(const at::Tensor& input, const at::Tensor& output,
                             const PoolGeometry& g);
// The maximum and its uint8 position in the window (window_offsets.h): what autograd saves.
void max_pool_forward_positions(const at::Tensor& input, const at::Tensor& output,
                                const at::Tensor& positions, const PoolGeometry& g);
// grad_input from grad_output and the saved positions; raises on a position outside the input.
void max_pool_backward_positions(const at::Tensor& grad_output, const at::Tensor& positions,
                                 const at::Tensor& grad_input, const PoolGeometry& g);

}  // namespace convpool::cpu
