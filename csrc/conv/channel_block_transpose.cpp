// 16 x 16 tiles transposed in AVX-512 registers (four rounds of shuffles, 64 for 256 floats) on
// the machines that have it, as four 8 x 8 tiles in AVX2 registers on the others: element by
// element, the transposes cost more than the depthwise arithmetic they feed (a third of an NCHW
// forward + backward in the profile).
#include "channel_block_transpose.h"

#include "../common/isa_clones.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
// GCC 12's AVX-512 unpack intrinsics start from _mm512_undefined_ps() and warn about it.
#pragma GCC diagnostic ignored "-Wuninitialized"
#define CONVPOOL_HAVE_AVX512_TILE 1
#endif

namespace convpool::cpu {
namespace {

constexpr int64_t kTile = 16;

template <typename T>
void transpose_scalar(const T* src, int64_t src_stride, int64_t rows, int64_t cols, T* dst,
                      int64_t dst_stride) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) dst[c * dst_stride + r] = src[r * src_stride + c];
  }
}

#ifdef CONVPOOL_HAVE_AVX512_TILE
// dst[c * dst_stride + r] = src[r * src_stride + c], r, c < 16.
__attribute__((target("avx512f"))) void tile16(const float* src, int64_t src_stride, float* dst,
                                               int64_t dst_stride) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * src_stride);
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  // r[4q + m]: in lane k, column 4k + m of rows 4q .. 4q + 3
  for (int q = 0; q < 4; ++q) {
    const __m512d a = _mm512_castps_pd(t[4 * q]), b = _mm512_castps_pd(t[4 * q + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * q + 2]), d = _mm512_castps_pd(t[4 * q + 3]);
    r[4 * q] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int m = 0; m < 4; ++m) {
    t[m] = _mm512_shuffle_f32x4(r[m], r[4 + m], 0x88);
    t[4 + m] = _mm512_shuffle_f32x4(r[m], r[4 + m], 0xdd);
    t[8 + m] = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0x88);
    t[12 + m] = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0xdd);
  }
  for (int m = 0; m < 4; ++m) {
    _mm512_storeu_ps(dst + m * dst_stride, _mm512_shuffle_f32x4(t[m], t[8 + m], 0x88));
    _mm512_storeu_ps(dst + (8 + m) * dst_stride, _mm512_shuffle_f32x4(t[m], t[8 + m], 0xdd));
    _mm512_storeu_ps(dst + (4 + m) * dst_stride, _mm512_shuffle_f32x4(t[4 + m], t[12 + m], 0x88));
    _mm512_storeu_ps(dst + (12 + m) * dst_stride, _mm512_shuffle_f32x4(t[4 + m], t[12 + m], 0xdd));
  }
}

// dst[c * dst_stride + r] = src[r * src_stride + c], r, c < 8.
__attribute__((target("avx2"))) void tile8(const float* src, int64_t src_stride, float* dst,
                                           int64_t dst_stride) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * src_stride);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  // r[4h + m]: per 128-bit half, column 4 * half + m of rows 4h .. 4h + 3
  for (int h = 0; h < 2; ++h) {
    r[4 * h] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
    r[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xee);
    r[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
    r[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xee);
  }
  for (int m = 0; m < 4; ++m) {
    _mm256_storeu_ps(dst + m * dst_stride, _mm256_permute2f128_ps(r[m], r[4 + m], 0x20));
    _mm256_storeu_ps(dst + (4 + m) * dst_stride, _mm256_permute2f128_ps(r[m], r[4 + m], 0x31));
  }
}

// The 16 x 16 tile as four 8 x 8 ones, on CPUs with AVX2 but not AVX-512 (no 64-byte registers).
__attribute__((target("avx2"))) void tile16_avx2(const float* src, int64_t src_stride, float* dst,
                                                 int64_t dst_stride) {
  for (int64_t i = 0; i < kTile; i += 8) {
    for (int64_t j = 0; j < kTile; j += 8) {
      tile8(src + i * src_stride + j, src_stride, dst + j * dst_stride + i, dst_stride);
    }
  }
}

