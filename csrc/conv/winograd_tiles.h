#pragma once
// What the Winograd F(4x4, 3x3) kernels share (forward: winograd_cpu.cpp, weight gradient:
// winograd_weight_grad_cpu.cpp): the tiling plan, the 1-d transforms, the input-tile transform and
// the register-blocked GEMM micro-kernel, written once over 64-byte vectors (GCC vector
// extensions) and compiled into each ISA clone of their callers.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "../common/conv_geometry.h"
#include "../common/isa_clones.h"
#include "blocked_transpose.h"

namespace convpool::cpu::winograd {

constexpr int kTile = 4;     // outputs per tile side
constexpr int kAlpha = 6;    // inputs per tile side: kTile + 3 - 1
constexpr int kPoints = 36;  // kAlpha * kAlpha transformed positions, one GEMM each
// Blocks of 3 taps that cover a kernel dim of k taps (larger kernels: see Plan::sub_h).
constexpr int64_t kernel_blocks(int64_t k) { return (k + 2) / 3; }
// The transformed weights of one chunk of output channels, read by every block.
constexpr int64_t kWeightBytes = 4 * 1024 * 1024;
constexpr int64_t kMinTiles = 16, kMaxTiles = 128;
// At least this many tasks where the problem allows (a constant, so the work split and with it
// every result is the same for any thread count).
constexpr int64_t kMinTasks = 4;

// Vectors of B bytes: 64 (one AVX-512 register) or 32 (one AVX2 register). The buffers' layout is
// in 64-byte units (channels padded to kLanes<T>, weight panels) whatever B the code computes
// with; a clone picks B by the CPU it runs on (see convpool::wide_vector_registers()): in an AVX2
// clone a 64-byte generic vector is no register type, and GCC keeps every one on the stack.
template <typename T, int B = 64>
struct VecOf {
  typedef T type __attribute__((vector_size(B)));
};
template <typename T, int B = 64>
using Vec = typename VecOf<T, B>::type;
template <typename T, int B = 64>
constexpr int64_t kLanes = B / sizeof(T);

template <int B = 64, typename T>
[[gnu::always_inline]] inline Vec<T, B> load(const T* p) {
  Vec<T, B> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T, typename V>
[[gnu::always_inline]] inline void store(T* p, const V& v) {
  std::memcpy(p, &v, sizeof(v));
}

// The transformed inputs and GEMM outputs of a block ([36, tiles, C] + [36, tiles, K chunk])
// stay within about this much: half of a 2 MiB L2 under AVX-512 (measured on a Xeon). Under AVX2
// the 6-row micro-kernel reads each transformed weight more often per output, and reusing it over
// twice the tiles pays more than staying in L2: 2 MiB, against a 512 KiB L2 (C64 56x56 forward,
// one thread: 30.4 ms with 1 MiB, 23.1 ms with 2 MiB, 82.9 ms with 256 KiB; AMD EPYC, Zen 3).
inline int64_t block_bytes() { return (wide_vector_registers() ? 1024 : 2048) * int64_t{1024}; }

// Whether every value a transform stored is finite: v - v is 0 for a finite v and NaN for an inf
// or a NaN, so one add per stored vector. Winograd runs only on finite data (see winograd_cpu.h),
// and every input value reaches a stored value with a nonzero coefficient (no column of B^T, of
// G or of the gradient's A is zero), so finite transforms mean finite inputs and weights: no pass
// of its own over them (a separate check took 5 % of a conv).
template <typename T, int B = 64>
struct FiniteCheck {
  Vec<T, B> sum{};
  [[gnu::always_inline]] void add(const Vec<T, B>& v) { sum += v - v; }
  bool ok() const {
    for (int64_t l = 0; l < kLanes<T, B>; ++l) {
      if (sum[l] != sum[l]) return false;
    }
    return true;
  }
};

struct Plan {
  int64_t C, K, Cp, Kp;  // channels, padded to whole vectors
  // Input and output depth; batch * out_depth output planes, each a 2-d conv. Along depth the
  // kernel is direct: output plane z sums depth_taps 2-d convs, tap kd over input plane
  // z * depth_stride + kd * depth_dilation - depth_pad (none where that lies outside), added up in
  // the transformed domain (one GEMM per tap into the same accumulators, one output transform).
  int64_t depth, out_depth, planes;
  int64_t depth_taps, depth_stride, depth_dilation, depth_pad;
  // Kernels larger than 3x3 in height or width: zero-padded to whole 3x3 blocks, sub_h x sub_w of
  // them, block (a, b) a 3x3 conv of the input shifted by 3a rows and 3b columns of taps. Like a
  // depth tap, each block is one more GEMM per point into the same accumulators (5x5: 4 x 36
  // multiplications per 4x4 outputs, against 25 x 16).
  int64_t kh, kw, sub_h, sub_w;
  int64_t subkernels;  // depth_taps * sub_h * sub_w 3x3 blocks, each with its transformed weights
  int64_t taps;        // depth_taps * kh * kw weight taps per (input, output) channel pair
  int64_t H, W, OH, OW, pad_h, pad_w;
  // Dilation along h and w. With dilation d a tile's outputs and its input window are d apart:
  // the outputs of one residue of oh (and of ow) mod d are a plain 3x3 conv of the input pixels
  // of the same residue, tiled on their own (d phases per dim, one after the other in t).
  int64_t dil_h, dil_w;
  int64_t TH, TW, tiles;  // tiles per plane along h and w (over all phases); in all
  bool channels_last;
  // The weight handed in: its layout, and whether it is the forward weight [K, C, 3, 3] of the
  // conv_transpose this conv computes (its flipped transpose [C, K, 3, 3] is this conv's weight).
  bool weight_channels_last, weight_flipped_transpose;
  // 1, or s: the outputs are written interleaved s x s (WinogradOutput in winograd_cpu.h); then
  // K / (s * s), the output's channels, is a whole number of 64-byte vectors, so a vector of
  // channels stays in one phase.
  int64_t interleave;
  // The bias [K] (of the plan's element type) added to the outputs, or null.
  const void* bias;
  int64_t k_chunk, k_chunks;  // output channels per chunk (whole vectors), chunks
  int64_t block_tiles, blocks;
};

// G g G^T's 1-d factor: 3 kernel taps -> 6 points.
template <typename V>
[[gnu::always_inline]] inline void kernel_transform(V g0, V g1, V g2, V* out, int64_t stride) {
  using T = std::remove_reference_t<decltype(g0[0])>;
  out[0 * stride] = g0 * T(0.25);
  out[1 * stride] = (g0 + g1 + g2) * T(-1.0 / 6);
  out[2 * stride] = (g0 - g1 + g2) * T(-1.0 / 6);
  out[3 * stride] = g0 * T(1.0 / 24) + g1 * T(1.0 / 12) + g2 * T(1.0 / 6);
  out[4 * stride] = g0 * T(1.0 / 24) - g1 * T(1.0 / 12) + g2 * T(1.0 / 6);
  out[5 * stride] = g2;
}

// B^T d's 1-d factor: 6 inputs -> 6 points.
template <typename V>
[[gnu::always_inline]] inline void input_transform(const V* d, int64_t in_stride, V* out,
                                                   int64_t out_stride) {
  using T = std::remove_reference_t<decltype(d[0][0])>;
  const V d0 = d[0], d1 = d[in_stride], d2 = d[2 * in_stride], d3 = d[3 * in_stride];
  const V d4 = d[4 * in_stride], d5 = d[5 * in_stride];
  out[0] = T(4) * d0 - T(5) * d2 + d4;
  out[out_stride] = d3 + d4 - T(4) * (d1 + d2);
  out[2 * out_stride] = d4 - d3 + T(4) * (d1 - d2);
  out[3 * out_stride] = d4 - d2 + T(2) * (d3 - d1);
  out[4 * out_stride] = d4 - d2 + T(2) * (d1 - d3);
  out[5 * out_stride] = T(4) * d1 - T(5) * d3 + d5;
}

// A^T m's 1-d factor: 6 points -> 4 outputs.
template <typename V>
[[gnu::always_inline]] inline void output_transform(const V* m, int64_t in_stride, V* out,
                                                    int64_t out_stride) {
  using T = std::remove_reference_t<decltype(m[0][0])>;
  const V m1 = m[in_stride], m2 = m[2 * in_stride], m3 = m[3 * in_stride];
  const V m4 = m[4 * in_stride];
  const V sum12 = m1 + m2, diff12 = m1 - m2, sum34 = m3 + m4, diff34 = m3 - m4;
  out[0] = m[0] + sum12 + sum34;
  out[out_stride] = diff12 + T(2) * diff34;
  out[2 * out_stride] = sum12 + T(4) * sum34;
  out[3 * out_stride] = diff12 + T(8) * diff34 + m[5 * in_stride];
}

// A GEMM operand a[rows, inner] with element (r, i) at data[r * row + i * inner]: row-major
// ({lda, 1}) for the forward, transposed ({1, ld}) for the weight gradient.
template <typename T>
struct Operand {
  const T* data;
  int64_t row, inner;
};

// Vectors of `Bytes` bytes for the micro-kernel alone: 64 under AVX-512, 32 under AVX2, where a
// 64-byte generic vector is not a register type and GCC keeps every one of them on the stack.
template <typename T, int Bytes>
struct RegisterVecOf {
  typedef T type __attribute__((vector_size(Bytes)));
};

// c[R rows, NV vectors] (+)= a[R, inner] x b[inner, NV vectors] (vectors of `Bytes` bytes): R x NV
// accumulators in registers, one broadcast of a and NV loads of b per step.
template <typename T, int R, int NV, bool kAccumulate, int Bytes>
[[gnu::always_inline]] inline void micro_kernel(Operand<T> a, const T* b, int64_t ldb, T* c,
                                                int64_t ldc, int64_t inner) {
  using V = typename RegisterVecOf<T, Bytes>::type;
  constexpr int64_t L = Bytes / sizeof(T);
  V acc[R][NV];
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < NV; ++v) acc[r][v] = V{};
  }
  for (int64_t i = 0; i < inner; ++i) {
    V bv[NV];
    for (int v = 0; v < NV; ++v) std::memcpy(&bv[v], b + i * ldb + v * L, sizeof(V));
    for (int r = 0; r < R; ++r) {
      const T s = a.data[r * a.row + i * a.inner];
      for (int v = 0; v < NV; ++v) acc[r][v] += s * bv[v];
    }
  }
  // Summed from zero, then added to c: blocked sums, not one chain over every call (accuracy).
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < NV; ++v) {
      if (kAccumulate) {
        V old;
        std::memcpy(&old, c + r * ldc + v * L, sizeof(V));
        acc[r][v] += old;
      }
      std::memcpy(c + r * ldc + v * L, &acc[r][v], sizeof(V));
    }
  }
}

