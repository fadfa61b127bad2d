#pragma once
// Per-output (forward) and per-input (backward, as a gather) element functions of every pooling
// op, shared by the CPU loops and the CUDA kernels (pool_kernels.h). They work inside one plane:
// `plane_in` / `plane_grad` / `plane_indices` point at that plane's first element; indices are
// flat within the plane, as torch's.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "../common/pool_geometry.h"

namespace convpool {

template <typename acc_t>
CONVPOOL_HOST_DEVICE bool is_nan(acc_t v) {
  return v != v;
}

// `take ? a : b` without a branch. Max pooling over random data makes `take` a coin flip, and
// a mispredicted branch costs more than the arithmetic; g++ keeps float selects as branches, so
// the host version selects the bits. (GPUs predicate the plain ternary.)
template <typename T>
CONVPOOL_HOST_DEVICE T select(bool take, T a, T b) {
#if defined(__CUDA_ARCH__)
  return take ? a : b;
#else
  using Bits = std::conditional_t<sizeof(T) == 8, uint64_t,
                                  std::conditional_t<sizeof(T) == 4, uint32_t, uint16_t> >;
  Bits x, y;
  std::memcpy(&x, &a, sizeof(T));
  std::memcpy(&y, &b, sizeof(T));
  const Bits mask = static_cast<Bits>(0) - static_cast<Bits>(take);
  const Bits r = static_cast<Bits>((x & mask) | (y & ~mask));
  T out;
  std::memcpy(&out, &r, sizeof(T));
  return out;
#endif
}

// The three spans of output (od, oh, ow)'s window. The CPU loops hoist the outer two out of
// their innermost loop; the CUDA kernels call this per output.
struct Window {
  Span d, h, w;
};

CONVPOOL_HOST_DEVICE Window window_of(const PoolGeometry& g, int64_t od, int64_t oh, int64_t ow) {
  return {window_span(g, 0, od), window_span(g, 1, oh), window_span(g, 2, ow)};
}

// Flat in-plane index of the window's first element: what a window reports when nothing in it
// beats -inf (torch's rule).
CONVPOOL_HOST_DEVICE int64_t first_index(const PoolGeometry& g, const Window& win) {
  return (win.d.begin * g.input[1] + win.h.begin) * g.input[2] + win.w.begin;
}

// Max over a window. Ties keep the first element in scan order; a NaN wins over everything and
// a later NaN over an earlier one (torch's rule). `stride` is the distance between neighbouring
// elements of one plane (1 in NCHW, C in channels_last). kBranchless suits small windows of
// random data (the comparison is a coin flip); large windows predict the branch well.
template <typename scalar_t, typename acc_t, bool kBranchless = true>
CONVPOOL_HOST_DEVICE void max_over(const scalar_t* plane_in, int64_t stride, const PoolGeometry& g,
                                   const Window& win, scalar_t* value, int64_t* index) {
  int64_t best_index = first_index(g, win);
  acc_t best = -std::numeric_limits<acc_t>::infinity();
  for (int64_t id = win.d.begin; id < win.d.end; id += win.d.step) {
    for (int64_t ih = win.h.begin; ih < win.h.end; ih += win.h.step) {
      const int64_t row = (id * g.input[1] + ih) * g.input[2];
      for (int64_t iw = win.w.begin; iw < win.w.end; iw += win.w.step) {
        const acc_t v = static_cast<acc_t>(plane_in[(row + iw) * stride]);
        const bool take = (v > best) | is_nan(v);
        if (kBranchless) {
          best = select(take, v, best);
          best_index = select<int64_t>(take, row + iw, best_index);
        } else if (take) {
          best = v;
          best_index = row + iw;
        }
      }
    }
  }
  *value = static_cast<scalar_t>(best);
  *index = best_index;
}

template <typename scalar_t, typename acc_t>
CONVPOOL_HOST_DEVICE acc_t sum_of_run(const scalar_t* run, int64_t count, int64_t step) {
  acc_t sum = acc_t(0);
  if (step == 1) {
    // Long contiguous runs (adaptive and global windows): let the host compiler vectorise.
    CONVPOOL_SIMD_SUM(sum)
    for (int64_t i = 0; i < count; ++i) sum += static_cast<acc_t>(run[i]);
    return sum;
  }
  for (int64_t i = 0; i < count; ++i) sum += static_cast<acc_t>(run[i * step]);
  return sum;
}

template <typename scalar_t, typename acc_t>
CONVPOOL_HOST_DEVICE acc_t sum_over(const scalar_t* plane_in, int64_t stride, const PoolGeometry& g,
                                    const Window& win) {
  // Whole consecutive rows form one contiguous run (a global average reads the plane as one).
  const bool whole_rows =
      win.w.begin == 0 && win.w.end == g.input[2] && win.w.step == 1 && win.h.step == 1;
  acc_t sum = acc_t(0);
  for (int64_t id = win.d.begin; id < win.d.end; id += win.d.step) {
    if (whole_rows) {
      const int64_t start = (id * g.input[1] + win.h.begin) * g.input[2];
      sum += sum_of_run<scalar_t, acc_t>(plane_in + start * stride, win.h.count() * g.input[2],
                                         stride);
      continue;
    }
    for (int64_t ih = win.h.begin; ih < win.h.end; ih += win.h.step) {
      const int64_t row = (id * g.input[1] + ih) * g.input[2];
      sum += sum_of_run<scalar_t, acc_t>(plane_in + (row + win.w.begin) * stride, win.w.count(),
                                         win.w.step * stride);
    }
  }
  return sum;
}

template <typename acc_t>
CONVPOOL_HOST_DEVICE acc_t divide(acc_t sum, int64_t divisor) {
  return divisor == 0 ? acc_t(0) : sum / static_cast<acc_t>(divisor);
}

template <typename scalar_t, typename acc_t>
CONVPOOL_HOST_DEVICE void max_window(const scalar_t* plane_in, const PoolGeometry& g, int64_t od,
                                     int64_t oh, int64_t ow, scalar_t* value, int64_t* index) {
  max_over<scalar_t, acc_t>(plane_in, 1, g, window_of(g, od, oh, ow), value, index);
}

template <typename scalar_t, typename acc_t>
CONVPOOL_HOST_DEVICE scalar_t average_window(const scalar_t* plane_in, const PoolGeometry& g,
                                             int64_t od, int64_t oh, int64_t ow) {
  const acc_t sum = sum_over<scalar_t, acc_t>(plane_in, 1, g, window_of(g, od, oh, ow));
  return static_cast<scalar_t>(divide(sum, average_divisor(g, od, oh, ow)));
}

// Calls visit(o_flat, od, oh, ow) for every output whose window holds input (id, ih, iw).
template <typename Visit>
CONVPOOL_HOST_DEVICE void for_each_covering_output(const PoolGeometry& g, int64_t id, int64_t ih,
                                                   int64_t iw, Visit&& visit) {
  const int64_t nd = covering_candidates(g, 0, id);
  const int64_t nh = covering_candidates(g, 1, ih);
  const int64_t nw = covering_candidates(g, 2, iw);
  for (int64_t td = 0; td < nd; ++td) {
    const int64_t od = covering_output(g, 0, id, td);
    if (od < 0) continue;
    for (int64_t th = 0; th < nh; ++th) {
      const int64_t oh = covering_output(g, 1, ih, th);
      if (oh < 0) continue;
      for (int64_t tw = 0; tw < nw; ++tw) {
        const int64_t ow = covering_output(g, 2, iw, tw);
        if (ow < 0) continue;
        visit((od * g.output[1] + oh) * g.output[2] + ow, od, oh, ow);
      }
    }
  }
}

// Max pooling's input gradient as a gather: the sum of the output gradients whose max was this
// element. Deterministic, no atomics. An empty window covers no element, so its gradient goes
// nowhere here by construction (the CPU scatter skips it explicitly); an index that is not in
// its window matches no covering output and is never read as an address.
template <typename scalar_t, typename acc_t>
CONVPOOL_HOST_DEVICE scalar_t max_backward_element(const scalar_t* plane_grad,
                                                   const int64_t* plane_indices,
                                                   const PoolGeometry& g, int64_t id, int64_t ih,
                                                   int64_t iw) {
  const int64_t self = (id * g.input[1] + ih) * g.input[2] + iw;
  acc_t sum = acc_t(0);
  for_each_covering_output(g, id, ih, iw, [&](int64_t o, int64_t, int64_t, int64_t) {
    if (plane_indices[o] == self) sum += static_cast<acc_t>(plane_grad[o]);
  });
  return static_cast<scalar_t>(sum);
}

// Average pooling's input gradient: every covering output's gradient over its divisor.
template <typename scalar_t, typename acc_t>
CONVPOOL_HOST_DEVICE scalar_t average_backward_element(const scalar_t* plane_grad,
                                                       const PoolGeometry& g, int64_t id,
                                                       int64_t ih, int64_t iw) {
  acc_t sum = acc_t(0);
  for_each_covering_output(g, id, ih, iw, [&](int64_t o, int64_t od, int64_t oh, int64_t ow) {
    sum += static_cast<acc_t>(plane_grad[o]) / static_cast<acc_t>(average_divisor(g, od, oh, ow));
  });
  return static_cast<scalar_t>(sum);
}

}  // namespace convpool
