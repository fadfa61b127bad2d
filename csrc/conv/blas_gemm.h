#pragma once
// Raw buffers as BLAS operands: the CPU engines (GEMM, batched Winograd) multiply through
// at::mm (MKL), on views of their own buffers.
#include <ATen/ATen.h>

#include <ATen/Parallel.h>

#include <cstdint>
#include <type_traits>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "packed_gemm.h"

namespace convpool::cpu {

// oneDNN (torch's bfloat16 GEMM) plans a GEMM for omp_get_max_threads() threads, which inside
// our parallel regions is still the team's size: a plan that splits the reduction between two
// threads (a bfloat16 1x1 conv over 2048 channels) then ran on the calling thread alone and
// summed in another order than the one-thread plan, so 1 and 2 threads gave different bits.
// Planned for the one thread that runs it, every output is the same dot product for any thread
// count.
class OneThreadPlan {
 public:
  OneThreadPlan() {
#ifdef _OPENMP
    if (at::in_parallel_region()) {
      saved_ = omp_get_max_threads();
      omp_set_num_threads(1);
    }
#endif
  }
  ~OneThreadPlan() {
#ifdef _OPENMP
    if (saved_ > 0) omp_set_num_threads(saved_);
#endif
  }
  OneThreadPlan(const OneThreadPlan&) = delete;
  OneThreadPlan& operator=(const OneThreadPlan&) = delete;

 private:
  int saved_ = 0;
};

// A [rows, cols] view of data with element (i, j) at data[i * row_stride + j * col_stride].
template <typename T>
at::Tensor matrix(const T* data, int64_t rows, int64_t cols, int64_t row_stride,
                  int64_t col_stride) {
  return at::from_blob(const_cast<T*>(data), {rows, cols}, {row_stride, col_stride},
                       at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
}

// c [a.rows, b.cols] (row stride ldc) = a x b, or += when `accumulate`. Called inside
// at::parallel_for, so MKL runs it on the calling thread; float32 and float64 go through our own
// GEMM instead where `packed` (by default: where that is selected, packed_gemm.h).
template <typename T>
void gemm(const at::Tensor& a, const at::Tensor& b, T* c, int64_t ldc, bool accumulate,
          bool packed = packed_gemm_selected()) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    if (packed) {
      packed_gemm(StridedMatrix<T>{a.const_data_ptr<T>(), a.stride(0), a.stride(1)},
                  StridedMatrix<T>{b.const_data_ptr<T>(), b.stride(0), b.stride(1)}, c, ldc,
                  a.size(0), b.size(1), a.size(1), accumulate);
      return;
    }
  }
  auto out = matrix(c, a.size(0), b.size(1), ldc, 1);
  const OneThreadPlan one_thread;
  if (accumulate) {
    at::addmm_out(out, out, a, b);
  } else {
    at::mm_out(out, a, b);
  }
}

}  // namespace convpool::cpu
