// Grouped convolution with stride 1 and few output channels per group, float32, by padded patches.
//
// Why not the line kernels (grouped_cpu.cpp): on RegNet's 7x7-28x28 maps a line is 7-28 pixels,
// and building its tap list and computing its edge pixels one by one cost more than its FMAs;
// with 8 channels per group a vector is half an AVX-512 register. N8, 2 threads, channels_last,
// 8 per group: C440 7x7 0.60 ms against torch's 0.37.
//
// A task is (super-block of G groups, sample, output depth, band of output rows); a thread packs
// the weights of a super-block when its tasks reach it (they come in super-block order). It copies
// what the band reads into a zero-padded patch laid out [kd][row][col][d][gl] (d: a group's input
// channel, gl: the group within the super-block):
// - every tap of every output pixel reads inside the patch: no edge cases;
// - with stride 1 the band's output pixels are one run q = row * patch_width + col; the kernel
//   also computes the patch_width - OW columns of each row that lie past the grid, and drops them
//   on the way out (2 of 9 on a 7-wide 3x3 grid, 2 of 30 on a 28-wide one). Tap t of pixel q
//   reads patch pixel q + offset[t];
// - the G groups' inputs of one pixel and reduced channel are G consecutive floats: one broadcast
//   of G floats (vbroadcastss / vbroadcastsd / a 16-byte pattern) feeds a register of G groups x
//   kg outputs, lane = i * G + gl; the sums are put back in channel order as they are stored.
// Groups have as many input as output channels (cg == kg), so a patch pixel holds as many floats
// (CB) as a register block of sums, a compile-time constant: every load of a block of pixels is
// one pointer plus a constant. Blocks of P pixels keep P x N registers of sums; each weight
// vector is loaded once per block, tap and reduced channel. Sums run over taps, then reduced
// channels, in a fixed order: the results do not depend on the thread count.
#include "grouped_patch_cpu.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../common/isa_clones.h"
#include "../common/output_memory.h"
#include "../common/thread_scratch.h"
#include "bf16_brgemm.h"
#include "brgemm_conv_cpu.h"
#include "channels_last_staging.h"
#include "conv_algorithm.h"
#include "conv_driver.h"
#include "conv_phases.h"
#include "channel_block_transpose.h"
#include "grouped_cpu.h"

#pragma GCC diagnostic ignored "-Wpsabi"  // wide vectors never cross a call (always inlined)

