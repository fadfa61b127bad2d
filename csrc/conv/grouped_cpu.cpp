// Grouped convolution with few channels per group, channels_last, direct.
//
// A line is a run of output pixels along the last spatial dim; each tap of the line reads a
// strided run of source pixels (LineTap-style: src, lo, hi). For a block of kPixels pixels the
// kernel keeps kPixels vectors of V output channels in registers and, per tap and per reduced
// channel c, loads one weight vector w[tap][c][0..V) and broadcasts one source value per pixel:
// the weights of a group stay in L1 and each FMA does V useful products. The forward reduces
// over the group's input channels (vector: output channels), the input gradient over the
// group's output channels (vector: input channels), by width phases so that a line's pixels
// read consecutive grid pixels. The weight gradient accumulates a [KB, V] block of one tap in
// registers over a line, all taps of an output row in turn (the row stays in L1).
#include "grouped_cpu.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../common/isa_clones.h"
#include "channel_block_transpose.h"
#include "channels_last_staging.h"
#include "conv_algorithm.h"
#include "conv_driver.h"
#include "packed_gemm.h"

#pragma GCC diagnostic ignored "-Wpsabi"  // wide vectors never cross a call (always inlined)

namespace convpool::cpu {
namespace {

#define CONVPOOL_INLINE inline __attribute__((always_inline))

// V elements (a group's channels) as N registers of R bytes: one AVX-512 register holds 16
// floats, an AVX2 one 8 (B: the register width the clone computes with, see
// wide_vector_registers()). A V-element generic vector wider than a register would live on the
// stack.
template <typename T, int V, int B>
struct Regs {
  static constexpr int kBytes = V * static_cast<int>(sizeof(T));
  // Bytes per register: the widest that divides V's (24 floats: three 32-byte registers).
  static constexpr int R = kBytes % B == 0 ? B : kBytes % (B / 2) == 0 ? B / 2 : B / 4;
  static constexpr int N = kBytes / R;  // registers
  static constexpr int L = R / static_cast<int>(sizeof(T));
  typedef T type __attribute__((vector_size(R)));
};

template <typename T, int V, int B>
CONVPOOL_INLINE typename Regs<T, V, B>::type load(const T* p) {
  typename Regs<T, V, B>::type v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T, typename R>
CONVPOOL_INLINE void store(T* p, R v) {
  __builtin_memcpy(p, &v, sizeof(v));
}

// The first `count` lanes of v (all of them from L on): the last block of output channels
// padded up to whole vectors writes only the channels that exist.
template <typename T, int L, typename R>
CONVPOOL_INLINE void store_first(T* p, R v, int count) {
  if (count >= L) return store(p, v);
  if (count <= 0) return;
  T lanes[L];
  store(lanes, v);
  std::memcpy(p, lanes, static_cast<size_t>(count) * sizeof(T));
}

template <typename T>
struct Tap {
  const T* src;  // pixel 0 of the line's run, at the group's first reduced channel
  const T* w;    // [reduced channels][V]
  int64_t lo, hi;
};

// Independent sums per output vector in a block of P pixels: with few pixels (a line's
// remainder, its edges) the P * N accumulators are too few to hide the FMA's latency (4 cycles,
// 2 per cycle: 8 chains keep the units busy), so the reduction runs in S chains over alternating
// reduced channels, added at the end; as many as the register file holds beside N weights and a
// broadcast.
template <int P, int N, int B>
constexpr int kChains = [] {
  const int regs = B == 64 ? 32 : 16;
  int s = P * N >= 8 ? 1 : (8 + P * N - 1) / (P * N);
  while (s > 1 && s * P * N + N + 1 > regs) --s;
  return s;
}();

// P pixels from j on: per tap and reduced channel one weight vector, reused by the P pixels'
// broadcasts. kChecked (P == 1): taps out of range at j are skipped (the line's edges); else
// every tap is in range for all P pixels.
template <typename T, int V, int B, int P, bool kChecked = false>
CONVPOOL_INLINE void block_impl(T* out, int64_t out_step, int64_t j, const Tap<T>* taps,
                                int64_t ntaps, int64_t step, int64_t cin, const T* bias,
                                int valid) {
  static_assert(!kChecked || P == 1);
  using G = Regs<T, V, B>;
  using Vt = typename G::type;
  constexpr int N = G::N, L = G::L, S = kChains<P, N, B>;
  Vt acc[S][P][N];
  for (int n = 0; n < N; ++n) acc[0][0][n] = bias ? load<T, V, B>(bias + n * L) : Vt{};
  for (int p = 1; p < P; ++p) {
    for (int n = 0; n < N; ++n) acc[0][p][n] = acc[0][0][n];
  }
  for (int r = 1; r < S; ++r) {
    for (int p = 0; p < P; ++p) {
      for (int n = 0; n < N; ++n) acc[r][p][n] = Vt{};
    }
  }
  for (int64_t t = 0; t < ntaps; ++t) {
    if (kChecked && (j < taps[t].lo || j >= taps[t].hi)) continue;
    const T* s = taps[t].src + j * step;
    const T* w = taps[t].w;
    int64_t c = 0;
    for (; c + S <= cin; c += S) {
#pragma GCC unroll 8
      for (int r = 0; r < S; ++r) {
        Vt wv[N];
        for (int n = 0; n < N; ++n) wv[n] = load<T, V, B>(w + (c + r) * V + n * L);
#pragma GCC unroll 8
        for (int p = 0; p < P; ++p) {
          const T x = s[p * step + c + r];
          for (int n = 0; n < N; ++n) acc[r][p][n] += x * wv[n];
        }
      }
    }
    for (; c < cin; ++c) {
      Vt wv[N];
      for (int n = 0; n < N; ++n) wv[n] = load<T, V, B>(w + c * V + n * L);
      for (int p = 0; p < P; ++p) {
        const T x = s[p * step + c];
        for (int n = 0; n < N; ++n) acc[0][p][n] += x * wv[n];
      }
    }
  }
  for (int r = 1; r < S; ++r) {
    for (int p = 0; p < P; ++p) {
      for (int n = 0; n < N; ++n) acc[0][p][n] += acc[r][p][n];
    }
  }
  // Whole vectors (all but a padded last block) without store_first's branches, which kept the
  // accumulators in memory for the stores.
  if (valid >= V) {
    for (int p = 0; p < P; ++p) {
      for (int n = 0; n < N; ++n) store(out + (j + p) * out_step + n * L, acc[0][p][n]);
    }
    return;
  }
  for (int p = 0; p < P; ++p) {
    for (int n = 0; n < N; ++n) {
      store_first<T, L>(out + (j + p) * out_step + n * L, acc[0][p][n], valid - n * L);
    }
  }
}

// out[j * out_step + v] = bias[v] (0 without one) + sum over taps valid at j, c < cin of
// src[j * step + c] * w[c * V + v], for j < count: the interior (every tap valid) in blocks of P,
// the rest in blocks of 4, 2 and 1, the edges pixel by pixel.
template <typename T, int V, int B, int P>
CONVPOOL_INLINE void line_impl(T* out, int64_t out_step, int64_t count, const Tap<T>* taps,
                               int64_t ntaps, int64_t step, int64_t cin, const T* bias, int valid) {
  int64_t lo = 0, hi = count;
  for (int64_t t = 0; t < ntaps; ++t) {
    lo = std::max(lo, taps[t].lo);
    hi = std::min(hi, taps[t].hi);
  }
  if (hi < lo) hi = lo;
  for (int64_t j = 0; j < lo; ++j)
    block_impl<T, V, B, 1, true>(out, out_step, j, taps, ntaps, step, cin, bias, valid);
  int64_t j = lo;
  for (; j + P <= hi; j += P)
    block_impl<T, V, B, P>(out, out_step, j, taps, ntaps, step, cin, bias, valid);
  if (P > 4 && j + 4 <= hi) {
    block_impl<T, V, B, 4>(out, out_step, j, taps, ntaps, step, cin, bias, valid);
    j += 4;
  }
  if (P > 2 && j + 2 <= hi) {
    block_impl<T, V, B, 2>(out, out_step, j, taps, ntaps, step, cin, bias, valid);
    j += 2;
  }
  for (; j < hi; ++j) block_impl<T, V, B, 1>(out, out_step, j, taps, ntaps, step, cin, bias, valid);
  for (; j < count; ++j)
    block_impl<T, V, B, 1, true>(out, out_step, j, taps, ntaps, step, cin, bias, valid);
}

// Pixels per block: P * N accumulators, N weight registers and a broadcast must fit the register
// file (32 with AVX-512, 16 with AVX2) or the accumulators spill. With AVX-512, 6 pixels of 2
// vectors (12 chains, not the 8 that just cover the FMA's latency): N4 9x9 3 -> 32 224x224
// channels_last 10.4 -> 9.2 ms (torch 8.4), AlexNet's stem 2.3 -> 2.0. Three and four vectors
// (48 and 64 channels) take 8 and 6 pixels (24 accumulators; 4 and 3 before, which loaded a
// weight vector per two FMAs): 3x3/2 3 -> 48 224x224 N8 1.14 -> 0.99 ms, 1x1 16 -> 64 112x112
// 1.10 -> 1.02.
template <typename T, int V, int B>
constexpr int kBlockPixels = B == 64 ? (Regs<T, V, B>::N == 1   ? 8
                                        : Regs<T, V, B>::N == 2 ? 6
                                        : Regs<T, V, B>::N == 3 ? 8
                                                                : 6)
                                     : (Regs<T, V, B>::N == 1   ? 8
                                        : Regs<T, V, B>::N == 2 ? 6
                                        : Regs<T, V, B>::N == 3 ? 4
                                                                : 3);

template <typename T, int B>
CONVPOOL_INLINE void line_for(int v, T* out, int64_t out_step, int64_t count, const Tap<T>* taps,
                              int64_t ntaps, int64_t step, int64_t cin, const T* bias, int valid) {
  switch (v) {
    case 64:
      if constexpr (B == 64) {
        return line_impl<T, 64, B, kBlockPixels<T, 64, B>>(out, out_step, count, taps, ntaps, step,
                                                           cin, bias, valid);
      }
      TORCH_INTERNAL_ASSERT(false, "grouped line: 64 channels need 64-byte vectors");
    case 48:
      if constexpr (B == 64) {
        return line_impl<T, 48, B, kBlockPixels<T, 48, B>>(out, out_step, count, taps, ntaps, step,
                                                           cin, bias, valid);
      }
      TORCH_INTERNAL_ASSERT(false, "grouped line: 48 channels need 64-byte vectors");
    case 32:
      return line_impl<T, 32, B, kBlockPixels<T, 32, B>>(out, out_step, count, taps, ntaps, step,
                                                         cin, bias, valid);
    case 24:
      return line_impl<T, 24, B, kBlockPixels<T, 24, B>>(out, out_step, count, taps, ntaps, step,
                                                         cin, bias, valid);
    case 16:
      return line_impl<T, 16, B, kBlockPixels<T, 16, B>>(out, out_step, count, taps, ntaps, step,
                                                         cin, bias, valid);
    case 8:
      return line_impl<T, 8, B, kBlockPixels<T, 8, B>>(out, out_step, count, taps, ntaps, step, cin,
                                                       bias, valid);
    default:
      return line_impl<T, 4, B, kBlockPixels<T, 4, B>>(out, out_step, count, taps, ntaps, step, cin,
                                                       bias, valid);
  }
}

template <typename T>
CONVPOOL_INLINE void line_any(int v, T* out, int64_t out_step, int64_t count, const Tap<T>* taps,
                              int64_t ntaps, int64_t step, int64_t cin, const T* bias, int valid) {
  if (wide_vector_registers())
    return line_for<T, 64>(v, out, out_step, count, taps, ntaps, step, cin, bias, valid);
  line_for<T, 32>(v, out, out_step, count, taps, ntaps, step, cin, bias, valid);
}

CONVPOOL_CLONES void grouped_line(int v, float* out, int64_t out_step, int64_t count,
                                  const Tap<float>* taps, int64_t ntaps, int64_t step, int64_t cin,
                                  const float* bias, int valid) {
  line_any(v, out, out_step, count, taps, ntaps, step, cin, bias, valid);
}
CONVPOOL_CLONES void grouped_line(int v, double* out, int64_t out_step, int64_t count,
                                  const Tap<double>* taps, int64_t ntaps, int64_t step, int64_t cin,
                                  const double* bias, int valid) {
  line_any(v, out, out_step, count, taps, ntaps, step, cin, bias, valid);
}

// sums[k * V + v] += sum over lo <= j < hi of go[j * go_step + k] * src[j * step + v], k < KB,
// in passes of KS rows k whose KS * N accumulators fit the registers (each sum still runs over j
// in order).
template <typename T, int V, int B, int KB>
CONVPOOL_INLINE void sums_impl(T* sums, const T* go, int64_t go_step, const T* src, int64_t step,
                               int64_t lo, int64_t hi) {
  using G = Regs<T, V, B>;
  using Vt = typename G::type;
  constexpr int N = G::N, L = G::L;
  constexpr int kMaxAcc = B == 64 ? 16 : 12;
  constexpr int KS = KB * N <= kMaxAcc       ? KB
                     : KB / 2 * N <= kMaxAcc ? KB / 2
                     : KB / 4 * N <= kMaxAcc ? KB / 4
                                             : KB / 8;
  static_assert(KS >= 1 && KB % KS == 0);
  for (int k0 = 0; k0 < KB; k0 += KS) {
    Vt acc[KS][N];
    for (int k = 0; k < KS; ++k) {
      for (int n = 0; n < N; ++n) acc[k][n] = load<T, V, B>(sums + (k0 + k) * V + n * L);
    }
    for (int64_t j = lo; j < hi; ++j) {
      Vt x[N];
      for (int n = 0; n < N; ++n) x[n] = load<T, V, B>(src + j * step + n * L);
      const T* g = go + j * go_step + k0;
#pragma GCC unroll 16
      for (int k = 0; k < KS; ++k) {
        for (int n = 0; n < N; ++n) acc[k][n] += g[k] * x[n];
      }
    }
    for (int k = 0; k < KS; ++k) {
      for (int n = 0; n < N; ++n) store(sums + (k0 + k) * V + n * L, acc[k][n]);
    }
  }
}

template <typename T, int B>
CONVPOOL_INLINE void sums_for(int v, int kb, T* sums, const T* go, int64_t go_step, const T* src,
                              int64_t step, int64_t lo, int64_t hi) {
#define CONVPOOL_SUMS(VV)                                                   \
  switch (kb) {                                                             \
    case 16:                                                                \
      return sums_impl<T, VV, B, 16>(sums, go, go_step, src, step, lo, hi); \
    case 8:                                                                 \
      return sums_impl<T, VV, B, 8>(sums, go, go_step, src, step, lo, hi);  \
    default:                                                                \
      return sums_impl<T, VV, B, 4>(sums, go, go_step, src, step, lo, hi);  \
  }
  switch (v) {
    case 16:
      CONVPOOL_SUMS(16)
    case 8:
      CONVPOOL_SUMS(8)
    default:
      CONVPOOL_SUMS(4)
  }
#undef CONVPOOL_SUMS
}

template <typename T>
CONVPOOL_INLINE void sums_any(int v, int kb, T* sums, const T* go, int64_t go_step, const T* src,
                              int64_t step, int64_t lo, int64_t hi) {
  if (wide_vector_registers()) return sums_for<T, 64>(v, kb, sums, go, go_step, src, step, lo, hi);
  sums_for<T, 32>(v, kb, sums, go, go_step, src, step, lo, hi);
}

CONVPOOL_CLONES void grouped_sums(int v, int kb, float* sums, const float* go, int64_t go_step,
                                  const float* src, int64_t step, int64_t lo, int64_t hi) {
  sums_any(v, kb, sums, go, go_step, src, step, lo, hi);
}
CONVPOOL_CLONES void grouped_sums(int v, int kb, double* sums, const double* go, int64_t go_step,
                                  const double* src, int64_t step, int64_t lo, int64_t hi) {
  sums_any(v, kb, sums, go, go_step, src, step, lo, hi);
}

// The vector width for a dimension of n channels (a multiple of 4).
int chunk(int64_t n) { return n % 16 == 0 ? 16 : n % 8 == 0 ? 8 : 4; }

// The forward's vector of output channels. With one group (few_channels_applies) wider ones
// too: fewer passes over the input, whole cache lines of output (N8 3 -> 24 channels 3x3/2
// 224x224: 4.5 ms in three 8-channel passes, 1.4-1.8 in one 24-channel pass).
//
// With AVX-512, 33 to 64 output channels take one vector block of 48 or 64 (3 or 4 registers):
// every output pixel written whole in one pass, the input line read once. N8 channels_last, two
// passes -> one (torch), ms: 1x1 16 -> 48 112x112 1.84 -> 1.47 (1.64), 16 -> 64 2.33 -> 2.00
// (1.97), 16 -> 40 56x56 0.41 -> 0.31 (0.38); 3x3 stride 2 3 -> 48 224x224 2.49 -> 1.89 (2.10),
// 3x3 16 -> 64 56x56 1.64 -> 1.51. With blocks of 6 pixels (kBlockPixels) the wide vector also
// pays on large kernels: the ResNet stem 7x7/2 3 -> 64 5.8 -> 5.3 ms against two passes of 32
// channels (torch 5.2-5.8), AlexNet's 11x11/4 3 -> 64 (N4) 2.14 -> 1.72 (1.5).
int forward_chunk(const ConvGeometry& g, int64_t kg) {
  if (g.groups > 1) return chunk(kg);
  if (wide_vector_registers() && kg > 32 && kg <= 64) {
    return kg <= 48 ? 48 : 64;
  }
  // Past 64 channels too, whole vectors of 64 or 48 where they divide the channels: a weight
  // load per 6 FMAs instead of 3 (SqueezeNet's stem 7x7/2 3 -> 96 N4 channels_last 4.1-4.3 ->
  // 3.9-4.0 ms in two passes of 48 against three of 32).
  if (wide_vector_registers() && kg % 64 == 0) return 64;
  if (wide_vector_registers() && kg % 48 == 0) return 48;
  // One group: any channel count, the last vector padded (shufflenet's 58 and 116 channels).
  return kg % 32 == 0 ? 32 : kg % 24 == 0 ? 24 : 16;
}

int64_t ceil_div(int64_t a, int64_t b) {  // b > 0, a of any sign
  return a >= 0 ? (a + b - 1) / b : -((-a) / b);
}

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// The weight [K, cg, taps] repacked as [groups][vector blocks][taps][reduced][V]: `by_output`
// (forward): the vector runs over the group's output channels, the reduction over its input
// channels; else (input gradient) the other way round.
template <typename T>
std::vector<T> pack_weight(const at::Tensor& weight, int64_t groups, int64_t taps, bool by_output,
                           int v) {
  const auto w = weight.contiguous();
  const T* src = w.const_data_ptr<T>();
  const int64_t K = w.size(0), cg = w.size(1), kg = K / groups;
  const int64_t vec_dim = by_output ? kg : cg, red = by_output ? cg : kg;
  // The vectors past vec_dim (a padded last block) hold zeros.
  const int64_t blocks = (vec_dim + v - 1) / v;
  std::vector<T> out(groups * blocks * taps * red * v, T(0));
  for (int64_t gr = 0; gr < groups; ++gr) {
    for (int64_t b = 0; b < blocks; ++b) {
      for (int64_t t = 0; t < taps; ++t) {
        for (int64_t r = 0; r < red; ++r) {
          for (int64_t l = 0; l < std::min<int64_t>(v, vec_dim - b * v); ++l) {
            const int64_t k = by_output ? b * v + l : r, c = by_output ? r : b * v + l;
            out[((((gr * blocks + b) * taps + t) * red + r) * v) + l] =
                src[((gr * kg + k) * cg + c) * taps + t];
          }
        }
      }
    }
  }
  return out;
}

// Per kernel column kw: where its tap reads along the width (iw = ow * s + off) and the output
// pixels [lo, hi) for which that is inside the image. The same for every row: computed once per
// conv (the divisions per tap and row took 16 % of a stem's time once forward_row split its
// lines in three).
struct WidthTap {
  int64_t off, lo, hi;
};

std::vector<WidthTap> width_taps(const ConvGeometry& g) {
  std::vector<WidthTap> taps(g.kernel[2]);
  for (int64_t kw = 0; kw < g.kernel[2]; ++kw) {
    const int64_t off = kw * g.dilation[2] - g.pad[2];
    taps[kw] = {off, std::max<int64_t>(0, ceil_div(-off, g.stride[2])),
                std::min<int64_t>(g.grid[2], ceil_div(g.image[2] - off, g.stride[2]))};
  }
  return taps;
}

// Output row (od, oh) of the forward for one block of a group's output channels: the taps that
// read inside the image, then the line kernel. pixel(kd, id, ih) is input pixel (id, ih, 0) at
// the group's first channel, pixel_step the distance between pixels along the width; w the
// block's packed weights ([taps][cg][v]); wt the conv's width_taps.
//
// Where a pixel's channels are all the group's (pixel_step == cg) and the width is not dilated,
// the KW taps of a kernel row read one run of KW * cg consecutive values and their weights follow
// each other too: between the line's edges that row is one tap reducing over KW * cg values, in
// the order the separate taps summed. A few channels per tap left the line kernel's reduction
// too short to run at speed (channels_last, ms, before -> after (torch): N8 7x7 8 -> 32 112x112
// 10.9 -> 7.4 (6.4), N4 AlexNet's 11x11/4 3 -> 64 224x224 3.1 -> 2.0 (1.5-1.7), ResNet's 7x7/2
// stem at N8 6.2 -> 6.0 (5.2), where the line kernel runs at ~85 % of the FMA peak).
template <typename T, typename Pixel>
void forward_row(const ConvGeometry& g, const WidthTap* wt, int64_t od, int64_t oh, Pixel&& pixel,
                 int64_t pixel_step, const T* w, int64_t cg, int v, Tap<T>* tl, T* out,
                 int64_t out_step, const T* bias, int valid) {
  const int64_t KD = g.kernel[0], KH = g.kernel[1], KW = g.kernel[2], OW = g.grid[2];
  const int64_t step = g.stride[2] * pixel_step;
  // The taps of the kernel rows (kd, kh) that read inside the image, for output pixels [j0, j1)
  // (j0 at the list's pixel 0); `merged`: one per kernel row, every pixel of the range inside
  // the width.
  const auto line = [&](int64_t j0, int64_t j1, bool merged) {
    if (j0 >= j1) return;
    int64_t nt = 0;
    for (int64_t kd = 0; kd < KD; ++kd) {
      const int64_t id = od * g.stride[0] - g.pad[0] + kd * g.dilation[0];
      if (id < 0 || id >= g.image[0]) continue;
      for (int64_t kh = 0; kh < KH; ++kh) {
        const int64_t ih = oh * g.stride[1] - g.pad[1] + kh * g.dilation[1];
        if (ih < 0 || ih >= g.image[1]) continue;
        const T* row = pixel(kd, id, ih) + j0 * step;
        for (int64_t kw = 0; kw < (merged ? 1 : KW); ++kw) {
          const int64_t lo = merged ? j0 : std::max(j0, wt[kw].lo);
          const int64_t hi = merged ? j1 : std::min(j1, wt[kw].hi);
          if (lo >= hi) continue;
          tl[nt++] = {row + wt[kw].off * pixel_step, w + ((kd * KH + kh) * KW + kw) * cg * v,
                      lo - j0, hi - j0};
        }
      }
    }
    grouped_line(v, out + j0 * out_step, out_step, j1 - j0, tl, nt, step, merged ? KW * cg : cg,
                 bias, valid);
  };
  if (KW > 1 && g.dilation[2] == 1 && pixel_step == cg) {
    // Pixels whose first tap and last are inside the width.
    const int64_t lo = std::min(OW, wt[0].lo), hi = std::max(lo, wt[KW - 1].hi);
    line(0, lo, false);
    line(lo, hi, true);
    line(hi, OW, false);
    return;
  }
  line(0, OW, false);
}

// The sizes the forward and input-gradient kernels share: channels, groups and their channels,
// the vector width v and the vectors per group, taps, image and grid extents, width stride. The
// forward's vectors run over a group's output channels (forward_chunk, the last one padded), the
// input gradient's over its input channels.
struct GroupedSizes {
  int64_t C, groups, cg, kg;
  int v;
  int64_t blocks, taps, ID, IH, IW, OD, OH, OW, s;

  GroupedSizes(const ConvGeometry& g, int64_t K, bool forward)
      : C(g.channels),
        groups(g.groups),
        cg(C / groups),
        kg(K / groups),
        v(forward ? forward_chunk(g, kg) : chunk(cg)),
        blocks(((forward ? kg : cg) + v - 1) / v),
        taps(g.kernel_numel()),
        ID(g.image[0]),
        IH(g.image[1]),
        IW(g.image[2]),
        OD(g.grid[0]),
        OH(g.grid[1]),
        OW(g.grid[2]),
        s(g.stride[2]) {}
};

template <typename T>
void conv_cl(const T* x, const T* wp, T* y, const ConvGeometry& g, int64_t batch, int64_t K,
             const T* bias) {
  const GroupedSizes dims(g, K, /*forward=*/true);
  const int64_t rows = batch * dims.OD * dims.OH;
  const auto wt = width_taps(g);
  at::parallel_for(0, rows * dims.groups, 1, [&](int64_t begin, int64_t end) {
    std::vector<Tap<T>> tl(dims.taps);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t row = task / dims.groups, gr = task % dims.groups;
      const int64_t oh = row % dims.OH, od = row / dims.OH % dims.OD, n = row / (dims.OH * dims.OD);
      for (int64_t b = 0; b < dims.blocks; ++b) {
        forward_row(
            g, wt.data(), od, oh,
            [&](int64_t, int64_t id, int64_t ih) {
              return x + ((n * dims.ID + id) * dims.IH + ih) * dims.IW * dims.C + gr * dims.cg;
            },
            dims.C, wp + (gr * dims.blocks + b) * dims.taps * dims.cg * dims.v, dims.cg, dims.v,
            tl.data(), y + row * dims.OW * K + gr * dims.kg + b * dims.v, K,
            bias ? bias + gr * dims.kg + b * dims.v : nullptr,
            static_cast<int>(std::min<int64_t>(dims.v, dims.kg - b * dims.v)));
      }
    }
  });
}

// Scratch of one NCHW task (the input rows of a band for every depth tap, and the band's output)
// kept about this size, so that it stays in L2 between the copies and the line kernel.
constexpr int64_t kBandBytes = 192 * 1024;

// Rows per band: `rows` halved until the scratch of a band, bytes(band), fits kBandBytes.
template <typename Bytes>
int64_t band_rows(int64_t rows, Bytes&& bytes) {
  int64_t band = rows;
  while (band > 1 && bytes(band) > kBandBytes) band = (band + 1) / 2;
  return band;
}

// Runs body(sample, group, depth, row0, row1, in, out, taps) for every task of an NCHW kernel:
// (sample, group, depth, band of rows [row0, row1)), in parallel, each thread with its scratch
// (`in`, `out` of in_size and out_size elements, a tap list).
template <typename T, typename Body>
void for_each_band(int64_t batch, int64_t groups, int64_t depths, int64_t rows, int64_t band,
                   int64_t in_size, int64_t out_size, int64_t taps, Body&& body) {
  const int64_t bands = (rows + band - 1) / band;
  at::parallel_for(0, batch * groups * depths * bands, 1, [&](int64_t begin, int64_t end) {
    std::vector<Tap<T>> tl(taps);
    std::vector<T> in(in_size), out(out_size);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t row0 = task % bands * band;
      body(task / (bands * depths * groups), task / (bands * depths) % groups,
           task / bands % depths, row0, std::min(rows, row0 + band), in.data(), out.data(),
           tl.data());
    }
  });
}

// Output planes an NCHW task writes at once (one register tile's worth).
constexpr int64_t kPlaneStrip = 16;

// The forward on NCHW tensors without whole-tensor layout copies: one task per (sample, group,
// output depth, band of output rows) transposes the input rows the band reads into a
// channels_last scratch, runs the line kernel into a second scratch and transposes that into the
// output's planes. The two full-tensor copies this replaces were a third of the time of a RegNet
// conv (N8 C128 28x28, 8 groups, 2 threads: 6.1 -> 4.2-4.6 ms; torch 4.2-6.7).
template <typename T>
void conv_nchw(const T* x, const T* wp, T* y, const ConvGeometry& g, int64_t batch, int64_t K,
               const T* bias) {
  const GroupedSizes dims(g, K, /*forward=*/true);
  const int64_t KD = g.kernel[0], KH = g.kernel[1];
  const int64_t in_plane = dims.ID * dims.IH * dims.IW, out_plane = dims.OD * dims.OH * dims.OW;
  const auto rows_read = [&](int64_t rows) {
    return std::min(dims.IH, (rows - 1) * g.stride[1] + (KH - 1) * g.dilation[1] + 1);
  };
  const int64_t band = band_rows(dims.OH, [&](int64_t rows) {
    return static_cast<int64_t>(sizeof(T)) *
           (KD * rows_read(rows) * dims.IW * dims.cg + rows * dims.OW * dims.kg);
  });
  const int64_t slab = rows_read(band) * dims.IW * dims.cg;
  const auto wt = width_taps(g);
  for_each_band<T>(
      batch, dims.groups, dims.OD, dims.OH, band, KD * slab, band * dims.OW * dims.kg, dims.taps,
      [&](int64_t n, int64_t gr, int64_t od, int64_t oh0, int64_t oh1, T* in, T* out, Tap<T>* tl) {
        const int64_t ih0 = std::max<int64_t>(0, oh0 * g.stride[1] - g.pad[1]);
        const int64_t ih1 =
            std::min(dims.IH, (oh1 - 1) * g.stride[1] - g.pad[1] + (KH - 1) * g.dilation[1] + 1);
        for (int64_t kd = 0; kd < KD && ih0 < ih1; ++kd) {
          const int64_t id = od * g.stride[0] - g.pad[0] + kd * g.dilation[0];
          if (id < 0 || id >= dims.ID) continue;
          transpose_matrix(
              x + ((n * dims.C + gr * dims.cg) * dims.ID + id) * dims.IH * dims.IW + ih0 * dims.IW,
              in_plane, dims.cg, (ih1 - ih0) * dims.IW, in + kd * slab, dims.cg);
        }
        for (int64_t oh = oh0; oh < oh1; ++oh) {
          for (int64_t b = 0; b < dims.blocks; ++b) {
            forward_row(
                g, wt.data(), od, oh,
                [&](int64_t kd, int64_t, int64_t ih) {
                  return in + kd * slab + (ih - ih0) * dims.IW * dims.cg;
                },
                dims.cg, wp + (gr * dims.blocks + b) * dims.taps * dims.cg * dims.v, dims.cg,
                dims.v, tl, out + (oh - oh0) * dims.OW * dims.kg + b * dims.v, dims.kg,
                bias ? bias + gr * dims.kg + b * dims.v : nullptr,
                static_cast<int>(std::min<int64_t>(dims.v, dims.kg - b * dims.v)));
          }
        }
        // 16 output planes at a time: a tile row at a time over all of them, the writes went
        // to 64 planes at once and the NCHW ResNet stem (N8 7x7/2 3 -> 64) took 7.6-11 ms
        // against 7.0-7.2 this way (5.0 in channels_last).
        T* planes = y + ((n * K + gr * dims.kg) * dims.OD + od) * dims.OH * dims.OW + oh0 * dims.OW;
        for (int64_t c0 = 0; c0 < dims.kg; c0 += kPlaneStrip) {
          transpose_matrix(out + c0, dims.kg, (oh1 - oh0) * dims.OW,
                           std::min(kPlaneStrip, dims.kg - c0), planes + c0 * out_plane, out_plane);
        }
      });
}

// Image (conv input) row (id, ih), width phase r (iw = r + j * s, j < count) of the input
// gradient for one block of a group's input channels: the taps whose grid rows exist and whose
// width offsets fall on this phase, then the line kernel. pixel(kd, od, oh) is grid pixel
// (od, oh, 0) at the group's first channel, pixel_step the distance between grid pixels; w the
// block's packed weights ([taps][kg][v]).
template <typename T, typename Pixel>
void transpose_row(const ConvGeometry& g, int64_t id, int64_t ih, int64_t r, int64_t count,
                   Pixel&& pixel, int64_t pixel_step, const T* w, int64_t kg, int v, Tap<T>* tl,
                   T* out, int64_t out_step) {
  const int64_t OD = g.grid[0], OH = g.grid[1], OW = g.grid[2], s = g.stride[2];
  int64_t nt = 0;
  for (int64_t t = 0; t < g.kernel_numel(); ++t) {
    int64_t kd, kh, kw;
    split_tap(g, t, kd, kh, kw);
    const int64_t ad = id + g.pad[0] - kd * g.dilation[0];
    const int64_t ah = ih + g.pad[1] - kh * g.dilation[1];
    if (ad < 0 || ad % g.stride[0] != 0 || ah < 0 || ah % g.stride[1] != 0) continue;
    const int64_t od = ad / g.stride[0], oh = ah / g.stride[1];
    if (od >= OD || oh >= OH) continue;
    const int64_t aw = r + g.pad[2] - kw * g.dilation[2];
    if (aw - floor_div(aw, s) * s != 0) continue;
    const int64_t base = floor_div(aw, s);  // ow = base + j
    const int64_t lo = std::max<int64_t>(0, -base);
    const int64_t hi = std::min<int64_t>(count, OW - base);
    if (lo >= hi) continue;
    tl[nt++] = {pixel(kd, od, oh) + base * pixel_step, w + t * kg * v, lo, hi};
  }
  grouped_line(v, out, out_step, count, tl, nt, pixel_step, kg, static_cast<const T*>(nullptr), v);
}

// Image (conv input) gradient from the grid gradient, by width phases.
template <typename T>
void conv_transpose_cl(const T* go, const T* wp, T* dx, const ConvGeometry& g, int64_t batch,
                       int64_t K) {
  const GroupedSizes dims(g, K, /*forward=*/false);
  const int64_t rows = batch * dims.ID * dims.IH;
  at::parallel_for(0, rows * dims.groups, 1, [&](int64_t begin, int64_t end) {
    std::vector<Tap<T>> tl(dims.taps);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t row = task / dims.groups, gr = task % dims.groups;
      const int64_t ih = row % dims.IH, id = row / dims.IH % dims.ID, n = row / (dims.IH * dims.ID);
      for (int64_t r = 0; r < std::min(dims.s, dims.IW); ++r) {
        for (int64_t b = 0; b < dims.blocks; ++b) {
          transpose_row(
              g, id, ih, r, ceil_div(dims.IW - r, dims.s),
              [&](int64_t, int64_t od, int64_t oh) {
                return go + ((n * dims.OD + od) * dims.OH + oh) * dims.OW * K + gr * dims.kg;
              },
              K, wp + (gr * dims.blocks + b) * dims.taps * dims.kg * dims.v, dims.kg, dims.v,
              tl.data(), dx + (row * dims.IW + r) * dims.C + gr * dims.cg + b * dims.v,
              dims.s * dims.C);
        }
      }
    }
  });
}

