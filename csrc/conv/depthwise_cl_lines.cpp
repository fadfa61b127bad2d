// Why these loops are fast: the interior of a line (the pixels every tap reaches) runs in blocks
// of kPixels output pixels with no bounds logic, each tap's weight vector loaded once per block
// and reused for all of them; only the few edge pixels check each tap's range. The channels are
// the vector: 64 bytes at a time, as one AVX-512 register or two AVX2 ones (B, the register
// width, see wide_vector_registers()); then single registers; a channel tail shorter than a
// register takes a scalar loop.
#include "depthwise_cl_lines.h"

#include <algorithm>

#include "../common/isa_clones.h"

#pragma GCC diagnostic ignored "-Wpsabi"  // wide vectors never cross a call (always inlined)

namespace convpool::cpu {
namespace {

#define CONVPOOL_INLINE inline __attribute__((always_inline))

template <typename T, int B>
struct Vec {
  typedef T type __attribute__((vector_size(B)));
  static constexpr int64_t kLanes = B / sizeof(T);
};

// Channel counts that are no multiple of the register (MobileNet's 72 and 120, ShuffleNet's 58)
// finish in half and quarter registers, down to 16 bytes, before any scalar loop: an 8-channel
// tail done scalar took as long as the 64 channels before it (C72 56x56 3x3 forward).
constexpr int kNarrowest = 16;

template <int B, typename T>
CONVPOOL_INLINE typename Vec<T, B>::type load(const T* p) {
  typename Vec<T, B>::type v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T, typename V>
CONVPOOL_INLINE void store(T* p, V v) {
  __builtin_memcpy(p, &v, sizeof(v));
}

constexpr int64_t kPixels = 4;
// The AVX2 path asks for each tap's pixels kPrefetch pixels ahead: channels_last lines stream
// from memory, and without it the loads wait on DRAM (1 thread, AMD EPYC, N8 3x3 forward:
// C144@56 6.7 -> 4.8 ms, stride 2 C96@112 9.4 -> 6.9 ms). Not measured on AVX-512 machines, so
// their path is left as it was.
constexpr int64_t kPrefetch = 8;

// The channels c .. c + W * L of pixel j with each tap's range checked (the line's edges).
template <typename T, int B, int W>
CONVPOOL_INLINE void edge_vectors(T* out, int64_t j, const LineTap<T>* taps, int64_t ntaps,
                                  int64_t step, int64_t c, const T* bias) {
  using V = typename Vec<T, B>::type;
  constexpr int64_t L = Vec<T, B>::kLanes;
  V acc[W];
  for (int w = 0; w < W; ++w) acc[w] = bias ? load<B>(bias + c + w * L) : V{};
  for (int64_t t = 0; t < ntaps; ++t) {
    if (j >= taps[t].lo && j < taps[t].hi) {
      for (int w = 0; w < W; ++w) {
        acc[w] += load<B>(taps[t].w + c + w * L) * load<B>(taps[t].src + j * step + c + w * L);
      }
    }
  }
  for (int w = 0; w < W; ++w) store(out + c + w * L, acc[w]);
}

// Pixel j with each tap's range checked (the line's edges). 256 bytes of channels at a time:
// with 64, each tap's multiply-add waited on the one before (a 7x7 kernel on a 7x7 map, where
// every pixel is an edge pixel: up to 49 dependent FMAs per register).
template <typename T, int B>
CONVPOOL_INLINE void edge_pixel(T* out, int64_t j, const LineTap<T>* taps, int64_t ntaps,
                                int64_t step, int64_t channels, const T* bias, int64_t c0 = 0) {
  constexpr int64_t L = Vec<T, B>::kLanes, W = 256 / B;
  int64_t c = c0;
  for (; c + W * L <= channels; c += W * L)
    edge_vectors<T, B, W>(out, j, taps, ntaps, step, c, bias);
  for (; c + L <= channels; c += L) edge_vectors<T, B, 1>(out, j, taps, ntaps, step, c, bias);
  if constexpr (B > kNarrowest) {
    return edge_pixel<T, B / 2>(out, j, taps, ntaps, step, channels, bias, c);
  }
  for (; c < channels; ++c) {
    T sum = bias ? bias[c] : T(0);
    for (int64_t t = 0; t < ntaps; ++t) {
      if (j >= taps[t].lo && j < taps[t].hi) sum += taps[t].w[c] * taps[t].src[j * step + c];
    }
    out[c] = sum;
  }
}

// Channels c .. c + W * L of kPixels pixels from j on, every tap in range: kPixels * W
// accumulators (4 AVX-512 or 8 AVX2 registers).
template <typename T, int B, int W>
CONVPOOL_INLINE void inner_vectors(T* out, int64_t out_step, int64_t j, const LineTap<T>* taps,
                                   int64_t ntaps, int64_t step, int64_t c, const T* bias) {
  using V = typename Vec<T, B>::type;
  constexpr int64_t L = Vec<T, B>::kLanes;
  V acc[kPixels][W];
  for (int w = 0; w < W; ++w) {
    const V start = bias ? load<B>(bias + c + w * L) : V{};
    for (int64_t p = 0; p < kPixels; ++p) acc[p][w] = start;
  }
  for (int64_t t = 0; t < ntaps; ++t) {
    const T* src = taps[t].src + j * step + c;
    for (int w = 0; w < W; ++w) {
      const V wv = load<B>(taps[t].w + c + w * L);
      for (int64_t p = 0; p < kPixels; ++p) acc[p][w] += wv * load<B>(src + p * step + w * L);
    }
    if constexpr (B == 32) {
      for (int64_t p = 0; p < kPixels; ++p) __builtin_prefetch(src + (kPrefetch + p) * step);
    }
  }
  for (int64_t p = 0; p < kPixels; ++p) {
    for (int w = 0; w < W; ++w) store(out + p * out_step + c + w * L, acc[p][w]);
  }
}

// kPixels pixels from j on, every tap in range, channels c0 and up.
template <typename T, int B>
CONVPOOL_INLINE void inner_block(T* out, int64_t out_step, int64_t j, const LineTap<T>* taps,
                                 int64_t ntaps, int64_t step, int64_t channels, const T* bias,
                                 int64_t c0 = 0) {
  constexpr int64_t L = Vec<T, B>::kLanes, W = 64 / B;
  int64_t c = c0;
  for (; c + W * L <= channels; c += W * L) {
    inner_vectors<T, B, W>(out, out_step, j, taps, ntaps, step, c, bias);
  }
  if constexpr (W > 1) {
    for (; c + L <= channels; c += L)
      inner_vectors<T, B, 1>(out, out_step, j, taps, ntaps, step, c, bias);
  }
  if constexpr (B > kNarrowest) {
    return inner_block<T, B / 2>(out, out_step, j, taps, ntaps, step, channels, bias, c);
  }
  for (; c < channels; ++c) {
    T sum[kPixels];
    for (int64_t p = 0; p < kPixels; ++p) sum[p] = bias ? bias[c] : T(0);
    for (int64_t t = 0; t < ntaps; ++t) {
      const T* src = taps[t].src + j * step + c;
      for (int64_t p = 0; p < kPixels; ++p) sum[p] += taps[t].w[c] * src[p * step];
    }
    for (int64_t p = 0; p < kPixels; ++p) out[p * out_step + c] = sum[p];
  }
}

// ---- Kernel rows ----------------------------------------------------------------------------
// With the taps grouped by kernel row (TapRows), a block of kRowPixels output pixels reads its
// row's (kRowPixels - 1) * S + KW input columns once each and adds each into the accumulators of
// every tap that reads it: 1 load per KW / S multiply-adds instead of 1 per one. kRowPixels
// accumulators + KW weights + 1 input: 16 registers at most (KW = 7, ConvNeXt's), AVX2's all.
// Forward lines, 1 thread, AMD EPYC (AVX2), N8 channels_last, taps one by one -> rows (best of 5
// alternating runs): 3x3 C64@28 0.27 -> 0.19 ms, C96@56 1.91 -> 1.79, C144@56 4.7 -> 3.6;
// 5x5 C64@28 0.61 -> 0.37, C384@28 4.8 -> 3.1. 7x7, 2 threads, Zen 4: C96@56 4.4 -> 3.2 ms
// (AVX-512), 4.4 -> 3.5 (AVX2 shape).
constexpr int64_t kRowPixels = 8;

// Channels c .. c + NV * L of kRowPixels pixels from j on, every tap in range. Rows with a
// negative src_step are read from their last tap (the lowest address) on, so column i of tap kk
// is always i = p * S + kk.
template <typename T, int B, int S, int KW, int NV>
CONVPOOL_INLINE void row_vectors(T* out, int64_t out_step, int64_t j, const LineTap<T>* taps,
                                 int64_t nrows, bool backwards, int64_t step, int64_t pixel,
                                 int64_t c, const T* bias) {
  using V = typename Vec<T, B>::type;
  constexpr int64_t L = Vec<T, B>::kLanes;
  V acc[kRowPixels][NV];
  for (int n = 0; n < NV; ++n) {
    const V start = bias ? load<B>(bias + c + n * L) : V{};
    for (int64_t p = 0; p < kRowPixels; ++p) acc[p][n] = start;
  }
  for (int64_t r = 0; r < nrows; ++r) {
    const LineTap<T>* row = taps + r * KW;
    V wv[KW][NV];
#pragma GCC unroll 8
    for (int kk = 0; kk < KW; ++kk) {
      for (int n = 0; n < NV; ++n) {
        wv[kk][n] = load<B>(row[backwards ? KW - 1 - kk : kk].w + c + n * L);
      }
    }
    const T* src = row[backwards ? KW - 1 : 0].src + j * step + c;
#pragma GCC unroll 32
    for (int i = 0; i < (kRowPixels - 1) * S + KW; ++i) {
      V x[NV];
      for (int n = 0; n < NV; ++n) x[n] = load<B>(src + i * pixel + n * L);
      // The next block's new columns: the loads would otherwise wait on L3 (1 thread, C144 56x56:
      // 5.7 -> 3.6 ms).
      if (i < kRowPixels * S) {
        for (int n = 0; n < NV; ++n) {
          __builtin_prefetch(src + (i + (kRowPixels - 1) * S + KW) * pixel + n * L);
        }
      }
#pragma GCC unroll 8
      for (int kk = 0; kk < KW; ++kk) {
        const int o = i - kk;
        if (o >= 0 && o % S == 0 && o / S < kRowPixels) {
          for (int n = 0; n < NV; ++n) acc[o / S][n] += wv[kk][n] * x[n];
        }
      }
    }
  }
  for (int64_t p = 0; p < kRowPixels; ++p) {
    for (int n = 0; n < NV; ++n) store(out + p * out_step + c + n * L, acc[p][n]);
  }
}

// Vectors per row_vectors call: with AVX-512, two for rows of 5 taps (16 accumulators, 10
// weights and 2 inputs in the 32 registers). Each accumulator takes 25 multiply-adds, one waiting
// on the other, and with 8 chains the FMA units waited on their latency: N8 channels_last 5x5
// forward C256 28x28 0.58-0.67 -> 0.53-0.57 ms (torch 0.51), C128 56x56 1.16-1.33 -> 0.99-1.08.
// 3-tap rows lost 3 % (C256 28x28) and 7-tap rows would spill: one vector.
template <int B, int KW>
constexpr int kRowVectors = B == 64 && KW == 5 ? 2 : 1;

// Blocks of kRowPixels pixels from j on while they end by hi: whole vectors by rows, the channel
// tail by the per-tap blocks. Returns the first pixel not computed.
template <typename T, int B, int S, int KW>
CONVPOOL_INLINE int64_t row_blocks(T* out, int64_t out_step, int64_t j, int64_t hi,
                                   const LineTap<T>* taps, int64_t ntaps, int64_t step,
                                   int64_t channels, TapRows rows, const T* bias) {
  constexpr int64_t L = Vec<T, B>::kLanes;
  const bool backwards = rows.src_step < 0;
  const int64_t pixel = backwards ? -rows.src_step : rows.src_step;
  for (; j + kRowPixels <= hi; j += kRowPixels) {
    T* o = out + j * out_step;
    int64_t c = 0;
    constexpr int NV = kRowVectors<B, KW>;
    if constexpr (NV > 1) {
      for (; c + NV * L <= channels; c += NV * L) {
        row_vectors<T, B, S, KW, NV>(o, out_step, j, taps, ntaps / KW, backwards, step, pixel, c,
                                     bias);
      }
    }
    for (; c + L <= channels; c += L) {
      row_vectors<T, B, S, KW, 1>(o, out_step, j, taps, ntaps / KW, backwards, step, pixel, c,
                                  bias);
    }
    if (c == channels) continue;
    for (int64_t p = 0; p < kRowPixels; p += kPixels) {
      inner_block<T, B>(o + p * out_step, out_step, j + p, taps, ntaps, step, channels, bias, c);
    }
  }
  return j;
}

// Whether the taps are grouped by kernel rows as `rows` says: then kind(S, KW) of their stride
// in pixels and their row width, else 0.
constexpr int64_t kind(int64_t S, int64_t KW) { return S * 64 + KW; }

template <typename T, int B>
int64_t row_kernel(const LineTap<T>* taps, int64_t ntaps, int64_t step, TapRows rows) {
  const int64_t KW = rows.per_row, pixel = rows.src_step < 0 ? -rows.src_step : rows.src_step;
  if (KW == 0 || pixel == 0 || ntaps % KW != 0 || step % pixel != 0) return 0;
  // AVX2: 3-tap rows whose pixels lie a whole number of KiB apart (a block's 10 columns x 3 rows
  // of a channel vector share 4 of L1's 64 sets) ran faster with the taps one by one (C256 28x28
  // 1.52 against 1.74 ms; C512 3.9 against 5.5). With AVX-512 the rows' prefetches win where
  // the image streams from memory and tie where it is in cache (N8 2 threads, rows / taps: C256
  // 56x56 2.2-2.9 / 3.4-4.4 ms, torch 3.7-3.9; C256 28x28, C512 14x14, C768 14x14, C1024 7x7
  // 0.93-1.12, median 1.03).
  if (B == 32 && KW == 3 && pixel * static_cast<int64_t>(sizeof(T)) % 1024 == 0) return 0;
  for (int64_t t = 0; t < ntaps; ++t) {
    const LineTap<T>& first = taps[t - t % KW];
    if (taps[t].src != first.src + (t % KW) * rows.src_step ||
        taps[t].w != first.w + (t % KW) * rows.w_step) {
      return 0;
    }
  }
  return kind(step / pixel, KW);
}

template <typename T, int B>
CONVPOOL_INLINE void tap_line(T* out, int64_t out_step, int64_t count, const LineTap<T>* taps,
                              int64_t ntaps, int64_t step, int64_t channels, TapRows rows,
                              const T* bias) {
  int64_t lo = 0, hi = count;
  for (int64_t t = 0; t < ntaps; ++t) {
    lo = std::max(lo, taps[t].lo);
    hi = std::min(hi, taps[t].hi);
  }
  lo = std::min(lo, count);
  hi = std::max(hi, lo);
  int64_t j = 0;
  for (; j < lo; ++j) edge_pixel<T, B>(out + j * out_step, j, taps, ntaps, step, channels, bias);
  if (hi - j >= kRowPixels) {
    // Row kernels for 3 and 7 taps at stride 1 and 5 at strides 1 and 2, chosen by cases: a
    // callee reached through a function pointer would be compiled for the baseline ISA, not for
    // the clone calling it. 3 taps at stride 2 read each column for 1.5 taps: in cache they lost
    // to the taps one by one, streaming from memory they win (N8 2 threads AVX-512, rows / taps:
    // C96 112x112 0.80-0.89, C144 56x56 N16 0.76; in cache, C128 56x56 1.22, N2 C96 1.31).
    const int64_t k = row_kernel<T, B>(taps, ntaps, step, rows);
    if (k == kind(2, 3) && rows.streams)
      j = row_blocks<T, B, 2, 3>(out, out_step, j, hi, taps, ntaps, step, channels, rows, bias);
    if (k == kind(1, 3))
      j = row_blocks<T, B, 1, 3>(out, out_step, j, hi, taps, ntaps, step, channels, rows, bias);
    if (k == kind(1, 5))
      j = row_blocks<T, B, 1, 5>(out, out_step, j, hi, taps, ntaps, step, channels, rows, bias);
    if (k == kind(2, 5))
      j = row_blocks<T, B, 2, 5>(out, out_step, j, hi, taps, ntaps, step, channels, rows, bias);
    if (k == kind(1, 7))
      j = row_blocks<T, B, 1, 7>(out, out_step, j, hi, taps, ntaps, step, channels, rows, bias);
  }
  for (; j + kPixels <= hi; j += kPixels) {
    inner_block<T, B>(out + j * out_step, out_step, j, taps, ntaps, step, channels, bias);
  }
  for (; j < count; ++j) edge_pixel<T, B>(out + j * out_step, j, taps, ntaps, step, channels, bias);
}

// One tap's sums of channels c .. c + W * L: two accumulators per register, even and odd j (the
// same split as the scalar tail, so every channel sums in the same order).
template <typename T, int B, int W>
CONVPOOL_INLINE void tap_sum_vectors(const T* grad, int64_t grad_step, const LineTap<T>& tap,
                                     int64_t step, int64_t c) {
  using V = typename Vec<T, B>::type;
  constexpr int64_t L = Vec<T, B>::kLanes;
  const T* g = grad + c;
  const T* s = tap.src + c;
  V a0[W] = {}, a1[W] = {};
  int64_t j = tap.lo;
  for (; j + 2 <= tap.hi; j += 2) {
    for (int w = 0; w < W; ++w) {
      a0[w] += load<B>(g + j * grad_step + w * L) * load<B>(s + j * step + w * L);
      a1[w] += load<B>(g + (j + 1) * grad_step + w * L) * load<B>(s + (j + 1) * step + w * L);
    }
  }
  if (j < tap.hi) {
    for (int w = 0; w < W; ++w) {
      a0[w] += load<B>(g + j * grad_step + w * L) * load<B>(s + j * step + w * L);
    }
  }
  for (int w = 0; w < W; ++w) {
    store(tap.sums + c + w * L, load<B>(tap.sums + c + w * L) + (a0[w] + a1[w]));
  }
}

// The KW taps of one kernel row at once (sources `pixel` elements apart, as TapRows says): each
// gradient vector is loaded once for the row's KW multiply-adds, and the 2 x KW accumulators
// (even and odd j, per tap) are independent chains where a tap on its own had two, each
// multiply-add waiting on the one before. j runs over the taps' common range, then each tap's
// own edge pixels; the same order whatever the thread count.
template <typename T, int B, int W, int KW>
CONVPOOL_INLINE void row_sum_vectors(const T* grad, int64_t grad_step, const LineTap<T>* row,
                                     int64_t step, int64_t pixel, int64_t c) {
  using V = typename Vec<T, B>::type;
  constexpr int64_t L = Vec<T, B>::kLanes;
  int64_t lo = row[0].lo, hi = row[0].hi;
  for (int k = 1; k < KW; ++k) lo = std::max(lo, row[k].lo), hi = std::min(hi, row[k].hi);
  hi = std::max(hi, lo);
  const T* g = grad + c;
  const T* s = row[0].src + c;
  V a0[KW][W] = {}, a1[KW][W] = {};
  int64_t j = lo;
  for (; j + 2 <= hi; j += 2) {
    for (int w = 0; w < W; ++w) {
      const V g0 = load<B>(g + j * grad_step + w * L),
              g1 = load<B>(g + (j + 1) * grad_step + w * L);
      for (int k = 0; k < KW; ++k) {
        a0[k][w] += g0 * load<B>(s + j * step + k * pixel + w * L);
        a1[k][w] += g1 * load<B>(s + (j + 1) * step + k * pixel + w * L);
      }
    }
  }
  for (int k = 0; k < KW; ++k) {
    const auto edge = [&](int64_t i) {
      for (int w = 0; w < W; ++w) {
        a0[k][w] += load<B>(g + i * grad_step + w * L) * load<B>(s + i * step + k * pixel + w * L);
      }
    };
    for (int64_t i = j; i < hi; ++i) edge(i);
    for (int64_t i = row[k].lo; i < std::min(lo, row[k].hi); ++i) edge(i);
    for (int64_t i = std::max(hi, row[k].lo); i < row[k].hi; ++i) edge(i);
    for (int w = 0; w < W; ++w) {
      store(row[k].sums + c + w * L, load<B>(row[k].sums + c + w * L) + (a0[k][w] + a1[k][w]));
    }
  }
}

// Whether the taps come in rows as `rows` says (sources rows.src_step apart within a row, any
// stride) over a common range of at least kMinRowSumPixels: then KW, else 0. On shorter lines
// the taps' own edge pixels (one chain each) outweigh the shared loads. N8 weight gradients,
// same process alternating, taps one by one -> rows, ms: channels_last 3x3 C256@28 0.42 ->
// 0.37, stride 2 C96@112 2.20 -> 1.98, 5x5 C240@28 0.93 -> 0.80, 7x7 C96@56 2.74 -> 2.17; NCHW
// (staged blocks) 3-21 % faster. Rows of 7 pixels lost: 7x7 C768@7 0.27 -> 0.50.
constexpr int64_t kMinRowSumPixels = 16;

template <typename T>
int64_t sum_rows(const LineTap<T>* taps, int64_t ntaps, TapRows rows) {
  const int64_t KW = rows.per_row;
  if (KW == 0 || ntaps == 0 || ntaps % KW != 0) return 0;
  int64_t lo = taps[0].lo, hi = taps[0].hi;
  for (int64_t t = 0; t < ntaps; ++t) {
    if (taps[t].src != taps[t - t % KW].src + (t % KW) * rows.src_step) return 0;
    lo = std::max(lo, taps[t].lo);
    hi = std::min(hi, taps[t].hi);
  }
  return hi - lo >= kMinRowSumPixels ? KW : 0;
}

// Channel blocks outermost, taps inside: a block's pixels of the line (the taps' source rows and
// the gradient row) stay in L1 while every tap reads them. Taps outermost, a line of 256
// channels (3 rows x 28 pixels x 1 KiB + the gradient) came from L2 once per tap: 1 thread,
// N8 C256 28x28 3x3 channels_last weight gradient (with its forward) 6.5-9.2 -> 5.0-6.7 ms, C128
// 56x56 10.9-12.5 -> 9.4-11.2 ms. Each sum still runs over j in the same order.
template <typename T, int B>
CONVPOOL_INLINE void tap_sums(const T* grad, int64_t grad_step, const LineTap<T>* taps,
                              int64_t ntaps, int64_t step, int64_t channels, TapRows rows,
                              int64_t c0 = 0) {
  constexpr int64_t L = Vec<T, B>::kLanes, W = 64 / B;
  int64_t c = c0;
  // Rows of 3 taps (5 and 7 where 32 registers hold their 2 x KW x W accumulators), by cases: a
  // callee through a pointer would be compiled outside the ISA clone.
  const int64_t KW = c0 == 0 ? sum_rows(taps, ntaps, rows) : 0;
  const int64_t pixel = rows.src_step;
  if (KW == 3 || (W == 1 && (KW == 5 || KW == 7))) {
    for (; c + W * L <= channels; c += W * L) {
      for (int64_t t = 0; t < ntaps; t += KW) {
        if (KW == 3) row_sum_vectors<T, B, W, 3>(grad, grad_step, taps + t, step, pixel, c);
        if constexpr (W == 1) {
          if (KW == 5) row_sum_vectors<T, B, W, 5>(grad, grad_step, taps + t, step, pixel, c);
          if (KW == 7) row_sum_vectors<T, B, W, 7>(grad, grad_step, taps + t, step, pixel, c);
        }
      }
    }
  }
  for (; c + W * L <= channels; c += W * L) {
    for (int64_t t = 0; t < ntaps; ++t) tap_sum_vectors<T, B, W>(grad, grad_step, taps[t], step, c);
  }
  if constexpr (W > 1) {
    for (; c + L <= channels; c += L) {
      for (int64_t t = 0; t < ntaps; ++t) {
        tap_sum_vectors<T, B, 1>(grad, grad_step, taps[t], step, c);
      }
    }
  }
  if constexpr (B > kNarrowest) {
    return tap_sums<T, B / 2>(grad, grad_step, taps, ntaps, step, channels, rows, c);
  }
  for (int64_t t = 0; t < ntaps; ++t) {
    const LineTap<T>& tap = taps[t];
    for (int64_t ch = c; ch < channels; ++ch) {
      T a0 = T(0), a1 = T(0);
      int64_t j = tap.lo;
      for (; j + 2 <= tap.hi; j += 2) {
        a0 += grad[j * grad_step + ch] * tap.src[j * step + ch];
        a1 += grad[(j + 1) * grad_step + ch] * tap.src[(j + 1) * step + ch];
      }
      if (j < tap.hi) a0 += grad[j * grad_step + ch] * tap.src[j * step + ch];
      tap.sums[ch] += a0 + a1;
    }
  }
}

// ---- Zero-padded planes ----------------------------------------------------------------------
// The P pixels' accumulators (64 / B vectors each), from the block's bias (nullptr: zero).
template <typename T, int B, int64_t P, typename V>
CONVPOOL_INLINE void start_sums(V (&acc)[P][64 / B], const T* bias) {
  constexpr int64_t L = Vec<T, B>::kLanes, W = 64 / B;
  for (int v = 0; v < W; ++v) {
    const V start = bias ? load<B>(bias + v * L) : V{};
    for (int64_t i = 0; i < P; ++i) acc[i][v] = start;
  }
}

// The P pixels' accumulators into their first `channels` channels.
template <typename T, int B, int64_t P, typename V>
CONVPOOL_INLINE void store_pixels(const V (&acc)[P][64 / B], T* out, int64_t out_pixel,
                                  int64_t channels) {
  constexpr int64_t L = Vec<T, B>::kLanes, W = 64 / B, lanes = kPaddedLanes<T>;
  for (int64_t i = 0; i < P; ++i) {
    if (channels == lanes) {
      for (int v = 0; v < W; ++v) store(out + i * out_pixel + v * L, acc[i][v]);
    } else {
      alignas(64) T buffer[lanes];
      for (int v = 0; v < W; ++v) store(buffer + v * L, acc[i][v]);
      std::copy_n(buffer, channels, out + i * out_pixel);
    }
  }
}

// P output pixels of a row from the staged pixel `src` on (their first tap's): P x (64 / B)
// accumulators, each tap's weights loaded once for the P pixels, every input read straight into
// its multiply-add. No tap list and no bound checks: on 7x7 maps under 5x5 and 7x7 kernels
// every pixel of a line is an edge pixel, and the lines ran at a third of the FMA peak.
template <typename T, int B, int64_t P>
CONVPOOL_INLINE void padded_pixels(const T* src, const T* w, const T* bias, const PaddedPlane& p,
                                   T* out, int64_t out_pixel, int64_t channels) {
  using V = typename Vec<T, B>::type;
  constexpr int64_t L = Vec<T, B>::kLanes, W = 64 / B, lanes = kPaddedLanes<T>;
  const int64_t step = p.stride_w * lanes, row = p.dilation_h * p.width * lanes;
  const int64_t tap = p.dilation_w * lanes;
  V acc[P][W];
  start_sums<T, B, P>(acc, bias);
  for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
    const T* r = src + kh * row;
    const T* wr = w + kh * p.kernel_w * lanes;
    for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
      for (int v = 0; v < W; ++v) {
        const V wv = load<B>(wr + kw * lanes + v * L);
        for (int64_t i = 0; i < P; ++i) acc[i][v] += wv * load<B>(r + kw * tap + i * step + v * L);
      }
    }
  }
  store_pixels<T, B, P>(acc, out, out_pixel, channels);
}

// As padded_pixels, for kernel rows of KW taps (stride and dilation 1): each staged column a
// row's P pixels read is loaded once and multiplied into every accumulator whose tap reads it,
// the row's KW weights in registers (P + KW + 1 registers). The staged block of a 28x28 map
// (34 x 34 pixels x 64 bytes) does not fit in L1, and one load per multiply-add from L2 ran at
// 60 % of the FMA peak.
template <typename T, int B, int64_t P, int KW>
CONVPOOL_INLINE void padded_row_pixels(const T* src, const T* w, const T* bias,
                                       const PaddedPlane& p, T* out, int64_t out_pixel,
                                       int64_t channels) {
  using V = typename Vec<T, B>::type;
  constexpr int64_t L = Vec<T, B>::kLanes, W = 64 / B, lanes = kPaddedLanes<T>;
  const int64_t row = p.dilation_h * p.width * lanes;
  V acc[P][W];
  start_sums<T, B, P>(acc, bias);
  for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
    const T* r = src + kh * row;
    const T* wr = w + kh * KW * lanes;
    for (int v = 0; v < W; ++v) {
      V wv[KW];
      for (int kw = 0; kw < KW; ++kw) wv[kw] = load<B>(wr + kw * lanes + v * L);
#pragma GCC unroll 32
      for (int i = 0; i < P - 1 + KW; ++i) {
        const V x = load<B>(r + i * lanes + v * L);
#pragma GCC unroll 8
        for (int kw = 0; kw < KW; ++kw) {
          if (i - kw >= 0 && i - kw < P) acc[i - kw][v] += wv[kw] * x;
        }
      }
    }
  }
  store_pixels<T, B, P>(acc, out, out_pixel, channels);
}

