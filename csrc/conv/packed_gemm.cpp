#include "packed_gemm.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "../common/isa_clones.h"
#include "../common/output_memory.h"

namespace convpool::cpu {
namespace {

template <typename T, int Bytes>
struct VecOf {
  typedef T type __attribute__((vector_size(Bytes)));
};

// Blocking (the BLIS scheme, a read in place): b is packed [kKc, kNc] at a time into column panels
// of NR, which stay in L2 (256 KiB) with a block of kMc rows of a (120 KiB); one panel [kKc, NR]
// (16-32 KiB) stays in L1 while the rows of the block pass. Packing a too ([kc][MR] panels) made
// no difference to the kernel's speed but cost a transposing copy of every row block.
constexpr int64_t kKc = 256;
constexpr int64_t kMc = 120;  // a multiple of both register blocks' rows (6 and 8)
template <typename T>
constexpr int64_t kNc = 1024 / sizeof(T);  // 256 float32 or 128 float64 columns

// c[R, NV vectors] (+)= a[R, kc] x panel[kc][NV vectors] (panel rows `Ldb` apart: a narrower
// tile reads the first vectors of a panel): R x NV vector accumulators in registers, one
// broadcast of a and NV loads of the panel per step.
template <typename T, int R, int NV, int Bytes, int64_t Ldb = NV * Bytes / sizeof(T)>
[[gnu::always_inline]] inline void tile(const T* a, int64_t a_row, int64_t a_col, const T* b, T* c,
                                        int64_t ldc, int64_t kc, bool accumulate) {
  using V = typename VecOf<T, Bytes>::type;
  constexpr int64_t L = Bytes / sizeof(T);
  V acc[R][NV];
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < NV; ++v) acc[r][v] = V{};
  }
  for (int64_t k = 0; k < kc; ++k, a += a_col, b += Ldb) {
    V bv[NV];
    for (int v = 0; v < NV; ++v) __builtin_memcpy(&bv[v], b + v * L, sizeof(V));
    for (int r = 0; r < R; ++r) {
      const T s = a[r * a_row];
      for (int v = 0; v < NV; ++v) acc[r][v] += s * bv[v];
    }
  }
  // The block's kc products are summed from zero and then added to c: loading c into the
  // accumulators made one chain over the whole inner dimension, 10x less accurate than BLAS at
  // 4608 (C512 3x3: 1.3e-5 against 1.4e-6 of outputs up to 4).
  if (accumulate) {
    for (int r = 0; r < R; ++r) {
      for (int v = 0; v < NV; ++v) {
        V old;
        __builtin_memcpy(&old, c + r * ldc + v * L, sizeof(V));
        acc[r][v] += old;
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < NV; ++v) __builtin_memcpy(c + r * ldc + v * L, &acc[r][v], sizeof(V));
  }
}

// As tile, for a panel with `cols` real columns: where that is fewer than NR (the packed panel
// holds zeros beyond), computed into a buffer of which only the real columns reach c.
// A panel of at most NR / 2 real columns runs a tile of one vector: computing the whole panel cost
// up to twice the products where outputs come in 8s and 16s (72, 40, 24 channels).
template <typename T, int R, int NV, int Bytes>
[[gnu::always_inline]] inline void column_tile(const T* a, int64_t a_row, int64_t a_col, const T* b,
                                               T* c, int64_t ldc, int64_t kc, int64_t cols,
                                               bool accumulate) {
  constexpr int64_t L = Bytes / sizeof(T), NR = NV * L;
  if (cols == NR) {
    tile<T, R, NV, Bytes>(a, a_row, a_col, b, c, ldc, kc, accumulate);
    return;
  }
  if constexpr (NV == 2) {
    if (cols == L) {
      tile<T, R, 1, Bytes, NR>(a, a_row, a_col, b, c, ldc, kc, accumulate);
      return;
    }
  }
  alignas(64) T buffer[R * NR];
  if (NV == 2 && cols < L) {
    tile<T, R, 1, Bytes, NR>(a, a_row, a_col, b, buffer, NR, kc, false);
  } else {
    tile<T, R, NV, Bytes>(a, a_row, a_col, b, buffer, NR, kc, false);
  }
  for (int r = 0; r < R; ++r) {
    for (int64_t j = 0; j < cols; ++j) {
      c[r * ldc + j] = (accumulate ? c[r * ldc + j] : T(0)) + buffer[r * NR + j];
    }
  }
}

// The last rows (fewer than a register block): a tile of exactly `rows` rows. Recursion, not a
// lambda over an index sequence: a lambda is a function of its own, compiled outside the ISA
// clone that calls it.
template <typename T, int R, int NV, int Bytes>
[[gnu::always_inline]] inline void last_rows(int64_t rows, const T* a, int64_t a_row, int64_t a_col,
                                             const T* b, T* c, int64_t ldc, int64_t kc,
                                             int64_t cols, bool accumulate) {
  if (rows == R) {
    column_tile<T, R, NV, Bytes>(a, a_row, a_col, b, c, ldc, kc, cols, accumulate);
  } else if constexpr (R > 1) {
    last_rows<T, R - 1, NV, Bytes>(rows, a, a_row, a_col, b, c, ldc, kc, cols, accumulate);
  }
}

// m[i0 : i0 + n_rows, k0 : k0 + kc] of an operand whose element (i, k) is at data[i * si + k * sk],
// into panels of P rows (i), [panel][k][P], zero-padded to P: b's columns are its i.
template <typename T, int64_t P>
[[gnu::always_inline]] inline void pack(const T* data, int64_t si, int64_t sk, int64_t i0,
                                        int64_t n_rows, int64_t k0, int64_t kc, T* out) {
  for (int64_t p = 0; p * P < n_rows; ++p) {
    const int64_t n = std::min(P, n_rows - p * P);
    const T* src = data + (i0 + p * P) * si + k0 * sk;
    T* panel = out + p * kc * P;
    if (si == 1 && n == P) {
      // A fixed count the compiler turns into vector moves (a memmove call per 16 values took
      // 40% of a 5x5 conv's GEMM time).
      for (int64_t k = 0; k < kc; ++k) {
        for (int64_t i = 0; i < P; ++i) panel[k * P + i] = src[k * sk + i];
      }
      continue;
    }
    // Line by line of the source (contiguous in k where sk == 1, as transposed weights are).
    for (int64_t k = 0; k < kc; ++k) std::fill(panel + k * P + n, panel + (k + 1) * P, T(0));
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t k = 0; k < kc; ++k) panel[k * P + i] = src[i * si + k * sk];
    }
  }
}

