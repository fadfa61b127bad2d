// CUDA launchers of the convolution family: grid-stride kernels over the shared element
// functions, plugged into the device-independent driver (GEMMs go to cuBLAS through at::bmm).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "../common/cuda_launch.cuh"
#include "../common/dispatch.h"
#include "conv_driver.h"
#include "im2col.h"

namespace convpool {
namespace {

template <typename scalar_t>
__global__ void im2col_kernel(const scalar_t* image, scalar_t* col, ConvGeometry g, int64_t n) {
  CONVPOOL_GRID_STRIDE_LOOP(i, n) { col[i] = im2col_element(image, g, i); }
}

template <typename scalar_t>
__global__ void col2im_kernel(const scalar_t* col, scalar_t* image, ConvGeometry g, int64_t n) {
  using acc_t = at::opmath_type<scalar_t>;
  CONVPOOL_GRID_STRIDE_LOOP(i, n) {
    image[i] = static_cast<scalar_t>(col2im_element_at<scalar_t, acc_t>(col, g, i));
  }
}

void im2col_cuda(const at::Tensor& image, const at::Tensor& col, const ConvGeometry& g) {
  const int64_t n = col.numel();
  if (n == 0) return;
  const auto stream = at::cuda::getCurrentCUDAStream();
  CONVPOOL_DISPATCH_FLOATING_TYPES(image.scalar_type(), "im2col_cuda", [&] {
    im2col_kernel<scalar_t><<<grid_for(n), kThreadsPerBlock, 0, stream>>>(
        image.const_data_ptr<scalar_t>(), col.data_ptr<scalar_t>(), g, n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void col2im_cuda(const at::Tensor& col, const at::Tensor& image, const ConvGeometry& g) {
  const int64_t n = image.numel();
  if (n == 0) return;
  const auto stream = at::cuda::getCurrentCUDAStream();
  CONVPOOL_DISPATCH_FLOATING_TYPES(col.scalar_type(), "col2im_cuda", [&] {
    col2im_kernel<scalar_t><<<grid_for(n), kThreadsPerBlock, 0, stream>>>(
        col.const_data_ptr<scalar_t>(), image.data_ptr<scalar_t>(), g, n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

const ConvBackend kCudaBackend{im2col_cuda, col2im_cuda, /*upcast_reduced_precision=*/false};

}  // namespace

TORCH_LIBRARY_IMPL(convpool, CUDA, m) { register_conv_kernels<kCudaBackend>(m); }

}  // namespace convpool