namespace convpool::cpu {
namespace {

#define CONVPOOL_INLINE inline __attribute__((always_inline))

// A vector register of B bytes of floats.
template <int B>
struct Lanes {
  static constexpr int L = B / 4;
  typedef float type __attribute__((vector_size(B)));
};

template <int B>
CONVPOOL_INLINE typename Lanes<B>::type load(const float* p) {
  typename Lanes<B>::type v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

// v's lanes in the order lanes[] (B / 4 constant indices): one vpermps. GCC spells it
// __builtin_shuffle (__builtin_shufflevector only from GCC 12), clang __builtin_shufflevector.
template <int B, const auto& lanes>
CONVPOOL_INLINE typename Lanes<B>::type permute(typename Lanes<B>::type v) {
#if defined(__clang__)
  if constexpr (B == 64) {
    return __builtin_shufflevector(v, v, lanes[0], lanes[1], lanes[2], lanes[3], lanes[4], lanes[5],
                                   lanes[6], lanes[7], lanes[8], lanes[9], lanes[10], lanes[11],
                                   lanes[12], lanes[13], lanes[14], lanes[15]);
  } else {
    return __builtin_shufflevector(v, v, lanes[0], lanes[1], lanes[2], lanes[3], lanes[4], lanes[5],
                                   lanes[6], lanes[7]);
  }
#else
  typedef int Index __attribute__((vector_size(B)));
  Index index;
  __builtin_memcpy(&index, lanes, sizeof(index));
  return __builtin_shuffle(v, index);
#endif
}

// Lanes 0-3 repeated over an AVX-512 register.
constexpr int kQuadLanes[16] = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3};

// The G floats at p repeated across a register (G = 2, 4; G = 1 is a scalar times a vector).
// Written so that GCC emits one broadcast load (a shuffle of a short vector went through the
// stack: 10x slower). x + -0.0 is x for every x, so the pair's bits pass unchanged.
template <int B, int G>
CONVPOOL_INLINE typename Lanes<B>::type broadcast(const float* p) {
  using V = typename Lanes<B>::type;
  if constexpr (G == 2) {
    typedef double Pairs __attribute__((vector_size(B)));
    double pair;
    __builtin_memcpy(&pair, p, sizeof(pair));
    return reinterpret_cast<V>(pair + -Pairs{});
  } else {
    static_assert(G == 4 && B == 64);
#if defined(__x86_64__) && defined(__GNUC__)
    // vbroadcastf32x4 from memory, which has no generic-vector spelling: a load-port operation,
    // where a register load and a shuffle took port 5 from every other FMA (4 channels per group,
    // C128 56x56 N4 channels_last, ms: forward 1.72 -> 1.34 (torch 1.39), input gradient 2.1 ->
    // 1.55, weight gradient 2.2 -> 1.43). Only the AVX-512 kernels instantiate it (*_wide).
    V v;
    asm("vbroadcastf32x4 %1, %0" : "=v"(v) : "m"(*reinterpret_cast<const float (*)[4]>(p)));
    return v;
#else
    return permute<B, kQuadLanes>(load<B>(p));  // the patch keeps 16 floats of slack
#endif
  }
}

// Lane i * G + gl of a register of sums is channel gl * kg + i of the super-block (kg = L / G).
template <int L, int G>
constexpr int kChannelLane[L] = {};
template <>
constexpr int kChannelLane<16, 2>[16] = {0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15};
template <>
constexpr int kChannelLane<16, 4>[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};
template <>
constexpr int kChannelLane<8, 2>[8] = {0, 2, 4, 6, 1, 3, 5, 7};

// The sums of a register in channel order (G > 1; one vpermps).
template <int B, int G>
CONVPOOL_INLINE typename Lanes<B>::type channel_order(typename Lanes<B>::type v) {
  return permute<B, kChannelLane<B / 4, G>>(v);
}

// The G 32-bit units at p repeated across a register, as integers: units holding bfloat16 pairs
// must not pass through float arithmetic (x + -0.0 would flush a denormal-looking double under
// DAZ).
template <int B, int G>
CONVPOOL_INLINE typename Lanes<B>::type broadcast_units(const float* p) {
  using V = typename Lanes<B>::type;
  if constexpr (G == 4) return broadcast<B, 4>(p);  // a shuffle: bits unchanged
  typedef std::conditional_t<G == 1, int32_t, int64_t> Unit;
  typedef Unit Units __attribute__((vector_size(B)));
  Unit bits;
  __builtin_memcpy(&bits, p, sizeof(bits));
  return reinterpret_cast<V>(Units{} + bits);
}

// acc += the pairwise products of a and b's bfloat16 pairs (vdpbf16ps). Written in assembly:
// the intrinsic needs its target on every function it is inlined through, and the kernels are
// templates shared with the float32 clones; only patch_kernel_bfloat16 (AVX512-BF16) runs it.
template <typename V>
CONVPOOL_INLINE void dot_pairs(V& acc, V a, V b) {
  asm("vdpbf16ps %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
}

// out[p][N * L] (channel order) = bias + sum over taps t and reduced channels d of patch pixel
// p + toff[t]'s d-th G floats times w[d][t][N * L], for P pixels; x at pixel 0, CB = N * L
// floats per pixel.
// Pairs: bfloat16 operands (patch_kernel_bfloat16), the float32 sums as above. A patch pixel
// holds CB / 2 pairs of channels [d / 2][gl][2], w [d / 2][t][N * L][2]; one vdpbf16ps adds two
// reduced channels' products per lane, so a broadcast unit is a pair of each of G groups.
template <int B, int G, int N, int P, bool Pairs = false>
CONVPOOL_INLINE void patch_block(const float* x, const int64_t* toff, int64_t taps, const float* w,
                                 const float* bias, float* out) {
  using V = typename Lanes<B>::type;
  constexpr int L = Lanes<B>::L, CB = N * L, cg = CB / G;
  constexpr int PX = Pairs ? CB / 2 : CB, D = Pairs ? cg / 2 : cg;  // units per pixel, per group
  V acc[P][N];
  for (int n = 0; n < N; ++n) {
    const V b = load<B>(bias + n * L);
    for (int p = 0; p < P; ++p) acc[p][n] = b;
  }
  for (int64_t t = 0; t < taps; ++t) {
    const float* xt = x + toff[t];
    const float* wt = w + t * CB;
#pragma GCC unroll 4
    for (int d = 0; d < D; ++d) {
      V wv[N];
      for (int n = 0; n < N; ++n) wv[n] = load<B>(wt + d * taps * CB + n * L);
#pragma GCC unroll 16
      for (int p = 0; p < P; ++p) {
        if constexpr (Pairs) {
          const V v = broadcast_units<B, G>(xt + p * PX + d * G);
          for (int n = 0; n < N; ++n) dot_pairs(acc[p][n], v, wv[n]);
        } else if constexpr (G == 1) {
          const float v = xt[p * CB + d];
          for (int n = 0; n < N; ++n) acc[p][n] += v * wv[n];
        } else {
          const V v = broadcast<B, G>(xt + p * CB + d * G);
          for (int n = 0; n < N; ++n) acc[p][n] += v * wv[n];
        }
      }
    }
  }
  for (int p = 0; p < P; ++p) {
    for (int n = 0; n < N; ++n) {
      V v = acc[p][n];
      if constexpr (G > 1) v = channel_order<B, G>(v);
      __builtin_memcpy(out + p * CB + n * L, &v, sizeof(V));
    }
  }
}

// Pixels per block: P x N sums, N weights and a broadcast in the register file (32 or 16).
template <int Regs, int N>
constexpr int kPixels = Regs == 32 ? (N <= 2   ? 12
                                      : N == 3 ? 8
                                               : 6)
                                   : (N == 1   ? 12
                                      : N == 2 ? 6
                                      : N == 3 ? 4
                                               : 2);

// Rows of 7k pixels (every map of a 224 network: 56, 28, 14, 7) in blocks of 7 pixels of one
// row, whose sums fit the registers for N <= 3 (N == 1 without AVX-512): the columns past the
// grid are not computed (on 7x7 maps they were 23 % of the FMAs).
template <int Regs, int N>
constexpr bool kRowBlocks = Regs == 32 ? N <= 3 : N == 1;

// The band's `rows` rows of `ow` pixels, `width` apart (sums in the same places): blocks of 7 in
// each row where ow is a multiple of 7 and kRowBlocks; else all rows as one run of `count`
// pixels (a multiple of 4), blocks of P, the rest in blocks of 4 or 2.
template <int B, int Regs, int G, int N, bool Pairs = false>
CONVPOOL_INLINE void patch_run(const float* x, const int64_t* toff, int64_t taps, const float* w,
                               const float* bias, float* out, int64_t count, int64_t rows,
                               int64_t width, int64_t ow) {
  constexpr int P = kPixels<Regs, N>, CB = N * Lanes<B>::L, PX = Pairs ? CB / 2 : CB;
  if constexpr (kRowBlocks<Regs, N>) {
    if (ow % 7 == 0) {
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t q = r * width; q < r * width + ow; q += 7) {
          patch_block<B, G, N, 7, Pairs>(x + q * PX, toff, taps, w, bias, out + q * CB);
        }
      }
      return;
    }
  }
  int64_t q = 0;
  for (; q + P <= count; q += P) {
    patch_block<B, G, N, P, Pairs>(x + q * PX, toff, taps, w, bias, out + q * CB);
  }
  if constexpr (P > 4) {
    for (; q + 4 <= count; q += 4) {
      patch_block<B, G, N, 4, Pairs>(x + q * PX, toff, taps, w, bias, out + q * CB);
    }
  }
  for (; q < count; q += 2) {
    patch_block<B, G, N, 2, Pairs>(x + q * PX, toff, taps, w, bias, out + q * CB);
  }
}

// How a group's kg output channels fill registers: `bytes` per register, G groups per register,
// N registers per super-block; bytes == 0: not this kernel's.
struct PatchShape {
  int bytes = 0, G = 0, N = 0;
  int lanes() const { return bytes / 4; }
  int64_t floats() const { return N * lanes(); }  // per pixel of a patch or of the sums
};

PatchShape patch_shape(int64_t kg) {
  const int wide = wide_vector_registers() ? 64 : 32, L = wide / 4;
  if (kg < L && L % kg == 0) return {wide, static_cast<int>(L / kg), 1};
  if (kg % L == 0 && kg / L <= 4) return {wide, 1, static_cast<int>(kg / L)};
  // 24 channels (RegNet's larger models): three 8-float registers.
  if (wide == 64 && kg % 8 == 0 && kg / 8 <= 4) return {32, 1, static_cast<int>(kg / 8)};
  return {};
}

// The kernels' arguments, and the instantiation each shape runs (for_wide_shape).
struct ForwardArgs {
  const float* x;
  const int64_t* toff;
  int64_t taps;
  const float *w, *bias;
  float* out;
  int64_t count, rows, width, ow;
  template <int B, int R, int G, int N>
  CONVPOOL_INLINE void run() const {
    patch_run<B, R, G, N>(x, toff, taps, w, bias, out, count, rows, width, ow);
  }
};

// The instantiations for AVX-512's 32 registers (64-byte vectors, and 32-byte ones for 24
// channels) and for 16 registers of 32 bytes.
template <typename Args>
CONVPOOL_INLINE void for_wide_shape(PatchShape s, const Args& a) {
  if (s.bytes == 64) {
    if (s.G == 4) return a.template run<64, 32, 4, 1>();
    if (s.G == 2) return a.template run<64, 32, 2, 1>();
    if (s.N == 1) return a.template run<64, 32, 1, 1>();
    if (s.N == 2) return a.template run<64, 32, 1, 2>();
    if (s.N == 3) return a.template run<64, 32, 1, 3>();
    return a.template run<64, 32, 1, 4>();
  }
  if (s.N == 3) return a.template run<32, 32, 1, 3>();
  return a.template run<32, 32, 1, 4>();  // unreachable: patch_shape only makes N == 3 here
}

template <typename Args>
CONVPOOL_INLINE void for_narrow_shape(PatchShape s, const Args& a) {
  if (s.G == 2) return a.template run<32, 16, 2, 1>();
  if (s.N == 1) return a.template run<32, 16, 1, 1>();
  if (s.N == 2) return a.template run<32, 16, 1, 2>();
  if (s.N == 3) return a.template run<32, 16, 1, 3>();
  a.template run<32, 16, 1, 4>();
}

// The AVX-512 shapes compiled for AVX-512 alone (their assembly needs its registers), the others
// once per vector level.
#if defined(__x86_64__) && defined(__GNUC__)
#define CONVPOOL_AVX512 __attribute__((target("arch=x86-64-v4")))
#else
#define CONVPOOL_AVX512
#endif

CONVPOOL_AVX512 void patch_kernel_wide(PatchShape s, const ForwardArgs& a) { for_wide_shape(s, a); }
CONVPOOL_CLONES void patch_kernel_narrow(PatchShape s, const ForwardArgs& a) {
  for_narrow_shape(s, a);
}
void patch_kernel(PatchShape s, const ForwardArgs& a) {
  wide_vector_registers() ? patch_kernel_wide(s, a) : patch_kernel_narrow(s, a);
}

#if defined(__x86_64__) && defined(__GNUC__)
template <int G, int N>
CONVPOOL_INLINE void run_pairs(const ForwardArgs& a) {
  patch_run<64, 32, G, N, true>(a.x, a.toff, a.taps, a.w, a.bias, a.out, a.count, a.rows, a.width,
                                a.ow);
}

// The forward on bfloat16 pairs (patch_block's Pairs), the 64-byte shapes of patch_shape.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16"))) void patch_kernel_bfloat16(
    PatchShape s, const ForwardArgs& a) {
  if (s.G == 4) return run_pairs<4, 1>(a);
  if (s.G == 2) return run_pairs<2, 1>(a);
  if (s.N == 1) return run_pairs<1, 1>(a);
  if (s.N == 2) return run_pairs<1, 2>(a);
  if (s.N == 3) return run_pairs<1, 3>(a);
  run_pairs<1, 4>(a);
}
#else
void patch_kernel_bfloat16(PatchShape, const ForwardArgs&) {
  TORCH_INTERNAL_ASSERT(false, "patch_kernel_bfloat16: no AVX512-BF16 kernels in this build");
}
#endif

