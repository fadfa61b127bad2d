#include "tap_gemm_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "../common/tap_run.h"
#include "../common/thread_scratch.h"
#include "live_taps.h"
#include "packed_gemm.h"

namespace convpool::cpu {
namespace {

// Output pixels per block: their rows of K outputs ([256, 256] float32: 256 KiB) stay in L2 while
// every tap's weight passes.
constexpr int64_t kBlockPixels = 256;
// The weight gradient's column slices: [Kg, slice] accumulators beside a block's rows, and
// enough tasks (taps x groups x slices) for both cores.
constexpr int64_t kSliceColumns = 256;
constexpr int64_t kMinWeightGradTasks = 16;
constexpr int64_t kMinSliceColumns = 64;
// Dense strided forwards (windows inside the image, stride > 1) take the taps too where each
// tap's product has at least this many channels: their rows read in place cost less than
// im2col's gather, a strided copy (and an NCHW weight needs no relayout). 2 threads, N8, ratio to
// torch im2col -> taps (median of 3 runs): 3x3 stride 2 C256 -> 512 14x14 0.76 -> 0.93 NCHW,
// 0.79 -> 0.96 channels_last; C512 -> 512 0.73 -> 0.88, 0.79 -> 0.99; C128 -> 256 28x28 0.86 ->
// 1.06, 0.93 -> 0.99; C64 -> 128 56x56 0.91 -> 0.94-0.98, 0.91 -> 0.97. Their weight gradients
// did not gain (3x3 stride 2 C256 1.27 -> 1.28, C64 1.18 -> 0.90), nor did stride-1 convs that
// read little padding (kMinDeadShare below). The output channels
// (per group) are the GEMMs' columns and need as many: the stem's input gradient (64 -> 3
// channels, 7x7 stride 2) took 3x as long as col2im.
constexpr int64_t kMinDenseChannels = 64;
constexpr int64_t kMinDensePixels = 64;
// Stride-1 forwards (and stride-1 input gradients, the forwards of the flipped kernel) where at
// least this share of the tap positions reads padding, which the taps skip: inception_v3's 1x7
// and 7x1 convs on 12x12 maps (14 %), N4, ms im2col -> taps (torch): C192 NCHW 2.77 -> 2.17
// (2.10), channels_last 3.04 -> 2.52 (2.67); C160 7x1 1.84 -> 1.38 (1.46), 1.99 -> 1.71 (1.57).
// Their weight gradients too: N4 C192 1x7 12x12 0.83-0.86 -> 1.01-1.17 channels_last, 0.93-1.05
// -> 1.05-1.09 NCHW; 7x1 C160 -> 192 1.01-1.04 -> 1.12-1.15, 0.78-0.85 -> 0.84.
// Grouped 3x3 with 112 channels per group on 7x7 maps (18 %; RegNetY-16GF's last stage), N8 C896
// G8, ratio to torch 0.73-0.78 -> 0.89-0.92 (and stride 2 on 14x14 0.77-0.80 -> 0.88-0.93).
// 3x3 dilation 2 on 28x28 maps (5 %) lost (C128 channels_last 1.32 -> 1.21x torch).
constexpr double kMinDeadShare = 0.10;

// Blocks of equal size, an even count where there are several, so that two cores finish together.
int64_t pixels_per_block(int64_t total) {
  int64_t blocks = (total + kBlockPixels - 1) / kBlockPixels;
  if (blocks > 1) blocks += blocks % 2;
  if (blocks == 1 && total >= 64) blocks = 2;
  return std::max<int64_t>(1, (total + blocks - 1) / blocks);
}

// Output pixel m (flat over the batch and a spatial extent `dims`): its sample and coordinates.
struct Pixel {
  int64_t n, o[kSpatialDims];
};

inline Pixel pixel_of(const int64_t (&dims)[kSpatialDims], int64_t m) {
  const int64_t volume = dims[0] * dims[1] * dims[2];
  Pixel p;
  p.n = m / volume;
  int64_t q = m % volume;
  p.o[2] = q % dims[2];
  q /= dims[2];
  p.o[1] = q % dims[1];
  p.o[0] = q / dims[1];
  return p;
}

// Where tap (k[0], k[1], k[2]) of an output pixel reads. Forward: the image pixel
// o * stride - pad + k * dilation per dim, outside the padding for grid positions in the tap's
// run. Transposed (the output is the image): the grid position that tap maps onto pixel i, where
// one does (i + pad - k * dilation a multiple of the stride).
class TapSources {
 public:
  TapSources(const ConvGeometry& g, bool transposed) : g_(g), transposed_(transposed) {
    for (int d = 0; d < kSpatialDims; ++d) {
      for (int64_t k = 0; k < g.kernel[d]; ++k) {
        runs_[d].push_back(tap_run(k, g.stride[d], g.pad[d], g.dilation[d], g.image[d], g.grid[d]));
      }
    }
  }

