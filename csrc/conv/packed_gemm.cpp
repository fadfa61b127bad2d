#include "packed_gemm.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "../common/isa_clones.h"
#include "../common/output_memory.h"
#include "channel_block_transpose.h"

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

// How the tiles read a's rows and write c's: strided (row i at data + i * row, its value k at
// k * col on), or by a table of row pointers (values contiguous), the indirect GEMM of the conv by
// taps (tap_gemm_cpu.h), whose rows are a tap's shifted windows scattered over the image.
template <typename T>
struct StridedRowsA {
  const T* data;
  int64_t row, col;
  [[gnu::always_inline]] T at(int r, int64_t k) const { return data[r * row + k * col]; }
  [[gnu::always_inline]] StridedRowsA from(int64_t i, int64_t k) const {
    return {data + i * row + k * col, row, col};
  }
};

template <typename T>
struct IndirectRowsA {
  const T* const* rows;
  int64_t k0;
  [[gnu::always_inline]] T at(int r, int64_t k) const { return rows[r][k0 + k]; }
  [[gnu::always_inline]] IndirectRowsA from(int64_t i, int64_t k) const {
    return {rows + i, k0 + k};
  }
};

template <typename T>
struct StridedRowsC {
  T* data;
  int64_t ldc;
  [[gnu::always_inline]] T* row(int r) const { return data + r * ldc; }
  [[gnu::always_inline]] StridedRowsC from(int64_t i, int64_t j) const {
    return {data + i * ldc + j, ldc};
  }
};

template <typename T>
struct IndirectRowsC {
  T* const* rows;
  int64_t j0;
  [[gnu::always_inline]] T* row(int r) const { return rows[r] + j0; }
  [[gnu::always_inline]] IndirectRowsC from(int64_t i, int64_t j) const {
    return {rows + i, j0 + j};
  }
};

// c[R, NV vectors] (+)= a[R, kc] x panel[kc][NV vectors] (panel rows `Ldb` apart: a narrower
// tile reads the first vectors of a panel): R x NV vector accumulators in registers, one
// broadcast of a and NV loads of the panel per step.
template <typename T, int R, int NV, int Bytes, int64_t Ldb = NV * Bytes / sizeof(T), typename A,
          typename C>
[[gnu::always_inline]] inline void tile(A a, const T* b, C c, int64_t kc, bool accumulate) {
  using V = typename VecOf<T, Bytes>::type;
  constexpr int64_t L = Bytes / sizeof(T);
  V acc[R][NV];
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < NV; ++v) acc[r][v] = V{};
  }
  for (int64_t k = 0; k < kc; ++k, b += Ldb) {
    V bv[NV];
    for (int v = 0; v < NV; ++v) __builtin_memcpy(&bv[v], b + v * L, sizeof(V));
    for (int r = 0; r < R; ++r) {
      const T s = a.at(r, k);
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
        __builtin_memcpy(&old, c.row(r) + v * L, sizeof(V));
        acc[r][v] += old;
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < NV; ++v) __builtin_memcpy(c.row(r) + v * L, &acc[r][v], sizeof(V));
  }
}

// As tile, for a panel with `cols` real columns: where that is fewer than NR (the packed panel
// holds zeros beyond), computed into a buffer of which only the real columns reach c.
// A panel of at most NR / 2 real columns runs a tile of one vector: computing the whole panel cost
// up to twice the products where outputs come in 8s and 16s (72, 40, 24 channels).
template <typename T, int R, int NV, int Bytes, typename A, typename C>
[[gnu::always_inline]] inline void column_tile(A a, const T* b, C c, int64_t kc, int64_t cols,
                                               bool accumulate) {
  constexpr int64_t L = Bytes / sizeof(T), NR = NV * L;
  if (cols == NR) {
    tile<T, R, NV, Bytes>(a, b, c, kc, accumulate);
    return;
  }
  if constexpr (NV == 2) {
    if (cols == L) {
      tile<T, R, 1, Bytes, NR>(a, b, c, kc, accumulate);
      return;
    }
  }
  alignas(64) T buffer[R * NR];
  const StridedRowsC<T> staged{buffer, NR};
  if (NV == 2 && cols < L) {
    tile<T, R, 1, Bytes, NR>(a, b, staged, kc, false);
  } else {
    tile<T, R, NV, Bytes>(a, b, staged, kc, false);
  }
  for (int r = 0; r < R; ++r) {
    T* out = c.row(r);
    for (int64_t j = 0; j < cols; ++j) {
      out[j] = (accumulate ? out[j] : T(0)) + buffer[r * NR + j];
    }
  }
}