// dst[pixel][d * G + gl] = src[pixel][gl * cg + d] for `count` pixels (src pixels `step` apart):
// a super-block's channels as the kernel broadcasts them.
template <int G, int CB>
CONVPOOL_INLINE void interleave_run(const float* src, int64_t step, int64_t count, float* dst) {
  constexpr int cg = CB / G;
  for (int64_t c = 0; c < count; ++c, src += step, dst += CB) {
    float v[CB];
    __builtin_memcpy(v, src, sizeof(v));
    for (int d = 0; d < cg; ++d) {
      for (int gl = 0; gl < G; ++gl) dst[d * G + gl] = v[gl * cg + d];
    }
  }
}

// Reduced channels per pass of the weight gradient: DC x N sums in registers beside N gradient
// vectors and a broadcast (24 of 32 registers, 12 of 16), a divisor of the group's channels.
template <int Regs, int N>
constexpr int kGradChannels = Regs == 32 ? (N == 1   ? 16
                                            : N <= 3 ? 8
                                                     : 4)
                                         : (N == 1   ? 8
                                            : N <= 3 ? 4
                                                     : 2);

// sums[d][t][N * L] += sum over pixels q < count of go[q][N * L] (lanes as the forward's sums)
// times the d-th G floats of patch pixel q + toff[t]; per tap, DC reduced channels at a time.
template <int B, int Regs, int G, int N>
CONVPOOL_INLINE void grad_run(const float* x, const int64_t* toff, int64_t taps, const float* go,
                              int64_t count, float* sums) {
  using V = typename Lanes<B>::type;
  constexpr int L = Lanes<B>::L, CB = N * L, cg = CB / G;
  constexpr int DC = kGradChannels<Regs, N> < cg ? kGradChannels<Regs, N> : cg;
  static_assert(cg % DC == 0);
  for (int64_t t = 0; t < taps; ++t) {
    const float* xt = x + toff[t];
    for (int d0 = 0; d0 < cg; d0 += DC) {
      V acc[DC][N];
      for (int dc = 0; dc < DC; ++dc) {
        for (int n = 0; n < N; ++n) acc[dc][n] = V{};
      }
      for (int64_t q = 0; q < count; ++q) {
        V g[N];
        for (int n = 0; n < N; ++n) g[n] = load<B>(go + q * CB + n * L);
        const float* xq = xt + q * CB + d0 * G;
#pragma GCC unroll 16
        for (int dc = 0; dc < DC; ++dc) {
          if constexpr (G == 1) {
            const float v = xq[dc];
            for (int n = 0; n < N; ++n) acc[dc][n] += v * g[n];
          } else {
            const V v = broadcast<B, G>(xq + dc * G);
            for (int n = 0; n < N; ++n) acc[dc][n] += v * g[n];
          }
        }
      }
      for (int dc = 0; dc < DC; ++dc) {
        float* out = sums + ((d0 + dc) * taps + t) * CB;
        for (int n = 0; n < N; ++n) {
          const V v = load<B>(out + n * L) + acc[dc][n];
          __builtin_memcpy(out + n * L, &v, sizeof(V));
        }
      }
    }
  }
}

struct GradArgs {
  const float* x;
  const int64_t* toff;
  int64_t taps;
  const float* go;
  int64_t count;
  float* sums;
  template <int B, int R, int G, int N>
  CONVPOOL_INLINE void run() const {
    grad_run<B, R, G, N>(x, toff, taps, go, count, sums);
  }
};

CONVPOOL_AVX512 void grad_kernel_wide(PatchShape s, const GradArgs& a) { for_wide_shape(s, a); }
CONVPOOL_CLONES void grad_kernel_narrow(PatchShape s, const GradArgs& a) { for_narrow_shape(s, a); }
void grad_kernel(PatchShape s, const GradArgs& a) {
  wide_vector_registers() ? grad_kernel_wide(s, a) : grad_kernel_narrow(s, a);
}

// dst[pixel][0, n) = src[pixel][0, n) for `count` pixels `src_step` and `dst_step` apart: the
// common widths as inline vector moves (a call of memcpy per pixel was 5 % of a 7x7 conv).
template <int n>
CONVPOOL_INLINE void copy_run(const float* src, int64_t src_step, int64_t count, float* dst,
                              int64_t dst_step) {
  for (int64_t c = 0; c < count; ++c, src += src_step, dst += dst_step) {
    float v[n];
    __builtin_memcpy(v, src, sizeof(v));
    __builtin_memcpy(dst, v, sizeof(v));
  }
}