// The last rows (fewer than a register block): one micro-kernel of exactly `rows` rows.
// Recursion, not a lambda over an index sequence: a lambda is a function of its own, compiled
// outside the ISA clone that calls it (it ran SSE2 code, 45% of a 96-channel 35x35 conv whose
// blocks of tiles left remainders).
template <typename T, int R, int NV, bool kAccumulate, int Bytes>
[[gnu::always_inline]] inline void last_row_block(Operand<T> a, const T* b, int64_t ldb, T* c,
                                                  int64_t ldc, int64_t rows, int64_t inner) {
  if (rows == R) {
    micro_kernel<T, R, NV, kAccumulate, Bytes>(a, b, ldb, c, ldc, inner);
  } else if constexpr (R > 1) {
    last_row_block<T, R - 1, NV, kAccumulate, Bytes>(a, b, ldb, c, ldc, rows, inner);
  }
}

// c[rows, NV vectors] (+)= a[rows, inner] x b: blocks of R rows, then the remaining rows.
template <typename T, int R, int NV, bool kAccumulate, int Bytes>
[[gnu::always_inline]] inline void gemm_row_blocks(Operand<T> a, const T* b, int64_t ldb, T* c,
                                                   int64_t ldc, int64_t rows, int64_t inner) {
  int64_t r = 0;
  for (; r + R <= rows; r += R) {
    const Operand<T> block{a.data + r * a.row, a.row, a.inner};
    micro_kernel<T, R, NV, kAccumulate, Bytes>(block, b, ldb, c + r * ldc, ldc, inner);
  }
  a.data += r * a.row;
  c += r * ldc;
  last_row_block<T, R - 1, NV, kAccumulate, Bytes>(a, b, ldb, c, ldc, rows - r, inner);
}