// Every output row in blocks of P pixels; a row's last block overlaps the one before rather
// than run a narrower one (the overlapped pixels are computed twice, to the same values).
template <typename T, int B, int64_t P, int KW = 0>
CONVPOOL_INLINE void padded_rows(const T* staged, const T* w, const T* bias, const PaddedPlane& p,
                                 T* out, int64_t out_pixel, int64_t channels) {
  constexpr int64_t lanes = kPaddedLanes<T>;
  for (int64_t oh = 0; oh < p.grid_h; ++oh) {
    const T* row = staged + oh * p.stride_h * p.width * lanes;
    T* o = out + oh * p.grid_w * out_pixel;
    for (int64_t ow = 0; ow < p.grid_w; ow += P) {
      const int64_t at = std::min(ow, p.grid_w - P);
      const T* src = row + at * p.stride_w * lanes;
      if constexpr (KW > 0) {
        padded_row_pixels<T, B, P, KW>(src, w, bias, p, o + at * out_pixel, out_pixel, channels);
      } else {
        padded_pixels<T, B, P>(src, w, bias, p, o + at * out_pixel, out_pixel, channels);
      }
    }
  }
}

// The row form for rows of 3, 5 and 7 taps (stride and dilation 1) under AVX-512, by cases (a
// callee through a pointer would be compiled outside the ISA clone); other rows, and AVX2's 16
// registers, tap by tap.
template <typename T, int B, int64_t P>
CONVPOOL_INLINE void padded_rows_any(const T* staged, const T* w, const T* bias,
                                     const PaddedPlane& p, T* out, int64_t out_pixel,
                                     int64_t channels) {
  if (B == 64 && p.dilation_w == 1 && p.stride_w == 1) {
    if (p.kernel_w == 3)
      return padded_rows<T, B, P, 3>(staged, w, bias, p, out, out_pixel, channels);
    if (p.kernel_w == 5)
      return padded_rows<T, B, P, 5>(staged, w, bias, p, out, out_pixel, channels);
    if (p.kernel_w == 7)
      return padded_rows<T, B, P, 7>(staged, w, bias, p, out, out_pixel, channels);
  }
  padded_rows<T, B, P>(staged, w, bias, p, out, out_pixel, channels);
}