CONVPOOL_CLONES void copy_pixels(const float* src, int64_t src_step, int64_t count, float* dst,
                                 int64_t dst_step, int64_t n) {
  switch (n) {
    case 8:
      return copy_run<8>(src, src_step, count, dst, dst_step);
    case 16:
      return copy_run<16>(src, src_step, count, dst, dst_step);
    case 24:
      return copy_run<24>(src, src_step, count, dst, dst_step);
    case 32:
      return copy_run<32>(src, src_step, count, dst, dst_step);
    case 64:
      return copy_run<64>(src, src_step, count, dst, dst_step);
    default:
      for (int64_t c = 0; c < count; ++c)
        std::memcpy(dst + c * dst_step, src + c * src_step, n * 4);
  }
}

CONVPOOL_CLONES void interleave(int G, int64_t CB, const float* src, int64_t step, int64_t count,
                                float* dst) {
  if (G == 1) return copy_pixels(src, step, count, dst, CB, CB);
  if (CB == 16 && G == 2) return interleave_run<2, 16>(src, step, count, dst);
  if (CB == 16) return interleave_run<4, 16>(src, step, count, dst);
  if (G == 4) return interleave_run<4, 8>(src, step, count, dst);  // bfloat16 pairs
  interleave_run<2, 8>(src, step, count, dst);
}

// The forward problem the kernel computes: the conv's own sizes, or those of the conv_transpose
// seen as the forward of the flipped kernel (transposed_problem).
struct Problem {
  int64_t batch, C, groups, cg, kg;  // C: input channels; cg, kg: per group, in and out
  int64_t image[3], grid[3], kernel[3], stride[3], pad[3], dilation[3];
  int64_t taps() const { return kernel[0] * kernel[1] * kernel[2]; }
};

// Where the input and output live: NCHW planes, or [N, spatial..., C] rows (bfloat16 rows for
// run<true>, their channel pairs read as 32-bit units).
struct Layouts {
  const float* x;
  bool x_planes;
  float* y;
  bool y_planes;
};

// A problem's weights: the conv's own [K, cg, taps] (contiguous), or, for the input gradient,
// those of the conv it is the gradient of, read flipped with a group's channels swapped.
struct Weights {
  const float* data;
  bool flipped;
};

// The weights of super-block sb packed as [d][tap][N * L] (lane i * G + gl of group sb * G + gl,
// output i; zeros past the last group) into w, its bias the same way into b ([N * L]).
void pack_block(const Problem& pb, const PatchShape& s, const Weights& weights, const float* bias,
                int64_t sb, float* w, float* b) {
  const int64_t NL = s.floats(), taps = pb.taps(), G = s.G;
  const int64_t valid = std::min<int64_t>(G, pb.groups - sb * G);
  if (valid < G) std::fill_n(w, taps * pb.cg * NL, 0.f);
  std::fill_n(b, NL, 0.f);
  for (int64_t gl = 0; gl < valid; ++gl) {
    for (int64_t i = 0; i < pb.kg && bias; ++i) b[i * G + gl] = bias[(sb * G + gl) * pb.kg + i];
  }
  if (!weights.flipped) {
    // The super-block's rows [gl * kg + i][d * taps + t] transposed (lane gl * kg + i), then
    // each column's lanes put in register order.
    transpose_matrix(weights.data + sb * NL * pb.cg * taps, pb.cg * taps, valid * pb.kg,
                     pb.cg * taps, w, NL);
    if (G > 1) interleave(s.G, NL, w, NL, pb.cg * taps, w);
    return;
  }
  // The conv's weight [groups * cg, kg, taps] (its cg is this problem's kg): group gr, output i
  // (a conv input channel), reduced d (a conv output channel), tap t is the conv's tap
  // taps - 1 - t of output d, input i.
  for (int64_t gl = 0; gl < valid; ++gl) {
    const int64_t gr = sb * G + gl;
    for (int64_t d = 0; d < pb.cg; ++d) {
      for (int64_t i = 0; i < pb.kg; ++i) {
        const float* src = weights.data + ((gr * pb.cg + d) * pb.kg + i) * taps + taps - 1;
        float* dst = w + d * taps * NL + i * G + gl;
        for (int64_t t = 0; t < taps; ++t) dst[t * NL] = src[-t];
      }
    }
  }
}

// Strides up to this take the patch kernel (phase planes); larger ones are rare and read few
// pixels of each input row.
constexpr int64_t kMaxPatchStride = 4;

// The patch of one task: what output rows [oh0, oh0 + rows) of depth od read, for super-block
// sb, zero outside the image: per depth tap kd, per phase (ph, pw) of the strides, a plane of
// `rows_in` x `width` pixels of CB floats ([d][gl]); `plane` pixels apart. Phase plane (ph, pw)
// row r, column c holds the input pixel (oh0 * sh - pad + r * sh + ph, c * sw + pw - pad).
// `row_scratch` (IW x CB floats) holds an NCHW input row transposed, which strided phases then
// pick pixels from.
void fill_patch(const Problem& pb, const Layouts& io, const PatchShape& s, int64_t n, int64_t od,
                int64_t oh0, int64_t rows_in, int64_t width, int64_t plane, int64_t sb,
                float* patch, float* row_scratch) {
  const int64_t G = s.G, CB = s.floats(), cg = pb.cg;
  const int64_t ID = pb.image[0], IH = pb.image[1], IW = pb.image[2];
  const int64_t sh = pb.stride[1], sw = pb.stride[2];
  const int64_t valid = std::min<int64_t>(G, pb.groups - sb * G);
  // Columns [c0, c1) of phase pw lie inside the image, from input column iw0.
  int64_t c0[kMaxPatchStride], c1[kMaxPatchStride], iw0[kMaxPatchStride];
  for (int64_t pw = 0; pw < sw; ++pw) {
    const int64_t first = pw - pb.pad[2];  // input column of column 0
    c0[pw] = std::clamp<int64_t>(first >= 0 ? 0 : (-first + sw - 1) / sw, 0, width);
    c1[pw] = std::clamp<int64_t>(IW - first <= 0 ? 0 : (IW - first + sw - 1) / sw, c0[pw], width);
    iw0[pw] = first + c0[pw] * sw;
  }
  for (int64_t kd = 0; kd < pb.kernel[0]; ++kd) {
    const int64_t id = od * pb.stride[0] - pb.pad[0] + kd * pb.dilation[0];
    for (int64_t ph = 0; ph < sh; ++ph) {
      float* phase0 = patch + (kd * sh + ph) * sw * plane * CB;  // plane (ph, pw): + pw * plane
      for (int64_t r = 0; r < rows_in; ++r) {
        const int64_t ih = oh0 * sh - pb.pad[1] + r * sh + ph;
        const bool inside = id >= 0 && id < ID && ih >= 0 && ih < IH;
        const float* planes = io.x + ((n * pb.C + sb * CB) * ID + id) * IH * IW + ih * IW;
        const float* pixels = io.x + (((n * ID + id) * IH + ih) * IW) * pb.C + sb * CB;
        if (inside && io.x_planes && valid == G && sw > 1) {
          transpose_matrix(planes, ID * IH * IW, CB, IW, row_scratch, CB);
        }
        for (int64_t pw = 0; pw < sw; ++pw) {
          float* row = phase0 + (pw * plane + r * width) * CB;
          const int64_t n0 = c0[pw], n1 = c1[pw], count = n1 - n0;
          if (!inside || count <= 0) {
            std::fill_n(row, width * CB, 0.f);
            continue;
          }
          std::fill_n(row, n0 * CB, 0.f);
          std::fill_n(row + n1 * CB, (width - n1) * CB, 0.f);
          float* dst = row + n0 * CB;
          if (valid < G) {  // the last super-block, short of groups: zeros for the missing ones
            std::fill_n(dst, count * CB, 0.f);
            for (int64_t c = 0; c < count; ++c) {
              const int64_t iw = iw0[pw] + c * sw;
              for (int64_t gl = 0; gl < valid; ++gl) {
                for (int64_t d = 0; d < cg; ++d) {
                  const int64_t ch = (gl * cg + d);
                  dst[c * CB + d * G + gl] =
                      io.x_planes ? planes[ch * ID * IH * IW + iw] : pixels[iw * pb.C + ch];
                }
              }
            }
          } else if (io.x_planes && sw == 1) {
            transpose_matrix(planes + iw0[pw], ID * IH * IW, CB, count, dst, CB);
            if (G > 1) interleave(s.G, CB, dst, CB, count, dst);
          } else if (io.x_planes) {
            interleave(s.G, CB, row_scratch + iw0[pw] * CB, sw * CB, count, dst);
          } else {
            interleave(s.G, CB, pixels + iw0[pw] * pb.C, sw * pb.C, count, dst);
          }
        }
      }
      // The last band's planes are shorter than `plane`: the pixels past the grid read up to 3
      // pixels past its rows, which must hold numbers (stale bits may be denormals, which slow
      // the FMAs).
      const int64_t tail = std::min<int64_t>(4, plane - rows_in * width);
      for (int64_t pw = 0; pw < sw && tail > 0; ++pw) {
        std::fill_n(phase0 + (pw * plane + rows_in * width) * CB, tail * CB, 0.f);
      }
    }
  }
}

