#pragma once
#include <cstdint>

#include "host_device.h"

namespace convpool {

// Every op works on 3 spatial dims; 1-d and 2-d problems get leading dims of size 1 (kernel 1,
// stride 1, no padding), so one kernel serves all dimensionalities.
constexpr int kSpatialDims = 3;

// A convolution seen from the forward conv: `image` is the conv input (the conv_transpose
// output), `grid` the conv output (one im2col column per grid position).
struct ConvGeometry {
  int64_t channels;  // image channels, all groups together
  int64_t groups;
  int64_t image[kSpatialDims];
  int64_t grid[kSpatialDims];
  int64_t kernel[kSpatialDims];
  int64_t stride[kSpatialDims];
  int64_t pad[kSpatialDims];  // padding before each dim; padding after is implied by `grid`
  int64_t dilation[kSpatialDims];
  bool channels_last;  // tensors are [N, D, H, W, C] in memory (only the depthwise kernels)

  CONVPOOL_HOST_DEVICE int64_t image_numel() const { return image[0] * image[1] * image[2]; }
  CONVPOOL_HOST_DEVICE int64_t grid_numel() const { return grid[0] * grid[1] * grid[2]; }
  CONVPOOL_HOST_DEVICE int64_t kernel_numel() const { return kernel[0] * kernel[1] * kernel[2]; }

  // A 1x1 kernel with stride 1 and no padding reads the image as it is: the image is its own
  // column matrix (no im2col), and col2im is the identity.
  CONVPOOL_HOST_DEVICE bool is_pointwise() const {
    for (int d = 0; d < kSpatialDims; ++d) {
      if (kernel[d] != 1 || stride[d] != 1 || pad[d] != 0 || grid[d] != image[d]) return false;
    }
    return true;
  }
};

// Splits a flat tap index into its (kd, kh, kw).
CONVPOOL_HOST_DEVICE void split_tap(const ConvGeometry& g, int64_t k, int64_t& kd, int64_t& kh,
                                    int64_t& kw) {
  kw = k % g.kernel[2];
  kh = k / g.kernel[2] % g.kernel[1];
  kd = k / (g.kernel[2] * g.kernel[1]);
}

}  // namespace convpool