// 8 pixels a block under AVX-512 (8 accumulators), 7 on rows a multiple of 7 wide (7, 14, 28, 56:
// the maps of most CNNs; blocks of 8 computed 16 pixels for 14, the last block overlapping: 5x5
// C672 14x14 N8 channels_last 0.42 -> 0.37 ms), 4 under AVX2 (4 x 2 registers); rows narrower
// than that in blocks of 4, then 2, then 1.
template <typename T, int B>
CONVPOOL_INLINE void padded_plane(const T* staged, const T* w, const T* bias, const PaddedPlane& p,
                                  T* out, int64_t out_pixel, int64_t channels) {
  if (B == 64 && p.grid_w % 7 == 0) {
    return padded_rows_any<T, B, 7>(staged, w, bias, p, out, out_pixel, channels);
  }
  if (B == 64 && p.grid_w >= 8) {
    return padded_rows_any<T, B, 8>(staged, w, bias, p, out, out_pixel, channels);
  }
  if (p.grid_w >= 4) return padded_rows_any<T, B, 4>(staged, w, bias, p, out, out_pixel, channels);
  if (p.grid_w >= 2) return padded_rows_any<T, B, 2>(staged, w, bias, p, out, out_pixel, channels);
  padded_rows_any<T, B, 1>(staged, w, bias, p, out, out_pixel, channels);
}