// The task's sums ([q][CB] in channel order, q = row * width + ow) into the output, the columns
// past the grid dropped.
void store_band(const Problem& pb, const Layouts& io, const PatchShape& s, int64_t n, int64_t od,
                int64_t oh0, int64_t rows, int64_t width, int64_t sb, const float* sums) {
  const int64_t CB = s.floats(), K = pb.groups * pb.kg;
  const int64_t OD = pb.grid[0], OH = pb.grid[1], OW = pb.grid[2];
  const int64_t channels = std::min<int64_t>(s.G, pb.groups - sb * s.G) * pb.kg;
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = sums + r * width * CB;
    if (io.y_planes) {
      transpose_matrix(src, CB, OW, channels,
                       io.y + ((n * K + sb * CB) * OD + od) * OH * OW + (oh0 + r) * OW,
                       OD * OH * OW);
      continue;
    }
    copy_pixels(src, CB, OW, io.y + (((n * OD + od) * OH + oh0 + r) * OW) * K + sb * CB, K,
                channels);
  }
}

// A task's scratch is kept about this size (patch and sums), so that it stays in L2 between
// the copy, the kernel and the store.
constexpr int64_t kTaskBytes = 160 * 1024;

// How a problem's tasks cut the grid and lay out their patches (fill_patch, the kernels' taps).
struct Plan {
  int64_t ow, width, halo, band, bands, blocks, plane, patch_size, slack;
  std::vector<int64_t> toff;  // per tap, floats from a pixel's patch position

  Plan(const Problem& pb, const PatchShape& s) {
    const int64_t CB = s.floats(), taps = pb.taps(), OH = pb.grid[1];
    ow = pb.grid[2];
    // Phase planes: output pixel (r, ow) and tap (kh, kw) read plane ((kh * dh) % sh,
    // (kw * dw) % sw) at row r + (kh * dh) / sh, column ow + (kw * dw) / sw.
    const int64_t sh = pb.stride[1], sw = pb.stride[2], phases = sh * sw;
    width = ow + (pb.kernel[2] - 1) * pb.dilation[2] / sw;
    halo = (pb.kernel[1] - 1) * pb.dilation[1] / sh;
    // A 4-group broadcast loads a whole register (16 floats); the pixels past the grid's last
    // read up to 3 pixels past the last plane: zeros kept there.
    slack = 4 * CB + 16;
    const auto bytes = [&](int64_t rows) {
      return 4 * (pb.kernel[0] * phases * (rows + halo) * width * CB + count(rows) * CB);
    };
    band = OH;
    while (band > 1 && bytes(band) > kTaskBytes) band = (band + 1) / 2;
    bands = (OH + band - 1) / band;
    blocks = (pb.groups + s.G - 1) / s.G;
    plane = (band + halo) * width;
    patch_size = pb.kernel[0] * phases * plane * CB + slack;
    toff.resize(taps);
    for (int64_t t = 0; t < taps; ++t) {
      const int64_t kw = t % pb.kernel[2] * pb.dilation[2];
      const int64_t kh = t / pb.kernel[2] % pb.kernel[1] * pb.dilation[1];
      const int64_t kd = t / (pb.kernel[2] * pb.kernel[1]);
      const int64_t phase = (kd * sh + kh % sh) * sw + kw % sw;
      toff[t] = (phase * plane + kh / sh * width + kw / sw) * CB;
    }
  }
  // The pixels a band of `rows` rows computes: rounded up to whole blocks of 4 (patch_run).
  int64_t count(int64_t rows) const { return ((rows - 1) * width + ow + 3) / 4 * 4; }
};

// w [cg][taps][NL] (pack_block's floats, bfloat16 values) as pairs of reduced channels
// [cg / 2][taps][NL][2], patch_block's Pairs weights.
void pack_pairs(const float* w, int64_t cg, int64_t taps, int64_t NL, c10::BFloat16* pairs) {
  for (int64_t d = 0; d < cg; d += 2) {
    for (int64_t t = 0; t < taps; ++t) {
      const float* even = w + (d * taps + t) * NL;
      const float* odd = even + taps * NL;
      c10::BFloat16* out = pairs + (d / 2 * taps + t) * NL * 2;
      for (int64_t lane = 0; lane < NL; ++lane) {
        out[2 * lane] = c10::BFloat16(even[lane]);
        out[2 * lane + 1] = c10::BFloat16(odd[lane]);
      }
    }
  }
}