// c[rows, NV 64-byte vectors] (+)= a[rows, inner] x b[inner, NV vectors], b's rows ldb apart. The
// register block: 8 rows x 2 64-byte vectors under AVX-512 (16 of its 32 registers accumulate);
// under AVX2 (16 registers of 32 bytes) 6 rows x 2 32-byte vectors, the classic AVX2 block (12
// accumulators, 2 for b, 1 for a). 8 x 2 64-byte vectors in an AVX2 clone spilled on every step:
// 7x slower, measured on an AMD EPYC.
template <typename T, int NV, bool kAccumulate>
[[gnu::always_inline]] inline void gemm_rows(Operand<T> a, const T* b, int64_t ldb, T* c,
                                             int64_t ldc, int64_t rows, int64_t inner) {
  if (wide_vector_registers()) {
    gemm_row_blocks<T, 8, NV, kAccumulate, 64>(a, b, ldb, c, ldc, rows, inner);
    return;
  }
  for (int v = 0; v < NV; ++v) {
    gemm_row_blocks<T, 6, 2, kAccumulate, 32>(a, b + v * kLanes<T>, ldb, c + v * kLanes<T>, ldc,
                                              rows, inner);
  }
}

// Tile t's 6x6 input window for sub-kernel s: its input plane (batch * depth planes) and the
// offsets of its pixels inside that plane (-1: padding, every one where the tap's plane is).
struct TileWindow {
  int64_t plane, oh0, ow0;
  int64_t offset[kPoints];
};

