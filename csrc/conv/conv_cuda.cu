// CUDA backend of the convolution family: the kernel bodies of conv_kernels.h launched by
// CudaLaunch (conv_launch.h picks types and index spaces), GEMMs through cuBLAS (at::bmm).
#include <ATen/ATen.h>
#include <torch/library.h>

#include "../common/cuda_launch.cuh"
#include "conv_launch.h"

namespace convpool {
namespace {

// cuBLAS with float32 compute and a float32 result (torch's out_dtype GEMM).
void mixed_precision_bmm_cuda(at::Tensor& out, const at::Tensor& a, const at::Tensor& b) {
  at::bmm_out(out, a, b, out.scalar_type());
}

const ConvBackend kCudaBackend = launched_conv_backend<CudaLaunch>(mixed_precision_bmm_cuda);

const ConvBackend& cuda_backend() { return kCudaBackend; }

}  // namespace

TORCH_LIBRARY_IMPL(convpool, CUDA, m) { register_conv_kernels<cuda_backend>(m); }

}  // namespace convpool
