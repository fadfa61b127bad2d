#include "gathered_weight_grad.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/native/CPUBlas.h>

#include <algorithm>
#include <vector>

#include "amx_tiles.h"
#include "bf16_brgemm.h"
#include "packed_gemm.h"

#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#include <immintrin.h>
#define CONVPOOL_GATHER_KERNELS 1
#endif

namespace convpool::cpu {
namespace {

using bf16 = c10::BFloat16;

constexpr int64_t kStep = amx_tiles::kStepDepth;  // pixels per step
constexpr int64_t kChunkSteps = 64;               // steps per partial sum
// Channels per group up to which it pays. Beyond, the GEMM engine: each 32 x 32 block of c
// streams a chunk's a and b from L2 (3x3 stride 2 C128 -> 256 28x28 N8 channels_last 1.3 ->
// 2.6 ms, C256 -> 512 14x14 1.3 -> 8.5); a strided 1x1 is one plain GEMM there (C64 -> 128
// 56x56 0.7 against 1.0).
constexpr int64_t kMaxChannels = 64;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

template <typename T>
T* allocate(at::Tensor& holder, int64_t numel) {
  holder = at::empty({numel}, at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
  return holder.data_ptr<T>();
}

// The input zero-padded to the extent the taps reach, each padded line split by stride phase,
// channels planar: value (n, pd, ph, c, pw) at line (n, pd, ph) * C * S * Wq + c * S * Wq +
// (pw % S) * Wq + pw / S, S the stride along W.
struct PhaseLines {
  at::Tensor storage;
  const bf16* data;
  int64_t dims[kSpatialDims];  // Dp, Hp, Wp
  int64_t S, Wq;
  int64_t channel_stride() const { return S * Wq; }
};

PhaseLines phase_lines(const bf16* x, bool x_cl, const ConvGeometry& g, int64_t N) {
  PhaseLines p;
  for (int d = 0; d < kSpatialDims; ++d) {
    p.dims[d] = (g.grid[d] - 1) * g.stride[d] + (g.kernel[d] - 1) * g.dilation[d] + 1;
  }
  const int64_t C = g.channels, Dp = p.dims[0], Hp = p.dims[1], Wp = p.dims[2];
  p.S = g.stride[2];
  p.Wq = ceil_div(Wp, p.S);
  const int64_t per_line = C * p.channel_stride();
  bf16* out = allocate<bf16>(p.storage, N * Dp * Hp * per_line);
  p.data = out;
  const int64_t D = g.image[0], H = g.image[1], W = g.image[2];
  const int64_t w_lo = std::clamp<int64_t>(g.pad[2], 0, Wp);
  const int64_t w_hi = std::clamp<int64_t>(W + g.pad[2], w_lo, Wp);
  at::parallel_for(0, N * Dp * Hp, 8, [&](int64_t begin, int64_t end) {
    for (int64_t line = begin; line < end; ++line) {
      const int64_t ph = line % Hp, pd = line / Hp % Dp, n = line / (Hp * Dp);
      const int64_t id = pd - g.pad[0], ih = ph - g.pad[1];
      bf16* to = out + line * per_line;
      std::fill(to, to + per_line, bf16(0));
      if (id < 0 || id >= D || ih < 0 || ih >= H) continue;
      if (x_cl) {
        const bf16* from = x + ((n * D + id) * H + ih) * W * C;
        for (int64_t pw = w_lo; pw < w_hi; ++pw) {
          const bf16* pixel = from + (pw - g.pad[2]) * C;
          bf16* at = to + pw % p.S * p.Wq + pw / p.S;
          for (int64_t c = 0; c < C; ++c) at[c * p.channel_stride()] = pixel[c];
        }
      } else {
        for (int64_t c = 0; c < C; ++c) {
          const bf16* from = x + (((n * C + c) * D + id) * H + ih) * W - g.pad[2];
          bf16* line_c = to + c * p.channel_stride();
          for (int64_t pw = w_lo; pw < w_hi; ++pw) line_c[pw % p.S * p.Wq + pw / p.S] = from[pw];
        }
      }
    }
  });
  return p;
}

#ifdef CONVPOOL_GATHER_KERNELS
// a [rows][32]: row r = the 32 values at base + offsets[r], lanes from `valid` on zero.
__attribute__((target("avx512f,avx512bw"))) void gather_block(const bf16* base,
                                                              const int64_t* offsets, int64_t rows,
                                                              int64_t valid, bf16* a) {
  const __mmask32 mask = valid >= kStep ? ~__mmask32{0} : (__mmask32{1} << valid) - 1;
  for (int64_t r = 0; r < rows; ++r) {
    _mm512_store_si512(a + r * kStep, _mm512_maskz_loadu_epi16(mask, base + offsets[r]));
  }
}
#else
void gather_block(const bf16* base, const int64_t* offsets, int64_t rows, int64_t valid, bf16* a) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < kStep; ++j) a[r * kStep + j] = j < valid ? base[offsets[r] + j] : 0;
  }
}
#endif

}  // namespace

bool gathered_weight_grad_applies(const ConvGeometry& g) {
  if (!amx_tiles::available() || !bf16_gemm::available() || packed_gemm_selected() ||
      blas_gemm_selected()) {
    return false;
  }
  bool strided = false;
  for (int d = 0; d < kSpatialDims; ++d) strided |= g.stride[d] != 1;
  return strided && g.kernel_numel() > 1 && g.channels / g.groups <= kMaxChannels;
}