// Tiles along one dim of n outputs with dilation d: d phases of ceil(ceil(n / d) / 4) tiles each.
inline int64_t tiles_along(int64_t n, int64_t d) {
  return d * (((n + d - 1) / d + kTile - 1) / kTile);
}

// Output position of tile index u (of `tiles` along a dim, dilation d): phase u / per_phase, then
// kTile * d apart within the phase.
inline int64_t tile_start(int64_t u, int64_t tiles, int64_t d) {
  const int64_t per_phase = tiles / d;
  return u / per_phase + u % per_phase * kTile * d;
}

// Sub-kernel s (of p.subkernels): its depth tap and the first kernel row and column of its block.
struct SubKernel {
  int64_t kd, row, col;
};

inline SubKernel sub_kernel(const Plan& p, int64_t s) {
  const int64_t blocks = p.sub_h * p.sub_w;
  return {s / blocks, s % blocks / p.sub_w * 3, s % p.sub_w * 3};
}

// Weight tap (r, q) of a sub-kernel's 3x3 block, of the [taps] of an (input, output) channel
// pair; -1 where the block overhangs the kernel (a zero tap).
inline int64_t tap_of(const Plan& p, const SubKernel& sk, int r, int q) {
  const int64_t row = sk.row + r, col = sk.col + q;
  return row < p.kh && col < p.kw ? (sk.kd * p.kh + row) * p.kw + col : -1;
}

