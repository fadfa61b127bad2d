// CPU launchers of the convolution family: im2col and col2im as at::parallel_for loops over
// the shared element functions, plugged into the device-independent driver.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../common/dispatch.h"
#include "conv_driver.h"
#include "im2col.h"

namespace convpool {
namespace {

// One task per column row (channel, tap); inside it the grid is walked in order so writes are
// sequential.
void im2col_cpu(const at::Tensor& image, const at::Tensor& col, const ConvGeometry& g) {
  CONVPOOL_DISPATCH_FLOATING_TYPES(image.scalar_type(), "im2col_cpu", [&] {
    const scalar_t* src = image.const_data_ptr<scalar_t>();
    scalar_t* dst = col.data_ptr<scalar_t>();
    const int64_t taps = g.kernel_numel();
    const int64_t grid = g.grid_numel();
    at::parallel_for(0, g.channels * taps, 1, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t c = row / taps;
        const int64_t k = row % taps;
        const int64_t kw = k % g.kernel[2];
        const int64_t kh = k / g.kernel[2] % g.kernel[1];
        const int64_t kd = k / (g.kernel[2] * g.kernel[1]);
        const scalar_t* channel = src + c * g.image_numel();
        scalar_t* out = dst + row * grid;
        for (int64_t od = 0; od < g.grid[0]; ++od) {
          for (int64_t oh = 0; oh < g.grid[1]; ++oh) {
            for (int64_t ow = 0; ow < g.grid[2]; ++ow) {
              const int64_t offset = conv_tap_offset(g, kd, kh, kw, od, oh, ow);
              *out++ = offset < 0 ? scalar_t(0) : channel[offset];
            }
          }
        }
      }
    });
  });
}

void col2im_cpu(const at::Tensor& col, const at::Tensor& image, const ConvGeometry& g) {
  CONVPOOL_DISPATCH_FLOATING_TYPES(col.scalar_type(), "col2im_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* src = col.const_data_ptr<scalar_t>();
    scalar_t* dst = image.data_ptr<scalar_t>();
    const int64_t lines = g.channels * g.image[0] * g.image[1];
    at::parallel_for(0, lines, 1, [&](int64_t begin, int64_t end) {
      for (int64_t line = begin; line < end; ++line) {
        const int64_t ih = line % g.image[1];
        const int64_t id = line / g.image[1] % g.image[0];
        const int64_t c = line / (g.image[1] * g.image[0]);
        scalar_t* out = dst + line * g.image[2];
        for (int64_t iw = 0; iw < g.image[2]; ++iw) {
          out[iw] = static_cast<scalar_t>(col2im_element<scalar_t, acc_t>(src, g, c, id, ih, iw));
        }
      }
    });
  });
}

const ConvBackend kCpuBackend{im2col_cpu, col2im_cpu, /*upcast_reduced_precision=*/true};

}  // namespace

TORCH_LIBRARY_IMPL(convpool, CPU, m) { register_conv_kernels<kCpuBackend>(m); }

}  // namespace convpool