// store_band for bfloat16 rows: the float32 sums rounded once.
void store_band_rounded(const Problem& pb, c10::BFloat16* y, const PatchShape& s, int64_t n,
                        int64_t od, int64_t oh0, int64_t rows, int64_t width, int64_t sb,
                        const float* sums) {
  const int64_t CB = s.floats(), K = pb.groups * pb.kg;
  const int64_t OD = pb.grid[0], OH = pb.grid[1], OW = pb.grid[2];
  const int64_t channels = std::min<int64_t>(s.G, pb.groups - sb * s.G) * pb.kg;
  for (int64_t r = 0; r < rows; ++r) {
    c10::BFloat16* row = y + (((n * OD + od) * OH + oh0 + r) * OW) * K + sb * CB;
    bf16_gemm::round_runs_to_bfloat16(sums + r * width * CB, CB, OW, channels, row, K);
  }
}

// Pairs: bfloat16 rows ([N, spatial..., C]) in io.x and io.y. fill_patch copies the input's
// channel pairs as 32-bit units (the problem seen as one of C / 2 channels), the kernel
// multiplies pairs (patch_kernel_bfloat16), and the float32 sums are rounded once as they are
// stored.
constexpr int64_t kInnerBlockBytes = 16 * 1024;

template <bool Pairs>
void run(const Problem& pb, const Layouts& io, const PatchShape& s, const Weights& weights,
         const float* bias) {
  Problem units = pb;
  PatchShape su = s;
  if constexpr (Pairs) {
    units.C /= 2;
    units.cg /= 2;
    su.bytes /= 2;  // CB / 2 units a pixel
  }
  const int64_t CB = s.floats(), taps = pb.taps(), packed_floats = taps * pb.cg * CB + CB;
  const int64_t OD = pb.grid[0], OH = pb.grid[1], OW = pb.grid[2];
  const Plan plan(units, su);
  const int64_t band = plan.band, bands = plan.bands, slack = plan.slack, blocks = plan.blocks;
  // A super-block's packed weights and bias, then (Pairs) its weights as pairs. Where they are
  // small, all are packed up front and a band's tasks run its super-blocks one after another: they
  // read the band's pixels line after line, where one super-block at a time read 64 bytes of
  // each pixel's 512 and stalled on memory (N4 channels_last forwards, ms: 4 per group C128
  // 56x56 1.37 -> 1.05, torch 1.38; 16 per group C128 28x28 N8 1.38 -> 1.28). Larger blocks
  // (32 per group: 36 KiB for a 3x3) run one super-block's tasks in a row, each thread packing
  // its weights once, kept in L1 (C1024 7x7: 0.63 against 0.76 ms super-blocks innermost).
  const int64_t block_floats = packed_floats + (Pairs ? taps * pb.cg * CB / 2 : 0);
  const auto pack = [&](int64_t sb, float* block) {
    pack_block(pb, s, weights, bias, sb, block, block + taps * pb.cg * CB);
    if constexpr (Pairs) {
      pack_pairs(block, pb.cg, taps, CB, reinterpret_cast<c10::BFloat16*>(block + packed_floats));
    }
  };
  const bool blocks_inner = taps * pb.cg * CB * int64_t{sizeof(float)} <= kInnerBlockBytes;
  at::Tensor packed;
  if (blocks_inner) {
    packed = empty_output({blocks * block_floats}, at::TensorOptions(at::kFloat));
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      float* blocks_data = packed.data_ptr<float>();
      for (int64_t sb = begin; sb < end; ++sb) pack(sb, blocks_data + sb * block_floats);
    });
  }
  at::parallel_for(0, pb.batch * OD * bands * blocks, 1, [&](int64_t begin, int64_t end) {
    const ThreadScratch<float> patch(0, plan.patch_size), sums(1, plan.count(band) * CB);
    const ThreadScratch<float> row_scratch(2,
                                           io.x_planes && pb.stride[2] > 1 ? pb.image[2] * CB : 0);
    const ThreadScratch<float> own_block(3, blocks_inner ? 0 : block_floats);
    std::fill_n(patch.data() + plan.patch_size - slack, slack, 0.f);
    int64_t packed_sb = -1;
    for (int64_t task = begin; task < end; ++task) {
      int64_t sb, rest;
      if (blocks_inner) {
        sb = task % blocks, rest = task / blocks;
      } else {
        sb = task / (bands * OD * pb.batch), rest = task % (bands * OD * pb.batch);
      }
      const int64_t bi = rest % bands, od = rest / bands % OD, n = rest / (bands * OD);
      if (!blocks_inner && sb != packed_sb) pack(sb, own_block.data()), packed_sb = sb;
      const float* block =
          blocks_inner ? packed.const_data_ptr<float>() + sb * block_floats : own_block.data();
      const float* packed_bias = block + taps * pb.cg * CB;
      const float* kernel_weights = Pairs ? block + packed_floats : block;
      const int64_t oh0 = bi * band, rows = std::min(band, OH - oh0);
      fill_patch(units, io, su, n, od, oh0, rows + plan.halo, plan.width, plan.plane, sb,
                 patch.data(), row_scratch.data());
      const ForwardArgs args{patch.data(), plan.toff.data(), taps, kernel_weights, packed_bias,
                             sums.data(),  plan.count(rows), rows, plan.width,     OW};
      if constexpr (Pairs) {
        patch_kernel_bfloat16(s, args);
        store_band_rounded(pb, reinterpret_cast<c10::BFloat16*>(io.y), s, n, od, oh0, rows,
                           plan.width, sb, sums.data());
      } else {
        patch_kernel(s, args);
        store_band(pb, io, s, n, od, oh0, rows, plan.width, sb, sums.data());
      }
    }
  });
}

// The output gradient of a band for super-block sb as [q][CB] in the forward sums' lane order
// (q = row * width + ow), zero at the pixels past the grid, up to `count`.
void fill_grad_band(const Problem& pb, const float* go, bool go_planes, const PatchShape& s,
                    int64_t n, int64_t od, int64_t oh0, int64_t rows, int64_t width, int64_t count,
                    int64_t sb, float* band) {
  const int64_t G = s.G, CB = s.floats(), kg = pb.kg, K = pb.groups * kg;
  const int64_t OD = pb.grid[0], OH = pb.grid[1], OW = pb.grid[2];
  const int64_t valid = std::min<int64_t>(G, pb.groups - sb * G);
  for (int64_t r = 0; r < rows; ++r) {
    float* dst = band + r * width * CB;
    if (r + 1 < rows) std::fill_n(dst + OW * CB, (width - OW) * CB, 0.f);
    if (valid < G) std::fill_n(dst, OW * CB, 0.f);
    if (go_planes) {
      transpose_matrix(go + ((n * K + sb * CB) * OD + od) * OH * OW + (oh0 + r) * OW, OD * OH * OW,
                       valid * kg, OW, dst, CB);
      if (G > 1) interleave(s.G, CB, dst, CB, OW, dst);
    } else if (valid == G) {
      interleave(s.G, CB, go + (((n * OD + od) * OH + oh0 + r) * OW) * K + sb * CB, K, OW, dst);
    } else {
      for (int64_t ow = 0; ow < OW; ++ow) {
        const float* src = go + (((n * OD + od) * OH + oh0 + r) * OW + ow) * K + sb * CB;
        for (int64_t gl = 0; gl < valid; ++gl) {
          for (int64_t i = 0; i < kg; ++i) dst[ow * CB + i * G + gl] = src[gl * kg + i];
        }
      }
    }
  }
  const int64_t last = (rows - 1) * width + OW;
  std::fill_n(band + last * CB, (count - last) * CB, 0.f);
}

