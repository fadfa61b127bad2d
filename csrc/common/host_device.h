#pragma once
// Index math is written once and compiled for both the CPU kernels (g++) and the CUDA kernels
// (nvcc): CPU tests then exercise the exact arithmetic the GPU runs.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define CONVPOOL_HOST_DEVICE __host__ __device__ __forceinline__
#elif defined(__GNUC__)
// Forced: these are small index functions called in the innermost loops.
#define CONVPOOL_HOST_DEVICE inline __attribute__((always_inline))
#else
#define CONVPOOL_HOST_DEVICE inline
#endif

// A vectorisable sum on the host (OpenMP's simd reduction); nothing on the device.
#define CONVPOOL_PRAGMA(text) _Pragma(#text)
#if !defined(__CUDA_ARCH__) && defined(_OPENMP)
#define CONVPOOL_SIMD_SUM(var) CONVPOOL_PRAGMA(omp simd reduction(+ : var))
#else
#define CONVPOOL_SIMD_SUM(var)
#endif
