// With a few dozen output pixels the GEMM engines' costs are all in the weight: the
// channels_last route relayouts it ([K, C, taps] -> [K, taps, C], 9.4 MB for C512 3x3) and BLAS
// packs it, on every call, for a product of only 49 columns per sample (N1 C512 7x7: 2.3 ms
// against torch's 1.4). Here the weight is the micro-kernel's broadcast operand exactly as an
// NCHW weight lies, row by row, and the samples' im2col columns (one small panel) the vector
// operand: the weight is read once per block of 32 columns and never copied.
#include "small_image_gemm_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>

#include "../common/dispatch.h"
#include "../common/isa_clones.h"
#include "../common/thread_scratch.h"
#include "conv_lines.h"
#include "winograd_tiles.h"

namespace convpool::cpu {
namespace {

using winograd::gemm_rows;
using winograd::kLanes;
using winograd::Operand;

// Where it pays: columns (batch x output pixels) few enough that the weight is the larger
// operand, a weight large enough that copying or packing it dominates.
constexpr int64_t kMaxColumns = 256;
constexpr int64_t kMinWeightBytes = 512 * 1024;
// Output channels per task: each task streams its own rows of the weight.
constexpr int64_t kRowsPerTask = 32;

// columns[(c, tap), n * pixels + p] of the samples, rows `ld` apart (zero past the last column).
template <typename T>
void gather_columns(const T* x, T* col, const ConvGeometry& g, int64_t batch, int64_t ld) {
  const int64_t taps = g.kernel_numel(), pixels = g.grid_numel();
  at::parallel_for(0, g.channels * taps, 16, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t c = row / taps;
      int64_t kd, kh, kw;
      split_tap(g, row % taps, kd, kh, kw);
      const TapRun run = width_run(g, kw);
      T* out = col + row * ld;
      for (int64_t n = 0; n < batch; ++n) {
        gather_tap_lines(x + (n * g.channels + c) * g.image_numel(), out + n * pixels, g, kd, kh,
                         run);
      }
      std::fill(out + batch * pixels, out + ld, T(0));
    }
  });
}

// product[rows, columns] (rows ld apart) = w[rows, inner] x col[inner, columns], in blocks of
// kInnerBlock products, each summed from zero in `partial` and then added: one chain over the
// whole inner dimension (4608 for C512 3x3) lost 10x the accuracy of BLAS and torch (1.2e-5
// against 1.3e-6 of outputs up to 4; in blocks 1.6e-6). Each block of columns stays in L1 while
// the rows pass; blocks of two vectors of columns (one for a last block that narrow).
constexpr int64_t kInnerBlock = 256;

template <typename T>
[[gnu::always_inline]] inline void multiply_rows(const T* w, const T* col, T* product, T* partial,
                                                 int64_t inner, int64_t ld, int64_t rows,
                                                 int64_t columns) {
  constexpr int64_t L = kLanes<T>;
  for (int64_t i0 = 0; i0 < inner; i0 += kInnerBlock) {
    const int64_t n = std::min(kInnerBlock, inner - i0);
    const Operand<T> a{w + i0, inner, 1};
    const T* b = col + i0 * ld;
    T* sums = i0 == 0 ? product : partial;
    for (int64_t j0 = 0; j0 < columns; j0 += 2 * L) {
      if (columns - j0 <= L) {
        gemm_rows<T, 1, false>(a, b + j0, ld, sums + j0, ld, rows, n);
      } else {
        gemm_rows<T, 2, false>(a, b + j0, ld, sums + j0, ld, rows, n);
      }
    }
    if (i0 == 0) continue;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < columns; ++j) product[r * ld + j] += partial[r * ld + j];
    }
  }
}

CONVPOOL_CLONES void multiply_rows_f32(const float* w, const float* col, float* product,
                                       float* partial, int64_t inner, int64_t ld, int64_t rows,
                                       int64_t columns) {
  multiply_rows(w, col, product, partial, inner, ld, rows, columns);
}
CONVPOOL_CLONES void multiply_rows_f64(const double* w, const double* col, double* product,
                                       double* partial, int64_t inner, int64_t ld, int64_t rows,
                                       int64_t columns) {
  multiply_rows(w, col, product, partial, inner, ld, rows, columns);
}
void multiply_rows_any(const float* w, const float* col, float* product, float* partial,
                       int64_t inner, int64_t ld, int64_t rows, int64_t columns) {
  multiply_rows_f32(w, col, product, partial, inner, ld, rows, columns);
}
void multiply_rows_any(const double* w, const double* col, double* product, double* partial,
                       int64_t inner, int64_t ld, int64_t rows, int64_t columns) {
  multiply_rows_f64(w, col, product, partial, inner, ld, rows, columns);
}

template <typename T>
void conv(const T* x, const T* w, const T* bias, T* y, const ConvGeometry& g, int64_t batch,
          int64_t K) {
  const int64_t inner = g.channels * g.kernel_numel(), pixels = g.grid_numel();
  const int64_t columns = batch * pixels, ld = (columns + kLanes<T> - 1) / kLanes<T> * kLanes<T>;
  const ThreadScratch<T> col_scratch(0, inner * ld);
  T* col = col_scratch.data();
  gather_columns(x, col, g, batch, ld);
  const ThreadScratch<T> product_scratch(1, K * ld);
  T* product = product_scratch.data();
  at::parallel_for(0, (K + kRowsPerTask - 1) / kRowsPerTask, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t k0 = task * kRowsPerTask, rows = std::min(kRowsPerTask, K - k0);
      const ThreadScratch<T> partial(2, kRowsPerTask * ld);
      multiply_rows_any(w + k0 * inner, col, product + k0 * ld, partial.data(), inner, ld, rows,
                        columns);
    }
  });
  at::parallel_for(0, batch * K, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t n = i / K, k = i % K;
      const T* src = product + k * ld + n * pixels;
      T* dst = y + i * pixels;
      const T b = bias ? bias[k] : T(0);
      for (int64_t p = 0; p < pixels; ++p) dst[p] = src[p] + b;
    }
  });
}

}  // namespace

bool small_image_conv(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                      const at::Tensor& output, const ConvGeometry& g) {
  const auto type = input.scalar_type();
  if (g.channels_last || g.groups != 1 || g.is_pointwise() ||
      (type != at::kFloat && type != at::kDouble) || weight.scalar_type() != type ||
      !weight.is_contiguous() || !input.is_contiguous() || !output.is_contiguous()) {
    return false;
  }
  const int64_t batch = input.size(0), K = output.size(1);
  if (batch * g.grid_numel() > kMaxColumns ||
      weight.numel() * static_cast<int64_t>(weight.element_size()) < kMinWeightBytes) {
    return false;
  }
  const bool with_bias = bias.defined() && bias.is_contiguous() && bias.scalar_type() == type;
  if (bias.defined() && !with_bias) return false;
  AT_DISPATCH_FLOATING_TYPES(type, "small_image_conv", [&] {
    conv(input.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(),
         with_bias ? bias.const_data_ptr<scalar_t>() : nullptr, output.data_ptr<scalar_t>(), g,
         batch, K);
  });
  return true;
}

}  // namespace convpool::cpu