template <typename T>
CONVPOOL_INLINE void padded_plane_any(const T* staged, const T* w, const T* bias,
                                      const PaddedPlane& p, T* out, int64_t out_pixel,
                                      int64_t channels) {
  if (wide_vector_registers())
    return padded_plane<T, 64>(staged, w, bias, p, out, out_pixel, channels);
  padded_plane<T, 32>(staged, w, bias, p, out, out_pixel, channels);
}

template <typename T>
CONVPOOL_INLINE void tap_line_any(T* out, int64_t out_step, int64_t count, const LineTap<T>* taps,
                                  int64_t ntaps, int64_t step, int64_t channels, TapRows rows,
                                  const T* bias) {
  if (wide_vector_registers())
    return tap_line<T, 64>(out, out_step, count, taps, ntaps, step, channels, rows, bias);
  tap_line<T, 32>(out, out_step, count, taps, ntaps, step, channels, rows, bias);
}

template <typename T>
CONVPOOL_INLINE void tap_sums_any(const T* grad, int64_t grad_step, const LineTap<T>* taps,
                                  int64_t ntaps, int64_t step, int64_t channels, TapRows rows) {
  if (wide_vector_registers()) {
    return tap_sums<T, 64>(grad, grad_step, taps, ntaps, step, channels, rows);
  }
  tap_sums<T, 32>(grad, grad_step, taps, ntaps, step, channels, rows);
}

}  // namespace