// The input gradient on NCHW tensors, as conv_nchw does the forward: one task per (sample,
// group, image depth, band of image rows) transposes the grid rows the band reads (for every
// depth tap) into a scratch, runs the line kernel by width phases into a second scratch and
// transposes that into the image's planes.
template <typename T>
void conv_transpose_nchw(const T* go, const T* wp, T* dx, const ConvGeometry& g, int64_t batch,
                         int64_t K) {
  const GroupedSizes dims(g, K, /*forward=*/false);
  const int64_t KD = g.kernel[0], KH = g.kernel[1], sh = g.stride[1], ph = g.pad[1];
  const int64_t in_plane = dims.ID * dims.IH * dims.IW, out_plane = dims.OD * dims.OH * dims.OW;
  // Grid rows [first, last] that image rows [ih0, ih1) read.
  const auto first_row = [&](int64_t ih0) {
    return std::max<int64_t>(0, ceil_div(ih0 + ph - (KH - 1) * g.dilation[1], sh));
  };
  const auto last_row = [&](int64_t ih1) {
    return std::min(dims.OH - 1, floor_div(ih1 - 1 + ph, sh));
  };
  const auto rows_read = [&](int64_t rows) {
    return std::min(dims.OH, (rows - 1 + (KH - 1) * g.dilation[1]) / sh + 2);
  };
  const int64_t band = band_rows(dims.IH, [&](int64_t rows) {
    return static_cast<int64_t>(sizeof(T)) *
           (KD * rows_read(rows) * dims.OW * dims.kg + rows * dims.IW * dims.cg);
  });
  const int64_t slab = rows_read(band) * dims.OW * dims.kg;
  for_each_band<T>(
      batch, dims.groups, dims.ID, dims.IH, band, KD * slab, band * dims.IW * dims.cg, dims.taps,
      [&](int64_t n, int64_t gr, int64_t id, int64_t ih0, int64_t ih1, T* in, T* out, Tap<T>* tl) {
        const int64_t oh0 = first_row(ih0), oh1 = last_row(ih1) + 1;
        for (int64_t kd = 0; kd < KD && oh0 < oh1; ++kd) {
          const int64_t ad = id + g.pad[0] - kd * g.dilation[0];
          if (ad < 0 || ad % g.stride[0] != 0 || ad / g.stride[0] >= dims.OD) continue;
          transpose_matrix(
              go + ((n * K + gr * dims.kg) * dims.OD + ad / g.stride[0]) * dims.OH * dims.OW +
                  oh0 * dims.OW,
              out_plane, dims.kg, (oh1 - oh0) * dims.OW, in + kd * slab, dims.kg);
        }
        for (int64_t ih = ih0; ih < ih1; ++ih) {
          for (int64_t r = 0; r < std::min(dims.s, dims.IW); ++r) {
            for (int64_t b = 0; b < dims.blocks; ++b) {
              transpose_row(
                  g, id, ih, r, ceil_div(dims.IW - r, dims.s),
                  [&](int64_t kd, int64_t, int64_t oh) {
                    return in + kd * slab + (oh - oh0) * dims.OW * dims.kg;
                  },
                  dims.kg, wp + (gr * dims.blocks + b) * dims.taps * dims.kg * dims.v, dims.kg,
                  dims.v, tl, out + ((ih - ih0) * dims.IW + r) * dims.cg + b * dims.v,
                  dims.s * dims.cg);
            }
          }
        }
        transpose_matrix(
            out, dims.cg, (ih1 - ih0) * dims.IW, dims.cg,
            dx + ((n * dims.C + gr * dims.cg) * dims.ID + id) * dims.IH * dims.IW + ih0 * dims.IW,
            in_plane);
      });
}

