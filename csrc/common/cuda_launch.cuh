#pragma once
// Launch shape shared by every grid-stride kernel of the library.
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

#define CONVPOOL_GRID_STRIDE_LOOP(i, n)                                                    \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

}  // namespace convpool