inline TileWindow tile_window(const Plan& p, int64_t t, int64_t s) {
  TileWindow tw;
  const SubKernel sk = sub_kernel(p, s);
  const int64_t out_plane = t / (p.TH * p.TW), n = out_plane / p.out_depth;
  const int64_t z =
      out_plane % p.out_depth * p.depth_stride + sk.kd * p.depth_dilation - p.depth_pad;
  const bool plane_inside = z >= 0 && z < p.depth;
  tw.plane = n * p.depth + z;
  tw.oh0 = tile_start(t / p.TW % p.TH, p.TH, p.dil_h);
  tw.ow0 = tile_start(t % p.TW, p.TW, p.dil_w);
  for (int i = 0; i < kAlpha; ++i) {
    const int64_t ih = tw.oh0 - p.pad_h + (sk.row + i) * p.dil_h;
    for (int j = 0; j < kAlpha; ++j) {
      const int64_t iw = tw.ow0 - p.pad_w + (sk.col + j) * p.dil_w;
      const bool inside = plane_inside && ih >= 0 && ih < p.H && iw >= 0 && iw < p.W;
      tw.offset[i * kAlpha + j] = inside ? ih * p.W + iw : -1;
    }
  }
  return tw;
}

// Output tile t: its plane, first output row and column, and how many of its 4x4 outputs (dil_h
// and dil_w apart) lie inside the output (rows x cols).
struct OutputTile {
  int64_t plane, oh0, ow0, rows, cols;
};

inline OutputTile output_tile(const Plan& p, int64_t t) {
  OutputTile o;
  o.plane = t / (p.TH * p.TW);
  o.oh0 = tile_start(t / p.TW % p.TH, p.TH, p.dil_h);
  o.ow0 = tile_start(t % p.TW, p.TW, p.dil_w);
  o.rows = std::clamp<int64_t>((p.OH - o.oh0 + p.dil_h - 1) / p.dil_h, 0, kTile);
  o.cols = std::clamp<int64_t>((p.OW - o.ow0 + p.dil_w - 1) / p.dil_w, 0, kTile);
  return o;
}

// Output channel k of the plan as the output tensor sees it: its channel among `channels`, and
// (interleaved outputs) its phase along h and w. Computed once per vector of channels: the
// divisions cost more than a tile's output transform.
struct OutputChannel {
  int64_t k, channels, phase_h, phase_w;
};

inline OutputChannel output_channel(const Plan& p, int64_t k) {
  const int64_t s = p.interleave;
  if (s == 1) return {k, p.K, 0, 0};
  const int64_t channels = p.K / (s * s), phase = k / channels;
  return {k % channels, channels, phase / s, phase % s};
}

// Where output (or output-gradient) channel c of output (i, j) of a tile lies, and the distance
// between neighbouring channels, in the plan's layout.
inline int64_t output_offset(const Plan& p, const OutputTile& o, int i, int j,
                             const OutputChannel& c) {
  const int64_t s = p.interleave, OW = p.OW * s, plane_numel = p.OH * s * OW;
  const int64_t oh = (o.oh0 + i * p.dil_h) * s + c.phase_h;
  const int64_t ow = (o.ow0 + j * p.dil_w) * s + c.phase_w;
  const int64_t pixel = oh * OW + ow;
  if (p.channels_last) return (o.plane * plane_numel + pixel) * c.channels + c.k;
  const int64_t n = o.plane / p.out_depth, z = o.plane % p.out_depth;
  return ((n * c.channels + c.k) * p.out_depth + z) * plane_numel + pixel;
}

inline int64_t output_channel_stride(const Plan& p) {
  return p.channels_last ? 1 : p.out_depth * p.OH * p.OW * p.interleave * p.interleave;
}