// The offset of the panels of columns [j, ...) and inner rows [pc, pc + kc) in a b packed whole:
// [pc block][panel][k][NR], N rounded up to whole panels.
inline int64_t packed_offset(int64_t pc, int64_t j, int64_t kc, int64_t padded_n) {
  return pc * padded_n + j * kc;
}

// c (+)= a x b, b given either as a strided matrix (packed here, block by block) or packed whole
// by pack_whole (prepacked != nullptr).
template <typename T, int MR, int NV, int Bytes>
[[gnu::always_inline]] inline void blocked_gemm(StridedMatrix<T> a, StridedMatrix<T> b,
                                                const T* prepacked, T* c, int64_t ldc, int64_t M,
                                                int64_t N, int64_t K, bool accumulate) {
  constexpr int64_t NR = NV * (Bytes / sizeof(T));
  constexpr int64_t nc_max = (kNc<T> + NR - 1) / NR * NR;
  if (K == 0) {
    if (!accumulate) {
      for (int64_t i = 0; i < M; ++i) std::fill(c + i * ldc, c + i * ldc + N, T(0));
    }
    return;
  }
  // One per thread, reused across calls: the engines call this thousands of times per conv.
  thread_local std::vector<T> buffer;
  if (!prepacked && buffer.size() < static_cast<size_t>(kKc * nc_max)) buffer.resize(kKc * nc_max);
  const int64_t padded_n = (N + NR - 1) / NR * NR;
  for (int64_t jc = 0; jc < N; jc += nc_max) {
    const int64_t nc = std::min(nc_max, N - jc);
    for (int64_t pc = 0; pc < K; pc += kKc) {
      const int64_t kc = std::min(kKc, K - pc);
      const T* panels = prepacked + packed_offset(pc, jc, kc, padded_n);
      if (!prepacked) {
        pack<T, NR>(b.data, b.col, b.row, jc, nc, pc, kc, buffer.data());
        panels = buffer.data();
      }
      const bool add = accumulate || pc > 0;
      for (int64_t ic = 0; ic < M; ic += kMc) {
        const int64_t mc = std::min(kMc, M - ic);
        for (int64_t j = 0; j < nc; j += NR) {
          const T* panel = panels + j * kc;
          const int64_t cols = std::min(NR, nc - j);
          const T* a_rows = a.data + ic * a.row + pc * a.col;
          T* c_rows = c + ic * ldc + jc + j;
          int64_t i = 0;
          for (; i + MR <= mc; i += MR) {
            column_tile<T, MR, NV, Bytes>(a_rows + i * a.row, a.row, a.col, panel, c_rows + i * ldc,
                                          ldc, kc, cols, add);
          }
          last_rows<T, MR - 1, NV, Bytes>(mc - i, a_rows + i * a.row, a.row, a.col, panel,
                                          c_rows + i * ldc, ldc, kc, cols, add);
        }
      }
    }
  }
}

