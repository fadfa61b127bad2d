// The weight gradient of a 3x3 stride-1 conv by Winograd F(4x4, 3x3). The forward computes each
// output tile as Y = A^T [(G g G^T) . (B^T d B)] A, so the gradient of the kernel g is
//   dL/dg = G^T [ sum over tiles (A dY A^T) . (B^T d B) ] G,
// and the sum over tiles is, for each of the 36 points, one GEMM [C, tiles] x [tiles, K] whose
// inner dimension is the tile count: long, well-vectorised dot products with 4x fewer
// multiplications than the im2col weight gradient.
//
// Tasks own a range of output channels (their accumulators stay within kAccumulatorBytes) and a
// fixed run of tiles; the runs' partial sums are added in order, so the result does not depend
// on the thread count.
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "../common/isa_clones.h"
#include "blocked_transpose.h"
#include "winograd_cpu.h"
#include "winograd_tiles.h"

namespace convpool::cpu {
namespace {

using namespace winograd;

constexpr int64_t kAccumulatorBytes = 2 * 1024 * 1024;
constexpr int64_t kTasks = 4;

// A dY's 1-d factor: 4 gradient values -> 6 points.
template <typename V>
[[gnu::always_inline]] inline void grad_transform(const V* y, int64_t in_stride, V* out,
                                                  int64_t out_stride) {
  using T = std::remove_reference_t<decltype(y[0][0])>;
  const V y0 = y[0], y1 = y[in_stride], y2 = y[2 * in_stride], y3 = y[3 * in_stride];
  const V even = y0 + y2, odd = y1 + y3;
  const V even4 = y0 + T(4) * y2, odd2 = T(2) * y1 + T(8) * y3;
  out[0] = y0;
  out[out_stride] = even + odd;
  out[2 * out_stride] = even - odd;
  out[3 * out_stride] = even4 + odd2;
  out[4 * out_stride] = even4 - odd2;
  out[5 * out_stride] = y3;
}

// G^T x's 1-d factor: 6 points -> 3 kernel taps.
template <typename V>
[[gnu::always_inline]] inline void tap_transform(const V* x, int64_t in_stride, V* out,
                                                 int64_t out_stride) {
  using T = std::remove_reference_t<decltype(x[0][0])>;
  const V x1 = x[in_stride], x2 = x[2 * in_stride], x3 = x[3 * in_stride];
  const V x4 = x[4 * in_stride];
  out[0] = x[0] * T(0.25) - (x1 + x2) * T(1.0 / 6) + (x3 + x4) * T(1.0 / 24);
  out[out_stride] = (x2 - x1) * T(1.0 / 6) + (x3 - x4) * T(1.0 / 12);
  out[2 * out_stride] = (x3 + x4 - x1 - x2) * T(1.0 / 6) + x[5 * in_stride];
}

struct GradPlan {
  Plan tiles;           // the forward's tiling (output tiles, input windows)
  int64_t block_tiles;  // tiles transformed together
  int64_t k_chunk, k_chunks;
  int64_t runs;  // fixed runs of tiles per output channel chunk
};

// Gy [36, t1 - t0, kc]: A dY A^T of tiles [t0, t1), channels [k0, k0 + kc), over k.
template <typename T>
[[gnu::always_inline]] inline void transform_grads(const T* gy, const Plan& p, int64_t t0,
                                                   int64_t t1, int64_t k0, int64_t kc, T* out) {
  using V = Vec<T>;
  constexpr int64_t L = kLanes<T>;
  const int64_t rows = t1 - t0, channel_stride = output_channel_stride(p);
  for (int64_t t = t0; t < t1; ++t) {
    const OutputTile tile = output_tile(p, t);
    for (int64_t kv = 0; kv < kc; kv += L) {
      const int64_t k = k0 + kv, lanes = std::min(L, p.K - k);
      V y[kTile * kTile];
      for (int i = 0; i < kTile; ++i) {
        for (int j = 0; j < kTile; ++j) {
          V& v = y[i * kTile + j];
          v = V{};
          if (i >= tile.rows || j >= tile.cols || lanes <= 0) continue;
          const T* src = gy + output_offset(p, tile, i, j, k);
          if (p.channels_last && lanes == L) {
            v = load(src);
          } else {
            for (int64_t l = 0; l < lanes; ++l) v[l] = src[l * channel_stride];
          }
        }
      }
      V cols[kAlpha * kTile];  // A dY: [6, 4]
      for (int j = 0; j < kTile; ++j) grad_transform(y + j, kTile, cols + j, kTile);
      V m[kPoints];  // A dY A^T
      for (int a = 0; a < kAlpha; ++a) grad_transform(cols + a * kTile, 1, m + a * kAlpha, 1);
      for (int xi = 0; xi < kPoints; ++xi) store(out + (xi * rows + (t - t0)) * kc + kv, m[xi]);
    }
  }
}

// acc [36, Cp, kc] += sum over tiles [t_begin, t_end) of V^T x Gy, point by point.
template <typename T>
[[gnu::always_inline]] inline void accumulate_run(const T* gy, const T* x, const GradPlan& gp,
                                                  int64_t t_begin, int64_t t_end, int64_t k0,
                                                  int64_t kc, T* acc) {
  constexpr int64_t L = kLanes<T>;
  const Plan& p = gp.tiles;
  std::vector<T> V_(kPoints * gp.block_tiles * p.Cp), G_(kPoints * gp.block_tiles * kc);
  std::fill(acc, acc + kPoints * p.Cp * kc, T(0));
  for (int64_t t0 = t_begin; t0 < t_end; t0 += gp.block_tiles) {
    const int64_t t1 = std::min(t_end, t0 + gp.block_tiles), rows = t1 - t0;
    transform_inputs(x, p, t0, t1, V_.data());
    transform_grads(gy, p, t0, t1, k0, kc, G_.data());
    for (int xi = 0; xi < kPoints; ++xi) {
      const Operand<T> lhs{V_.data() + xi * rows * p.Cp, 1, p.Cp};  // V^T: [Cp, tiles]
      const T* rhs = G_.data() + xi * rows * kc;
      T* out = acc + xi * p.Cp * kc;
      int64_t j = 0;
      for (; j + 2 * L <= kc; j += 2 * L) {
        gemm_rows<T, 2, true>(lhs, rhs + j, kc, out + j, kc, p.Cp, rows);
      }
      if (j < kc) gemm_rows<T, 1, true>(lhs, rhs + j, kc, out + j, kc, p.Cp, rows);
    }
  }
}

// dW [C, 9, Kp] rows for channels [c_begin, c_end), output channels [k0, k0 + kc), from acc.
template <typename T>
[[gnu::always_inline]] inline void transform_taps(const T* acc, const Plan& p, int64_t k0,
                                                  int64_t kc, int64_t c_begin, int64_t c_end,
                                                  T* taps) {
  using V = Vec<T>;
  constexpr int64_t L = kLanes<T>;
  for (int64_t c = c_begin; c < c_end; ++c) {
    for (int64_t kv = 0; kv < kc; kv += L) {
      V m[kPoints];
      for (int xi = 0; xi < kPoints; ++xi) m[xi] = load(acc + (xi * p.Cp + c) * kc + kv);
      V cols[3 * kAlpha];  // G^T m: [3, 6]
      for (int b = 0; b < kAlpha; ++b) tap_transform(m + b, kAlpha, cols + b, kAlpha);
      V g[9];  // G^T m G
      for (int r = 0; r < 3; ++r) tap_transform(cols + r * kAlpha, 1, g + r * 3, 1);
      for (int i = 0; i < 9; ++i) store(taps + (c * 9 + i) * p.Kp + k0 + kv, g[i]);
    }
  }
}

CONVPOOL_CLONES void accumulate_run_f32(const float* gy, const float* x, const GradPlan& gp,
                                        int64_t tb, int64_t te, int64_t k0, int64_t kc,
                                        float* acc) {
  accumulate_run(gy, x, gp, tb, te, k0, kc, acc);
}
CONVPOOL_CLONES void accumulate_run_f64(const double* gy, const double* x, const GradPlan& gp,
                                        int64_t tb, int64_t te, int64_t k0, int64_t kc,
                                        double* acc) {
  accumulate_run(gy, x, gp, tb, te, k0, kc, acc);
}
CONVPOOL_CLONES void transform_taps_f32(const float* acc, const Plan& p, int64_t k0, int64_t kc,
                                        int64_t cb, int64_t ce, float* taps) {
  transform_taps(acc, p, k0, kc, cb, ce, taps);
}
CONVPOOL_CLONES void transform_taps_f64(const double* acc, const Plan& p, int64_t k0, int64_t kc,
                                        int64_t cb, int64_t ce, double* taps) {
  transform_taps(acc, p, k0, kc, cb, ce, taps);
}

void accumulate_run_any(const float* gy, const float* x, const GradPlan& gp, int64_t tb, int64_t te,
                        int64_t k0, int64_t kc, float* acc) {
  accumulate_run_f32(gy, x, gp, tb, te, k0, kc, acc);
}
void accumulate_run_any(const double* gy, const double* x, const GradPlan& gp, int64_t tb,
                        int64_t te, int64_t k0, int64_t kc, double* acc) {
  accumulate_run_f64(gy, x, gp, tb, te, k0, kc, acc);
}
void transform_taps_any(const float* acc, const Plan& p, int64_t k0, int64_t kc, int64_t cb,
                        int64_t ce, float* taps) {
  transform_taps_f32(acc, p, k0, kc, cb, ce, taps);
}
void transform_taps_any(const double* acc, const Plan& p, int64_t k0, int64_t kc, int64_t cb,
                        int64_t ce, double* taps) {
  transform_taps_f64(acc, p, k0, kc, cb, ce, taps);
}

template <typename T>
GradPlan make_grad_plan(const ConvGeometry& g, int64_t batch, int64_t out_channels) {
  constexpr int64_t L = kLanes<T>;
  GradPlan gp;
  gp.tiles = make_plan<T>(g, batch, out_channels);
  const Plan& p = gp.tiles;
  const int64_t size = static_cast<int64_t>(sizeof(T));
  const int64_t vectors = p.Kp / L;
  const int64_t chunks =
      std::clamp((kPoints * p.Cp * p.Kp * size + kAccumulatorBytes - 1) / kAccumulatorBytes,
                 int64_t{1}, vectors);
  gp.k_chunk = (vectors + chunks - 1) / chunks * L;
  gp.k_chunks = (p.Kp + gp.k_chunk - 1) / gp.k_chunk;
  gp.block_tiles =
      std::clamp(kBlockBytes / (kPoints * (p.Cp + gp.k_chunk) * size), kMinTiles, kMaxTiles);
  gp.runs =
      std::clamp(kTasks / gp.k_chunks, int64_t{1}, std::max<int64_t>(1, p.tiles / gp.block_tiles));
  return gp;
}

template <typename T>
void winograd_weight_grad_impl(const T* gy, const T* x, T* gw, const ConvGeometry& g, int64_t batch,
                               int64_t out_channels) {
  const GradPlan gp = make_grad_plan<T>(g, batch, out_channels);
  const Plan& p = gp.tiles;
  const int64_t acc_size = kPoints * p.Cp * gp.k_chunk;
  std::vector<T> acc(gp.k_chunks * gp.runs * acc_size);
  at::parallel_for(0, gp.k_chunks * gp.runs, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t chunk = task / gp.runs, run = task % gp.runs;
      const int64_t k0 = chunk * gp.k_chunk, kc = std::min(gp.k_chunk, p.Kp - k0);
      const int64_t t_begin = p.tiles * run / gp.runs, t_end = p.tiles * (run + 1) / gp.runs;
      accumulate_run_any(gy, x, gp, t_begin, t_end, k0, kc, acc.data() + task * acc_size);
    }
  });
  std::vector<T> taps(p.C * 9 * p.Kp);
  for (int64_t chunk = 0; chunk < gp.k_chunks; ++chunk) {
    const int64_t k0 = chunk * gp.k_chunk, kc = std::min(gp.k_chunk, p.Kp - k0);
    T* sum = acc.data() + chunk * gp.runs * acc_size;
    for (int64_t run = 1; run < gp.runs; ++run) {
      const T* partial = sum + run * acc_size;
      for (int64_t i = 0; i < kPoints * p.Cp * kc; ++i) sum[i] += partial[i];
    }
    at::parallel_for(0, p.C, 16, [&](int64_t b, int64_t e) {
      transform_taps_any(sum, p, k0, kc, b, e, taps.data());
    });
  }
  // Element (k, c, i) of grad_weight: NCHW [K, C, 9] or channels_last [K, 9, C].
  const int64_t c_stride = p.channels_last ? 1 : 9, i_stride = p.channels_last ? p.C : 1;
  for (int i = 0; i < 9; ++i) {
    // rows (c, i), [C, K] -> grad_weight (k, c, i)
    blocked_transpose(taps.data() + i * p.Kp, 9 * p.Kp, int64_t{1}, p.C, p.K, gw + i * i_stride,
                      p.C * 9, c_stride);
  }
}

}  // namespace

void winograd_weight_grad(const float* grad_output, const float* x, float* grad_weight,
                          const ConvGeometry& g, int64_t batch, int64_t out_channels) {
  winograd_weight_grad_impl(grad_output, x, grad_weight, g, batch, out_channels);
}

void winograd_weight_grad(const double* grad_output, const double* x, double* grad_weight,
                          const ConvGeometry& g, int64_t batch, int64_t out_channels) {
  winograd_weight_grad_impl(grad_output, x, grad_weight, g, batch, out_channels);
}

}  // namespace convpool::cpu
