#include "winograd_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../common/isa_clones.h"
#include "blocked_transpose.h"
#include "winograd_tiles.h"

namespace convpool::cpu {
namespace {

using namespace winograd;

// Column blocks of the transformed weights: each GEMM step reads kPanel contiguous values.
template <typename T>
constexpr int64_t kPanel = 2 * kLanes<T>;

// The weight (NCHW [K, C, 3, 3] or channels_last) as [C, 9, Kp] (zero for k >= K): the transform
// then loads whole vectors.
template <typename T>
[[gnu::always_inline]] inline void transpose_weights(const T* w, T* wt, const Plan& p,
                                                     int64_t c_begin, int64_t c_end) {
  for (int64_t c = c_begin; c < c_end; ++c) {
    T* row = wt + c * 9 * p.Kp;
    for (int i = 0; i < 9; ++i) std::fill(row + i * p.Kp + p.K, row + (i + 1) * p.Kp, T(0));
  }
  // Element (k, c, i) of the weight: NCHW [K, C, 9] or channels_last [K, 9, C].
  const int64_t c_stride = p.channels_last ? 1 : 9, i_stride = p.channels_last ? p.C : 1;
  for (int i = 0; i < 9; ++i) {
    // [K, c_end - c_begin] at tap i -> rows (c, i).
    blocked_transpose(w + c_begin * c_stride + i * i_stride, p.C * 9, c_stride, p.K,
                      c_end - c_begin, wt + c_begin * 9 * p.Kp + i * p.Kp, 9 * p.Kp, int64_t{1});
  }
}

// U = G g G^T of every (c, k) pair with k in [k0, k0 + kc), as panels: for each of the 36 points,
// column block j (kPanel wide, the last one maybe one vector) is [Cp, width] row-major.
template <typename T>
[[gnu::always_inline]] inline void transform_weights(const T* wt, T* U, const Plan& p, int64_t k0,
                                                     int64_t kc, int64_t c_begin, int64_t c_end) {
  using V = Vec<T>;
  constexpr int64_t L = kLanes<T>, NB = kPanel<T>;
  for (int64_t c = c_begin; c < c_end; ++c) {
    for (int64_t kv = 0; kv < kc; kv += L) {
      V g[9];
      for (int i = 0; i < 9; ++i) g[i] = c < p.C ? load(wt + (c * 9 + i) * p.Kp + k0 + kv) : V{};
      V rows[kAlpha * 3];  // G g: [6, 3]
      for (int j = 0; j < 3; ++j) kernel_transform(g[j], g[3 + j], g[6 + j], rows + j, 3);
      V u[kPoints];  // (G g) G^T: [6, 6]
      for (int i = 0; i < kAlpha; ++i) {
        kernel_transform(rows[i * 3], rows[i * 3 + 1], rows[i * 3 + 2], u + i * kAlpha, 1);
      }
      const int64_t block = kv / NB, width = std::min(NB, kc - block * NB);
      T* dst = U + block * p.Cp * NB + c * width + kv % NB;
      for (int xi = 0; xi < kPoints; ++xi) store(dst + xi * p.Cp * kc, u[xi]);
    }
  }
}

// c [rows, cols] = a [rows, inner] x b [inner, cols], b as transform_weights' panels; cols is a
// whole number of vectors.
template <typename T>
[[gnu::always_inline]] inline void small_gemm(const T* a, int64_t lda, const T* b, T* c,
                                              int64_t ldc, int64_t rows, int64_t cols,
                                              int64_t inner) {
  constexpr int64_t NB = kPanel<T>;
  int64_t j = 0;
  const Operand<T> lhs{a, lda, 1};
  for (; j + NB <= cols; j += NB) {
    gemm_rows<T, 2, false>(lhs, b + j * inner, NB, c + j, ldc, rows, inner);
  }
  if (j < cols) gemm_rows<T, 1, false>(lhs, b + j * inner, cols - j, c + j, ldc, rows, inner);
}

// The 4x4 outputs of tiles [t0, t1), channels [k0, k0 + kc), from M [36, tiles, kc].
template <typename T>
[[gnu::always_inline]] inline void transform_outputs(const T* M, const Plan& p, int64_t t0,
                                                     int64_t t1, int64_t k0, int64_t kc, T* y) {
  using V = Vec<T>;
  constexpr int64_t L = kLanes<T>;
  const int64_t rows = t1 - t0, channel_stride = output_channel_stride(p);
  for (int64_t t = t0; t < t1; ++t) {
    const OutputTile tile = output_tile(p, t);
    for (int64_t kv = 0; kv < kc; kv += L) {
      const int64_t k = k0 + kv, lanes = std::min(L, p.K - k);
      if (lanes <= 0) break;
      V m[kPoints];
      for (int xi = 0; xi < kPoints; ++xi) m[xi] = load(M + (xi * rows + (t - t0)) * kc + kv);
      V cols[kTile * kAlpha];  // A^T m: [4, 6]
      for (int j = 0; j < kAlpha; ++j) output_transform(m + j, kAlpha, cols + j, kAlpha);
      V out[kTile * kTile];  // A^T m A
      for (int i = 0; i < kTile; ++i) output_transform(cols + i * kAlpha, 1, out + i * kTile, 1);
      for (int i = 0; i < tile.rows; ++i) {
        for (int j = 0; j < tile.cols; ++j) {
          const V& o = out[i * kTile + j];
          T* dst = y + output_offset(p, tile, i, j, k);
          if (p.channels_last && lanes == L) {
            store(dst, o);
          } else {
            for (int64_t l = 0; l < lanes; ++l) dst[l * channel_stride] = o[l];
          }
        }
      }
    }
  }
}

// Blocks [begin, end) of output channel chunk [k0, k0 + kc), with U holding that chunk.
template <typename T>
[[gnu::always_inline]] inline void run_blocks(const T* x, const T* U, T* y, const Plan& p,
                                              int64_t k0, int64_t kc, int64_t begin, int64_t end) {
  std::vector<T> V_(kPoints * p.block_tiles * p.Cp), M(kPoints * p.block_tiles * kc);
  for (int64_t b = begin; b < end; ++b) {
    const int64_t t0 = b * p.block_tiles, t1 = std::min(p.tiles, t0 + p.block_tiles);
    const int64_t rows = t1 - t0;
    transform_inputs(x, p, t0, t1, V_.data());
    for (int xi = 0; xi < kPoints; ++xi) {
      small_gemm(V_.data() + xi * rows * p.Cp, p.Cp, U + xi * p.Cp * kc, M.data() + xi * rows * kc,
                 kc, rows, kc, p.Cp);
    }
    transform_outputs(M.data(), p, t0, t1, k0, kc, y);
  }
}

CONVPOOL_CLONES void transform_weights_f32(const float* wt, float* U, const Plan& p, int64_t k0,
                                           int64_t kc, int64_t b, int64_t e) {
  transform_weights(wt, U, p, k0, kc, b, e);
}
CONVPOOL_CLONES void transform_weights_f64(const double* wt, double* U, const Plan& p, int64_t k0,
                                           int64_t kc, int64_t b, int64_t e) {
  transform_weights(wt, U, p, k0, kc, b, e);
}
CONVPOOL_CLONES void run_blocks_f32(const float* x, const float* U, float* y, const Plan& p,
                                    int64_t k0, int64_t kc, int64_t b, int64_t e) {
  run_blocks(x, U, y, p, k0, kc, b, e);
}
CONVPOOL_CLONES void run_blocks_f64(const double* x, const double* U, double* y, const Plan& p,
                                    int64_t k0, int64_t kc, int64_t b, int64_t e) {
  run_blocks(x, U, y, p, k0, kc, b, e);
}

void transform_weights_any(const float* wt, float* U, const Plan& p, int64_t k0, int64_t kc,
                           int64_t b, int64_t e) {
  transform_weights_f32(wt, U, p, k0, kc, b, e);
}
void transform_weights_any(const double* wt, double* U, const Plan& p, int64_t k0, int64_t kc,
                           int64_t b, int64_t e) {
  transform_weights_f64(wt, U, p, k0, kc, b, e);
}
void run_blocks_any(const float* x, const float* U, float* y, const Plan& p, int64_t k0, int64_t kc,
                    int64_t b, int64_t e) {
  run_blocks_f32(x, U, y, p, k0, kc, b, e);
}
void run_blocks_any(const double* x, const double* U, double* y, const Plan& p, int64_t k0,
                    int64_t kc, int64_t b, int64_t e) {
  run_blocks_f64(x, U, y, p, k0, kc, b, e);
}

template <typename T>
void winograd_conv_impl(const T* x, const T* w, T* y, const ConvGeometry& g, int64_t batch,
                        int64_t out_channels) {
  const Plan p = make_plan<T>(g, batch, out_channels);
  std::vector<T> wt(p.C * 9 * p.Kp), U(kPoints * p.Cp * p.k_chunk);
  at::parallel_for(0, p.C, 16,
                   [&](int64_t b, int64_t e) { transpose_weights(w, wt.data(), p, b, e); });
  for (int64_t chunk = 0; chunk < p.k_chunks; ++chunk) {
    const int64_t k0 = chunk * p.k_chunk, kc = std::min(p.k_chunk, p.Kp - k0);
    at::parallel_for(0, p.Cp, 16, [&](int64_t b, int64_t e) {
      transform_weights_any(wt.data(), U.data(), p, k0, kc, b, e);
    });
    at::parallel_for(0, p.blocks, 1, [&](int64_t b, int64_t e) {
      run_blocks_any(x, U.data(), y, p, k0, kc, b, e);
    });
  }
}

}  // namespace

bool winograd_applies(const ConvGeometry& g) {
  return g.groups == 1 && g.kernel[0] == 1 && g.pad[0] == 0 && g.grid[0] == g.image[0] &&
         g.stride[0] == 1 && g.kernel[1] == 3 && g.kernel[2] == 3 && g.stride[1] == 1 &&
         g.stride[2] == 1 && g.dilation[1] == 1 && g.dilation[2] == 1;
}

void winograd_conv(const float* x, const float* w, float* y, const ConvGeometry& g, int64_t batch,
                   int64_t out_channels) {
  winograd_conv_impl(x, w, y, g, batch, out_channels);
}

void winograd_conv(const double* x, const double* w, double* y, const ConvGeometry& g,
                   int64_t batch, int64_t out_channels) {
  winograd_conv_impl(x, w, y, g, batch, out_channels);
}

}  // namespace convpool::cpu
