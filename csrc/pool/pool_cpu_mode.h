#pragma once
// Which backward the CPU pooling kernels run: their own scatter (default, fast) or the CUDA
// kernels' gather element functions (so CPU tests check the GPU's index math).
namespace convpool {
void set_cpu_pool_backward_gathers(bool gather);
bool cpu_pool_backward_gathers();
}  // namespace convpool