// gw [K, cg, taps] (contiguous) = sum over batch and grid of go x the input run of each tap.
template <typename T>
void weight_grad_cl(const T* go, const T* x, T* gw, const ConvGeometry& g, int64_t batch,
                    int64_t K) {
  const int64_t C = g.channels, groups = g.groups, cg = C / groups, kg = K / groups;
  const int v = chunk(cg), kb = chunk(kg);
  const int64_t vblocks = cg / v, kblocks = kg / kb, taps = g.kernel_numel();
  const int64_t ID = g.image[0], IH = g.image[1], IW = g.image[2];
  const int64_t OD = g.grid[0], OH = g.grid[1], OW = g.grid[2];
  // One task per (group, output block, input block), all taps at once: an output row's
  // gradient is read once from memory and then from L1 for every tap.
  const int64_t tasks = groups * kblocks * vblocks, block = kb * v;
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> sums(taps * block);
    std::vector<int64_t> offs(taps), los(taps), his(taps);
    for (int64_t t = 0; t < taps; ++t) {
      int64_t kd, kh, kw;
      split_tap(g, t, kd, kh, kw);
      offs[t] = kw * g.dilation[2] - g.pad[2];
      los[t] = std::max<int64_t>(0, ceil_div(-offs[t], g.stride[2]));
      his[t] = std::min<int64_t>(OW, ceil_div(IW - offs[t], g.stride[2]));
    }
    for (int64_t task = begin; task < end; ++task) {
      const int64_t vb = task % vblocks, kbl = task / vblocks % kblocks;
      const int64_t gr = task / (vblocks * kblocks);
      std::fill(sums.begin(), sums.end(), T(0));
      for (int64_t n = 0; n < batch; ++n) {
        for (int64_t od = 0; od < OD; ++od) {
          for (int64_t oh = 0; oh < OH; ++oh) {
            const T* gorow = go + ((n * OD + od) * OH + oh) * OW * K + gr * kg + kbl * kb;
            for (int64_t t = 0; t < taps; ++t) {
              if (los[t] >= his[t]) continue;
              int64_t kd, kh, kw;
              split_tap(g, t, kd, kh, kw);
              const int64_t id = od * g.stride[0] - g.pad[0] + kd * g.dilation[0];
              const int64_t ih = oh * g.stride[1] - g.pad[1] + kh * g.dilation[1];
              if (id < 0 || id >= ID || ih < 0 || ih >= IH) continue;
              grouped_sums(v, kb, sums.data() + t * block, gorow, K,
                           x + (((n * ID + id) * IH + ih) * IW + offs[t]) * C + gr * cg + vb * v,
                           g.stride[2] * C, los[t], his[t]);
            }
          }
        }
      }
      for (int64_t t = 0; t < taps; ++t) {
        for (int64_t k = 0; k < kb; ++k) {
          for (int64_t l = 0; l < v; ++l) {
            gw[((gr * kg + kbl * kb + k) * cg + vb * v + l) * taps + t] =
                sums[t * block + k * v + l];
          }
        }
      }
    }
  });
}