// Register blocks: 8 rows x 2 vectors of 64 bytes under AVX-512 (16 of 32 registers accumulate),
// 6 x 2 of 32 bytes under AVX2 (12 of 16), as the Winograd micro-kernel (winograd_tiles.h).
template <typename T>
int64_t panel_columns() {
  return 2 * (wide_vector_registers() ? 64 : 32) / static_cast<int64_t>(sizeof(T));
}

CONVPOOL_CLONES void gemm_f32(StridedMatrix<float> a, StridedMatrix<float> b,
                              const float* prepacked, float* c, int64_t ldc, int64_t M, int64_t N,
                              int64_t K, bool accumulate) {
  if (wide_vector_registers()) {
    blocked_gemm<float, 8, 2, 64>(a, b, prepacked, c, ldc, M, N, K, accumulate);
  } else {
    blocked_gemm<float, 6, 2, 32>(a, b, prepacked, c, ldc, M, N, K, accumulate);
  }
}

CONVPOOL_CLONES void gemm_f64(StridedMatrix<double> a, StridedMatrix<double> b,
                              const double* prepacked, double* c, int64_t ldc, int64_t M, int64_t N,
                              int64_t K, bool accumulate) {
  if (wide_vector_registers()) {
    blocked_gemm<double, 8, 2, 64>(a, b, prepacked, c, ldc, M, N, K, accumulate);
  } else {
    blocked_gemm<double, 6, 2, 32>(a, b, prepacked, c, ldc, M, N, K, accumulate);
  }
}

void multiply(StridedMatrix<float> a, StridedMatrix<float> b, const float* prepacked, float* c,
              int64_t ldc, int64_t M, int64_t N, int64_t K, bool accumulate) {
  gemm_f32(a, b, prepacked, c, ldc, M, N, K, accumulate);
}
void multiply(StridedMatrix<double> a, StridedMatrix<double> b, const double* prepacked, double* c,
              int64_t ldc, int64_t M, int64_t N, int64_t K, bool accumulate) {
  gemm_f64(a, b, prepacked, c, ldc, M, N, K, accumulate);
}

enum class GemmKernel { kAuto, kBlas, kPacked };
std::atomic<GemmKernel> g_kernel{GemmKernel::kAuto};

constexpr struct {
  const char* name;
  GemmKernel kernel;
} kNames[] = {
    {"auto", GemmKernel::kAuto}, {"blas", GemmKernel::kBlas}, {"packed", GemmKernel::kPacked}};

}  // namespace

template <typename T>
void packed_gemm(StridedMatrix<T> a, StridedMatrix<T> b, T* c, int64_t ldc, int64_t M, int64_t N,
                 int64_t K, bool accumulate) {
  multiply(a, b, nullptr, c, ldc, M, N, K, accumulate);
}

