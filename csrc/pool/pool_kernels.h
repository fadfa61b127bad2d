#pragma once
// The CUDA kernels of the pooling family, each written once as a body over one flat index of what
// it writes (a functor with a __host__ __device__ call operator): one output element (forward),
// one input element (backward, a gather: deterministic, no atomics), one unpooled element.
// pool_cuda.cu launches them on the GPU (CudaLaunch); pool_emulated.cpp runs the same bodies on
// the CPU (EmulatedLaunch), so CPU tests execute the GPU's index math. Tensors are contiguous
// [planes, spatial...]; acc_t is the type sums run in (float for float16/bfloat16).
#include "../common/flat_index.h"
#include "../common/pool_geometry.h"
#include "pool_elements.h"

namespace convpool::kernels {

template <typename scalar_t, typename acc_t>
struct MaxPool {
  const scalar_t* input;
  scalar_t* output;
  int64_t* indices;
  PoolGeometry g;
  CONVPOOL_HOST_DEVICE void operator()(int64_t i) const {
    const FlatIndex o = split_flat_index(i, g.output);
    max_window<scalar_t, acc_t>(input + o.outer * g.input_numel(), g, o.d, o.h, o.w, output + i,
                                indices + i);
  }
};

template <typename scalar_t, typename acc_t>
struct AvgPool {
  const scalar_t* input;
  scalar_t* output;
  PoolGeometry g;
  CONVPOOL_HOST_DEVICE void operator()(int64_t i) const {
    const FlatIndex o = split_flat_index(i, g.output);
    output[i] =
        average_window<scalar_t, acc_t>(input + o.outer * g.input_numel(), g, o.d, o.h, o.w);
  }
};

template <typename scalar_t, typename acc_t>
struct MaxPoolBackward {
  const scalar_t* grad_output;
  const int64_t* indices;
  scalar_t* grad_input;
  PoolGeometry g;
  CONVPOOL_HOST_DEVICE void operator()(int64_t i) const {
    const FlatIndex x = split_flat_index(i, g.input);
    const int64_t plane = x.outer * g.output_numel();
    grad_input[i] = max_backward_element<scalar_t, acc_t>(grad_output + plane, indices + plane, g,
                                                          x.d, x.h, x.w);
  }
};

template <typename scalar_t, typename acc_t>
struct AvgPoolBackward {
  const scalar_t* grad_output;
  scalar_t* grad_input;
  PoolGeometry g;
  CONVPOOL_HOST_DEVICE void operator()(int64_t i) const {
    const FlatIndex x = split_flat_index(i, g.input);
    grad_input[i] = average_backward_element<scalar_t, acc_t>(
        grad_output + x.outer * g.output_numel(), g, x.d, x.h, x.w);
  }
};

// output[plane, indices[i]] = input[i] over a pre-zeroed output (indices checked by the driver).
// Repeated indices within a plane come from overlapping windows with the same maximum, so
// whichever write lands, the value is the same.
template <typename scalar_t>
struct MaxUnpool {
  const scalar_t* input;
  const int64_t* indices;
  scalar_t* output;
  int64_t in_plane, out_plane;
  CONVPOOL_HOST_DEVICE void operator()(int64_t i) const {
    output[i / in_plane * out_plane + indices[i]] = input[i];
  }
};

}  // namespace convpool::kernels
