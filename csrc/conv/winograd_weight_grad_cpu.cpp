// The weight gradient of a 3x3 stride-1 conv by Winograd F(4x4, 3x3) (the algebra is in
// winograd_grad_tiles.h), for many tiles: per block of tiles, each of the 36 points is one GEMM
// [C, tiles] x [tiles, K] whose inner dimension is the tile count, with 4x fewer multiplications
// than the im2col weight gradient.
//
// Tasks own a range of output channels (their accumulators stay within kAccumulatorBytes) and a
// fixed run of tiles; the runs' partial sums are added in order, so the result does not depend
// on the thread count.
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "../common/isa_clones.h"
#include "../common/thread_scratch.h"
#include "blocked_transpose.h"
#include "winograd_cpu.h"
#include "winograd_grad_tiles.h"

namespace convpool::cpu {
namespace {

using namespace winograd;

constexpr int64_t kAccumulatorBytes = 2 * 1024 * 1024;
constexpr int64_t kTasks = 4;

struct GradPlan {
  Plan tiles;           // the forward's tiling (output tiles, input windows)
  int64_t block_tiles;  // tiles transformed together
  int64_t k_chunk, k_chunks;
  int64_t runs;  // fixed runs of tiles per output channel chunk
};

// acc [subkernels, 36, Cp, kc] = sum over tiles [t_begin, t_end) of V^T x Gy, point by point
// (V: the input tiles of each sub-kernel). Stops at a block whose input or gradient is not
// finite, and says so.
template <typename T, int B>
[[gnu::always_inline]] inline bool accumulate_run(const T* gy, const T* x, const GradPlan& gp,
                                                  int64_t t_begin, int64_t t_end, int64_t k0,
                                                  int64_t kc, T* acc) {
  constexpr int64_t L = kLanes<T>;
  const Plan& p = gp.tiles;
  const ThreadScratch<T> V_(0, kPoints * gp.block_tiles * p.Cp),
      G_(1, kPoints * gp.block_tiles * kc);
  std::fill(acc, acc + p.subkernels * kPoints * p.Cp * kc, T(0));
  for (int64_t t0 = t_begin; t0 < t_end; t0 += gp.block_tiles) {
    const int64_t t1 = std::min(t_end, t0 + gp.block_tiles), rows = t1 - t0;
    FiniteCheck<T, B> finite;
    transform_grads(gy, p, t0, t1, k0, kc, G_.data(), rows, finite);
    for (int64_t s = 0; s < p.subkernels; ++s) {
      transform_inputs(x, p, t0, t1, V_.data(), rows, finite, s);
      if (!finite.ok()) return false;
      for (int xi = 0; xi < kPoints; ++xi) {
        const Operand<T> lhs{V_.data() + xi * rows * p.Cp, 1, p.Cp};  // V^T: [Cp, tiles]
        const T* rhs = G_.data() + xi * rows * kc;
        T* out = acc + (s * kPoints + xi) * p.Cp * kc;
        int64_t j = 0;
        for (; j + 2 * L <= kc; j += 2 * L) {
          gemm_rows<T, 2, true>(lhs, rhs + j, kc, out + j, kc, p.Cp, rows);
        }
        if (j < kc) gemm_rows<T, 1, true>(lhs, rhs + j, kc, out + j, kc, p.Cp, rows);
      }
    }
  }
  return true;
}

CONVPOOL_CLONES bool accumulate_run_f32(const float* gy, const float* x, const GradPlan& gp,
                                        int64_t tb, int64_t te, int64_t k0, int64_t kc,
                                        float* acc) {
  return wide_vector_registers() ? accumulate_run<float, 64>(gy, x, gp, tb, te, k0, kc, acc)
                                 : accumulate_run<float, 32>(gy, x, gp, tb, te, k0, kc, acc);
}
CONVPOOL_CLONES bool accumulate_run_f64(const double* gy, const double* x, const GradPlan& gp,
                                        int64_t tb, int64_t te, int64_t k0, int64_t kc,
                                        double* acc) {
  return wide_vector_registers() ? accumulate_run<double, 64>(gy, x, gp, tb, te, k0, kc, acc)
                                 : accumulate_run<double, 32>(gy, x, gp, tb, te, k0, kc, acc);
}
CONVPOOL_CLONES void transform_taps_f32(const float* acc, const Plan& p, int64_t k0, int64_t kc,
                                        int64_t cb, int64_t ce, float* taps) {
  if (wide_vector_registers()) return transform_taps<float, 64>(acc, p, k0, kc, cb, ce, taps);
  transform_taps<float, 32>(acc, p, k0, kc, cb, ce, taps);
}
CONVPOOL_CLONES void transform_taps_f64(const double* acc, const Plan& p, int64_t k0, int64_t kc,
                                        int64_t cb, int64_t ce, double* taps) {
  if (wide_vector_registers()) return transform_taps<double, 64>(acc, p, k0, kc, cb, ce, taps);
  transform_taps<double, 32>(acc, p, k0, kc, cb, ce, taps);
}

bool accumulate_run_any(const float* gy, const float* x, const GradPlan& gp, int64_t tb, int64_t te,
                        int64_t k0, int64_t kc, float* acc) {
  return accumulate_run_f32(gy, x, gp, tb, te, k0, kc, acc);
}
bool accumulate_run_any(const double* gy, const double* x, const GradPlan& gp, int64_t tb,
                        int64_t te, int64_t k0, int64_t kc, double* acc) {
  return accumulate_run_f64(gy, x, gp, tb, te, k0, kc, acc);
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
  const int64_t acc_bytes = p.subkernels * kPoints * p.Cp * p.Kp * size;
  const int64_t chunks =
      std::clamp((acc_bytes + kAccumulatorBytes - 1) / kAccumulatorBytes, int64_t{1}, vectors);
  gp.k_chunk = (vectors + chunks - 1) / chunks * L;
  gp.k_chunks = (p.Kp + gp.k_chunk - 1) / gp.k_chunk;
  gp.block_tiles =
      std::clamp(block_bytes() / (kPoints * (p.Cp + gp.k_chunk) * size), kMinTiles, kMaxTiles);
  gp.runs =
      std::clamp(kTasks / gp.k_chunks, int64_t{1}, std::max<int64_t>(1, p.tiles / gp.block_tiles));
  return gp;
}

template <typename T>
bool winograd_weight_grad_impl(const T* gy, const T* x, T* gw, const ConvGeometry& g, int64_t batch,
                               int64_t out_channels) {
  if (winograd_batched_pays(g, batch, out_channels)) {
    return winograd_weight_grad_batched(gy, x, gw, g, batch, out_channels);
  }
  const GradPlan gp = make_grad_plan<T>(g, batch, out_channels);
  const Plan& p = gp.tiles;
  const int64_t acc_size = p.subkernels * kPoints * p.Cp * gp.k_chunk;
  // Slots 2 and 3 (accumulate_run takes 0 and 1 on every thread), kept from call to call as
  // winograd_conv's weights are: no pages faulted in per call.
  const ThreadScratch<T> acc(2, gp.k_chunks * gp.runs * acc_size);
  std::atomic<bool> finite{true};
  at::parallel_for(0, gp.k_chunks * gp.runs, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end && finite; ++task) {
      const int64_t chunk = task / gp.runs, run = task % gp.runs;
      const int64_t k0 = chunk * gp.k_chunk, kc = std::min(gp.k_chunk, p.Kp - k0);
      const int64_t t_begin = p.tiles * run / gp.runs, t_end = p.tiles * (run + 1) / gp.runs;
      if (!accumulate_run_any(gy, x, gp, t_begin, t_end, k0, kc, acc.data() + task * acc_size))
        finite = false;
    }
  });
  if (!finite) return false;
  const ThreadScratch<T> taps(3, p.C * p.taps * p.Kp);
  for (int64_t chunk = 0; chunk < gp.k_chunks; ++chunk) {
    const int64_t k0 = chunk * gp.k_chunk, kc = std::min(gp.k_chunk, p.Kp - k0);
    T* sum = acc.data() + chunk * gp.runs * acc_size;
    for (int64_t run = 1; run < gp.runs; ++run) {
      const T* partial = sum + run * acc_size;
      for (int64_t i = 0; i < p.subkernels * kPoints * p.Cp * kc; ++i) sum[i] += partial[i];
    }
    at::parallel_for(0, p.C, 16, [&](int64_t b, int64_t e) {
      transform_taps_any(sum, p, k0, kc, b, e, taps.data());
    });
  }
  write_grad_weight(taps.data(), p, gw);
  return true;
}

}  // namespace

bool winograd_weight_grad(const float* grad_output, const float* x, float* grad_weight,
                          const ConvGeometry& g, int64_t batch, int64_t out_channels) {
  return winograd_weight_grad_impl(grad_output, x, grad_weight, g, batch, out_channels);
}

bool winograd_weight_grad(const double* grad_output, const double* x, double* grad_weight,
                          const ConvGeometry& g, int64_t batch, int64_t out_channels) {
  return winograd_weight_grad_impl(grad_output, x, grad_weight, g, batch, out_channels);
}

}  // namespace convpool::cpu