  const int64_t (&out_dims() const)[kSpatialDims] { return transposed_ ? g_.image : g_.grid; }

  // Forward: the grid positions along dim d where every tap of the dim reads inside the image.
  void inside_every_tap(int d, int64_t& lo, int64_t& hi) const {
    lo = 0;
    hi = g_.grid[d];
    for (const TapRun& r : runs_[d]) {
      lo = std::max(lo, r.lo);
      hi = std::min(hi, r.hi);
    }
  }
  int64_t in_volume() const { return transposed_ ? g_.grid_numel() : g_.image_numel(); }

  // The source pixel's offset within its sample, or -1 where the tap reads padding (or, for the
  // transpose, no grid position).
  int64_t source(const Pixel& p, const int64_t (&k)[kSpatialDims]) const {
    int64_t at = 0;
    for (int d = 0; d < kSpatialDims; ++d) {
      if (transposed_) {
        const int64_t o =
            covering_grid_index(p.o[d], k[d], g_.stride[d], g_.pad[d], g_.dilation[d], g_.grid[d]);
        if (o < 0) return -1;
        at = at * g_.grid[d] + o;
      } else {
        const TapRun& r = runs_[d][k[d]];
        if (p.o[d] < r.lo || p.o[d] >= r.hi) return -1;
        at = at * g_.image[d] + p.o[d] * g_.stride[d] + r.offset;
      }
    }
    return at;
  }

