// Grouped convolutions with narrow groups as a depthwise conv over lanes (see the header).
//
// Lane l = (a * B + b) * Cc + c of a spread reads source channel a * Cc + c; a sum over lanes
// gives channel a * Cc + c the lanes b = 0 .. B - 1 in that order (results do not depend on the
// thread count). The forward spreads the image with (A, B, Cc) = (groups, kg, cg) and sums the
// lanes' outputs with (K, cg, 1); the input gradient spreads the output gradient with (K, cg, 1)
// and sums with (groups, kg, cg); the weight gradient needs both spreads and no sum (lane (o, i)
// is weight row (o, i)).
#include "grouped_lanes_cpu.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "channels_last_staging.h"
#include "conv_algorithm.h"
#include "conv_driver.h"
#include "depthwise_channels_last.h"
#include "gemm_conv_cpu.h"
#include "grouped_cpu.h"

namespace convpool::cpu {
namespace {

// Groups up to this wide on either side, and up to kMaxLanesPerGroup lanes per group: the spread
// holds kg copies of the image, the lanes' output cg copies of the grid. N8 28x28 3x3, ms, before
// -> after (torch): 2 per group C64 64x64 N16 channels_last forward 87 -> 16-19 (16-20); 3 per
// group C96 stride 2 channels_last 4.6 / 12.4 / 4.3 -> 1.6 / 3.3 / 3.1 (1.4-1.9 / 1.1-1.5 /
// 3.0-3.7, forward / input / weight gradient); 6 into 3 channels_last 5.4 / 5.3 / 4.5 -> 4.3 /
// 4.5 / 2.8 (2.6 / 2.8 / 2.4); 6 into 6 (36 lanes per group) gained nothing.
constexpr int64_t kMaxLaneWidth = 8;
constexpr int64_t kMaxLanesPerGroup = 24;

// The lanes run in NCHW whatever the tensors' layout, through transposing copies: the
// channels_last kernels ran them 1.3-3x slower (N8 3 per group C96 28x28 stride 2: forward 3.3
// against 1.1 ms, input gradient 4.5 against 1.6), the spread and the sums of a pixel's few
// lanes being scalar loops there and plane copies in NCHW.
constexpr auto kFormat = at::MemoryFormat::Contiguous;

struct Spread {
  int64_t A, B, Cc;
  int64_t lanes() const { return A * B * Cc; }
  int64_t channels() const { return A * Cc; }
};

ConvGeometry lanes_geometry(const ConvGeometry& g, int64_t lanes) {
  ConvGeometry l = g;
  l.channels = l.groups = lanes;
  l.channels_last = false;
  return l;
}

// Plane p of a [N, X, P...] tensor: its P elements.
int64_t plane(const at::Tensor& t) {
  return t.numel() / std::max<int64_t>(1, t.size(0) * t.size(1));
}

// src [N, A * Cc, P] into its lanes dst [N, L, P].
template <typename T>
void spread(const T* src, T* dst, int64_t N, int64_t P, Spread s) {
  const int64_t X = s.channels(), L = s.lanes();
  at::parallel_for(0, N * L, 1, [&](int64_t begin, int64_t end) {
    for (int64_t q = begin; q < end; ++q) {
      const int64_t n = q / L, l = q % L, a = l / (s.B * s.Cc), c = l % s.Cc;
      std::memcpy(dst + q * P, src + (n * X + a * s.Cc + c) * P, P * sizeof(T));
    }
  });
}

// The sums of src's lanes [N, L, P] into dst [N, A * Cc, P].
template <typename T>
void sum_lanes(const T* src, T* dst, int64_t N, int64_t P, Spread s) {
  const int64_t X = s.channels(), L = s.lanes();
  at::parallel_for(0, N * X, 1, [&](int64_t begin, int64_t end) {
    for (int64_t q = begin; q < end; ++q) {
      const int64_t n = q / X, a = q % X / s.Cc, c = q % s.Cc;
      T* to = dst + q * P;
      const T* lane = src + (n * L + a * s.B * s.Cc + c) * P;
      std::memcpy(to, lane, P * sizeof(T));
      for (int64_t b = 1; b < s.B; ++b) {
        const T* next = lane + b * s.Cc * P;
        for (int64_t p = 0; p < P; ++p) to[p] += next[p];
      }
    }
  });
}

void spread_into(const at::Tensor& t, Spread s, const at::Tensor& lanes) {
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "grouped_lanes_spread", [&] {
    spread(t.const_data_ptr<scalar_t>(), lanes.data_ptr<scalar_t>(), t.size(0), plane(t), s);
  });
}

void sum_into(const at::Tensor& lanes, Spread s, const at::Tensor& sums) {
  AT_DISPATCH_FLOATING_TYPES(lanes.scalar_type(), "grouped_lanes_sum", [&] {
    sum_lanes(lanes.const_data_ptr<scalar_t>(), sums.data_ptr<scalar_t>(), lanes.size(0),
              plane(lanes), s);
  });
}

// Weight [K, cg, kernel...] as the lanes' depthwise weight [K * cg, 1, kernel...].
std::vector<int64_t> lane_weight_sizes(at::IntArrayRef weight) {
  auto sizes = weight.vec();
  sizes[0] *= sizes[1];
  sizes[1] = 1;
  return sizes;
}

at::Tensor lane_weight(const at::Tensor& weight) {
  return weight.contiguous().view(lane_weight_sizes(weight.sizes()));
}

at::Tensor empty_lanes(const at::Tensor& like, int64_t lanes) {
  auto sizes = like.sizes().vec();
  sizes[1] = lanes;
  return at::empty(sizes, like.options().memory_format(kFormat));
}

// Samples a few at a time, so that the lanes (kg or cg copies of a tensor) stay in cache between
// the spread, the depthwise kernel and the sums, and their buffers are reused: whole-batch lanes
// of 32+ MiB came from fresh pages on every call (N16 2 per group C64 64x64 channels_last
// forward 47 -> 16 ms, torch 16-21).
constexpr int64_t kChunkBytes = int64_t{4} << 20;

// fn(a's lanes, b's lanes, n0, n1) for each chunk of samples [n0, n1), on lane buffers of one
// chunk (a, b: tensors of the conv's image and grid sizes, in either order).
template <typename Fn>
void over_chunks(const at::Tensor& a, const at::Tensor& b, int64_t lanes, Fn&& fn) {
  const int64_t batch = a.size(0);
  const int64_t bytes = lanes * std::max(plane(a), plane(b)) * a.element_size();
  const int64_t chunk =
      std::min(batch, std::max<int64_t>(1, kChunkBytes / std::max<int64_t>(1, bytes)));
  const auto a_lanes = empty_lanes(a.narrow(0, 0, chunk), lanes);
  const auto b_lanes = empty_lanes(b.narrow(0, 0, chunk), lanes);
  for (int64_t n0 = 0; n0 < batch; n0 += chunk) {
    const int64_t n1 = std::min(batch, n0 + chunk);
    fn(a_lanes.narrow(0, 0, n1 - n0), b_lanes.narrow(0, 0, n1 - n0), n0, n1);
  }
}

// `from` spread into lanes as spread_as says, kernel(from's lanes, to's lanes), and to's lanes
// summed into `to` as sum_as says.
template <typename Kernel>
void through_lanes(const at::Tensor& from, Spread spread_as, const at::Tensor& to, Spread sum_as,
                   Kernel&& kernel) {
  const auto src = contiguous_as(from, kFormat);
  const auto dst =
      to.is_contiguous() ? to : at::empty(to.sizes(), to.options().memory_format(kFormat));
  over_chunks(
      src, dst, spread_as.lanes(),
      [&](const at::Tensor& src_lanes, const at::Tensor& dst_lanes, int64_t n0, int64_t n1) {
        spread_into(src.narrow(0, n0, n1 - n0), spread_as, src_lanes);
        kernel(src_lanes, dst_lanes);
        sum_into(dst_lanes, sum_as, dst.narrow(0, n0, n1 - n0));
      });
  if (!dst.is_same(to)) copy_layout(to, dst);
}

}  // namespace

