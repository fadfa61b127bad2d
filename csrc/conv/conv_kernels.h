#pragma once
// The CUDA kernels of the convolution family, each written once as a body over one flat index of
// what it writes: a functor whose __host__ __device__ call operator computes element i.
// conv_cuda.cu launches them in a grid-stride loop on the GPU (CudaLaunch); conv_emulated.cpp runs
// the same bodies over the same index space on the CPU (EmulatedLaunch), so CPU tests execute
// every line of the GPU's index math.
//
// Types: scalar_t is the tensors' element type, acc_t the type sums run in (float for
// float16/bfloat16) and out_t the type a sum is written in. For float16/bfloat16 the driver asks
// for out_t = float: it adds the bias in float32 and rounds once (conv_driver.cpp).
#include "../common/conv_geometry.h"
#include "../common/flat_index.h"
#include "../common/tap_run.h"
#include "im2col.h"

namespace convpool::kernels {

// col [C * K, G] <- image [C, image...] of one sample, one column-matrix element per index.
template <typename scalar_t>
struct Im2col {
  const scalar_t* image;
  scalar_t* col;
  ConvGeometry g;
  CONVPOOL_HOST_DEVICE void operator()(int64_t i) const { col[i] = im2col_element(image, g, i); }
};

// image [C, image...] <- col [C * K, G] of one sample, as a gather: each image element sums the
// column entries that read it (no atomics: deterministic). The column matrix is in the
// accumulation type already (the GEMM wrote it in float32 for float16/bfloat16).
template <typename scalar_t, typename acc_t>
struct Col2im {
  const scalar_t* col;
  scalar_t* image;
  ConvGeometry g;
  CONVPOOL_HOST_DEVICE void operator()(int64_t i) const {
    image[i] = static_cast<scalar_t>(col2im_element_at<scalar_t, acc_t>(col, g, i));
  }
};

// Depthwise conv (one image channel per group, `multiplier` output channels per image channel):
// output [N, C * m, grid...] element i sums the taps of its window over image channel oc / m.
template <typename scalar_t, typename acc_t, typename out_t>
struct DepthwiseConv {
  const scalar_t* input;   // [N, C, image...]
  const scalar_t* weight;  // [C * m, K]
  out_t* output;           // [N, C * m, grid...]
  ConvGeometry g;
  int64_t multiplier;
  CONVPOOL_HOST_DEVICE void operator()(int64_t i) const {
    const FlatIndex o = split_flat_index(i, g.grid);  // o.outer = n * C * m + oc
    const int64_t out_channels = g.channels * multiplier;
    const int64_t n = o.outer / out_channels, oc = o.outer % out_channels;
    const scalar_t* image = input + (n * g.channels + oc / multiplier) * g.image_numel();
    const scalar_t* kernel = weight + oc * g.kernel_numel();
    acc_t sum = acc_t(0);
    for (int64_t k = 0; k < g.kernel_numel(); ++k) {
      int64_t kd, kh, kw;
      split_tap(g, k, kd, kh, kw);
      const int64_t offset = conv_tap_offset(g, kd, kh, kw, o.d, o.h, o.w);
      if (offset >= 0) sum += static_cast<acc_t>(image[offset]) * static_cast<acc_t>(kernel[k]);
    }
    output[i] = static_cast<out_t>(sum);
  }
};

// Depthwise conv_transpose (the depthwise conv's input gradient) as a gather: image element
// [n, c, id, ih, iw] sums, over the m grid channels of image channel c and every tap, the grid
// element that tap reads it from.
template <typename scalar_t, typename acc_t, typename out_t>
struct DepthwiseConvTranspose {
  const scalar_t* input;   // [N, C * m, grid...]
  const scalar_t* weight;  // [C * m, K]
  out_t* output;           // [N, C, image...]
  ConvGeometry g;
  int64_t multiplier;
  CONVPOOL_HOST_DEVICE void operator()(int64_t i) const {
    const FlatIndex x = split_flat_index(i, g.image);  // x.outer = n * C + c
    acc_t sum = acc_t(0);
    for (int64_t j = 0; j < multiplier; ++j) {
      const int64_t ic = x.outer * multiplier + j;  // n * C * m + c * m + j
      const scalar_t* grid = input + ic * g.grid_numel();
      const scalar_t* kernel = weight + (ic % (g.channels * multiplier)) * g.kernel_numel();
      for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
        const int64_t od =
            covering_grid_index(x.d, kd, g.stride[0], g.pad[0], g.dilation[0], g.grid[0]);
        if (od < 0) continue;
        for (int64_t kh = 0; kh < g.kernel[1]; ++kh) {
          const int64_t oh =
              covering_grid_index(x.h, kh, g.stride[1], g.pad[1], g.dilation[1], g.grid[1]);
          if (oh < 0) continue;
          for (int64_t kw = 0; kw < g.kernel[2]; ++kw) {
            const int64_t ow =
                covering_grid_index(x.w, kw, g.stride[2], g.pad[2], g.dilation[2], g.grid[2]);
            if (ow < 0) continue;
            sum += static_cast<acc_t>(grid[(od * g.grid[1] + oh) * g.grid[2] + ow]) *
                   static_cast<acc_t>(kernel[(kd * g.kernel[1] + kh) * g.kernel[2] + kw]);
          }
        }
      }
    }
    output[i] = static_cast<out_t>(sum);
  }
};

// Depthwise weight gradient: grad_weight [C * m, K] element (oc, k) sums grad_output x input at
// tap k over every sample and grid position, in order (deterministic). One index per weight
// element: a long serial sum each, which suits the small weights of depthwise layers.
template <typename scalar_t, typename acc_t, typename out_t>
struct DepthwiseWeightGrad {
  const scalar_t* grad_output;  // [N, C * m, grid...]
  const scalar_t* input;        // [N, C, image...]
  out_t* grad_weight;           // [C * m, K]
  ConvGeometry g;
  int64_t multiplier;
  int64_t batch;
  CONVPOOL_HOST_DEVICE void operator()(int64_t i) const {
    const int64_t oc = i / g.kernel_numel(), out_channels = g.channels * multiplier;
    int64_t kd, kh, kw;
    split_tap(g, i % g.kernel_numel(), kd, kh, kw);
    acc_t sum = acc_t(0);
    for (int64_t n = 0; n < batch; ++n) {
      const scalar_t* grad = grad_output + (n * out_channels + oc) * g.grid_numel();
      const scalar_t* image = input + (n * g.channels + oc / multiplier) * g.image_numel();
      for (int64_t o = 0; o < g.grid_numel(); ++o) {
        const FlatIndex p = split_flat_index(o, g.grid);
        const int64_t offset = conv_tap_offset(g, kd, kh, kw, p.d, p.h, p.w);
        if (offset >= 0) sum += static_cast<acc_t>(grad[o]) * static_cast<acc_t>(image[offset]);
      }
    }
    grad_weight[i] = static_cast<out_t>(sum);
  }
};

}  // namespace convpool::kernels
