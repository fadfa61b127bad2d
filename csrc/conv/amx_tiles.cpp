#include "amx_tiles.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define CONVPOOL_AMX_KERNELS 1
#endif

namespace convpool::cpu::amx_tiles {

RowGather plan_row_gather(const std::vector<int64_t>& offsets, int64_t length) {
  RowGather plan;
  const int64_t runs = static_cast<int64_t>(offsets.size()), total = runs * length;
  plan.steps = (total + kStepDepth - 1) / kStepDepth;
  std::vector<std::vector<std::pair<int64_t, uint32_t>>> steps(plan.steps);
  for (int64_t s = 0; s < plan.steps; ++s) {
    const int64_t lo = s * kStepDepth, hi = std::min(total, lo + kStepDepth);
    for (int64_t r = lo / length; r < runs && r * length < hi; ++r) {
      // Row positions [a, b) of run r in this step: lanes a - lo to b - lo; lane j reads
      // offsets[r] + lo + j - r * length.
      const int64_t a = std::max(lo, r * length), b = std::min(hi, (r + 1) * length);
      const uint64_t bits = ((uint64_t{1} << (b - a)) - 1) << (a - lo);
      steps[s].emplace_back(offsets[r] + lo - r * length, static_cast<uint32_t>(bits));
    }
    plan.pieces = std::max(plan.pieces, static_cast<int64_t>(steps[s].size()));
  }
  for (auto& step : steps) {
    // Padded with pieces that fill no lane (reading the pixel's first value).
    step.resize(plan.pieces, {0, 0});
    for (const auto& [offset, lanes] : step) {
      plan.offset.push_back(offset);
      plan.lanes.push_back(lanes);
    }
  }
  return plan;
}

#ifdef CONVPOOL_AMX_KERNELS
namespace {

using bf16 = c10::BFloat16;

// Compiled for AMX whatever the build flags; called only where available() is true.
#define CONVPOOL_AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw")))

// The 64-byte tile configuration of palette 1: every tile 16 rows of 64 bytes (16 float32 of c,
// 32 bfloat16 of a, 16 column pairs of b).
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t bytes_per_row[16] = {};
  uint8_t rows[16] = {};
};

TileConfig full_tiles() {
  TileConfig config;
  for (int t = 0; t < 8; ++t) {
    config.bytes_per_row[t] = 64;
    config.rows[t] = 16;
  }
  return config;
}

constexpr int64_t kTileColumns = 16;  // float32 columns of a tile of c

// Tiles 0-3: c (rows 0-15 / 16-31 x columns 0-15 / 16-31 of the block); 4, 5: a; 6, 7: b.
// kColumnTiles = 1 for a last block of 16 columns (tiles 0 and 2 only).
template <int kColumnTiles>
CONVPOOL_AMX_TARGET void block(int64_t N, int64_t lda, const bf16* a, const int64_t* offsets,
                               int64_t steps, const bf16* b, float* c, int64_t ldc) {
  const int64_t a_bytes = lda * int64_t{sizeof(bf16)}, b_bytes = 2 * N * int64_t{sizeof(bf16)};
  _tile_zero(0);
  _tile_zero(2);
  if constexpr (kColumnTiles == 2) {
    _tile_zero(1);
    _tile_zero(3);
  }
  for (int64_t s = 0; s < steps; ++s) {
    const bf16* as = a + offsets[s];
    // Step s is pair rows 16 s to 16 s + 15 of b, each 2 N values.
    const bf16* bs = b + s * kStepDepth * N;
    _tile_loadd(4, as, a_bytes);
    _tile_loadd(6, bs, b_bytes);
    _tile_dpbf16ps(0, 4, 6);
    _tile_loadd(5, as + 16 * lda, a_bytes);
    _tile_dpbf16ps(2, 5, 6);
    if constexpr (kColumnTiles == 2) {
      _tile_loadd(7, bs + 2 * kTileColumns, b_bytes);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(3, 5, 7);
    }
  }
  const int64_t c_bytes = ldc * int64_t{sizeof(float)};
  _tile_stored(0, c, c_bytes);
  _tile_stored(2, c + 16 * ldc, c_bytes);
  if constexpr (kColumnTiles == 2) {
    _tile_stored(1, c + kTileColumns, c_bytes);
    _tile_stored(3, c + 16 * ldc + kTileColumns, c_bytes);
  }
}

CONVPOOL_AMX_TARGET void reduce(int64_t M, int64_t N, int64_t lda, const bf16* a,
                                const int64_t* offsets, int64_t steps, const bf16* b, float* c,
                                int64_t ldc) {
  static const TileConfig config = full_tiles();
  _tile_loadconfig(&config);
  for (int64_t m = 0; m < M; m += kRowBlock) {
    for (int64_t n = 0; n < N; n += 2 * kTileColumns) {
      // Column n of b's pair rows is 2 * n values in.
      if (N - n >= 2 * kTileColumns) {
        block<2>(N, lda, a + m * lda, offsets, steps, b + 2 * n, c + m * ldc + n, ldc);
      } else {
        block<1>(N, lda, a + m * lda, offsets, steps, b + 2 * n, c + m * ldc + n, ldc);
      }
    }
  }
  _tile_release();
}

// kPieces: plan.pieces, fixed at compile time where small: a varying count per step cost a
// branch miss per step (the gather took 40 % of a 7x7 stem's forward).
template <int kPieces>
CONVPOOL_AMX_TARGET void gather(const bf16* image, const int64_t* pixels, int64_t M,
                                const RowGather& plan, bf16* out, int64_t ld) {
  const int64_t pieces = kPieces > 0 ? kPieces : plan.pieces;
  const int64_t* offset = plan.offset.data();
  const uint32_t* lanes = plan.lanes.data();
  for (int64_t i = 0; i < M; ++i) {
    const bf16* from = image + pixels[i];
    bf16* to = out + i * ld;
    for (int64_t s = 0; s < plan.steps; ++s) {
      __m512i v = _mm512_setzero_si512();
#pragma GCC unroll 4
      for (int64_t piece = s * pieces; piece < (s + 1) * pieces; ++piece) {
        // An unmasked load (it may read past the run: the image's slack), then a blend. The
        // empty asm keeps GCC from folding them into a merge-masked load, which would chain
        // each piece's load behind the previous one (a 7x7 stem's gather ran 1.6x slower).
        __m512i piece_values = _mm512_loadu_si512(from + offset[piece]);
        asm("" : "+v"(piece_values));
        v = _mm512_mask_mov_epi16(v, lanes[piece], piece_values);
      }
      _mm512_store_si512(to + s * kStepDepth, v);
    }
  }
}

bool tile_data_granted() {
  // ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA: Linux keeps the 8 KiB tile state out of a
  // process's context until it asks (idempotent; oneDNN asks the same).
  constexpr long kRequestPermission = 0x1023, kTileData = 18;
  return syscall(SYS_arch_prctl, kRequestPermission, kTileData) == 0;
}

}  // namespace