bool grouped_lanes_apply(const at::Tensor& a, const at::Tensor& b, const ConvGeometry& g,
                         int64_t grid_channels) {
  if (conv_algorithm() != ConvAlgorithm::kAuto) return false;
  if (a.scalar_type() != at::kFloat && a.scalar_type() != at::kDouble) return false;
  if (g.groups <= 1 || g.groups >= g.channels || grid_channels % g.groups != 0) return false;
  if (grouped_shape_applies(g, grid_channels)) return false;
  const int64_t cg = g.channels / g.groups, kg = grid_channels / g.groups;
  if (cg > kMaxLaneWidth || kg > kMaxLaneWidth || cg * kg > kMaxLanesPerGroup) return false;
  // The lanes' kernels take NCHW through blocks that must sit in cache.
  return depthwise_vector_kernels(a, a, lanes_geometry(g, grid_channels * cg)) && all_finite(a) &&
         all_finite(b);
}

void grouped_lanes_conv(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
                        const ConvGeometry& g, const at::Tensor& bias) {
  const int64_t G = g.groups, cg = g.channels / G, K = output.size(1), kg = K / G;
  const auto w = lane_weight(weight);
  through_lanes(
      input, {G, kg, cg}, output, {K, cg, 1}, [&](const at::Tensor& image, const at::Tensor& grid) {
        depthwise_forward_vectors(image, w, at::Tensor(), grid, lanes_geometry(g, K * cg));
      });
  add_bias(output, bias);
}

void grouped_lanes_conv_transpose(const at::Tensor& input, const at::Tensor& weight,
                                  const at::Tensor& output, const ConvGeometry& g) {
  const int64_t G = g.groups, cg = g.channels / G, K = input.size(1), kg = K / G;
  const auto w = lane_weight(weight);
  through_lanes(input, {K, cg, 1}, output, {G, kg, cg},
                [&](const at::Tensor& grid, const at::Tensor& image) {
                  depthwise_transpose_vectors(grid, w, image, lanes_geometry(g, K * cg));
                });
}

// Chunk by chunk in order, each chunk's sums added to the last: the same order for any thread
// count.
void grouped_lanes_weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                               const at::Tensor& grad_weight, const ConvGeometry& g) {
  const int64_t G = g.groups, cg = g.channels / G, K = grad_output.size(1), kg = K / G;
  const auto x = contiguous_as(input, kFormat);
  const auto gy = contiguous_as(grad_output, kFormat);
  const auto lg = lanes_geometry(g, K * cg);
  const auto sizes = lane_weight_sizes(grad_weight.sizes());
  const auto sums = at::zeros(sizes, grad_weight.options());
  const auto chunk_sums = at::empty(sizes, grad_weight.options());
  over_chunks(x, gy, K * cg,
              [&](const at::Tensor& image, const at::Tensor& grid, int64_t n0, int64_t n1) {
                spread_into(x.narrow(0, n0, n1 - n0), {G, kg, cg}, image);
                spread_into(gy.narrow(0, n0, n1 - n0), {K, cg, 1}, grid);
                depthwise_weight_grad_vectors(grid, image, chunk_sums, lg);
                sums.add_(chunk_sums);
              });
  grad_weight.copy_(sums.view(grad_weight.sizes()));
}

}  // namespace convpool::cpu