// Whether the NCHW kernels (conv_nchw, conv_transpose_nchw) take a call: NCHW-contiguous tensors
// that are not channels_last as well (where the channels_last kernels read them as they are).
bool nchw_staged(const at::Tensor& input, const at::Tensor& output) {
  return input.is_contiguous() && output.is_contiguous() &&
         !(input.dim() >= 4 && input.is_contiguous(channels_last_format(input)));
}

}  // namespace

bool grouped_applies(const at::Tensor& t, const ConvGeometry& g, int64_t grid_channels) {
  return (t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble) &&
         grouped_shape_applies(g, grid_channels);
}

bool grouped_shape_applies(const ConvGeometry& g, int64_t grid_channels) {
  if (conv_algorithm() != ConvAlgorithm::kAuto) return false;
  if (g.groups <= 1 || g.groups >= g.channels) return false;
  const int64_t cg = g.channels / g.groups, kg = grid_channels / g.groups;
  return cg >= 4 && cg <= 64 && cg % 4 == 0 && kg >= 4 && kg <= 64 && kg % 4 == 0;
}

// The forward's line kernel reduces over any number of input channels. With one group it beats
// the GEMM engine, channels_last, in two cases:
// - few input channels (<= 16: an RGB stem) where Winograd does not take the conv: the engine's
//   reduction (channels x taps) is too short to run at speed and its gathers copy runs of a few
//   floats. N8 224x224, 2 threads: the 7x7/2 stem to 64 channels 20.2 -> 16.5-17.3 ms (torch
//   21); 3x3/2 to 24 channels 4.5 -> 1.4-1.8 (torch 1.4-1.8); N4 8 -> 32 channels 3x3 56x56
//   0.93 -> 0.45 (torch 0.5). From 16 channels on, Winograd wins where it applies;
// - 1x1 convs with up to 192 input channels: MKL's GEMM runs short matrices slowly (N4: 32 -> 16
//   channels 112x112 0.95 -> 0.46 ms, torch 0.52-0.55; 96 -> 24 56x56 0.91 -> 0.52; 64 -> 64
//   56x56 1.0 -> 0.67). Beyond, the weights of a pass leave L1 and the GEMM is faster (256 -> 64
//   56x56: 0.88 against 0.93 of torch's speed). Output channels come in vectors of 32, 24 or 16,
//   the last one padded (forward_chunk): with vectors of 8 (232 channels) the passes over the
//   input cost more than they save.
// NCHW convs are left to the engine (ahead of torch on stems; NCHW 1x1 is one GEMM per sample).
// Each line of output pixels reads all of a 1x1 conv's weights: on short lines (7x7 and 14x14
// maps) with many output channels that is more traffic than the GEMM's, which keeps its weight
// panel in cache across lines (N2 7x7 160 -> 960: 0.41 ms against the engine's 0.24 and torch's
// 0.24; 14x14 96 -> 576: 0.34 against 0.31; 28x28 128 -> 512 at N8 stays with the lines, 4.9
// against 5.6). Hence a cap on the weight bytes per pixel of a line.
// All of that was against MKL. Where our packed GEMM runs the engine (packed_gemm_preferred), the
// engine wins 1x1 convs from 32 input channels (64 where it gathers strided pixels) unless its
// column panels compute a quarter more outputs than there are (24 output channels: 32
// computed). N8 channels_last on a Zen 4, lines -> engine ms (torch): 160 -> 160 14x14 0.46 ->
// 0.38 (0.39), 64 -> 384 14x14 0.46 -> 0.37 (0.38), 32 -> 64 56x56 0.56 -> 0.49 (0.50), 32 ->
// 16 112x112 0.55 -> 0.47 (0.54), stride 2 128 -> 256 28x28 0.60 -> 0.50 (0.52). The lines keep
// 144 -> 24 56x56 (0.84 against 1.07; torch 1.08), 24 -> 144 56x56 (0.99 against 1.03-1.15;
// 0.88) and stride 2 32 -> 48 112x112 (0.46 against 0.55; 0.40).
constexpr int64_t kLineWeightBytesPerPixel = 12 * 1024;

