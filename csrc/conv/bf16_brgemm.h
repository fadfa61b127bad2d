#pragma once
// A bfloat16 GEMM micro-kernel for CPUs with AVX512-BF16 but no AMX (AMD Zen 4 and later): what
// ATen's cpublas::brgemm / cpublas::pack do on AMX, for the implicit-GEMM convolutions of
// brgemm_conv_cpu.cpp. vdpbf16ps multiplies pairs of bfloat16 and adds both products into a
// float32 lane, so b is packed with pairs of its rows interleaved (the VNNI layout) and a row of a
// gives one 32-bit pair per step, broadcast. Sums are float32, one chain per output in the order
// of k: no rounding to bfloat16 before the caller's.
#include <c10/util/BFloat16.h>

#include <cstdint>

namespace convpool::cpu::bf16_gemm {

// Whether this CPU runs vdpbf16ps.
bool available();

// b [K, N] (row stride ldb) -> packed [ceil(K / 2)][N][2]: rows 2i and 2i + 1 interleaved
// element by element (an odd K's last pair has a zero second row).
void pack(int64_t K, int64_t N, int64_t ldb, const c10::BFloat16* b, c10::BFloat16* packed);

// The packed size of a [K, N] b, in elements.
inline int64_t packed_numel(int64_t K, int64_t N) { return (K + 1) / 2 * 2 * N; }

// c [M, N] (float32, row stride ldc) = a [M, K] (row stride lda) x b, or += where `accumulate`,
// with b packed by pack(K, N, ...). N a multiple of 16, at most 64; K even.
void brgemm(int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldc, bool accumulate,
            const c10::BFloat16* a, const c10::BFloat16* packed_b, float* c);

// out[i] = in[i] rounded to nearest even, 16 at a time where vcvtneps2bf16 is available (which
// flushes float32 denormals to zero, as torch's oneDNN convolutions round).
void round_to_bfloat16(const float* in, int64_t n, c10::BFloat16* out);
// The same for `count` runs of n values, in_step and out_step apart (a band's pixels into a
// channels_last output).
void round_runs_to_bfloat16(const float* in, int64_t in_step, int64_t count, int64_t n,
                            c10::BFloat16* out, int64_t out_step);

}  // namespace convpool::cpu::bf16_gemm
