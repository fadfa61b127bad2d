#include "bf16_brgemm.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CONVPOOL_BF16_KERNELS 1
#endif

namespace convpool::cpu::bf16_gemm {

#ifdef CONVPOOL_BF16_KERNELS
namespace {

using bf16 = c10::BFloat16;

// Compiled for AVX512-BF16 whatever the build flags; called only where available() is true.
#define CONVPOOL_BF16_TARGET __attribute__((target("avx512f,avx512bf16")))

constexpr int64_t kLanes = 16;  // float32 lanes of a 64-byte vector

// c[R rows, NV vectors] (+)= a[R, K] x packed b: R x NV accumulators, per pair of k the NV vectors
// of b and one broadcast pair of a per row.
template <int R, int NV>
CONVPOOL_BF16_TARGET [[gnu::always_inline]] inline void tile(const bf16* a, int64_t lda,
                                                             const bf16* b, int64_t N, float* c,
                                                             int64_t ldc, int64_t K,
                                                             bool accumulate) {
  __m512 acc[R][NV];
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < NV; ++v) {
      acc[r][v] = accumulate ? _mm512_loadu_ps(c + r * ldc + v * kLanes) : _mm512_setzero_ps();
    }
  }
  for (int64_t k = 0; k < K; k += 2, b += 2 * N) {
    __m512bh bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = (__m512bh)_mm512_loadu_si512(b + v * 2 * kLanes);
    for (int r = 0; r < R; ++r) {
      int32_t pair;
      std::memcpy(&pair, a + r * lda + k, sizeof(pair));
      const __m512bh av = (__m512bh)_mm512_set1_epi32(pair);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(c + r * ldc + v * kLanes, acc[r][v]);
  }
}

// The last rows (fewer than a register block): a tile of exactly `rows` rows.
template <int R, int NV>
CONVPOOL_BF16_TARGET [[gnu::always_inline]] inline void last_rows(int64_t rows, const bf16* a,
                                                                  int64_t lda, const bf16* b,
                                                                  int64_t N, float* c, int64_t ldc,
                                                                  int64_t K, bool accumulate) {
  if (rows == R) {
    tile<R, NV>(a, lda, b, N, c, ldc, K, accumulate);
  } else if constexpr (R > 1) {
    last_rows<R - 1, NV>(rows, a, lda, b, N, c, ldc, K, accumulate);
  }
}

// 24 accumulators for 2-4 vectors of columns (of 32 registers: the rest hold b and the
// broadcast), 16 rows for one vector.
template <int NV>
constexpr int kRows = NV == 4   ? 6
                      : NV == 3 ? 8
                      : NV == 2 ? 12
                                : 16;

// The rows of packed b one pass over the row tiles reads: 16 KiB of it, which stays in L1 while
// the tiles pass (a C512 3x3 tap row is 1536 x 64, 192 KiB: read from L2 by every tile, the
// kernel ran at 60 % of its speed on 64 channels). Each tile's sums continue from c between
// passes, in the same order: the blocking changes no result.
constexpr int64_t kPanelBytes = 16 * 1024;

template <int NV>
CONVPOOL_BF16_TARGET void multiply(int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldc,
                                   bool accumulate, const bf16* a, const bf16* b, float* c) {
  constexpr int R = kRows<NV>;
  if (K == 0 && !accumulate) {
    for (int64_t i = 0; i < M; ++i) std::fill(c + i * ldc, c + i * ldc + N, 0.0f);
  }
  const int64_t kc_max = std::max<int64_t>(2, kPanelBytes / (N * int64_t{sizeof(bf16)}) / 2 * 2);
  for (int64_t k0 = 0; k0 < K; k0 += kc_max) {
    const int64_t kc = std::min(kc_max, K - k0);
    const bf16* ak = a + k0;
    const bf16* bk = b + k0 * N;
    const bool add = accumulate || k0 > 0;
    int64_t i = 0;
    for (; i + R <= M; i += R) tile<R, NV>(ak + i * lda, lda, bk, N, c + i * ldc, ldc, kc, add);
    last_rows<R - 1, NV>(M - i, ak + i * lda, lda, bk, N, c + i * ldc, ldc, kc, add);
  }
}

CONVPOOL_BF16_TARGET void pack_pairs(int64_t K, int64_t N, int64_t ldb, const bf16* b,
                                     bf16* packed) {
  for (int64_t k = 0; k < K; k += 2) {
    const bf16* even = b + k * ldb;
    const bf16* odd = k + 1 < K ? even + ldb : nullptr;
    bf16* out = packed + k * N;
    int64_t n = 0;
    for (; n + kLanes <= N; n += kLanes) {
      const __m512i lo =
          _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(even + n)));
      const __m512i hi =
          odd ? _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(odd + n)))
              : _mm512_setzero_si512();
      _mm512_storeu_si512(out + 2 * n, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
    }
    for (; n < N; ++n) {
      out[2 * n] = even[n];
      out[2 * n + 1] = odd ? odd[n] : bf16(0);
    }
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void round_runs(
    const float* in, int64_t in_step, int64_t count, int64_t n, bf16* out, int64_t out_step) {
  const __mmask16 tail = static_cast<__mmask16>((1u << (n % kLanes)) - 1);
  for (int64_t c = 0; c < count; ++c, in += in_step, out += out_step) {
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
      const __m256bh v = _mm512_cvtneps_pbh(_mm512_loadu_ps(in + i));
      std::memcpy(out + i, &v, sizeof(v));
    }
    if (tail) {
      const __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(tail, in + i));
      _mm256_mask_storeu_epi16(out + i, tail, (__m256i)v);
    }
  }
}

}  // namespace