bool few_channels_applies(const at::Tensor& t, const ConvGeometry& g, int64_t grid_channels) {
  if (conv_algorithm() != ConvAlgorithm::kAuto) return false;
  if (t.scalar_type() != at::kFloat && t.scalar_type() != at::kDouble) return false;
  if (g.groups != 1 || (!g.channels_last && g.kernel_numel() == 1)) return false;
  if (g.kernel_numel() == 1 && g.channels <= 192) {
    const int64_t weight_bytes = g.channels * grid_channels * t.element_size();
    const int64_t pixels = t.size(0) * g.grid_numel();
    // From up to 16 channels into more than 64, our packed GEMM [pixels, C] x [C, K] beats the
    // line kernel's passes of 32 output channels too (N8, line -> engine (torch), ms: 16 -> 192
    // 56x56 2.49 -> 1.34 (1.18), 16 -> 96 112x112 3.8 -> 3.0 (2.6-2.75 without page faults),
    // 8 -> 96 112x112 3.3 -> 2.1). 24 -> 144 56x56 stays with the lines (in mobilenet_v2 the
    // engine took 1.38-1.44 ms against the lines' 1.25; alone they tie).
    if (g.is_pointwise() && g.channels <= 16 && grid_channels > 64 &&
        packed_gemm_preferred(weight_bytes, pixels)) {
      return false;
    }
    const int64_t engine_channels = g.is_pointwise() ? packed_gemm_min_pointwise_channels() : 64;
    if (g.channels >= engine_channels && packed_gemm_preferred(weight_bytes, pixels) &&
        4 * packed_gemm_columns(grid_channels, t.element_size()) <= 5 * grid_channels) {
      return false;
    }
    return weight_bytes <= kLineWeightBytesPerPixel * g.grid[2];
  }
  // Many output channels over a long reduction (a ViT's patch embedding, 16x16/16 3 -> 768) go to
  // the engine: the lines pass over the input once per vector of output channels, the engine's
  // GEMM gathers it once (N4 224x224 channels_last: 6.0 ms in 24 passes against 2.6, torch 2.9).
  if (g.kernel_numel() * g.channels >= 128 && grid_channels > 256) return false;
  // NCHW convs run the lines on bands staged through channels_last scratch (conv_nchw), whose
  // transposes the GEMM engine does without. The lines win where the windows overlap and either
  // stride or reduce over 64+ values; else the engine's gathers are cheaper: windows that do not
  // overlap (a ConvNeXt's 4x4/4 patchify: its gathers copy each input value once) and short
  // stride-1 reductions (VGG's first 3x3, 3 -> 64). Xeon, 2 threads, ms, engine -> lines
  // (torch): N8 ResNet stem 7x7/2 7.7 -> 7.1 (5.6-6.1), 3x3/2 3 -> 32 224x224 1.73 -> 1.23
  // (1.2), 7x7 8 -> 32 112x112 11.8 -> 8.5 (7.1-7.5), 5x5 16 -> 64 56x56 4.9 -> 3.1 (4.0), r3d's
  // stem (3x7x7 / (1, 2, 2)) N2 16x112x112 25.2 -> 21.6 (28); kept: N4 4x4/4 3 -> 96 0.58
  // against 0.78 (0.68), N4 VGG 3x3 3 -> 64 224x224 3.7 against 6.4 (28). Measured against
  // MKL's engine: where our GEMM runs the NCHW engine (an AVX-512 AMD CPU) it keeps these convs,
  // as it did before this rule (unmeasured there against the lines).
  if (!g.channels_last) {
    if (packed_gemm_preferred(0)) return false;
    bool overlapping = false, strided = false;
    for (int d = 0; d < kSpatialDims; ++d) {
      overlapping |= g.stride[d] < g.dilation[d] * (g.kernel[d] - 1) + 1;
      strided |= g.stride[d] > 1;
    }
    if (!overlapping || (!strided && g.kernel_numel() * g.channels < 64)) return false;
  }
  return g.channels <= 16 && conv_algorithm_for(g, t.size(0), grid_channels, ConvPass::kForward) !=
                                 ConvAlgorithm::kWinograd;
}

