// Winograd F(4x4, 3x3) for convs with many channels and few tiles (ResNet's 14x14 and 7x7
// stages): the 36 per-point GEMMs span every tile of the batch (up to kInputBytes of transformed
// input), so each transformed weight is read once per call instead of once per block of tiles as
// in winograd_cpu.cpp's fused blocks, and they run through BLAS (MKL), whose packing pays at these
// sizes ([tiles, C] x [C, K] with C, K of 128 and more).
//
// Forward: V = B^T d B of all tiles -> per chunk of output channels: U = G g G^T, M = V x U per
// point, y = A^T M A. Weight gradient: per chunk of output channels, acc = sum over tile chunks
// of V^T x (A dY A^T) per point, then G^T acc G. Each GEMM runs single-threaded inside
// at::parallel_for over the 36 points and every split depends on the shapes only, so results are
// the same bits for any thread count.
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <memory>

#include "../common/isa_clones.h"
#include "../common/thread_scratch.h"
#include "blas_gemm.h"
#include "winograd_cpu.h"
#include "winograd_grad_tiles.h"

namespace convpool::cpu {
namespace {

using namespace winograd;

// The transformed inputs of a chunk of tiles, and the transformed weights (or their gradient's
// accumulators) of a chunk of output channels: fixed upper sizes whatever the input size; both
// stay in L3 between the transform that writes them and the GEMMs that read them.
constexpr int64_t kInputBytes = 8 * 1024 * 1024;
constexpr int64_t kWeightChunkBytes = 8 * 1024 * 1024;

struct BatchedPlan {
  Plan p;
  int64_t tile_chunk, tile_chunks;  // equal chunks of tiles
  int64_t k_chunk, k_chunks;        // output channels per chunk, a whole number of vectors
};

template <typename T>
BatchedPlan make_batched_plan(const ConvGeometry& g, int64_t batch, int64_t out_channels) {
  constexpr int64_t L = kLanes<T>, size = sizeof(T);
  BatchedPlan bp;
  bp.p = make_plan<T>(g, batch, out_channels);
  const Plan& p = bp.p;
  const int64_t per_tile = kPoints * p.Cp * size;
  bp.tile_chunks = (p.tiles + std::max<int64_t>(1, kInputBytes / per_tile) - 1) /
                   std::max<int64_t>(1, kInputBytes / per_tile);
  bp.tile_chunk = (p.tiles + bp.tile_chunks - 1) / bp.tile_chunks;
  const int64_t k_max = std::clamp(kWeightChunkBytes / (kPoints * p.Cp * size) / L * L, L, p.Kp);
  bp.k_chunks = (p.Kp + k_max - 1) / k_max;
  bp.k_chunk = round_up((p.Kp + bp.k_chunks - 1) / bp.k_chunks, L);
  return bp;
}

// U^T [36, kc, Cp] (the chunk of output channels from k0) for output channels [k_begin, k_end),
// vectorised over input channels: a channels_last weight [K, 9, C] holds each tap's row of input
// channels as it is, an NCHW one [K, C, 9] is gathered (lane l of tap i at stride 9). No pass
// over the whole weight (a full transpose took 15 % of a C512 7x7 forward).
template <typename T, int B>
[[gnu::always_inline]] inline void transform_weights_t(const T* w, T* Ut, const Plan& p, int64_t k0,
                                                       int64_t kc, int64_t k_begin, int64_t k_end,
                                                       FiniteCheck<T, B>& finite) {
  using V = Vec<T, B>;
  constexpr int64_t L = kLanes<T, B>;
  // Tap i of input channel c: channels_last [K, 9, C] at i * C + c, NCHW [K, C, 9] at c * 9 + i.
  const int64_t c_stride = p.weight_channels_last ? 1 : 9,
                i_stride = p.weight_channels_last ? p.C : 1;
  for (int64_t k = k_begin; k < k_end; ++k) {
    T* dst = Ut + (k - k0) * p.Cp;
    if (k >= p.K) {
      for (int xi = 0; xi < kPoints; ++xi) std::fill_n(dst + xi * kc * p.Cp, p.Cp, T(0));
      continue;
    }
    const T* taps = w + k * 9 * p.C;
    for (int64_t c0 = 0; c0 < p.Cp; c0 += L) {
      const int64_t lanes = std::min(L, p.C - c0);
      V g[9];
      for (int i = 0; i < 9; ++i) {
        if (lanes == L && c_stride == 1) {
          g[i] = load<B>(taps + i * i_stride + c0);
        } else {
          g[i] = V{};
          for (int64_t l = 0; l < lanes; ++l) g[i][l] = taps[i * i_stride + (c0 + l) * c_stride];
        }
      }
      V u[kPoints];
      kernel_tile_transform(g, u);
      for (int xi = 0; xi < kPoints; ++xi) {
        store(dst + xi * kc * p.Cp + c0, u[xi]);
        finite.add(u[xi]);
      }
    }
  }
}

// The element-wise transforms, each over a range [begin, end) of tiles (inputs, outputs, grads)
// or of input channels (weights, taps). Buffers of tiles hold the tiles from `first` on, `ld` rows
// per point.
enum class Pass { kInputs, kWeights, kWeightsT, kOutputs, kGrads, kTaps };

template <typename T>
struct PassArgs {
  Pass pass;
  const Plan* p;
  const T* src;
  T* dst;
  int64_t first, ld, k0, kc;
};

// Returns whether every value the pass stored is finite (always true for the outputs and taps).
template <typename T, int B>
[[gnu::always_inline]] inline bool run_pass(const PassArgs<T>& a, int64_t begin, int64_t end) {
  const Plan& p = *a.p;
  FiniteCheck<T, B> finite;
  switch (a.pass) {
    case Pass::kInputs:
      transform_inputs(a.src, p, begin, end, a.dst + (begin - a.first) * p.Cp, a.ld, finite);
      break;
    case Pass::kWeights:
      transform_weights(a.src, a.dst, p, a.k0, a.kc, begin, end, a.kc, finite);
      break;
    case Pass::kWeightsT:
      transform_weights_t(a.src, a.dst, p, a.k0, a.kc, begin, end, finite);
      break;
    case Pass::kOutputs:
      transform_outputs<T, B>(a.src + (begin - a.first) * a.kc, p, begin, end, a.k0, a.kc, a.dst,
                              a.ld);
      break;
    case Pass::kGrads:
      transform_grads(a.src, p, begin, end, a.k0, a.kc, a.dst + (begin - a.first) * a.kc, a.ld,
                      finite);
      break;
    case Pass::kTaps:
      transform_taps<T, B>(a.src, p, a.k0, a.kc, begin, end, a.dst);
      break;
  }
  return finite.ok();
}

CONVPOOL_CLONES bool run_pass_f32(const PassArgs<float>& a, int64_t begin, int64_t end) {
  return wide_vector_registers() ? run_pass<float, 64>(a, begin, end)
                                 : run_pass<float, 32>(a, begin, end);
}
CONVPOOL_CLONES bool run_pass_f64(const PassArgs<double>& a, int64_t begin, int64_t end) {
  return wide_vector_registers() ? run_pass<double, 64>(a, begin, end)
                                 : run_pass<double, 32>(a, begin, end);
}
bool run_pass_any(const PassArgs<float>& a, int64_t b, int64_t e) { return run_pass_f32(a, b, e); }
bool run_pass_any(const PassArgs<double>& a, int64_t b, int64_t e) { return run_pass_f64(a, b, e); }

// Runs a pass over [begin, end) on every core; returns whether all it stored is finite.
template <typename T>
[[nodiscard]] bool parallel_pass(const PassArgs<T>& a, int64_t begin, int64_t end, int64_t grain) {
  std::atomic<bool> finite{true};
  at::parallel_for(begin, end, grain, [&](int64_t b, int64_t e) {
    if (!run_pass_any(a, b, e)) finite = false;
  });
  return finite;
}

// Per point xi: c[xi] (+)= a[xi] x b[xi] (at::mm on views, one thread each).
template <typename T, typename A, typename B>
void per_point_gemms(A&& a, B&& b, T* c, int64_t c_point, int64_t ldc, bool accumulate) {
  at::parallel_for(0, kPoints, 1, [&](int64_t begin, int64_t end) {
    for (int64_t xi = begin; xi < end; ++xi) gemm(a(xi), b(xi), c + xi * c_point, ldc, accumulate);
  });
}

template <typename T>
bool conv_batched(const T* x, const T* w, T* y, const ConvGeometry& g, int64_t batch,
                  int64_t out_channels, WinogradWeight weight, WinogradOutput output) {
  BatchedPlan bp = make_batched_plan<T>(g, batch, out_channels);
  bp.p.weight_channels_last = weight.channels_last;
  bp.p.weight_flipped_transpose = weight.flipped_transpose;
  bp.p.interleave = output.interleave;
  const Plan& p = bp.p;
  const ThreadScratch<T> V_scratch(0, kPoints * bp.tile_chunk * p.Cp);
  T* V = V_scratch.data();
  const ThreadScratch<T> U_scratch(1, kPoints * p.Cp * bp.k_chunk);
  T* U = U_scratch.data();
  const ThreadScratch<T> M_scratch(2, kPoints * bp.tile_chunk * bp.k_chunk);
  T* M = M_scratch.data();
  // A conv's own weight is transformed row by row, vectorised over input channels (U^T); a
  // conv_transpose's flipped transpose is read through a transposed copy (U).
  const bool flipped = p.weight_flipped_transpose;
  const ThreadScratch<T> wt_scratch(3, flipped ? p.C * 9 * p.Kp : 0);
  T* wt = flipped ? wt_scratch.data() : nullptr;
  if (flipped) {
    at::parallel_for(0, p.C, 16, [&](int64_t b, int64_t e) { transpose_weights(w, wt, p, b, e); });
  }
  for (int64_t t0 = 0; t0 < p.tiles; t0 += bp.tile_chunk) {
    const int64_t t1 = std::min(p.tiles, t0 + bp.tile_chunk), rows = t1 - t0;
    if (!parallel_pass<T>({Pass::kInputs, &p, x, V, t0, rows, 0, 0}, t0, t1, 4)) return false;
    for (int64_t k0 = 0; k0 < p.Kp; k0 += bp.k_chunk) {
      const int64_t kc = std::min(bp.k_chunk, p.Kp - k0);
      // One chunk of output channels holds every transformed weight: computed once.
      if (bp.k_chunks > 1 || t0 == 0) {
        if (flipped) {
          if (!parallel_pass<T>({Pass::kWeights, &p, wt, U, 0, 0, k0, kc}, 0, p.Cp, 16))
            return false;
        } else {
          if (!parallel_pass<T>({Pass::kWeightsT, &p, w, U, 0, 0, k0, kc}, k0, k0 + kc, 4))
            return false;
        }
      }
      per_point_gemms([&](int64_t xi) { return matrix(V + xi * rows * p.Cp, rows, p.Cp, p.Cp, 1); },
                      [&](int64_t xi) {
                        return flipped ? matrix(U + xi * p.Cp * kc, p.Cp, kc, kc, 1)
                                       : matrix(U + xi * kc * p.Cp, p.Cp, kc, 1, p.Cp);
                      },
                      M, rows * kc, kc, false);
      (void)parallel_pass<T>({Pass::kOutputs, &p, M, y, t0, rows, k0, kc}, t0, t1, 4);
    }
  }
  return true;
}

template <typename T>
bool weight_grad_batched(const T* gy, const T* x, T* gw, const ConvGeometry& g, int64_t batch,
                         int64_t out_channels) {
  const BatchedPlan bp = make_batched_plan<T>(g, batch, out_channels);
  const Plan& p = bp.p;
  const ThreadScratch<T> V_scratch(0, kPoints * bp.tile_chunk * p.Cp);
  T* V = V_scratch.data();
  const ThreadScratch<T> Gy_scratch(1, kPoints * bp.tile_chunk * bp.k_chunk);
  T* Gy = Gy_scratch.data();
  const ThreadScratch<T> acc_scratch(2, kPoints * p.Cp * bp.k_chunk);
  T* acc = acc_scratch.data();
  const ThreadScratch<T> taps_scratch(3, p.C * 9 * p.Kp);
  T* taps = taps_scratch.data();
  for (int64_t k0 = 0; k0 < p.Kp; k0 += bp.k_chunk) {
    const int64_t kc = std::min(bp.k_chunk, p.Kp - k0);
    for (int64_t t0 = 0; t0 < p.tiles; t0 += bp.tile_chunk) {
      const int64_t t1 = std::min(p.tiles, t0 + bp.tile_chunk), rows = t1 - t0;
      // One chunk of tiles holds every transformed input: computed once.
      if (bp.tile_chunks > 1 || k0 == 0) {
        if (!parallel_pass<T>({Pass::kInputs, &p, x, V, t0, rows, 0, 0}, t0, t1, 4)) return false;
      }
      if (!parallel_pass<T>({Pass::kGrads, &p, gy, Gy, t0, rows, k0, kc}, t0, t1, 4)) return false;
      per_point_gemms([&](int64_t xi) { return matrix(V + xi * rows * p.Cp, p.Cp, rows, 1, p.Cp); },
                      [&](int64_t xi) { return matrix(Gy + xi * rows * kc, rows, kc, kc, 1); }, acc,
                      p.Cp * kc, kc, t0 > 0);
    }
    (void)parallel_pass<T>({Pass::kTaps, &p, acc, taps, 0, 0, k0, kc}, 0, p.C, 16);
  }
  write_grad_weight(taps, p, gw);
  return true;
}

}  // namespace

// From 128 x 128 channels on, the batched variant was as fast or faster in every measured case
// (C128 28x28: 6.2 against 6.4 ms forward, 14.9 against 16.0 with the weight gradient; C256
// 14x14: 8.6 against 11.6; one thread): BLAS GEMMs of that size outrun the fused blocks'
// micro-kernel, and the transformed weights are read once. Below, the fused blocks win (C64
// 56x56: 6.9 against 9.3 ms).
bool winograd_batched_pays(const ConvGeometry& g, int64_t batch, int64_t out_channels) {
  (void)batch;
  return winograd_planewise(g) && g.channels * out_channels >= 128 * 128;
}

bool winograd_conv_batched(const float* x, const float* w, float* y, const ConvGeometry& g,
                           int64_t batch, int64_t out_channels, WinogradWeight weight,
                           WinogradOutput output) {
  return conv_batched(x, w, y, g, batch, out_channels, weight, output);
}
bool winograd_conv_batched(const double* x, const double* w, double* y, const ConvGeometry& g,
                           int64_t batch, int64_t out_channels, WinogradWeight weight,
                           WinogradOutput output) {
  return conv_batched(x, w, y, g, batch, out_channels, weight, output);
}
bool winograd_weight_grad_batched(const float* gy, const float* x, float* gw, const ConvGeometry& g,
                                  int64_t batch, int64_t out_channels) {
  return weight_grad_batched(gy, x, gw, g, batch, out_channels);
}
bool winograd_weight_grad_batched(const double* gy, const double* x, double* gw,
                                  const ConvGeometry& g, int64_t batch, int64_t out_channels) {
  return weight_grad_batched(gy, x, gw, g, batch, out_channels);
}

}  // namespace convpool::cpu