// v[36] = B^T d B of one tile's input window, input channels [c0, c0 + lanes of a vector)
// (zero beyond C): vectorised over channels.
template <typename T, int B = 64>
[[gnu::always_inline]] inline void input_tile_points(const T* x, const Plan& p,
                                                     const TileWindow& tw, int64_t c0,
                                                     Vec<T, B>* v) {
  using V = Vec<T, B>;
  constexpr int64_t L = kLanes<T, B>;
  const int64_t plane_numel = p.H * p.W;
  const int64_t lanes = std::min(L, p.C - c0);
  V d[kPoints];
  for (int xi = 0; xi < kPoints; ++xi) {
    d[xi] = V{};
    const int64_t off = tw.offset[xi];
    if (off < 0 || lanes <= 0) continue;
    if (p.channels_last) {
      const T* px = x + (tw.plane * plane_numel + off) * p.C + c0;
      if (lanes == L) {
        d[xi] = load<B>(px);
      } else {
        for (int64_t l = 0; l < lanes; ++l) d[xi][l] = px[l];
      }
    } else {
      const int64_t n = tw.plane / p.depth, z = tw.plane % p.depth;
      const T* px = x + ((n * p.C + c0) * p.depth + z) * plane_numel + off;
      const int64_t channel_stride = p.depth * plane_numel;
      for (int64_t l = 0; l < lanes; ++l) d[xi][l] = px[l * channel_stride];
    }
  }
  V cols[kPoints];  // B^T d
  for (int j = 0; j < kAlpha; ++j) input_transform(d + j, kAlpha, cols + j, kAlpha);
  for (int i = 0; i < kAlpha; ++i) input_transform(cols + i * kAlpha, 1, v + i * kAlpha, 1);
}

// V[x, t - t0, :] for the tiles [t0, t1) and sub-kernel s: the transformed input, vectorised over
// channels. Each point's matrix has `ld` rows (ld >= t1 - t0: a thread may fill part of a larger
// block).
template <typename T, int B = 64>
[[gnu::always_inline]] inline void transform_inputs(const T* x, const Plan& p, int64_t t0,
                                                    int64_t t1, T* V_, int64_t ld,
                                                    FiniteCheck<T, B>& finite, int64_t s = 0) {
  using V = Vec<T, B>;
  constexpr int64_t L = kLanes<T, B>;
  for (int64_t t = t0; t < t1; ++t) {
    const TileWindow tw = tile_window(p, t, s);
    for (int64_t c0 = 0; c0 < p.Cp; c0 += L) {
      V v[kPoints];  // B^T d B
      input_tile_points<T, B>(x, p, tw, c0, v);
      for (int xi = 0; xi < kPoints; ++xi) {
        store(V_ + (xi * ld + (t - t0)) * p.Cp + c0, v[xi]);
        finite.add(v[xi]);
      }
    }
  }
}

// The weight (NCHW [K, C, taps] or channels_last [K, taps, C]) as [C, taps, Kp] (zero for k >= K):
// the transform then loads whole vectors.
template <typename T>
[[gnu::always_inline]] inline void transpose_weights(const T* w, T* wt, const Plan& p,
                                                     int64_t c_begin, int64_t c_end) {
  const int64_t taps = p.taps;
  for (int64_t c = c_begin; c < c_end; ++c) {
    T* row = wt + c * taps * p.Kp;
    for (int64_t i = 0; i < taps; ++i) std::fill(row + i * p.Kp + p.K, row + (i + 1) * p.Kp, T(0));
  }
  if (p.weight_flipped_transpose) {
    // Row (c, i) is w[c, :, taps - 1 - i] of the forward weight [C, K, taps] (channels_last
    // [C, taps, K]): every spatial dim flipped.
    for (int64_t c = c_begin; c < c_end; ++c) {
      T* row = wt + c * taps * p.Kp;
      if (p.weight_channels_last) {
        for (int64_t i = 0; i < taps; ++i) {
          std::copy_n(w + (c * taps + taps - 1 - i) * p.K, p.K, row + i * p.Kp);
        }
      } else {
        blocked_transpose(w + c * p.K * taps + taps - 1, int64_t{-1}, taps, taps, p.K, row,
                          int64_t{1}, p.Kp);
      }
    }
    return;
  }
  if (!p.weight_channels_last) {
    // NCHW [K, C * taps]: the rows (c, i) wanted are one run of columns, transposed in one pass
    // (a pass per tap read each cache line of the weight `taps` times).
    blocked_transpose(w + c_begin * taps, p.C * taps, int64_t{1}, p.K, (c_end - c_begin) * taps,
                      wt + c_begin * taps * p.Kp, p.Kp, int64_t{1});
    return;
  }
  // channels_last [K, taps, C]: per tap i, [K, c_end - c_begin] -> rows (c, i).
  for (int64_t i = 0; i < taps; ++i) {
    blocked_transpose(w + c_begin + i * p.C, p.C * taps, int64_t{1}, p.K, c_end - c_begin,
                      wt + c_begin * taps * p.Kp + i * p.Kp, taps * p.Kp, int64_t{1});
  }
}

