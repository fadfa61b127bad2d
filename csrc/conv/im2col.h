#pragma once
// im2col / col2im element functions: the bodies of the CUDA kernels (conv_kernels.h), also used by
// the CPU's channels_last depthwise loops.
// A column matrix holds, for one sample, rows (channel, kernel tap) and columns (grid position):
// col[(c * K + k) * G + o] = image[c, o * stride - pad + k * dilation] (0 in the padding).
#include "../common/conv_geometry.h"
#include "../common/flat_index.h"
#include "../common/tap_run.h"

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
  const FlatIndex o = split_flat_index(index, g.grid);  // o.outer: the column row (c, tap)
  const int64_t c = o.outer / g.kernel_numel();
  int64_t kd, kh, kw;
  split_tap(g, o.outer % g.kernel_numel(), kd, kh, kw);
  const int64_t offset = conv_tap_offset(g, kd, kh, kw, o.d, o.h, o.w);
  return offset < 0 ? scalar_t(0) : image[c * g.image_numel() + offset];
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

// Image element at flat `index` (row-major over [C, image...]).
template <typename scalar_t, typename acc_t>
CONVPOOL_HOST_DEVICE acc_t col2im_element_at(const scalar_t* col, const ConvGeometry& g,
                                             int64_t index) {
  const FlatIndex i = split_flat_index(index, g.image);
  return col2im_element<scalar_t, acc_t>(col, g, i.outer, i.d, i.h, i.w);
}

}  // namespace convpool