 private:
  const ConvGeometry& g_;
  bool transposed_;
  std::vector<TapRun> runs_[kSpatialDims];
};

inline void split(const ConvGeometry& g, int64_t t, int64_t (&k)[kSpatialDims]) {
  split_tap(g, t, k[0], k[1], k[2]);
}

}  // namespace

bool taps_engine_for(const ConvGeometry& g, int64_t batch, int64_t out_channels, bool floating,
                     ConvPass pass) {
  if (!floating || !taps_gemm_allowed() || batch == 0) return false;
  const int64_t cg = g.channels / g.groups;
  // No weight copies per region here: only the regions' count and the products they drop count.
  if (live_tap_regions(g, batch * cg * out_channels, 0).has_value()) return true;
  bool strided = false;
  double live = 1;  // the share of tap positions inside the image
  for (int d = 0; d < kSpatialDims; ++d) {
    if (g.grid[d] == 0) return false;
    strided |= g.stride[d] > 1;
    int64_t inside = 0;
    for (int64_t k = 0; k < g.kernel[d]; ++k) {
      const TapRun r = tap_run(k, g.stride[d], g.pad[d], g.dilation[d], g.image[d], g.grid[d]);
      inside += r.hi - r.lo;
    }
    live *= static_cast<double>(inside) / static_cast<double>(g.grid[d] * g.kernel[d]);
  }
  // Strided: forwards only; reading padding: every pass.
  const bool dead = live <= 1 - kMinDeadShare;
  return (pass == ConvPass::kForward ? strided || dead : !strided && dead) &&
         g.kernel_numel() > 1 && cg >= kMinDenseChannels &&
         out_channels / g.groups >= kMinDenseChannels && batch * g.grid_numel() >= kMinDensePixels;
}

bool strided_transpose_by_taps(const ConvGeometry& g, int64_t batch, int64_t channels,
                               bool floating) {
  if (!floating || !taps_gemm_allowed() || batch == 0) return false;
  bool strided = false;
  for (int d = 0; d < kSpatialDims; ++d) strided |= g.stride[d] > 1;
  return strided && g.kernel_numel() > 1 && channels / g.groups >= kMinDenseChannels &&
         g.channels / g.groups >= kMinDenseChannels && batch * g.image_numel() >= kMinDensePixels;
}

// Whether conv_by_taps multiplies each kernel row's KW taps as one product: a forward without
// groups or dilation along W, whose rows' weights [KW * C, slice] stay small enough to share L2
// with a block's outputs.
constexpr int64_t kMaxRowWeightBytes = 128 * 1024;

bool merges_rows(const ConvGeometry& g, TapProduct product, int64_t slice, int64_t element_size) {
  return !product.transposed && g.groups == 1 && g.dilation[2] == 1 && g.kernel[2] > 1 &&
         g.kernel[2] * g.channels * slice * element_size <= kMaxRowWeightBytes;
}

template <typename T>
void conv_by_taps(const T* x, TapWeights<T> w, T* y, const ConvGeometry& g, TapProduct product,
                  const T* bias) {
  const TapSources sources(g, product.transposed);
  const auto& out_dims = sources.out_dims();
  const int64_t G = g.groups, taps = g.kernel_numel(), in_volume = sources.in_volume();
  const int64_t C = product.transposed ? product.channels : g.channels;
  const int64_t K = product.transposed ? g.channels : product.channels, cg = C / G, kg = K / G;
  const int64_t total = product.batch * out_dims[0] * out_dims[1] * out_dims[2];
  // Each tap's weight in slices of at most kSliceColumns outputs: a block's taps all add into
  // one slice of its output rows ([256, 256] float32) while it stays in L2. Whole, a block's rows
  // of K = 2048 outputs (an input gradient of ASPP) passed through L3 once per tap.
  const int64_t slices = (kg + kSliceColumns - 1) / kSliceColumns;
  const int64_t slice = (kg + slices - 1) / slices;
  // Where merges_rows holds, a pixel's KW taps of one kernel row whose windows lie inside the
  // image along W are one product: KW * C contiguous values of the channels_last input against
  // the row's [KW * C, slice] weight, KW times the reduction per pass over a block's outputs and
  // a KW-th of the row tables; the pixels at the W borders take their live taps one by one.
  // N8, 2 threads, ratio to torch, 3 runs: 3x3 stride 2 C64 -> 128 56x56 channels_last
  // 0.88-0.90 -> 0.92-1.00, 5x5 stride 2 C64 -> 64 0.82-0.86 -> 0.88-0.94. With C128 -> 256
  // (a row weight of 384 KiB) merged rows lost (1.03 -> 0.83), hence kMaxRowWeightBytes.
  const bool merged = merges_rows(g, product, slice, sizeof(T));
  const int64_t KW = g.kernel[2], runs = merged ? taps / KW : 0;
  // Packed on both cores, a matrix per task: one [256, 256] matrix (an input gradient's slice)
  // is a single packing block, which its own parallel pass left to one core.
  std::vector<std::unique_ptr<PackedMatrix<T>>> packed(G * slices * taps),
      run_packed(slices * runs);
  at::parallel_for(0, G * slices * taps + slices * runs, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> plain;
    for (int64_t i = begin; i < end; ++i) {
      if (i >= G * slices * taps) {
        const int64_t r = i - G * slices * taps, j0 = r / runs * slice, run = r % runs;
        const int64_t cols = std::min(slice, kg - j0);
        // Rows (kw, c) of the run: tap run * KW + kw, input channel c.
        plain.resize(KW * cg * cols);
        for (int64_t kw = 0; kw < KW; ++kw) {
          for (int64_t c = 0; c < cg; ++c) {
            const T* from = w.data + (run * KW + kw) * w.tap + c * w.in + j0 * w.out;
            T* to = plain.data() + (kw * cg + c) * cols;
            for (int64_t j = 0; j < cols; ++j) to[j] = from[j * w.out];
          }
        }
        run_packed[r] = std::make_unique<PackedMatrix<T>>(StridedMatrix<T>{plain.data(), cols, 1},
                                                          KW * cg, cols);
        continue;
      }
      const int64_t gi = i / (slices * taps), j0 = i / taps % slices * slice, t = i % taps;
      packed[i] = std::make_unique<PackedMatrix<T>>(
          StridedMatrix<T>{w.data + gi * w.group + t * w.tap + j0 * w.out, w.in, w.out}, cg,
          std::min(slice, kg - j0));
    }
  });
  int64_t w_lo = 0, w_hi = 0;
  if (merged) sources.inside_every_tap(2, w_lo, w_hi);
  const int64_t P = pixels_per_block(total);
  at::parallel_for(0, (total + P - 1) / P, 1, [&](int64_t begin, int64_t end) {
    const ThreadScratch<const T*> a_rows(0, P);
    const ThreadScratch<T*> c_rows(1, P);
    const ThreadScratch<Pixel> pixels(2, P);
    // Per kernel row: the block's pixels with a window row partly inside the image along W.
    const ThreadScratch<int64_t> partial(3, merged ? P : 0);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t m0 = b * P, m1 = std::min(total, m0 + P);
      for (int64_t m = m0; m < m1; ++m) {
        pixels[m - m0] = pixel_of(out_dims, m);
        T* out = y + m * K;
        if (bias) {
          std::copy_n(bias, K, out);
        } else {
          std::fill_n(out, K, T(0));
        }
      }
      // Tap t's rows of the block, restricted to `only` (a list of block pixels) where given.
      const auto tap_product = [&](int64_t gi, int64_t j0, int64_t t, const PackedMatrix<T>& b,
                                   const int64_t* only, int64_t count) {
        int64_t k[kSpatialDims];
        split(g, t, k);
        int64_t rows = 0;
        for (int64_t i = 0; i < count; ++i) {
          const int64_t m = only ? m0 + only[i] : m0 + i;
          const Pixel& p = pixels[m - m0];
          const int64_t at = sources.source(p, k);
          if (at < 0) continue;
          a_rows[rows] = x + (p.n * in_volume + at) * C + gi * cg;
          c_rows[rows++] = y + m * K + gi * kg + j0;
        }
        if (rows > 0) packed_gemm_rows(a_rows.data(), c_rows.data(), rows, b, true);
      };
      for (int64_t j = 0; j < slices && merged; ++j) {
        for (int64_t run = 0; run < runs; ++run) {
          int64_t k[kSpatialDims];
          split(g, run * KW, k);
          int64_t rows = 0, partials = 0;
          for (int64_t m = m0; m < m1; ++m) {
            const Pixel& p = pixels[m - m0];
            if (p.o[2] < w_lo || p.o[2] >= w_hi) {
              partial[partials++] = m - m0;
              continue;
            }
            const int64_t at = sources.source(p, k);
            if (at < 0) continue;
            a_rows[rows] = x + (p.n * in_volume + at) * C;
            c_rows[rows++] = y + m * K + j * slice;
          }
          if (rows > 0) {
            packed_gemm_rows(a_rows.data(), c_rows.data(), rows, *run_packed[j * runs + run], true);
          }
          for (int64_t kw = 0; kw < KW && partials > 0; ++kw) {
            const int64_t t = run * KW + kw;
            tap_product(0, j * slice, t, *packed[j * taps + t], partial.data(), partials);
          }
        }
      }
      const auto* weight = packed.data();
      for (int64_t gi = 0; gi < G && !merged; ++gi) {
        for (int64_t j0 = 0; j0 < kg; j0 += slice) {
          for (int64_t t = 0; t < taps; ++t, ++weight) {
            tap_product(gi, j0, t, **weight, nullptr, m1 - m0);
          }
        }
      }
    }
  });
}