// gw [K, cg, taps] (contiguous) = sum over the batch and the grid of the output gradient times
// the input each tap reads. One task per super-block, summing its samples and bands in order:
// the result does not depend on the thread count.
void weight_grad(const Problem& pb, const float* x, bool x_planes, const float* go, bool go_planes,
                 float* gw) {
  const PatchShape s = patch_shape(pb.kg);
  const int64_t CB = s.floats(), taps = pb.taps(), G = s.G;
  const int64_t OD = pb.grid[0], OH = pb.grid[1];
  const Plan plan(pb, s);
  const Layouts io{x, x_planes, nullptr, false};
  at::parallel_for(0, plan.blocks, 1, [&](int64_t begin, int64_t end) {
    const ThreadScratch<float> patch(0, plan.patch_size), band(1, plan.count(plan.band) * CB);
    const ThreadScratch<float> row_scratch(2, pb.stride[2] > 1 ? pb.image[2] * CB : 0);
    const ThreadScratch<float> sums(3, pb.cg * taps * CB);
    std::fill_n(patch.data() + plan.patch_size - plan.slack, plan.slack, 0.f);
    for (int64_t sb = begin; sb < end; ++sb) {
      std::fill_n(sums.data(), pb.cg * taps * CB, 0.f);
      for (int64_t n = 0; n < pb.batch; ++n) {
        for (int64_t od = 0; od < OD; ++od) {
          for (int64_t oh0 = 0; oh0 < OH; oh0 += plan.band) {
            const int64_t rows = std::min(plan.band, OH - oh0), count = plan.count(rows);
            fill_patch(pb, io, s, n, od, oh0, rows + plan.halo, plan.width, plan.plane, sb,
                       patch.data(), row_scratch.data());
            fill_grad_band(pb, go, go_planes, s, n, od, oh0, rows, plan.width, count, sb,
                           band.data());
            grad_kernel(s, {patch.data(), plan.toff.data(), taps, band.data(), count, sums.data()});
          }
        }
      }
      for (int64_t gl = 0; gl < std::min<int64_t>(G, pb.groups - sb * G); ++gl) {
        for (int64_t i = 0; i < pb.kg; ++i) {
          float* dst = gw + ((sb * G + gl) * pb.kg + i) * pb.cg * taps;
          for (int64_t dt = 0; dt < pb.cg * taps; ++dt) dst[dt] = sums[dt * CB + i * G + gl];
        }
      }
    }
  });
}

// Whether t is read as NCHW planes (contiguous, and not channels_last as well).
bool planes(const at::Tensor& t) {
  return t.is_contiguous() && !(t.dim() >= 4 && t.is_contiguous(channels_last_format(t)));
}

// Runs the problem from `input` into `output` in their layouts: planes where they are NCHW,
// else [N, spatial..., C] rows (a copy where they are neither).
void compute(const Problem& pb, const at::Tensor& input, const at::Tensor& output,
             const Weights& weights, const float* bias) {
  const PatchShape s = patch_shape(pb.kg);
  if (input.scalar_type() == at::kBFloat16) {
    const at::Tensor x = channels_last_view(input);
    into_output(output, [&](const at::Tensor& y) {
      const Layouts io{static_cast<const float*>(x.const_data_ptr()), false,
                       static_cast<float*>(y.data_ptr()), false};
      run<true>(pb, io, s, weights, bias);
    });
    return;
  }
  const bool x_planes = planes(input);
  const at::Tensor x = x_planes ? input : channels_last_view(input);
  if (planes(output)) {
    run<false>(pb, {x.const_data_ptr<float>(), x_planes, output.data_ptr<float>(), true}, s,
               weights, bias);
    return;
  }
  into_output(output, [&](const at::Tensor& y) {
    run<false>(pb, {x.const_data_ptr<float>(), x_planes, y.data_ptr<float>(), false}, s, weights,
               bias);
  });
}

Problem problem(int64_t batch, int64_t C, int64_t groups, int64_t K, const int64_t* image,
                const int64_t* grid, const ConvGeometry& g) {
  Problem pb{batch, C, groups, C / groups, K / groups, {}, {}, {}, {}, {}, {}};
  for (int d = 0; d < kSpatialDims; ++d) {
    pb.image[d] = image[d];
    pb.grid[d] = grid[d];
    pb.kernel[d] = g.kernel[d];
    pb.stride[d] = g.stride[d];
    pb.dilation[d] = g.dilation[d];
    pb.pad[d] = g.pad[d];
  }
  return pb;
}

bool stride_one(const ConvGeometry& g) {
  for (int d = 0; d < kSpatialDims; ++d) {
    if (g.stride[d] != 1) return false;
  }
  return true;
}

// Grids (the transpose's input) up to 14x14 in float32, any in bfloat16 (transpose_by_phases).
constexpr int64_t kMaxPhasesPixels = 14 * 14;

bool phases_pay(const at::Tensor& t, const ConvGeometry& g) {
  return t.scalar_type() == at::kBFloat16 || g.grid[0] * g.grid[1] * g.grid[2] <= kMaxPhasesPixels;
}

// A strided conv_transpose (the input gradient of a strided conv) as one stride-1 patch conv per
// phase (conv_phases.h): the phase's taps of the flipped kernel, with a group's channels
// swapped, over the transpose's input, into a buffer whose pixels then go to every stride-th
// output pixel. w: the float32 weight [K, C / G, kernel].
//
// Where it pays (phases_pay), against the line kernels' scatter (grouped_cpu.h) on float32 or
// bfloat16 copies: stride 2, N8 channels_last input gradients, ms: 8 per group C440 14x14
// 1.39 -> 0.77 (torch 0.55-0.64), C208 28x28 1.62 -> 1.12 (0.55-0.9); bfloat16 (the pairs
// kernel) 4 per group C256 56x56 N4 3.1 -> 2.1 (1.6-1.8), NCHW 4.3 -> 3.8 (2.7). Each phase
// copies the whole input into its patches for few taps: on larger float32 grids the line
// kernels win (C104 56x56 1.9 against 2.6, 16 per group C128 56x56 2.3 against 3.3).
void transpose_by_phases(const at::Tensor& input, const at::Tensor& w, const at::Tensor& output,
                         const ConvGeometry& g) {
  const int64_t K = input.size(1), C = g.channels, G = g.groups;
  const int64_t kg = K / G, spatial = output.dim() - 2;
  const float* weight = w.const_data_ptr<float>();
  int64_t r[kSpatialDims];
  for (r[0] = 0; r[0] < g.stride[0]; ++r[0]) {
    for (r[1] = 0; r[1] < g.stride[1]; ++r[1]) {
      for (r[2] = 0; r[2] < g.stride[2]; ++r[2]) {
        Phase ph[kSpatialDims];
        bool reached = true, any_pixel = true;
        at::Tensor pixels = output;  // the phase's output pixels
        for (int d = 0; d < kSpatialDims; ++d) {
          ph[d] = phase_of(g, d, r[d]);
          reached = reached && ph[d].taps > 0;
          any_pixel = any_pixel && ph[d].positions > 0;
          const int64_t dim = 2 + d - (kSpatialDims - spatial);
          if (dim >= 2) pixels = pixels.slice(dim, r[d], output.size(dim), g.stride[d]);
        }
        if (!any_pixel) continue;
        if (!reached) {
          pixels.zero_();
          continue;
        }
        const ConvGeometry sub = phase_geometry(g, ph, K);
        const auto sub_w = at::empty({C * kg * sub.kernel_numel()}, w.options());
        float* sw = sub_w.data_ptr<float>();
        phase_weight(g, ph, K, weight, sw);
        const auto phase_out = at::empty(
            pixels.sizes(), output.options().memory_format(output.suggest_memory_format()));
        const Problem pb = problem(input.size(0), K, G, C, sub.image, sub.grid, sub);
        compute(pb, input, phase_out, {sw, false}, nullptr);
        pixels.copy_(phase_out);
      }
    }
  }
}

