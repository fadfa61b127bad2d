// CUDA backend of the pooling family: the kernel bodies of pool_kernels.h launched by CudaLaunch
// (pool_launch.h picks types and index spaces).
#include <torch/library.h>

#include "../common/cuda_launch.cuh"
#include "pool_launch.h"

namespace convpool {
namespace {

const PoolBackend& cuda_backend() { return LaunchedPoolKernels<CudaLaunch>::backend; }

}  // namespace

TORCH_LIBRARY_IMPL(convpool, CUDA, m) { register_pool_kernels<cuda_backend>(m); }

}  // namespace convpool
