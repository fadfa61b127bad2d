#include "amx_tiles.h"

#include <c10/util/Exception.h>

#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define CONVPOOL_AMX_KERNELS 1
#endif

namespace convpool::cpu::amx_tiles {

#ifdef CONVPOOL_AMX_KERNELS
namespace {

using bf16 = c10::BFloat16;

// Compiled for AMX whatever the build flags; called only where available() is true.
#define CONVPOOL_AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f")))

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

#else  // not x86-64 Linux GCC/Clang: never available, never called

bool available() { return false; }
void batch_reduce(int64_t, int64_t, int64_t, const c10::BFloat16*, const int64_t*, int64_t,
                  const c10::BFloat16*, float*, int64_t) {
  TORCH_INTERNAL_ASSERT(false, "amx_tiles::batch_reduce: no AMX kernels in this build");
}

#endif

}  // namespace convpool::cpu::amx_tiles
