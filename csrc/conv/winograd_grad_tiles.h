#pragma once
// What the Winograd F(4x4, 3x3) weight gradients share (winograd_weight_grad_cpu.cpp, and the
// batched one in winograd_batched_cpu.cpp). The forward computes each output tile as
// Y = A^T [(G g G^T) . (B^T d B)] A, so the gradient of the kernel g is
//   dL/dg = G^T [ sum over tiles (A dY A^T) . (B^T d B) ] G:
// the output gradient's tiles go through A . A^T (transform_grads), the sums per point are GEMMs
// over the tiles, and G^T . G turns the 36 points back into 9 taps (transform_taps).
#include "winograd_tiles.h"

namespace convpool::cpu::winograd {

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

// G^T m G of one point block m [6, 6] (row-major): the 3x3 kernel taps g [9].
template <typename V>
[[gnu::always_inline]] inline void tap_tile_transform(const V* m, V* g) {
  V cols[3 * kAlpha];  // G^T m: [3, 6]
  for (int b = 0; b < kAlpha; ++b) tap_transform(m + b, kAlpha, cols + b, kAlpha);
  for (int r = 0; r < 3; ++r) tap_transform(cols + r * kAlpha, 1, g + r * 3, 1);
}

// Gy [36, ld, kc]: A dY A^T of tiles [t0, t1) (row 0: tile t0), channels [k0, k0 + kc), over k.
template <typename T, int B = 64>
[[gnu::always_inline]] inline void transform_grads(const T* gy, const Plan& p, int64_t t0,
                                                   int64_t t1, int64_t k0, int64_t kc, T* out,
                                                   int64_t ld, FiniteCheck<T, B>& finite) {
  using V = Vec<T, B>;
  constexpr int64_t L = kLanes<T, B>;
  const int64_t channel_stride = output_channel_stride(p);
  for (int64_t t = t0; t < t1; ++t) {
    const OutputTile tile = output_tile(p, t);
    for (int64_t kv = 0; kv < kc; kv += L) {
      const int64_t k = k0 + kv, lanes = std::min(L, p.K - k);
      const OutputChannel channel = output_channel(p, k);
      V y[kTile * kTile];
      for (int i = 0; i < kTile; ++i) {
        for (int j = 0; j < kTile; ++j) {
          V& v = y[i * kTile + j];
          v = V{};
          if (i >= tile.rows || j >= tile.cols || lanes <= 0) continue;
          const T* src = gy + output_offset(p, tile, i, j, channel);
          if (p.channels_last && lanes == L) {
            v = load<B>(src);
          } else {
            for (int64_t l = 0; l < lanes; ++l) v[l] = src[l * channel_stride];
          }
        }
      }
      V cols[kAlpha * kTile];  // A dY: [6, 4]
      for (int j = 0; j < kTile; ++j) grad_transform(y + j, kTile, cols + j, kTile);
      V m[kPoints];  // A dY A^T
      for (int a = 0; a < kAlpha; ++a) grad_transform(cols + a * kTile, 1, m + a * kAlpha, 1);
      for (int xi = 0; xi < kPoints; ++xi) {
        store(out + (xi * ld + (t - t0)) * kc + kv, m[xi]);
        finite.add(m[xi]);
      }
    }
  }
}

// dW [C, taps, Kp] rows for channels [c_begin, c_end), output channels [k0, k0 + kc), from acc
// [subkernels, 36, Cp, kc].
template <typename T, int B = 64>
[[gnu::always_inline]] inline void transform_taps(const T* acc, const Plan& p, int64_t k0,
                                                  int64_t kc, int64_t c_begin, int64_t c_end,
                                                  T* taps) {
  using V = Vec<T, B>;
  constexpr int64_t L = kLanes<T, B>;
  for (int64_t c = c_begin; c < c_end; ++c) {
    for (int64_t s = 0; s < p.subkernels; ++s) {
      const T* points = acc + s * kPoints * p.Cp * kc;
      const SubKernel sk = sub_kernel(p, s);
      T* row = taps + c * p.taps * p.Kp + k0;
      for (int64_t kv = 0; kv < kc; kv += L) {
        V m[kPoints];
        for (int xi = 0; xi < kPoints; ++xi) m[xi] = load<B>(points + (xi * p.Cp + c) * kc + kv);
        V g[9];
        tap_tile_transform(m, g);
        for (int i = 0; i < 9; ++i) {
          const int64_t tap = tap_of(p, sk, i / 3, i % 3);
          if (tap >= 0) store(row + tap * p.Kp + kv, g[i]);
        }
      }
    }
  }
}

// grad_weight (k, c, i) (NCHW [K, C, taps] or channels_last [K, taps, C]) of output channels
// [k_begin, k_end) (default: all) from taps [C, taps, Kp].
template <typename T>
void write_grad_weight(const T* taps, const Plan& p, T* gw, int64_t k_begin = 0,
                       int64_t k_end = -1) {
  if (k_end < 0) k_end = p.K;
  const int64_t n = p.taps;
  const int64_t c_stride = p.channels_last ? 1 : n, i_stride = p.channels_last ? p.C : 1;
  for (int64_t i = 0; i < n; ++i) {
    blocked_transpose(taps + i * p.Kp + k_begin, n * p.Kp, int64_t{1}, p.C, k_end - k_begin,
                      gw + k_begin * p.C * n + i * i_stride, p.C * n, c_stride);
  }
}

}  // namespace convpool::cpu::winograd