void round_runs_to_bfloat16(const float* in, int64_t in_step, int64_t count, int64_t n,
                            c10::BFloat16* out, int64_t out_step) {
  if (available()) return round_runs(in, in_step, count, n, out, out_step);
  for (int64_t c = 0; c < count; ++c) {
    for (int64_t i = 0; i < n; ++i) out[c * out_step + i] = c10::BFloat16(in[c * in_step + i]);
  }
}

bool available() {
  static const bool has = __builtin_cpu_supports("avx512bf16");
  return has;
}

void pack(int64_t K, int64_t N, int64_t ldb, const c10::BFloat16* b, c10::BFloat16* packed) {
  TORCH_INTERNAL_ASSERT(available(), "bf16_gemm::pack needs AVX512-BF16");
  pack_pairs(K, N, ldb, b, packed);
}

void brgemm(int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldc, bool accumulate,
            const c10::BFloat16* a, const c10::BFloat16* packed_b, float* c) {
  TORCH_INTERNAL_ASSERT(available(), "bf16_gemm::brgemm needs AVX512-BF16");
  TORCH_INTERNAL_ASSERT(N % kLanes == 0 && N <= 4 * kLanes && K % 2 == 0, "bf16_gemm::brgemm: N (",
                        N, ") must be 16, 32, 48 or 64, K (", K, ") even");
  switch (N / kLanes) {
    case 1:
      return multiply<1>(M, N, K, lda, ldc, accumulate, a, packed_b, c);
    case 2:
      return multiply<2>(M, N, K, lda, ldc, accumulate, a, packed_b, c);
    case 3:
      return multiply<3>(M, N, K, lda, ldc, accumulate, a, packed_b, c);
    default:
      return multiply<4>(M, N, K, lda, ldc, accumulate, a, packed_b, c);
  }
}

#else  // not x86-64 GCC/Clang: never available, never called

bool available() { return false; }
void round_runs_to_bfloat16(const float* in, int64_t in_step, int64_t count, int64_t n,
                            c10::BFloat16* out, int64_t out_step) {
  for (int64_t c = 0; c < count; ++c) {
    for (int64_t i = 0; i < n; ++i) out[c * out_step + i] = c10::BFloat16(in[c * in_step + i]);
  }
}
void pack(int64_t, int64_t, int64_t, const c10::BFloat16*, c10::BFloat16*) {
  TORCH_INTERNAL_ASSERT(false, "bf16_gemm::pack: no AVX512-BF16 kernels in this build");
}
void brgemm(int64_t, int64_t, int64_t, int64_t, int64_t, bool, const c10::BFloat16*,
            const c10::BFloat16*, float*) {
  TORCH_INTERNAL_ASSERT(false, "bf16_gemm::brgemm: no AVX512-BF16 kernels in this build");
}

#endif

void round_to_bfloat16(const float* in, int64_t n, c10::BFloat16* out) {
  round_runs_to_bfloat16(in, n, 1, n, out, n);
}

}  // namespace convpool::cpu::bf16_gemm