void gathered_weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                          const at::Tensor& grad_weight, const ConvGeometry& g) {
  const int64_t N = input.size(0), K = grad_output.size(1), G = g.groups;
  const int64_t cg = g.channels / G, kg = K / G, taps = g.kernel_numel();
  const int64_t R = taps * cg, Rp = round_up(R, amx_tiles::kRowBlock);
  const int64_t columns = round_up(kg, 16);
  const int64_t OD = g.grid[0], OH = g.grid[1], OW = g.grid[2], grid = g.grid_numel();
  const int64_t line_blocks = ceil_div(OW, kStep), blocks = N * OD * OH * line_blocks;
  const int64_t chunks = ceil_div(blocks, kChunkSteps);
  const bool cl = g.channels_last;
  const bf16* go = grad_output.const_data_ptr<bf16>();
  const PhaseLines p = phase_lines(input.const_data_ptr<bf16>(), cl, g, N);
  const int64_t Hp = p.dims[1], cs = p.channel_stride();
  // Window element r = (tap, channel c of group gi): its value for a block's first pixel, from
  // the block's tap-(0, 0, 0) line and position (gi's channel 0).
  std::vector<int64_t> row_offset(R);
  for (int64_t tap = 0; tap < taps; ++tap) {
    int64_t kd, kh, kw;
    split_tap(g, tap, kd, kh, kw);
    const int64_t w = kw * g.dilation[2];
    const int64_t line = (kd * g.dilation[0] * Hp + kh * g.dilation[1]) * g.channels * cs;
    for (int64_t c = 0; c < cg; ++c) {
      row_offset[tap * cg + c] = line + c * cs + w % p.S * p.Wq + w / p.S;
    }
  }
  at::Tensor partial_storage;
  float* partial = allocate<float>(partial_storage, G * chunks * Rp * columns);
  at::parallel_for(0, G * chunks, 1, [&](int64_t begin, int64_t end) {
    at::Tensor a_storage, b_storage;
    bf16* a = allocate<bf16>(a_storage, kChunkSteps * Rp * kStep);
    bf16* b = allocate<bf16>(b_storage, kChunkSteps * kStep * columns);
    // Rows past R stay zero.
    std::fill(a, a + kChunkSteps * Rp * kStep, bf16(0));
    std::vector<bf16> plain(kStep * columns);
    std::vector<int64_t> offsets(kChunkSteps);
    for (int64_t s = 0; s < kChunkSteps; ++s) offsets[s] = s * Rp * kStep;
#ifdef CPUBLAS_BRGEMM_BF16BF16F32
    // ATen's brgemm keeps its tile configuration per thread: ours replaces it.
    at::native::cpublas::brgemm_release();
#endif
    for (int64_t t = begin; t < end; ++t) {
      const int64_t chunk = t % chunks, gi = t / chunks;
      const int64_t b0 = chunk * kChunkSteps, b1 = std::min(blocks, b0 + kChunkSteps);
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t wb = blk % line_blocks, oh = blk / line_blocks % OH;
        const int64_t od = blk / (line_blocks * OH) % OD, n = blk / (line_blocks * OH * OD);
        const int64_t ow0 = wb * kStep, valid = std::min(kStep, OW - ow0);
        const int64_t line = (n * p.dims[0] + od * g.stride[0]) * Hp + oh * g.stride[1];
        gather_block(p.data + line * g.channels * cs + gi * cg * cs + ow0, row_offset.data(), R,
                     valid, a + (blk - b0) * Rp * kStep);
        std::fill(plain.begin(), plain.end(), bf16(0));
        const int64_t pixel = (od * OH + oh) * OW + ow0;
        for (int64_t j = 0; j < valid && cl; ++j) {
          std::copy_n(go + (n * grid + pixel + j) * K + gi * kg, kg, plain.data() + j * columns);
        }
        for (int64_t k = 0; k < kg && !cl; ++k) {
          const bf16* from = go + (n * K + gi * kg + k) * grid + pixel;
          for (int64_t j = 0; j < valid; ++j) plain[j * columns + k] = from[j];
        }
        bf16_gemm::pack(kStep, columns, columns, plain.data(), b + (blk - b0) * kStep * columns);
      }
      amx_tiles::batch_reduce(Rp, columns, kStep, a, offsets.data(), b1 - b0, b,
                              partial + t * Rp * columns, columns);
    }
  });
  bf16* gw = grad_weight.data_ptr<bf16>();
  at::parallel_for(0, G * R, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> sum(columns);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t r = i % R, gi = i / R, tap = r / cg, c = r % cg;
      std::fill(sum.begin(), sum.end(), 0.0f);
      for (int64_t chunk = 0; chunk < chunks; ++chunk) {
        const float* from = partial + ((gi * chunks + chunk) * Rp + r) * columns;
        for (int64_t k = 0; k < columns; ++k) sum[k] += from[k];
      }
      for (int64_t k = 0; k < kg; ++k) {
        const int64_t kk = gi * kg + k;
        gw[cl ? (kk * taps + tap) * cg + c : (kk * cg + c) * taps + tap] = bf16(sum[k]);
      }
    }
  });
}

}  // namespace convpool::cpu
