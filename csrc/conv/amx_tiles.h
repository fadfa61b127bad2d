#pragma once
// A bfloat16 batch-reduce GEMM on AMX tiles for the implicit-GEMM convolutions of
// brgemm_conv_cpu.cpp: c = sum over steps s of a_s x b_s, the whole sum kept in the tile
// registers, stored once. ATen's cpublas::brgemm multiplies one pair per call and so loads and
// stores the float32 sums of c around every run of taps (3 times per output for a 3x3 conv), and
// packs its b at most 64 columns wide; here the 2 x 2 tiles of c stay in registers over all taps
// and channels (K = 576 for a 3x3 conv of 64 channels).
//
// a comes in steps of 32 values of the reduction (a channel block of one tap), each its own
// pointer, so a blocked image ([..., pixels, 32 channels]) feeds it with no copy; where a cannot
// be read in place, gather_rows builds its rows.
// b is packed as bf16_gemm::pack packs it ([K / 2][N][2], pairs of rows interleaved: the VNNI
// layout an AMX tile of b reads, 16 pairs of rows by 16 columns).
#include <c10/util/BFloat16.h>

#include <cstdint>
#include <vector>

namespace convpool::cpu::amx_tiles {

// Whether this CPU has AMX-BF16 and the kernel may use the tile registers (Linux grants the
// tile data state on request, once per process).
bool available();

// Rows of c one pass computes: the caller rounds M up to it, with a readable (and dropped) up to
// the rounded row.
constexpr int64_t kRowBlock = 32;
// bfloat16 of the reduction per step: one tile row of a, 64 bytes.
constexpr int64_t kStepDepth = 32;

// c [round_up(M, 32), N] (float32, row stride ldc) = sum over steps s of
// a[offsets[s] + i * lda + j] (i < M, j < 32) x b's rows 32 s to 32 s + 31, b [32 steps, N]
// packed. N a multiple of 16; lda and offsets in elements. Every row of a, b and c should start
// 64-byte aligned: tile rows that straddle two cache lines load about 6x slower (one core, in
// L1: 39 against 6 cycles per tile).
void batch_reduce(int64_t M, int64_t N, int64_t lda, const c10::BFloat16* a, const int64_t* offsets,
                  int64_t steps, const c10::BFloat16* b, float* c, int64_t ldc);

// How the a row of an output pixel is gathered where a cannot be read in place (a strided conv,
// few channels): runs of `length` values, run r from offsets[r] past the pixel's first value,
// one after another in the row, zero-filled to whole steps of kStepDepth. Each step of the row is
// built in a register from the pieces of runs it holds and stored whole, 64-byte aligned: stores
// of runs at their own, unaligned places split cache lines and took as long as the AMX products
// of a 7x7 stem. A piece's load reads 64 bytes whatever lanes it keeps: up to 31 values before
// or past its run, inside the padded image (its slack) where the runs are a conv's windows.
struct RowGather {
  std::vector<int64_t> offset;  // per piece: where its lane 0 reads, from the pixel's first value
  std::vector<uint32_t> lanes;  // per piece: the lanes of its step it fills
  int64_t steps = 0;
  int64_t pieces = 0;  // per step (steps with fewer hold pieces that fill no lane)
};
RowGather plan_row_gather(const std::vector<int64_t>& offsets, int64_t length);

// out [M, plan.steps * kStepDepth] (row stride ld, rows 64-byte aligned): row i gathered from the
// pixel at image + pixels[i].
void gather_rows(const c10::BFloat16* image, const int64_t* pixels, int64_t M,
                 const RowGather& plan, c10::BFloat16* out, int64_t ld);

}  // namespace convpool::cpu::amx_tiles
