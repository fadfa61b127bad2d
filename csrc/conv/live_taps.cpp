#include "live_taps.h"

#include <algorithm>

#include "conv_algorithm.h"
#include "conv_lines.h"

namespace convpool {
namespace {

// A dim is split into its spans where that drops at least this share of its tap-positions
// (3x3 pad 1 convs lose 2 of 3 * size at the borders, 7x7 maps 10 %: they stay whole).
constexpr double kSplitGain = 0.15;
// The regions are used where they drop at least this share of the whole conv's multiplications.
constexpr double kMinSaving = 1.0 / 6;
// Each region is a conv of its own (a weight copy, a parallel pass, BLAS packing the weight per
// block): in "auto" it has to save at least this many multiply-adds (about 25 us of GEMM). A
// forced "gemm" drops the padding taps of small convs too, so the tests reach every region.
constexpr int64_t kMinSavedMacsPerRegion = int64_t{1} << 21;
// ... and pay for its copy of the weight's live taps (and the GEMM's packing of it), about this
// many multiply-adds of GEMM time per weight element: with weights of megabytes on small maps the
// copies cost more than the products they drop (N4 C512 3x3 stride 2 on 7x7 maps, channels_last:
// 9 regions took 14-22 ms, the whole conv 0.8).
constexpr int64_t kMacsPerWeightCopy = 16;
constexpr size_t kMaxRegions = 256;

// The grid of dim d cut where a tap starts or stops landing inside the image.
std::vector<TapSpan> constant_spans(const ConvGeometry& g, int d) {
  std::vector<int64_t> cuts{0, g.grid[d]};
  for (int64_t k = 0; k < g.kernel[d]; ++k) {
    const TapRun run = tap_run(k, g.stride[d], g.pad[d], g.dilation[d], g.image[d], g.grid[d]);
    cuts.push_back(run.lo);
    cuts.push_back(run.hi);
  }
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  std::vector<TapSpan> spans;
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    int64_t lo, hi;
    taps_inside(cuts[i] * g.stride[d] - g.pad[d], g.kernel[d], g.dilation[d], g.image[d], lo, hi);
    if (lo == hi) lo = hi = 0;
    if (!spans.empty() && spans.back().k0 == lo && spans.back().k1 == hi) {
      spans.back().o1 = cuts[i + 1];
    } else {
      spans.push_back({cuts[i], cuts[i + 1], lo, hi});
    }
  }
  return spans;
}

// The whole grid of a dim with the taps that land inside the image anywhere.
TapSpan whole_span(const ConvGeometry& g, int d, const std::vector<TapSpan>& spans) {
  TapSpan whole{0, g.grid[d], g.kernel[d], 0};
  for (const auto& s : spans) {
    if (s.k0 == s.k1) continue;
    whole.k0 = std::min(whole.k0, s.k0);
    whole.k1 = std::max(whole.k1, s.k1);
  }
  if (whole.k1 <= whole.k0) whole.k0 = whole.k1 = 0;
  return whole;
}

int64_t tap_positions(const std::vector<TapSpan>& spans) {
  int64_t sum = 0;
  for (const auto& s : spans) sum += (s.o1 - s.o0) * (s.k1 - s.k0);
  return sum;
}

}  // namespace

LiveKernel live_kernel(const ConvGeometry& g) {
  LiveKernel live{g, {0, 0, 0}, false};
  for (int d = 0; d < kSpatialDims; ++d) {
    int64_t lo = -1, hi = -1;
    for (int64_t k = 0; k < g.kernel[d]; ++k) {
      const TapRun run = tap_run(k, g.stride[d], g.pad[d], g.dilation[d], g.image[d], g.grid[d]);
      if (run.lo >= run.hi) continue;
      if (lo < 0) lo = k;
      hi = k;
    }
    if (lo < 0) continue;
    // Leading taps are dropped only down to padding 0: the kernels take no negative padding.
    lo = std::min(lo, g.pad[d] / g.dilation[d]);
    if (lo == 0 && hi == g.kernel[d] - 1) continue;
    live.g.kernel[d] = hi - lo + 1;
    live.g.pad[d] = g.pad[d] - lo * g.dilation[d];
    live.first[d] = lo;
    live.cropped = true;
  }
  return live;
}

std::optional<std::vector<Region>> live_tap_regions(const ConvGeometry& g, int64_t macs_per_tap,
                                                    int64_t weights_per_tap) {
  std::vector<TapSpan> chosen[kSpatialDims];
  double live = 1, full = 1;
  for (int d = 0; d < kSpatialDims; ++d) {
    if (g.grid[d] == 0 || g.kernel[d] == 0) return std::nullopt;
    auto spans = constant_spans(g, d);
    const TapSpan whole = whole_span(g, d, spans);
    const int64_t whole_cost = (whole.o1 - whole.o0) * (whole.k1 - whole.k0);
    if (static_cast<double>(tap_positions(spans)) > (1 - kSplitGain) * whole_cost) spans = {whole};
    chosen[d] = std::move(spans);
    live *= static_cast<double>(tap_positions(chosen[d]));
    full *= static_cast<double>(g.grid[d] * g.kernel[d]);
  }
  const size_t count = chosen[0].size() * chosen[1].size() * chosen[2].size();
  double copied_taps = 0;  // the regions' live taps, summed
  for (const auto& a : chosen[0]) {
    for (const auto& b : chosen[1]) {
      for (const auto& c : chosen[2]) {
        copied_taps += static_cast<double>((a.k1 - a.k0) * (b.k1 - b.k0) * (c.k1 - c.k0));
      }
    }
  }
  const double saved = (full - live) * static_cast<double>(macs_per_tap);
  const double cost = static_cast<double>(count) * kMinSavedMacsPerRegion +
                      copied_taps * static_cast<double>(weights_per_tap) * kMacsPerWeightCopy;
  const bool small = saved < cost;
  if (live > (1 - kMinSaving) * full || count > kMaxRegions ||
      (small && conv_algorithm() == ConvAlgorithm::kAuto)) {
    return std::nullopt;
  }
  std::vector<Region> regions;
  regions.reserve(count);
  for (const auto& a : chosen[0]) {
    for (const auto& b : chosen[1]) {
      for (const auto& c : chosen[2]) regions.push_back({a, b, c});
    }
  }
  return regions;
}

ConvGeometry region_geometry(const ConvGeometry& g, const Region& r) {
  ConvGeometry sub = g;
  for (int d = 0; d < kSpatialDims; ++d) {
    sub.grid[d] = r[d].o1 - r[d].o0;
    sub.kernel[d] = r[d].k1 - r[d].k0;
    sub.pad[d] = g.pad[d] - r[d].o0 * g.stride[d] - r[d].k0 * g.dilation[d];
  }
  return sub;
}

}  // namespace convpool