void grouped_conv(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
                  const ConvGeometry& g, const at::Tensor& bias) {
  const int64_t K = output.size(1), taps = g.kernel_numel();
  // NCHW tensors are transposed band by band inside the tasks (conv_nchw).
  const bool nchw = nchw_staged(input, output);
  // The bias starts the accumulators (a separate pass over the output was 6% of a stem conv).
  const bool fused = bias_fusable(bias, input);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "grouped_conv", [&] {
    const int v = forward_chunk(g, K / g.groups);
    const auto wp = pack_weight<scalar_t>(weight, g.groups, taps, true, v);
    // A padded last block of output channels reads whole vectors of bias.
    std::vector<scalar_t> padded_bias;
    const scalar_t* b = fused ? bias.const_data_ptr<scalar_t>() : nullptr;
    if (b && K % v != 0) {
      padded_bias.assign((K + v - 1) / v * v, scalar_t(0));
      std::copy_n(b, K, padded_bias.data());
      b = padded_bias.data();
    }
    if (nchw) {
      conv_nchw(input.const_data_ptr<scalar_t>(), wp.data(), output.data_ptr<scalar_t>(), g,
                input.size(0), K, b);
      return;
    }
    const auto x = channels_last_view(input);
    into_output(output, [&](const at::Tensor& y) {
      conv_cl(x.const_data_ptr<scalar_t>(), wp.data(), y.data_ptr<scalar_t>(), g, input.size(0), K,
              b);
    });
  });
  if (!fused) add_bias(output, bias);
}