// u = G g G^T: 3x3 taps (row-major) -> 6x6 points.
template <typename V>
[[gnu::always_inline]] inline void kernel_tile_transform(const V* g, V* u) {
  V rows[kAlpha * 3];  // G g: [6, 3]
  for (int j = 0; j < 3; ++j) kernel_transform(g[j], g[3 + j], g[6 + j], rows + j, 3);
  for (int i = 0; i < kAlpha; ++i) {
    kernel_transform(rows[i * 3], rows[i * 3 + 1], rows[i * 3 + 2], u + i * kAlpha, 1);
  }
}

// U = G g G^T of every (c, k) pair with k in [k0, k0 + kc), as panels: for each sub-kernel and each
// of the 36 points, column block j (`panel` wide, a whole number of vectors; the last one maybe
// narrower) is [Cp, width] row-major. With panel >= kc each point's U is one row-major [Cp, kc]
// matrix. Sub-kernel s's matrices start at U + s * kPoints * Cp * kc.
template <typename T, int B = 64>
[[gnu::always_inline]] inline void transform_weights(const T* wt, T* U, const Plan& p, int64_t k0,
                                                     int64_t kc, int64_t c_begin, int64_t c_end,
                                                     int64_t panel, FiniteCheck<T, B>& finite) {
  using V = Vec<T, B>;
  constexpr int64_t L = kLanes<T, B>;
  const int64_t NB = panel;
  for (int64_t c = c_begin; c < c_end; ++c) {
    for (int64_t s = 0; s < p.subkernels; ++s) {
      const SubKernel sk = sub_kernel(p, s);
      int64_t tap[9];
      for (int i = 0; i < 9; ++i) tap[i] = c < p.C ? tap_of(p, sk, i / 3, i % 3) : -1;
      const T* taps = wt + c * p.taps * p.Kp + k0;
      for (int64_t kv = 0; kv < kc; kv += L) {
        V g[9];
        for (int i = 0; i < 9; ++i) g[i] = tap[i] >= 0 ? load<B>(taps + tap[i] * p.Kp + kv) : V{};
        V u[kPoints];
        kernel_tile_transform(g, u);
        const int64_t block = kv / NB, width = std::min(NB, kc - block * NB);
        T* dst = U + s * kPoints * p.Cp * kc + block * p.Cp * NB + c * width + kv % NB;
        for (int xi = 0; xi < kPoints; ++xi) {
          store(dst + xi * p.Cp * kc, u[xi]);
          finite.add(u[xi]);
        }
      }
    }
  }
}

