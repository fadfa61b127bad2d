// The CUDA backend of the pooling family run on the CPU (CUDA emulation): the kernel bodies of
// pool_kernels.h through EmulatedLaunch.
#include "../common/cuda_emulation.h"
#include "pool_launch.h"

namespace convpool {

const PoolBackend& emulated_cuda_pool_backend() {
  return LaunchedPoolKernels<EmulatedLaunch>::backend;
}

}  // namespace convpool