void grouped_conv_transpose(const at::Tensor& input, const at::Tensor& weight,
                            const at::Tensor& output, const ConvGeometry& g) {
  const int64_t K = input.size(1), taps = g.kernel_numel();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "grouped_conv_transpose", [&] {
    const auto wp =
        pack_weight<scalar_t>(weight, g.groups, taps, false, chunk(g.channels / g.groups));
    if (nchw_staged(input, output)) {
      conv_transpose_nchw(input.const_data_ptr<scalar_t>(), wp.data(), output.data_ptr<scalar_t>(),
                          g, input.size(0), K);
      return;
    }
    const auto go = channels_last_view(input);
    into_output(output, [&](const at::Tensor& dx) {
      conv_transpose_cl(go.const_data_ptr<scalar_t>(), wp.data(), dx.data_ptr<scalar_t>(), g,
                        input.size(0), K);
    });
  });
}

void grouped_weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                         const at::Tensor& grad_weight, const ConvGeometry& g) {
  const auto go = channels_last_view(grad_output);
  const auto x = channels_last_view(input);
  const int64_t K = grad_output.size(1);
  auto gw = grad_weight.is_contiguous() ? grad_weight
                                        : at::empty(grad_weight.sizes(), grad_weight.options());
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "grouped_weight_grad", [&] {
    weight_grad_cl(go.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                   gw.data_ptr<scalar_t>(), g, input.size(0), K);
  });
  if (!gw.is_same(grad_weight)) grad_weight.copy_(gw);
}

}  // namespace convpool::cpu