// The 4x4 outputs of tiles [t0, t1), channels [k0, k0 + kc), from M [36, ld, kc] (its row 0 is
// tile t0).
template <typename T, int B = 64>
[[gnu::always_inline]] inline void transform_outputs(const T* M, const Plan& p, int64_t t0,
                                                     int64_t t1, int64_t k0, int64_t kc, T* y,
                                                     int64_t ld) {
  using V = Vec<T, B>;
  constexpr int64_t L = kLanes<T, B>;
  const int64_t channel_stride = output_channel_stride(p);
  for (int64_t t = t0; t < t1; ++t) {
    const OutputTile tile = output_tile(p, t);
    for (int64_t kv = 0; kv < kc; kv += L) {
      const int64_t k = k0 + kv, lanes = std::min(L, p.K - k);
      if (lanes <= 0) break;
      V m[kPoints];
      for (int xi = 0; xi < kPoints; ++xi) m[xi] = load<B>(M + (xi * ld + (t - t0)) * kc + kv);
      V cols[kTile * kAlpha];  // A^T m: [4, 6]
      for (int j = 0; j < kAlpha; ++j) output_transform(m + j, kAlpha, cols + j, kAlpha);
      V out[kTile * kTile];  // A^T m A
      for (int i = 0; i < kTile; ++i) output_transform(cols + i * kAlpha, 1, out + i * kTile, 1);
      const OutputChannel channel = output_channel(p, k);
      if (p.bias) {
        // Lanes past the last channel stay 0 (never stored).
        V b{};
        std::memcpy(&b, static_cast<const T*>(p.bias) + channel.k,
                    static_cast<size_t>(lanes) * sizeof(T));
        for (int o = 0; o < kTile * kTile; ++o) out[o] += b;
      }
      for (int i = 0; i < tile.rows; ++i) {
        for (int j = 0; j < tile.cols; ++j) {
          const V& o = out[i * kTile + j];
          T* dst = y + output_offset(p, tile, i, j, channel);
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

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

template <typename T>
Plan make_plan(const ConvGeometry& g, int64_t batch, int64_t out_channels) {
  constexpr int64_t L = kLanes<T>;
  Plan p;
  p.C = g.channels;
  p.K = out_channels;
  p.Cp = round_up(p.C, L);
  p.Kp = round_up(p.K, L);
  p.depth = g.image[0];
  p.out_depth = g.grid[0];
  p.planes = batch * p.out_depth;
  p.depth_taps = g.kernel[0];
  p.depth_stride = g.stride[0];
  p.depth_dilation = g.dilation[0];
  p.depth_pad = g.pad[0];
  p.kh = g.kernel[1];
  p.kw = g.kernel[2];
  p.sub_h = kernel_blocks(p.kh);
  p.sub_w = kernel_blocks(p.kw);
  p.subkernels = p.depth_taps * p.sub_h * p.sub_w;
  p.taps = p.depth_taps * p.kh * p.kw;
  p.H = g.image[1];
  p.W = g.image[2];
  p.OH = g.grid[1];
  p.OW = g.grid[2];
  p.pad_h = g.pad[1];
  p.pad_w = g.pad[2];
  p.dil_h = g.dilation[1];
  p.dil_w = g.dilation[2];
  p.TH = tiles_along(p.OH, p.dil_h);
  p.TW = tiles_along(p.OW, p.dil_w);
  p.tiles = p.planes * p.TH * p.TW;
  p.channels_last = g.channels_last;
  p.weight_channels_last = g.channels_last;
  p.weight_flipped_transpose = false;
  p.interleave = 1;
  p.bias = nullptr;
  // The transformed weights of one output channel chunk stay within kWeightBytes; the blocks of
  // tiles then hold their transformed inputs and GEMM outputs within block_bytes().
  const int64_t per_channel = p.subkernels * kPoints * p.Cp * static_cast<int64_t>(sizeof(T));
  p.k_chunk = std::clamp(kWeightBytes / per_channel / L * L, L, p.Kp);
  p.k_chunks = (p.Kp + p.k_chunk - 1) / p.k_chunk;
  const int64_t tile_bytes = kPoints * (p.Cp + p.k_chunk) * static_cast<int64_t>(sizeof(T));
  int64_t tiles = std::clamp(block_bytes() / tile_bytes, kMinTiles, kMaxTiles);
  if ((p.tiles + tiles - 1) / tiles < kMinTasks) {
    tiles = std::max(kMinTiles, (p.tiles + kMinTasks - 1) / kMinTasks);
  }
  // Equal blocks, their count a multiple of kMinTasks where there are tiles enough: the cores
  // finish together.
  tiles = std::min(tiles, p.tiles);
  int64_t blocks = (p.tiles + tiles - 1) / tiles;
  if (p.tiles >= kMinTasks * kMinTiles) blocks = round_up(blocks, kMinTasks);
  p.block_tiles = (p.tiles + blocks - 1) / blocks;
  p.blocks = (p.tiles + p.block_tiles - 1) / p.block_tiles;
  return p;
}

}  // namespace convpool::cpu::winograd
