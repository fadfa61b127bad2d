#pragma once
// im2col / col2im element functions, shared by the CPU loops and the CUDA grid-stride kernels.
// A column matrix holds, for one sample, rows (channel, kernel tap) and columns (grid position):
// col[(c * K + k) * G + o] = image[c, o * stride - pad + k * dilation] (0 in the padding).
#include "../common/conv_geometry.h"

namespace convpool {

// Offset inside one channel's image of kernel tap (kd, kh, kw) at grid position (od, oh, ow),
// or -1 when the tap lands in the padding.
CONVPOOL_HOST_DEVICE int64_t conv_tap_offset(const ConvGeometry& g, int64_t kd, int64_t kh,
                                             int64_t kw, int64_t od, int64_t oh, int64_t ow) {
  const int64_t id = od * g.stride[0] - g.pad[0] + kd * g.dilation[0];
  const int64_t ih = oh * g.stride[1] - g.pad[1] + kh * g.dilation[1];
  const int64_t iw = ow * g.stride[2] - g.pad[2] + kw * g.dilation[2];
  if (id < 0 || id >= g.image[0] || ih < 0 || ih >= g.image[1] || iw < 0 || iw >= g.image[2]) {
    return -1;
  }
  return (id * g.image[1] + ih) * g.image[2] + iw;
}

// The column-matrix element at flat `index` (row-major over [C * K, G]).
template <typename scalar_t>
CONVPOOL_HOST_DEVICE scalar_t im2col_element(const scalar_t* image, const ConvGeometry& g,
                                             int64_t index) {
  int64_t rest = index;
  const int64_t ow = rest % g.grid[2]; rest /= g.grid[2];
  const int64_t oh = rest % g.grid[1]; rest /= g.grid[1];
  const int64_t od = rest % g.grid[0]; rest /= g.grid[0];
  const int64_t kw = rest % g.kernel[2]; rest /= g.kernel[2];
  const int64_t kh = rest % g.kernel[1]; rest /= g.kernel[1];
  const int64_t kd = rest % g.kernel[0];
  const int64_t c = rest / g.kernel[0];
  const int64_t offset = conv_tap_offset(g, kd, kh, kw, od, oh, ow);
  return offset < 0 ? scalar_t(0) : image[c * g.image_numel() + offset];
}

// Grid index along one dim whose window covers image position `i` with tap `k`, or -1.
CONVPOOL_HOST_DEVICE int64_t covering_grid_index(int64_t i, int64_t k, int64_t stride,
                                                 int64_t pad, int64_t dilation, int64_t grid) {
  const int64_t shifted = i + pad - k * dilation;
  if (shifted < 0 || shifted % stride != 0) return -1;
  const int64_t o = shifted / stride;
  return o < grid ? o : -1;
}

// col2im as a gather: image element (c, id, ih, iw) is the sum of the column entries of every
// (tap, grid position) pair that reads it. No two threads write the same element, so the CUDA
// kernel needs no atomics and is deterministic.
template <typename scalar_t, typename acc_t>
CONVPOOL_HOST_DEVICE acc_t col2im_element(const scalar_t* col, const ConvGeometry& g, int64_t c,
                                          int64_t id, int64_t ih, int64_t iw) {
  const int64_t grid_numel = g.grid_numel();
  const int64_t row0 = c * g.kernel_numel();
  acc_t sum = acc_t(0);
  for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
    const int64_t od = covering_grid_index(id, kd, g.stride[0], g.pad[0], g.dilation[0], g.grid[0]);
    if (od < 0) continue;
    for (int64_t kh = 0; kh < g.kernel[1]; ++kh) {
      const int64_t oh =
          covering_grid_index(ih, kh, g.stride[1], g.pad[1], g.dilation[1], g.grid[1]);
      if (oh < 0) continue;
      for (int64_t kw = 0; kw < g.kernel[2]; ++kw) {
        const int64_t ow =
            covering_grid_index(iw, kw, g.stride[2], g.pad[2], g.dilation[2], g.grid[2]);
        if (ow < 0) continue;
        const int64_t row = row0 + (kd * g.kernel[1] + kh) * g.kernel[2] + kw;
        sum += static_cast<acc_t>(col[row * grid_numel + (od * g.grid[1] + oh) * g.grid[2] + ow]);
      }
    }
  }
  return sum;
}

// Image element at flat `index` (row-major over [C, image...]) for the CUDA kernel.
template <typename scalar_t, typename acc_t>
CONVPOOL_HOST_DEVICE acc_t col2im_element_at(const scalar_t* col, const ConvGeometry& g,
                                             int64_t index) {
  int64_t rest = index;
  const int64_t iw = rest % g.image[2]; rest /= g.image[2];
  const int64_t ih = rest % g.image[1]; rest /= g.image[1];
  const int64_t id = rest % g.image[0];
  const int64_t c = rest / g.image[0];
  return col2im_element<scalar_t, acc_t>(col, g, c, id, ih, iw);
}

}  // namespace convpool
