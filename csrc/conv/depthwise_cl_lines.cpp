// Why these loops are fast: the interior of a line (the pixels every tap reaches) runs in blocks
// of kPixels output pixels with no bounds logic, each tap's weight vector loaded once per block
// and reused for all of them; only the few edge pixels check each tap's range. The channels are
// the vector (64 bytes); a channel tail shorter than a vector takes a scalar loop.
#include "depthwise_cl_lines.h"

#include <algorithm>

#include "../common/isa_clones.h"

#pragma GCC diagnostic ignored "-Wpsabi"  // 64-byte vectors never cross a call (always inlined)

namespace convpool::cpu {
namespace {

#define CONVPOOL_INLINE inline __attribute__((always_inline))

template <typename T>
struct Vec {
  typedef T type __attribute__((vector_size(64)));
  static constexpr int64_t kLanes = 64 / sizeof(T);
};

template <typename T>
CONVPOOL_INLINE typename Vec<T>::type load(const T* p) {
  typename Vec<T>::type v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
CONVPOOL_INLINE void store(T* p, typename Vec<T>::type v) {
  __builtin_memcpy(p, &v, sizeof(v));
}

constexpr int64_t kPixels = 4;

// Pixel j with each tap's range checked (the line's edges).
template <typename T>
CONVPOOL_INLINE void edge_pixel(T* out, int64_t j, const LineTap<T>* taps, int64_t ntaps,
                                int64_t step, int64_t channels) {
  using V = typename Vec<T>::type;
  constexpr int64_t L = Vec<T>::kLanes;
  int64_t c = 0;
  for (; c + L <= channels; c += L) {
    V acc = {};
    for (int64_t t = 0; t < ntaps; ++t) {
      if (j >= taps[t].lo && j < taps[t].hi) {
        acc += load(taps[t].w + c) * load(taps[t].src + j * step + c);
      }
    }
    store(out + c, acc);
  }
  for (; c < channels; ++c) {
    T sum = T(0);
    for (int64_t t = 0; t < ntaps; ++t) {
      if (j >= taps[t].lo && j < taps[t].hi) sum += taps[t].w[c] * taps[t].src[j * step + c];
    }
    out[c] = sum;
  }
}

// kPixels pixels from j on, every tap in range.
template <typename T>
CONVPOOL_INLINE void inner_block(T* out, int64_t out_step, int64_t j, const LineTap<T>* taps,
                                 int64_t ntaps, int64_t step, int64_t channels) {
  using V = typename Vec<T>::type;
  constexpr int64_t L = Vec<T>::kLanes;
  int64_t c = 0;
  for (; c + L <= channels; c += L) {
    V acc[kPixels] = {};
    for (int64_t t = 0; t < ntaps; ++t) {
      const V w = load(taps[t].w + c);
      const T* src = taps[t].src + j * step + c;
      for (int64_t p = 0; p < kPixels; ++p) acc[p] += w * load(src + p * step);
    }
    for (int64_t p = 0; p < kPixels; ++p) store(out + p * out_step + c, acc[p]);
  }
  for (; c < channels; ++c) {
    T sum[kPixels] = {};
    for (int64_t t = 0; t < ntaps; ++t) {
      const T* src = taps[t].src + j * step + c;
      for (int64_t p = 0; p < kPixels; ++p) sum[p] += taps[t].w[c] * src[p * step];
    }
    for (int64_t p = 0; p < kPixels; ++p) out[p * out_step + c] = sum[p];
  }
}

template <typename T>
CONVPOOL_INLINE void tap_line(T* out, int64_t out_step, int64_t count, const LineTap<T>* taps,
                              int64_t ntaps, int64_t step, int64_t channels) {
  int64_t lo = 0, hi = count;
  for (int64_t t = 0; t < ntaps; ++t) {
    lo = std::max(lo, taps[t].lo);
    hi = std::min(hi, taps[t].hi);
  }
  lo = std::min(lo, count);
  hi = std::max(hi, lo);
  int64_t j = 0;
  for (; j < lo; ++j) edge_pixel(out + j * out_step, j, taps, ntaps, step, channels);
  for (; j + kPixels <= hi; j += kPixels) {
    inner_block(out + j * out_step, out_step, j, taps, ntaps, step, channels);
  }
  for (; j < count; ++j) edge_pixel(out + j * out_step, j, taps, ntaps, step, channels);
}

template <typename T>
CONVPOOL_INLINE void tap_sums(const T* grad, int64_t grad_step, const LineTap<T>* taps,
                              int64_t ntaps, int64_t step, int64_t channels) {
  using V = typename Vec<T>::type;
  constexpr int64_t L = Vec<T>::kLanes;
  for (int64_t t = 0; t < ntaps; ++t) {
    const LineTap<T>& tap = taps[t];
    int64_t c = 0;
    for (; c + L <= channels; c += L) {
      const T* g = grad + c;
      const T* s = tap.src + c;
      V a0 = {}, a1 = {};
      int64_t j = tap.lo;
      for (; j + 2 <= tap.hi; j += 2) {
        a0 += load(g + j * grad_step) * load(s + j * step);
        a1 += load(g + (j + 1) * grad_step) * load(s + (j + 1) * step);
      }
      if (j < tap.hi) a0 += load(g + j * grad_step) * load(s + j * step);
      store(tap.sums + c, load(tap.sums + c) + (a0 + a1));
    }
    for (; c < channels; ++c) {
      T a0 = T(0), a1 = T(0);
      int64_t j = tap.lo;
      for (; j + 2 <= tap.hi; j += 2) {
        a0 += grad[j * grad_step + c] * tap.src[j * step + c];
        a1 += grad[(j + 1) * grad_step + c] * tap.src[(j + 1) * step + c];
      }
      if (j < tap.hi) a0 += grad[j * grad_step + c] * tap.src[j * step + c];
      tap.sums[c] += a0 + a1;
    }
  }
}

}  // namespace

CONVPOOL_CLONES void depthwise_tap_line(float* out, int64_t out_step, int64_t count,
                                        const LineTap<float>* taps, int64_t ntaps, int64_t step,
                                        int64_t channels) {
  tap_line(out, out_step, count, taps, ntaps, step, channels);
}
CONVPOOL_CLONES void depthwise_tap_line(double* out, int64_t out_step, int64_t count,
                                        const LineTap<double>* taps, int64_t ntaps, int64_t step,
                                        int64_t channels) {
  tap_line(out, out_step, count, taps, ntaps, step, channels);
}
CONVPOOL_CLONES void depthwise_tap_sums(const float* grad, int64_t grad_step,
                                        const LineTap<float>* taps, int64_t ntaps, int64_t step,
                                        int64_t channels) {
  tap_sums(grad, grad_step, taps, ntaps, step, channels);
}
CONVPOOL_CLONES void depthwise_tap_sums(const double* grad, int64_t grad_step,
                                        const LineTap<double>* taps, int64_t ntaps, int64_t step,
                                        int64_t channels) {
  tap_sums(grad, grad_step, taps, ntaps, step, channels);
}

}  // namespace convpool::cpu
