// The CUDA backend of the convolution family run on the CPU (CUDA emulation): the kernel bodies
// of conv_kernels.h through EmulatedLaunch, with the GPU's float32 arithmetic for float16/bfloat16.
#include <ATen/ATen.h>

#include "../common/cuda_emulation.h"
#include "conv_launch.h"

namespace convpool {
namespace {

// cuBLAS's float32-compute GEMM of float16/bfloat16 operands: every product and sum in float32.
// Widening the operands to float32 is exact, so the CPU's float32 GEMM computes the same.
void mixed_precision_bmm_emulated(at::Tensor& out, const at::Tensor& a, const at::Tensor& b) {
  at::bmm_out(out, a.to(out.scalar_type()), b.to(out.scalar_type()));
}

const ConvBackend kEmulatedBackend =
    launched_conv_backend<EmulatedLaunch>(mixed_precision_bmm_emulated);

}  // namespace

const ConvBackend& emulated_cuda_conv_backend() { return kEmulatedBackend; }

}  // namespace convpool
