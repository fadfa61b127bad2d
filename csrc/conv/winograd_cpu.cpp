#include "winograd_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../common/isa_clones.h"
#include "../common/thread_scratch.h"
#include "blocked_transpose.h"
#include "winograd_tiles.h"

namespace convpool::cpu {
namespace {

using namespace winograd;

// Column blocks of the transformed weights: each GEMM step reads kPanel contiguous values.
template <typename T>
constexpr int64_t kPanel = 2 * kLanes<T>;

// c [rows, cols] (+)= a [rows, inner] x b [inner, cols], b as transform_weights' panels; cols is a
// whole number of vectors.
template <typename T, bool kAccumulate>
[[gnu::always_inline]] inline void small_gemm(const T* a, int64_t lda, const T* b, T* c,
                                              int64_t ldc, int64_t rows, int64_t cols,
                                              int64_t inner) {
  constexpr int64_t NB = kPanel<T>;
  int64_t j = 0;
  const Operand<T> lhs{a, lda, 1};
  for (; j + NB <= cols; j += NB) {
    gemm_rows<T, 2, kAccumulate>(lhs, b + j * inner, NB, c + j, ldc, rows, inner);
  }
  if (j < cols) {
    gemm_rows<T, 1, kAccumulate>(lhs, b + j * inner, cols - j, c + j, ldc, rows, inner);
  }
}

// Blocks [begin, end) of output channel chunk [k0, k0 + kc), with U holding that chunk. Stops
// at a block whose input is not finite, and says so.
template <typename T, int B>
[[gnu::always_inline]] inline bool run_blocks(const T* x, const T* U, T* y, const Plan& p,
                                              int64_t k0, int64_t kc, int64_t begin, int64_t end) {
  const ThreadScratch<T> V_(0, kPoints * p.block_tiles * p.Cp), M(1, kPoints * p.block_tiles * kc);
  for (int64_t b = begin; b < end; ++b) {
    const int64_t t0 = b * p.block_tiles, t1 = std::min(p.tiles, t0 + p.block_tiles);
    const int64_t rows = t1 - t0;
    for (int64_t s = 0; s < p.subkernels; ++s) {
      FiniteCheck<T, B> finite;
      transform_inputs(x, p, t0, t1, V_.data(), rows, finite, s);
      if (!finite.ok()) return false;
      const T* Us = U + s * kPoints * p.Cp * kc;
      for (int xi = 0; xi < kPoints; ++xi) {
        const T* v = V_.data() + xi * rows * p.Cp;
        T* m = M.data() + xi * rows * kc;
        if (s == 0) {
          small_gemm<T, false>(v, p.Cp, Us + xi * p.Cp * kc, m, kc, rows, kc, p.Cp);
        } else {
          small_gemm<T, true>(v, p.Cp, Us + xi * p.Cp * kc, m, kc, rows, kc, p.Cp);
        }
      }
    }
    transform_outputs<T, B>(M.data(), p, t0, t1, k0, kc, y, rows);
  }
  return true;
}

template <typename T, int B>
[[gnu::always_inline]] inline bool transform_weights_finite(const T* wt, T* U, const Plan& p,
                                                            int64_t k0, int64_t kc, int64_t b,
                                                            int64_t e) {
  FiniteCheck<T, B> finite;
  transform_weights(wt, U, p, k0, kc, b, e, kPanel<T>, finite);
  return finite.ok();
}

CONVPOOL_CLONES bool transform_weights_f32(const float* wt, float* U, const Plan& p, int64_t k0,
                                           int64_t kc, int64_t b, int64_t e) {
  return wide_vector_registers() ? transform_weights_finite<float, 64>(wt, U, p, k0, kc, b, e)
                                 : transform_weights_finite<float, 32>(wt, U, p, k0, kc, b, e);
}
CONVPOOL_CLONES bool transform_weights_f64(const double* wt, double* U, const Plan& p, int64_t k0,
                                           int64_t kc, int64_t b, int64_t e) {
  return wide_vector_registers() ? transform_weights_finite<double, 64>(wt, U, p, k0, kc, b, e)
                                 : transform_weights_finite<double, 32>(wt, U, p, k0, kc, b, e);
}
CONVPOOL_CLONES bool run_blocks_f32(const float* x, const float* U, float* y, const Plan& p,
                                    int64_t k0, int64_t kc, int64_t b, int64_t e) {
  return wide_vector_registers() ? run_blocks<float, 64>(x, U, y, p, k0, kc, b, e)
                                 : run_blocks<float, 32>(x, U, y, p, k0, kc, b, e);
}
CONVPOOL_CLONES bool run_blocks_f64(const double* x, const double* U, double* y, const Plan& p,
                                    int64_t k0, int64_t kc, int64_t b, int64_t e) {
  return wide_vector_registers() ? run_blocks<double, 64>(x, U, y, p, k0, kc, b, e)
                                 : run_blocks<double, 32>(x, U, y, p, k0, kc, b, e);
}

bool transform_weights_any(const float* wt, float* U, const Plan& p, int64_t k0, int64_t kc,
                           int64_t b, int64_t e) {
  return transform_weights_f32(wt, U, p, k0, kc, b, e);
}
bool transform_weights_any(const double* wt, double* U, const Plan& p, int64_t k0, int64_t kc,
                           int64_t b, int64_t e) {
  return transform_weights_f64(wt, U, p, k0, kc, b, e);
}
bool run_blocks_any(const float* x, const float* U, float* y, const Plan& p, int64_t k0, int64_t kc,
                    int64_t b, int64_t e) {
  return run_blocks_f32(x, U, y, p, k0, kc, b, e);
}
bool run_blocks_any(const double* x, const double* U, double* y, const Plan& p, int64_t k0,
                    int64_t kc, int64_t b, int64_t e) {
  return run_blocks_f64(x, U, y, p, k0, kc, b, e);
}

template <typename T>
bool winograd_conv_impl(const T* x, const T* w, T* y, const ConvGeometry& g, int64_t batch,
                        int64_t out_channels, WinogradWeight weight, WinogradOutput<T> output) {
  if (winograd_batched_pays(g, batch, out_channels)) {
    return winograd_conv_batched(x, w, y, g, batch, out_channels, weight, output);
  }
  Plan p = make_plan<T>(g, batch, out_channels);
  p.weight_channels_last = weight.channels_last;
  p.weight_flipped_transpose = weight.flipped_transpose;
  p.interleave = output.interleave;
  p.bias = output.bias;
  // Slots 2 and 3: run_blocks takes 0 and 1 on every thread, this one included. Kept from call
  // to call: fresh megabytes per call faulted in (5x5 C64 -> 192 on 27x27, N4, inside AlexNet
  // 6.4 ms per call against 4.8 alone).
  const ThreadScratch<T> wt(2, p.C * p.taps * p.Kp),
      U(3, p.subkernels * kPoints * p.Cp * p.k_chunk);
  at::parallel_for(0, p.C, 16,
                   [&](int64_t b, int64_t e) { transpose_weights(w, wt.data(), p, b, e); });
  std::atomic<bool> finite{true};
  for (int64_t chunk = 0; chunk < p.k_chunks && finite; ++chunk) {
    const int64_t k0 = chunk * p.k_chunk, kc = std::min(p.k_chunk, p.Kp - k0);
    at::parallel_for(0, p.Cp, 16, [&](int64_t b, int64_t e) {
      if (!transform_weights_any(wt.data(), U.data(), p, k0, kc, b, e)) finite = false;
    });
    if (!finite) break;
    at::parallel_for(0, p.blocks, 1, [&](int64_t b, int64_t e) {
      if (finite && !run_blocks_any(x, U.data(), y, p, k0, kc, b, e)) finite = false;
    });
  }
  return finite;
}

}  // namespace

namespace {

// A kernel of kh x kw taps is ceil(kh / 3) x ceil(kw / 3) blocks of 3x3, 36 multiplications
// per 4x4 outputs each: Winograd where that is at most half of the direct method's kh x kw x 16
// (3x3: 4x fewer, 3x5 3.3x, 5x5 2.8x, 7x7 2.4x; not 4x4, 1.8x, nor kernels of 1 or 2 taps along
// a dim), up to 9x9 (larger ones' transformed weights outgrow the caches).
bool winograd_kernel_pays(int64_t kh, int64_t kw) {
  const int64_t blocks = kernel_blocks(kh) * kernel_blocks(kw);
  return kh >= 3 && kw >= 3 && kh <= 9 && kw <= 9 && kh * kw * 16 >= 2 * kPoints * blocks;
}

}  // namespace

bool winograd_applies(const ConvGeometry& g) {
  return g.groups == 1 && winograd_kernel_pays(g.kernel[1], g.kernel[2]) && g.stride[1] == 1 &&
         g.stride[2] == 1;
}

int64_t winograd_blocks(const ConvGeometry& g) {
  return kernel_blocks(g.kernel[1]) * kernel_blocks(g.kernel[2]);
}

int64_t winograd_weight_chunks(const ConvGeometry& g, int64_t out_channels) {
  const int64_t subkernels = g.kernel[0] * winograd_blocks(g);
  const int64_t bytes = subkernels * kPoints * g.channels * out_channels * int64_t{sizeof(float)};
  return (bytes + kWeightBytes - 1) / kWeightBytes;
}

int64_t winograd_tiles_per_image(const ConvGeometry& g) {
  return g.grid[0] * winograd::tiles_along(g.grid[1], g.dilation[1]) *
         winograd::tiles_along(g.grid[2], g.dilation[2]);
}

bool winograd_planewise(const ConvGeometry& g) {
  return g.kernel[0] == 1 && g.pad[0] == 0 && g.stride[0] == 1 && g.grid[0] == g.image[0] &&
         g.kernel[1] == 3 && g.kernel[2] == 3;
}

bool winograd_conv(const float* x, const float* w, float* y, const ConvGeometry& g, int64_t batch,
                   int64_t out_channels, WinogradWeight weight, WinogradOutput<float> output) {
  return winograd_conv_impl(x, w, y, g, batch, out_channels, weight, output);
}

bool winograd_conv(const double* x, const double* w, double* y, const ConvGeometry& g,
                   int64_t batch, int64_t out_channels, WinogradWeight weight,
                   WinogradOutput<double> output) {
  return winograd_conv_impl(x, w, y, g, batch, out_channels, weight, output);
}

}  // namespace convpool::cpu
