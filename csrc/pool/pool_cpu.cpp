// CPU launchers of the pooling family: at::parallel_for over output (forward) or input
// (backward) lines, each element computed by the shared element functions.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../common/dispatch.h"
#include "pool_driver.h"
#include "pool_elements.h"

namespace convpool {
namespace {

// Runs body(plane, d, h, w_begin..) over every line (plane, d, h) of a [planes, sizes] volume.
template <typename Body>
void for_each_line(const PoolGeometry& g, const int64_t* sizes, Body&& body) {
  const int64_t lines = g.planes * sizes[0] * sizes[1];
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, sizes[2]));
  at::parallel_for(0, lines, grain, [&](int64_t begin, int64_t end) {
    for (int64_t line = begin; line < end; ++line) {
      const int64_t h = line % sizes[1];
      const int64_t d = line / sizes[1] % sizes[0];
      const int64_t plane = line / (sizes[1] * sizes[0]);
      body(line, plane, d, h);
    }
  });
}

void max_forward_cpu(const at::Tensor& input, const at::Tensor& output, const at::Tensor& indices,
                     const PoolGeometry& g) {
  CONVPOOL_DISPATCH_FLOATING_TYPES(input.scalar_type(), "max_pool_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* in = input.const_data_ptr<scalar_t>();
    scalar_t* out = output.data_ptr<scalar_t>();
    int64_t* idx = indices.data_ptr<int64_t>();
    for_each_line(g, g.output, [&](int64_t line, int64_t plane, int64_t od, int64_t oh) {
      const scalar_t* plane_in = in + plane * g.input_numel();
      for (int64_t ow = 0; ow < g.output[2]; ++ow) {
        const int64_t o = line * g.output[2] + ow;
        max_window<scalar_t, acc_t>(plane_in, g, od, oh, ow, out + o, idx + o);
      }
    });
  });
}

void average_forward_cpu(const at::Tensor& input, const at::Tensor& output, const PoolGeometry& g) {
  CONVPOOL_DISPATCH_FLOATING_TYPES(input.scalar_type(), "avg_pool_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* in = input.const_data_ptr<scalar_t>();
    scalar_t* out = output.data_ptr<scalar_t>();
    for_each_line(g, g.output, [&](int64_t line, int64_t plane, int64_t od, int64_t oh) {
      const scalar_t* plane_in = in + plane * g.input_numel();
      for (int64_t ow = 0; ow < g.output[2]; ++ow) {
        out[line * g.output[2] + ow] = average_window<scalar_t, acc_t>(plane_in, g, od, oh, ow);
      }
    });
  });
}

void max_backward_cpu(const at::Tensor& grad_output, const at::Tensor& indices,
                      const at::Tensor& grad_input, const PoolGeometry& g) {
  CONVPOOL_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "max_pool_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* grad = grad_output.const_data_ptr<scalar_t>();
    const int64_t* idx = indices.const_data_ptr<int64_t>();
    scalar_t* out = grad_input.data_ptr<scalar_t>();
    for_each_line(g, g.input, [&](int64_t line, int64_t plane, int64_t id, int64_t ih) {
      const int64_t offset = plane * g.output_numel();
      for (int64_t iw = 0; iw < g.input[2]; ++iw) {
        out[line * g.input[2] + iw] =
            max_backward_element<scalar_t, acc_t>(grad + offset, idx + offset, g, id, ih, iw);
      }
    });
  });
}

void average_backward_cpu(const at::Tensor& grad_output, const at::Tensor& grad_input,
                          const PoolGeometry& g) {
  CONVPOOL_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "avg_pool_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* grad = grad_output.const_data_ptr<scalar_t>();
    scalar_t* out = grad_input.data_ptr<scalar_t>();
    for_each_line(g, g.input, [&](int64_t line, int64_t plane, int64_t id, int64_t ih) {
      const scalar_t* plane_grad = grad + plane * g.output_numel();
      for (int64_t iw = 0; iw < g.input[2]; ++iw) {
        out[line * g.input[2] + iw] = average_backward_element<scalar_t, acc_t>(plane_grad, g, id, ih, iw);
      }
    });
  });
}

// Planes in parallel, each written in order, so repeated indices resolve as torch's CPU kernel
// does (the last one wins).
void unpool_cpu(const at::Tensor& input, const at::Tensor& indices, const at::Tensor& output) {
  CONVPOOL_DISPATCH_FLOATING_TYPES(input.scalar_type(), "max_unpool_cpu", [&] {
    const scalar_t* in = input.const_data_ptr<scalar_t>();
    const int64_t* idx = indices.const_data_ptr<int64_t>();
    scalar_t* out = output.data_ptr<scalar_t>();
    const int64_t planes = input.size(0) * input.size(1);
    const int64_t in_plane = planes == 0 ? 0 : input.numel() / planes;
    const int64_t out_plane = planes == 0 ? 0 : output.numel() / planes;
    at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        for (int64_t j = 0; j < in_plane; ++j) {
          out[p * out_plane + idx[p * in_plane + j]] = in[p * in_plane + j];
        }
      }
    });
  });
}

const PoolBackend kCpuBackend{max_forward_cpu, average_forward_cpu, max_backward_cpu,
                              average_backward_cpu, unpool_cpu};

}  // namespace

TORCH_LIBRARY_IMPL(convpool, CPU, m) { register_pool_kernels<kCpuBackend>(m); }

}  // namespace convpool