template <typename T>
PackedMatrix<T>::PackedMatrix(StridedMatrix<T> b, int64_t K, int64_t N)
    : rows(K),
      cols(N),
      storage_(empty_output(
          {K * ((N + panel_columns<T>() - 1) / panel_columns<T>()) * panel_columns<T>()},
          at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value))) {
  const int64_t NR = panel_columns<T>();
  const int64_t padded_n = (N + NR - 1) / NR * NR;
  constexpr int64_t nc_max = kNc<T>;  // a multiple of every NR
  const int64_t k_blocks = (K + kKc - 1) / kKc, n_blocks = (N + nc_max - 1) / nc_max;
  // Both cores: a transposing copy of a 512 x 4608 weight takes milliseconds on one.
  at::parallel_for(0, k_blocks * n_blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block) {
      const int64_t pc = block / n_blocks * kKc, jc = block % n_blocks * nc_max;
      const int64_t kc = std::min(kKc, K - pc), nc = std::min(nc_max, N - jc);
      T* out = storage_.template mutable_data_ptr<T>() + packed_offset(pc, jc, kc, padded_n);
      if (NR == 16) {
        pack<T, 16>(b.data, b.col, b.row, jc, nc, pc, kc, out);
      } else if (NR == 32) {
        pack<T, 32>(b.data, b.col, b.row, jc, nc, pc, kc, out);
      } else {
        pack<T, 8>(b.data, b.col, b.row, jc, nc, pc, kc, out);
      }
    }
  });
}

template <typename T>
void packed_gemm(StridedMatrix<T> a, const PackedMatrix<T>& b, T* c, int64_t ldc, int64_t M,
                 bool accumulate) {
  multiply(a, StridedMatrix<T>{nullptr, 0, 0}, b.data(), c, ldc, M, b.cols, b.rows, accumulate);
}

template void packed_gemm(StridedMatrix<float>, StridedMatrix<float>, float*, int64_t, int64_t,
                          int64_t, int64_t, bool);
template void packed_gemm(StridedMatrix<double>, StridedMatrix<double>, double*, int64_t, int64_t,
                          int64_t, int64_t, bool);
template class PackedMatrix<float>;
template class PackedMatrix<double>;
template void packed_gemm(StridedMatrix<float>, const PackedMatrix<float>&, float*, int64_t,
                          int64_t, bool);
template void packed_gemm(StridedMatrix<double>, const PackedMatrix<double>&, double*, int64_t,
                          int64_t, bool);

void set_gemm_kernel(const std::string& name) {
  for (const auto& entry : kNames) {
    if (name == entry.name) {
      g_kernel = entry.kernel;
      return;
    }
  }
  TORCH_CHECK_VALUE(false, "set_gemm_kernel: unknown kernel '", name,
                    "'; expected one of 'auto', 'blas', 'packed'");
}

std::string gemm_kernel_name() {
  for (const auto& entry : kNames) {
    if (entry.kernel == g_kernel.load()) return entry.name;
  }
  return "auto";
}

bool packed_gemm_selected() {
  return g_kernel.load(std::memory_order_relaxed) == GemmKernel::kPacked;
}

bool blas_gemm_selected() { return g_kernel.load(std::memory_order_relaxed) == GemmKernel::kBlas; }

bool packed_gemm_preferred(int64_t weight_bytes) {
  const GemmKernel kernel = g_kernel.load(std::memory_order_relaxed);
  if (kernel != GemmKernel::kAuto) return kernel == GemmKernel::kPacked;
  static const bool intel = __builtin_cpu_is("intel");
  return !intel && wide_vector_registers() && weight_bytes <= kMaxColumnsWeightBytes;
}

int64_t packed_gemm_columns(int64_t cols, int64_t element_size) {
  const int64_t lanes = (wide_vector_registers() ? 64 : 32) / element_size, panel = 2 * lanes;
  const int64_t rest = cols % panel;
  return cols - rest + (rest == 0 ? 0 : rest <= lanes ? lanes : panel);
}

}  // namespace convpool::cpu
