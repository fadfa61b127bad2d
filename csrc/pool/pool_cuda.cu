// CUDA launchers of the pooling family: one thread per output (forward) or per input element
// (backward, a gather: deterministic, no atomics), over the shared element functions.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "../common/cuda_launch.cuh"
#include "../common/dispatch.h"
#include "pool_driver.h"
#include "pool_elements.h"

namespace convpool {
namespace {

template <typename scalar_t>
__global__ void max_forward_kernel(const scalar_t* in, scalar_t* out, int64_t* idx,
                                   PoolGeometry g, int64_t n) {
  using acc_t = at::opmath_type<scalar_t>;
  CONVPOOL_GRID_STRIDE_LOOP(i, n) {
    const PlaneIndex o = split_plane_index(i, g.output);
    max_window<scalar_t, acc_t>(in + o.plane * g.input_numel(), g, o.d, o.h, o.w, out + i, idx + i);
  }
}

template <typename scalar_t>
__global__ void average_forward_kernel(const scalar_t* in, scalar_t* out, PoolGeometry g,
                                       int64_t n) {
  using acc_t = at::opmath_type<scalar_t>;
  CONVPOOL_GRID_STRIDE_LOOP(i, n) {
    const PlaneIndex o = split_plane_index(i, g.output);
    out[i] = average_window<scalar_t, acc_t>(in + o.plane * g.input_numel(), g, o.d, o.h, o.w);
  }
}

template <typename scalar_t>
__global__ void max_backward_kernel(const scalar_t* grad, const int64_t* idx, scalar_t* out,
                                    PoolGeometry g, int64_t n) {
  using acc_t = at::opmath_type<scalar_t>;
  CONVPOOL_GRID_STRIDE_LOOP(i, n) {
    const PlaneIndex x = split_plane_index(i, g.input);
    const int64_t offset = x.plane * g.output_numel();
    out[i] = max_backward_element<scalar_t, acc_t>(grad + offset, idx + offset, g, x.d, x.h, x.w);
  }
}

template <typename scalar_t>
__global__ void average_backward_kernel(const scalar_t* grad, scalar_t* out, PoolGeometry g,
                                        int64_t n) {
  using acc_t = at::opmath_type<scalar_t>;
  CONVPOOL_GRID_STRIDE_LOOP(i, n) {
    const PlaneIndex x = split_plane_index(i, g.input);
    out[i] = average_backward_element<scalar_t, acc_t>(grad + x.plane * g.output_numel(), g, x.d,
                                                       x.h, x.w);
  }
}

// Repeated indices within a plane come from overlapping windows with the same maximum, so
// whichever write lands, the value is the same.
template <typename scalar_t>
__global__ void unpool_kernel(const scalar_t* in, const int64_t* idx, scalar_t* out,
                              int64_t in_plane, int64_t out_plane, int64_t n) {
  CONVPOOL_GRID_STRIDE_LOOP(i, n) { out[i / in_plane * out_plane + idx[i]] = in[i]; }
}

void max_forward_cuda(const at::Tensor& input, const at::Tensor& output, const at::Tensor& indices,
                      const PoolGeometry& g) {
  const int64_t n = output.numel();
  CONVPOOL_DISPATCH_FLOATING_TYPES(input.scalar_type(), "max_pool_cuda", [&] {
    max_forward_kernel<scalar_t><<<grid_for(n), kThreadsPerBlock, 0, at::cuda::getCurrentCUDAStream()>>>(
        input.const_data_ptr<scalar_t>(), output.data_ptr<scalar_t>(), indices.data_ptr<int64_t>(), g, n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void average_forward_cuda(const at::Tensor& input, const at::Tensor& output, const PoolGeometry& g) {
  const int64_t n = output.numel();
  CONVPOOL_DISPATCH_FLOATING_TYPES(input.scalar_type(), "avg_pool_cuda", [&] {
    average_forward_kernel<scalar_t><<<grid_for(n), kThreadsPerBlock, 0, at::cuda::getCurrentCUDAStream()>>>(
        input.const_data_ptr<scalar_t>(), output.data_ptr<scalar_t>(), g, n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void max_backward_cuda(const at::Tensor& grad_output, const at::Tensor& indices,
                       const at::Tensor& grad_input, const PoolGeometry& g) {
  const int64_t n = grad_input.numel();
  CONVPOOL_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "max_pool_backward_cuda", [&] {
    max_backward_kernel<scalar_t><<<grid_for(n), kThreadsPerBlock, 0, at::cuda::getCurrentCUDAStream()>>>(
        grad_output.const_data_ptr<scalar_t>(), indices.const_data_ptr<int64_t>(),
        grad_input.data_ptr<scalar_t>(), g, n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void average_backward_cuda(const at::Tensor& grad_output, const at::Tensor& grad_input,
                           const PoolGeometry& g) {
  const int64_t n = grad_input.numel();
  CONVPOOL_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "avg_pool_backward_cuda", [&] {
    average_backward_kernel<scalar_t><<<grid_for(n), kThreadsPerBlock, 0, at::cuda::getCurrentCUDAStream()>>>(
        grad_output.const_data_ptr<scalar_t>(), grad_input.data_ptr<scalar_t>(), g, n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void unpool_cuda(const at::Tensor& input, const at::Tensor& indices, const at::Tensor& output) {
  const int64_t n = input.numel();
  const int64_t planes = input.size(0) * input.size(1);
  CONVPOOL_DISPATCH_FLOATING_TYPES(input.scalar_type(), "max_unpool_cuda", [&] {
    unpool_kernel<scalar_t><<<grid_for(n), kThreadsPerBlock, 0, at::cuda::getCurrentCUDAStream()>>>(
        input.const_data_ptr<scalar_t>(), indices.const_data_ptr<int64_t>(),
        output.data_ptr<scalar_t>(), n / planes, output.numel() / planes, n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

const PoolBackend kCudaBackend{max_forward_cuda, average_forward_cuda, max_backward_cuda,
                               average_backward_cuda, unpool_cuda, /*takes_channels_last=*/nullptr};

}  // namespace

TORCH_LIBRARY_IMPL(convpool, CUDA, m) { register_pool_kernels<kCudaBackend>(m); }

}  // namespace convpool