// The last rows (fewer than a register block): a tile of exactly `rows` rows. Recursion, not a
// lambda over an index sequence: a lambda is a function of its own, compiled outside the ISA
// clone that calls it.
template <typename T, int R, int NV, int Bytes, typename A, typename C>
[[gnu::always_inline]] inline void last_rows(int64_t rows, A a, const T* b, C c, int64_t kc,
                                             int64_t cols, bool accumulate) {
  if (rows == R) {
    column_tile<T, R, NV, Bytes>(a, b, c, kc, cols, accumulate);
  } else if constexpr (R > 1) {
    last_rows<T, R - 1, NV, Bytes>(rows, a, b, c, kc, cols, accumulate);
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
    for (int64_t k = 0; k < kc; ++k) std::fill(panel + k * P + n, panel + (k + 1) * P, T(0));
    if (sk == 1) {
      // Contiguous in k (a channels_last weight's output channels, as the taps engine packs
      // them): a transpose in register tiles. Element by element it took two fifths of the GEMM
      // time of ASPP's dilation 12 on a 14x14 map (C960 -> 256, N2).
      transpose_matrix(src, si, n, kc, panel, P);
    } else {
      // Row k of the panel from nearby values (an NCHW weight's flipped taps: i steps over the
      // 9 taps, k over whole [C, taps] blocks); walking k inside jumped a block per value.
      for (int64_t k = 0; k < kc; ++k) {
        for (int64_t i = 0; i < n; ++i) panel[k * P + i] = src[i * si + k * sk];
      }
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
template <typename T, int MR, int NV, int Bytes, typename A, typename C>
[[gnu::always_inline]] inline void blocked_gemm(A a, StridedMatrix<T> b, const T* prepacked, C c,
                                                int64_t M, int64_t N, int64_t K, bool accumulate) {
  constexpr int64_t NR = NV * (Bytes / sizeof(T));
  constexpr int64_t nc_max = (kNc<T> + NR - 1) / NR * NR;
  if (K == 0) {
    if (!accumulate) {
      for (int64_t i = 0; i < M; ++i) std::fill(c.from(i, 0).row(0), c.from(i, 0).row(0) + N, T(0));
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
          int64_t i = 0;
          for (; i + MR <= mc; i += MR) {
            column_tile<T, MR, NV, Bytes>(a.from(ic + i, pc), panel, c.from(ic + i, jc + j), kc,
                                          cols, add);
          }
          last_rows<T, MR - 1, NV, Bytes>(mc - i, a.from(ic + i, pc), panel, c.from(ic + i, jc + j),
                                          kc, cols, add);
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

// One ISA-cloned entry per element type and row access (target_clones takes no templates).
#define CONVPOOL_GEMM_CLONE(T, A, C)                                                      \
  CONVPOOL_CLONES void gemm_clone(A<T> a, StridedMatrix<T> b, const T* prepacked, C<T> c, \
                                  int64_t M, int64_t N, int64_t K, bool accumulate) {     \
    if (wide_vector_registers()) {                                                        \
      blocked_gemm<T, 8, 2, 64>(a, b, prepacked, c, M, N, K, accumulate);                 \
    } else {                                                                              \
      blocked_gemm<T, 6, 2, 32>(a, b, prepacked, c, M, N, K, accumulate);                 \
    }                                                                                     \
  }
CONVPOOL_GEMM_CLONE(float, StridedRowsA, StridedRowsC)
CONVPOOL_GEMM_CLONE(double, StridedRowsA, StridedRowsC)
CONVPOOL_GEMM_CLONE(float, IndirectRowsA, IndirectRowsC)
CONVPOOL_GEMM_CLONE(double, IndirectRowsA, IndirectRowsC)
#undef CONVPOOL_GEMM_CLONE

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
  gemm_clone(StridedRowsA<T>{a.data, a.row, a.col}, b, nullptr, StridedRowsC<T>{c, ldc}, M, N, K,
             accumulate);
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
  gemm_clone(StridedRowsA<T>{a.data, a.row, a.col}, StridedMatrix<T>{nullptr, 0, 0}, b.data(),
             StridedRowsC<T>{c, ldc}, M, b.cols, b.rows, accumulate);
}

template <typename T>
void packed_gemm_rows(const T* const* a_rows, T* const* c_rows, int64_t M, const PackedMatrix<T>& b,
                      bool accumulate) {
  gemm_clone(IndirectRowsA<T>{a_rows, 0}, StridedMatrix<T>{nullptr, 0, 0}, b.data(),
             IndirectRowsC<T>{c_rows, 0}, M, b.cols, b.rows, accumulate);
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
template void packed_gemm_rows(const float* const*, float* const*, int64_t,
                               const PackedMatrix<float>&, bool);
template void packed_gemm_rows(const double* const*, double* const*, int64_t,
                               const PackedMatrix<double>&, bool);

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

namespace {
bool intel_cpu() {
  static const bool intel = __builtin_cpu_is("intel");
  return intel;
}
}  // namespace

bool packed_gemm_preferred(int64_t weight_bytes, int64_t pixels) {
  const GemmKernel kernel = g_kernel.load(std::memory_order_relaxed);
  if (kernel != GemmKernel::kAuto) return kernel == GemmKernel::kPacked;
  const bool intel = intel_cpu();
  const bool enough_rows =
      pixels >= kMinPackedPixelsIntel ||
      (pixels >= kMinPackedPixelsIntelSmallWeight && weight_bytes <= kSmallWeightBytes);
  return (!intel || enough_rows) && wide_vector_registers() &&
         weight_bytes <= kMaxColumnsWeightBytes;
}

int64_t packed_gemm_min_pointwise_channels() { return intel_cpu() ? 24 : 32; }

bool taps_gemm_allowed() {
  const GemmKernel kernel = g_kernel.load(std::memory_order_relaxed);
  if (kernel != GemmKernel::kAuto) return kernel == GemmKernel::kPacked;
  return wide_vector_registers();
}

int64_t packed_gemm_columns(int64_t cols, int64_t element_size) {
  const int64_t lanes = (wide_vector_registers() ? 64 : 32) / element_size, panel = 2 * lanes;
  const int64_t rest = cols % panel;
  return cols - rest + (rest == 0 ? 0 : rest <= lanes ? lanes : panel);
}

}  // namespace convpool::cpu
