#pragma once
// Convolutions whose windows reach far into the padding (ASPP's dilation 12-36 on 28x28 maps:
// half to seven eighths of the taps of a window read zeros) computed region by region, each
// region with only the taps that land inside the image.
//
// Along one dim the taps of grid position o that land inside the image are one run [k0, k1),
// and the run changes at no more than 2 * kernel places, so the grid splits into spans of
// constant runs. A region (one span per dim) is a padding-free sub-conv: the same image, the
// region's grid, the kernel's live taps, and the padding shifted to the region's first output
// and first live tap. What a full conv computes there beside it are products by padding zeros.
#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "../common/conv_geometry.h"

namespace convpool {

// Grid positions [o0, o1) along one dim, whose windows have the taps [k0, k1) inside the image.
struct TapSpan {
  int64_t o0, o1, k0, k1;
};

using Region = std::array<TapSpan, kSpatialDims>;

// The regions to compute g by, or nullopt where the full conv is as cheap: dropping the taps
// outside the image saves less than a sixth of the multiplications, or the conv is too small
// for a GEMM per region to pay (in "auto"; see live_taps.cpp). `macs_per_tap` = multiply-adds of
// one tap of one grid position (batch * channels per group * output channels), `weights_per_tap`
// = weight elements of one tap (channels per group * output channels).
std::optional<std::vector<Region>> live_tap_regions(const ConvGeometry& g, int64_t macs_per_tap,
                                                    int64_t weights_per_tap);

// The kernel cropped to the taps that land inside the image for some grid position, along each
// dim (`first`: the first such tap per dim); `cropped` says whether any tap was dropped. The
// dropped taps read only padding, so the cropped conv computes the same outputs: its padding
// before each dim is shortened by the dropped leading taps (the padding after is implied by the
// grid, which stays). A dim where no tap lands inside is left whole.
struct LiveKernel {
  ConvGeometry g;
  int64_t first[kSpatialDims];
  bool cropped;
};
LiveKernel live_kernel(const ConvGeometry& g);

// The padding-free conv of one region: grid = its spans, kernel = its live taps, the padding
// shifted so that grid position 0 and tap 0 are the region's first output and first live tap.
// kernel_numel() == 0: no tap of the region lands inside the image (its outputs are zero).
ConvGeometry region_geometry(const ConvGeometry& g, const Region& r);

}  // namespace convpool