CONVPOOL_CLONES void depthwise_tap_line(float* out, int64_t out_step, int64_t count,
                                        const LineTap<float>* taps, int64_t ntaps, int64_t step,
                                        int64_t channels, TapRows rows, const float* bias) {
  tap_line_any(out, out_step, count, taps, ntaps, step, channels, rows, bias);
}
CONVPOOL_CLONES void depthwise_tap_line(double* out, int64_t out_step, int64_t count,
                                        const LineTap<double>* taps, int64_t ntaps, int64_t step,
                                        int64_t channels, TapRows rows, const double* bias) {
  tap_line_any(out, out_step, count, taps, ntaps, step, channels, rows, bias);
}
CONVPOOL_CLONES void depthwise_tap_sums(const float* grad, int64_t grad_step,
                                        const LineTap<float>* taps, int64_t ntaps, int64_t step,
                                        int64_t channels, TapRows rows) {
  tap_sums_any(grad, grad_step, taps, ntaps, step, channels, rows);
}
CONVPOOL_CLONES void depthwise_tap_sums(const double* grad, int64_t grad_step,
                                        const LineTap<double>* taps, int64_t ntaps, int64_t step,
                                        int64_t channels, TapRows rows) {
  tap_sums_any(grad, grad_step, taps, ntaps, step, channels, rows);
}
CONVPOOL_CLONES void depthwise_padded_plane(const float* staged, const float* w, const float* bias,
                                            const PaddedPlane& p, float* out, int64_t out_pixel,
                                            int64_t channels) {
  padded_plane_any(staged, w, bias, p, out, out_pixel, channels);
}
CONVPOOL_CLONES void depthwise_padded_plane(const double* staged, const double* w,
                                            const double* bias, const PaddedPlane& p, double* out,
                                            int64_t out_pixel, int64_t channels) {
  padded_plane_any(staged, w, bias, p, out, out_pixel, channels);
}

}  // namespace convpool::cpu