template <typename T>
void weight_grad_by_taps(const T* grad_output, const T* x, T* grad_weight, const ConvGeometry& g,
                         int64_t batch, int64_t out_channels) {
  const int64_t C = g.channels, G = g.groups, K = out_channels, cg = C / G, kg = K / G;
  const int64_t taps = g.kernel_numel(), image = g.image_numel(), total = batch * g.grid_numel();
  int64_t slices = (cg + kSliceColumns - 1) / kSliceColumns;
  slices = std::max(slices, std::min((kMinWeightGradTasks + taps * G - 1) / (taps * G),
                                     (cg + kMinSliceColumns - 1) / kMinSliceColumns));
  const int64_t slice = (cg + slices - 1) / slices;
  slices = (cg + slice - 1) / slice;
  const TapSources sources(g, /*transposed=*/false);
  const int64_t P = std::min(kBlockPixels, std::max<int64_t>(total, 1));
  // Task (gi, t, slice) owns grad_weight[group gi's kg rows, tap t, its columns] and sums every
  // block of pixels into it in order: no partial sums to add, the same bits for any thread count.
  at::parallel_for(0, G * taps * slices, 1, [&](int64_t begin, int64_t end) {
    const ThreadScratch<T> go_rows(0, P * kg);
    const ThreadScratch<T> x_rows(1, P * slice);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t gi = task / (taps * slices), t = task / slices % taps;
      const int64_t c0 = task % slices * slice, cols = std::min(cg, c0 + slice) - c0;
      int64_t k[kSpatialDims];
      split(g, t, k);
      T* out = grad_weight + gi * kg * taps * cg + t * cg + c0;
      for (int64_t m0 = 0; m0 < std::max<int64_t>(total, 1); m0 += P) {
        const int64_t m1 = std::min(total, m0 + P);
        int64_t rows = 0;
        for (int64_t m = m0; m < m1; ++m) {
          const Pixel p = pixel_of(g.grid, m);
          const int64_t at = sources.source(p, k);
          if (at < 0) continue;
          std::copy_n(grad_output + m * K + gi * kg, kg, go_rows.data() + rows * kg);
          std::copy_n(x + (p.n * image + at) * C + gi * cg + c0, cols, x_rows.data() + rows * cols);
          ++rows;
        }
        // grad_weight[kg, cols] (+)= go_rows^T [kg, rows] x x_rows [rows, cols]; zero rows on
        // the first block writes zeros.
        packed_gemm(StridedMatrix<T>{go_rows.data(), 1, kg},
                    StridedMatrix<T>{x_rows.data(), cols, 1}, out, taps * cg, kg, cols, rows,
                    /*accumulate=*/m0 > 0);
      }
    }
  });
}

template void conv_by_taps(const float*, TapWeights<float>, float*, const ConvGeometry&, TapProduct,
                           const float*);
template void conv_by_taps(const double*, TapWeights<double>, double*, const ConvGeometry&,
                           TapProduct, const double*);
template void weight_grad_by_taps(const float*, const float*, float*, const ConvGeometry&, int64_t,
                                  int64_t);
template void weight_grad_by_taps(const double*, const double*, double*, const ConvGeometry&,
                                  int64_t, int64_t);

}  // namespace convpool::cpu