bool available() {
  static const bool ok = __builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-bf16") &&
                         tile_data_granted();
  return ok;
}

void batch_reduce(int64_t M, int64_t N, int64_t lda, const c10::BFloat16* a, const int64_t* offsets,
                  int64_t steps, const c10::BFloat16* b, float* c, int64_t ldc) {
  TORCH_INTERNAL_ASSERT(available(), "amx_tiles::batch_reduce needs AMX-BF16");
  TORCH_INTERNAL_ASSERT(N % kTileColumns == 0, "amx_tiles::batch_reduce: N (", N,
                        ") must be a multiple of 16");
  reduce(M, N, lda, a, offsets, steps, b, c, ldc);
}

void gather_rows(const c10::BFloat16* image, const int64_t* pixels, int64_t M,
                 const RowGather& plan, c10::BFloat16* out, int64_t ld) {
  TORCH_INTERNAL_ASSERT(available(), "amx_tiles::gather_rows needs AVX-512 (an AMX CPU)");
  switch (plan.pieces) {
    case 1:
      return gather<1>(image, pixels, M, plan, out, ld);
    case 2:
      return gather<2>(image, pixels, M, plan, out, ld);
    case 3:
      return gather<3>(image, pixels, M, plan, out, ld);
    default:
      return gather<0>(image, pixels, M, plan, out, ld);
  }
}

#else  // not x86-64 Linux GCC/Clang: never available, never called

bool available() { return false; }
void batch_reduce(int64_t, int64_t, int64_t, const c10::BFloat16*, const int64_t*, int64_t,
                  const c10::BFloat16*, float*, int64_t) {
  TORCH_INTERNAL_ASSERT(false, "amx_tiles::batch_reduce: no AMX kernels in this build");
}
void gather_rows(const c10::BFloat16*, const int64_t*, int64_t, const RowGather&, c10::BFloat16*,
                 int64_t) {
  TORCH_INTERNAL_ASSERT(false, "amx_tiles::gather_rows: no AMX kernels in this build");
}

#endif

}  // namespace convpool::cpu::amx_tiles