// 16-bit values (bfloat16, float16): dst[c * dst_stride + r] = src[r * src_stride + c], r, c <
// 16, in four rounds of unpacks (pairs, quads, octets of rows) and a swap of 128-bit halves.
__attribute__((target("avx2"))) void tile16_16bit(const uint16_t* src, int64_t src_stride,
                                                  uint16_t* dst, int64_t dst_stride) {
  __m256i r[16], a[16], b[16], c[16];
  for (int i = 0; i < 16; ++i) {
    r[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i * src_stride));
  }
  // a[2i]: rows 2i, 2i + 1 interleaved, columns 0-3 | 8-11 (the two 128-bit halves); a[2i + 1]:
  // columns 4-7 | 12-15.
  for (int i = 0; i < 8; ++i) {
    a[2 * i] = _mm256_unpacklo_epi16(r[2 * i], r[2 * i + 1]);
    a[2 * i + 1] = _mm256_unpackhi_epi16(r[2 * i], r[2 * i + 1]);
  }
  // b[4q + m]: rows 4q to 4q + 3, columns 2m, 2m + 1 | 8 + 2m, 9 + 2m.
  for (int q = 0; q < 4; ++q) {
    b[4 * q] = _mm256_unpacklo_epi32(a[4 * q], a[4 * q + 2]);
    b[4 * q + 1] = _mm256_unpackhi_epi32(a[4 * q], a[4 * q + 2]);
    b[4 * q + 2] = _mm256_unpacklo_epi32(a[4 * q + 1], a[4 * q + 3]);
    b[4 * q + 3] = _mm256_unpackhi_epi32(a[4 * q + 1], a[4 * q + 3]);
  }
  // c[8o + k]: rows 8o to 8o + 7, column k | 8 + k.
  for (int o = 0; o < 2; ++o) {
    for (int m = 0; m < 4; ++m) {
      c[8 * o + 2 * m] = _mm256_unpacklo_epi64(b[8 * o + m], b[8 * o + 4 + m]);
      c[8 * o + 2 * m + 1] = _mm256_unpackhi_epi64(b[8 * o + m], b[8 * o + 4 + m]);
    }
  }
  for (int k = 0; k < 8; ++k) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + k * dst_stride),
                        _mm256_permute2x128_si256(c[k], c[8 + k], 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + (8 + k) * dst_stride),
                        _mm256_permute2x128_si256(c[k], c[8 + k], 0x31));
  }
}

bool has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}

// The widest tile transpose this CPU has, or null.
using Tile = void (*)(const float*, int64_t, float*, int64_t);
Tile tile_transpose() {
  if (wide_vector_registers()) return tile16;
  return has_avx2() ? tile16_avx2 : nullptr;
}
#endif

// The 16 x pixels matrix at src (rows src_stride apart) into dst (rows dst_stride apart),
// transposed; one side of both calls is the 16-wide block.
void transpose16(const float* src, int64_t src_stride, int64_t rows, int64_t cols, float* dst,
                 int64_t dst_stride, bool rows_are_pixels) {
  int64_t done = 0;
#ifdef CONVPOOL_HAVE_AVX512_TILE
  if (const Tile tile = tile_transpose()) {
    const int64_t pixels = rows_are_pixels ? rows : cols;
    for (; done + kTile <= pixels; done += kTile) {
      if (rows_are_pixels) {
        tile(src + done * src_stride, src_stride, dst + done, dst_stride);
      } else {
        tile(src + done, src_stride, dst + done * dst_stride, dst_stride);
      }
    }
  }
#endif
  if (rows_are_pixels) {
    transpose_scalar(src + done * src_stride, src_stride, rows - done, cols, dst + done,
                     dst_stride);
  } else {
    transpose_scalar(src + done, src_stride, rows, cols - done, dst + done * dst_stride,
                     dst_stride);
  }
}

// Whole tiles through `tile` (null: none), the edges element by element.
template <typename T, typename TileFn>
void transpose_in_tiles(TileFn tile, const T* src, int64_t src_stride, int64_t rows, int64_t cols,
                        T* dst, int64_t dst_stride) {
  int64_t full_rows = 0, full_cols = 0;
  if (tile) {
    full_rows = rows / kTile * kTile;
    full_cols = cols / kTile * kTile;
    for (int64_t r = 0; r < full_rows; r += kTile) {
      for (int64_t c = 0; c < full_cols; c += kTile) {
        tile(src + r * src_stride + c, src_stride, dst + c * dst_stride + r, dst_stride);
      }
    }
  }
  // The edges past whole tiles: the columns right of them, then the rows below.
  transpose_scalar(src + full_cols, src_stride, full_rows, cols - full_cols,
                   dst + full_cols * dst_stride, dst_stride);
  transpose_scalar(src + full_rows * src_stride, src_stride, rows - full_rows, cols,
                   dst + full_rows, dst_stride);
}

}  // namespace

void transpose_matrix(const float* src, int64_t src_stride, int64_t rows, int64_t cols, float* dst,
                      int64_t dst_stride) {
  void (*tile)(const float*, int64_t, float*, int64_t) = nullptr;
#ifdef CONVPOOL_HAVE_AVX512_TILE
  tile = tile_transpose();
#endif
  transpose_in_tiles(tile, src, src_stride, rows, cols, dst, dst_stride);
}

void transpose_matrix_16bit(const uint16_t* src, int64_t src_stride, int64_t rows, int64_t cols,
                            uint16_t* dst, int64_t dst_stride) {
  void (*tile)(const uint16_t*, int64_t, uint16_t*, int64_t) = nullptr;
#ifdef CONVPOOL_HAVE_AVX512_TILE
  if (has_avx2()) tile = tile16_16bit;
#endif
  transpose_in_tiles(tile, src, src_stride, rows, cols, dst, dst_stride);
}

void planes_to_block16(const float* planes, int64_t plane_stride, int64_t pixels, float* block) {
  transpose16(planes, plane_stride, kTile, pixels, block, kTile, /*rows_are_pixels=*/false);
}

void block16_to_planes(const float* block, int64_t pixels, float* planes, int64_t plane_stride) {
  transpose16(block, kTile, pixels, kTile, planes, plane_stride, /*rows_are_pixels=*/true);
}

}  // namespace convpool::cpu
