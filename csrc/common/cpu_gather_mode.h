#pragma once
// Which algorithm the CPU kernels use where CPU and CUDA differ: the CPU's own (scatter-style
// col2im and pooling backward, each output owned by one task: fast and deterministic) or the
// CUDA kernels' gather element functions (set by tests, so the GPU's index math is checked on
// machines without a GPU).
namespace convpool {
void set_cpu_gather_mode(bool gather);
bool cpu_gather_mode();
}  // namespace convpool
