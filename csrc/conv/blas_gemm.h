#pragma once
// Raw buffers as BLAS operands: the CPU engines (GEMM, batched Winograd) multiply through
// at::mm (MKL), on views of their own buffers.
#include <ATen/ATen.h>

#include <cstdint>

namespace convpool::cpu {

// A [rows, cols] view of data with element (i, j) at data[i * row_stride + j * col_stride].
template <typename T>
at::Tensor matrix(const T* data, int64_t rows, int64_t cols, int64_t row_stride,
                  int64_t col_stride) {
  return at::from_blob(const_cast<T*>(data), {rows, cols}, {row_stride, col_stride},
                       at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
}

// c [a.rows, b.cols] (row stride ldc) = a x b, or += when `accumulate`. Called inside
// at::parallel_for, so MKL runs it on the calling thread.
template <typename T>
void gemm(const at::Tensor& a, const at::Tensor& b, T* c, int64_t ldc, bool accumulate) {
  auto out = matrix(c, a.size(0), b.size(1), ldc, 1);
  if (accumulate) {
    at::addmm_out(out, out, a, b);
  } else {
    at::mm_out(out, a, b);
  }
}

}  // namespace convpool::cpu
