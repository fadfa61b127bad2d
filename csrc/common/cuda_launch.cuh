#pragma once
// How every kernel of the library is launched on the GPU: a grid-stride loop over the flat index
// space of its output, calling the kernel body (a functor with a __host__ __device__ call
// operator, conv/conv_kernels.h, pool/pool_kernels.h) once per index. EmulatedLaunch
// (cuda_emulation.h) runs the same bodies over the same index space on the CPU.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include <algorithm>

namespace convpool {

constexpr int kThreadsPerBlock = 256;

inline dim3 grid_for(int64_t elements) {
  // Enough blocks to fill the device several times over; the kernels loop over the rest.
  const int64_t max_blocks =
      static_cast<int64_t>(at::cuda::getCurrentDeviceProperties()->multiProcessorCount) * 32;
  const int64_t blocks = (elements + kThreadsPerBlock - 1) / kThreadsPerBlock;
  return dim3(static_cast<unsigned>(std::max<int64_t>(1, std::min(blocks, max_blocks))));
}

template <typename Body>
__global__ void grid_stride_kernel(Body body, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    body(i);
  }
}

struct CudaLaunch {
  template <typename Body>
  static void run(const Body& body, int64_t n) {
    if (n == 0) return;
    grid_stride_kernel<<<grid_for(n), kThreadsPerBlock, 0, at::cuda::getCurrentCUDAStream()>>>(body,
                                                                                               n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

}  // namespace convpool
