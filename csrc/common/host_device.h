#pragma once
// Index math is written once and compiled for both the CPU kernels (g++) and the CUDA kernels
// (nvcc): CPU tests then exercise the exact arithmetic the GPU runs.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define CONVPOOL_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define CONVPOOL_HOST_DEVICE inline
#endif