// bfloat16 forwards and input gradients take the pairs kernel where it beats the GEMM engine's
// bfloat16 kernels (brgemm_conv_cpu.h), whose per-group GEMMs reduce over only cg x taps values.
// N4 channels_last 3x3, ms, engine -> pairs (torch): on AMX, 4 per group 56x56 6.2 -> 2.0
// (1.0), 8 per group 28x28 1.34 -> 0.86 (0.32), RegNet's 8 per group 14x14 0.31 -> 0.18 (0.12);
// 16 per group 14x14 0.36 -> 0.73 stays with AMX. With AVX512-BF16 alone (the engine on our
// vector kernel, torch on oneDNN's avx512_core_bf16: an AMD EPYC's ISA) 16 per group ties or wins
// (0.77 -> 0.76, 28x28 0.37 -> 0.34), 32 loses (0.66 -> 0.82). The pairs kernel runs at the
// float32 kernel's speed here: this Xeon issues vdpbf16ps at a quarter of the FMA's rate, where
// an EPYC (Zen 4) issues it at the FMA's, twice the products.
bool pairs_pay(int64_t kg) { return kg <= (bfloat16_convs_on_amx() ? 8 : 16); }

// float32, or bfloat16 where the pairs kernel runs: AVX512-BF16, a group's outputs in 64-byte
// registers (4, 8 or 16 channels).
bool computes_dtype(const at::Tensor& t, int64_t kg) {
  if (t.scalar_type() == at::kFloat) return true;
  return t.scalar_type() == at::kBFloat16 && bf16_gemm::available() &&
         patch_shape(kg).bytes == 64 && pairs_pay(kg);
}

bool patch_geometry(const ConvGeometry& g, int64_t grid_channels) {
  return grouped_shape_applies(g, grid_channels) && g.stride[1] <= kMaxPatchStride &&
         g.stride[2] <= kMaxPatchStride && grid_channels == g.channels &&
         patch_shape(grid_channels / g.groups).bytes != 0;
}

}  // namespace

bool grouped_patch_applies(const at::Tensor& t, const ConvGeometry& g, int64_t grid_channels) {
  return computes_dtype(t, grid_channels / g.groups) && patch_geometry(g, grid_channels);
}

bool grouped_patch_weight_grad_applies(const at::Tensor& t, const ConvGeometry& g,
                                       int64_t grid_channels) {
  return (t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16) &&
         patch_geometry(g, grid_channels);
}

bool grouped_patch_transpose_applies(const at::Tensor& t, const ConvGeometry& g,
                                     int64_t grid_channels) {
  bool strides = true;
  for (int d = 0; d < kSpatialDims; ++d) strides = strides && g.stride[d] <= kMaxPatchStride;
  return computes_dtype(t, g.channels / g.groups) && grouped_shape_applies(g, grid_channels) &&
         strides && (stride_one(g) || phases_pay(t, g)) && grid_channels == g.channels &&
         patch_shape(g.channels / g.groups).bytes != 0;
}

void grouped_patch_conv(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
                        const ConvGeometry& g, const at::Tensor& bias) {
  const Problem pb =
      problem(input.size(0), g.channels, g.groups, output.size(1), g.image, g.grid, g);
  // bfloat16 weights and bias as float32 (exact): pack_block reads floats.
  const auto w = weight.to(at::kFloat).contiguous();
  const auto b = bias_fusable(bias, input) ? bias.to(at::kFloat) : at::Tensor();
  compute(pb, input, output, {w.const_data_ptr<float>(), false},
          b.defined() ? b.const_data_ptr<float>() : nullptr);
  if (!b.defined()) add_bias(output, bias);
}

// The input gradient of a stride-1 conv is the forward conv of the output gradient with the
// kernel flipped in every dim, a group's input and output channels swapped, and the padding
// dilation * (kernel - 1) - pad (negative where the conv padded past its kernel's reach: the
// patch then starts inside the image).
void grouped_patch_conv_transpose(const at::Tensor& input, const at::Tensor& weight,
                                  const at::Tensor& output, const ConvGeometry& g) {
  const auto w = weight.to(at::kFloat).contiguous();
  if (!stride_one(g)) return transpose_by_phases(input, w, output, g);
  Problem pb = problem(input.size(0), input.size(1), g.groups, g.channels, g.grid, g.image, g);
  for (int d = 0; d < kSpatialDims; ++d) pb.pad[d] = g.dilation[d] * (g.kernel[d] - 1) - g.pad[d];
  compute(pb, input, output, {w.const_data_ptr<float>(), true}, nullptr);
}

void grouped_patch_weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                               const at::Tensor& grad_weight, const ConvGeometry& g) {
  const Problem pb =
      problem(input.size(0), g.channels, g.groups, grad_output.size(1), g.image, g.grid, g);
  // bfloat16 as float32 copies, the sums rounded once into grad_weight: the float32 kernel
  // beats the GEMM engine's bfloat16 products there (regnet's 8 per group 14x14, N4: 0.22
  // against 0.48 ms; ResNeXt's 4 per group 56x56: 1.9 against 4.9).
  const auto rows = [](const at::Tensor& t) {
    const auto f = t.to(at::kFloat);
    return planes(f) ? f : channels_last_view(f);
  };
  const auto x = rows(input), go = rows(grad_output);
  auto gw = grad_weight.is_contiguous() && grad_weight.scalar_type() == at::kFloat
                ? grad_weight
                : at::empty(grad_weight.sizes(), grad_weight.options().dtype(at::kFloat));
  weight_grad(pb, x.const_data_ptr<float>(), planes(input), go.const_data_ptr<float>(),
              planes(grad_output), gw.data_ptr<float>());
  if (!gw.is_same(grad_weight)) grad_weight.copy_(gw);
}

}  // namespace convpool::cpu
