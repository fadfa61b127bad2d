#include "brgemm_conv_cpu.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/native/CPUBlas.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../common/short_copy.h"
#include "amx_tiles.h"
#include "bf16_brgemm.h"
#include "blocked_transpose.h"
#include "channels_last_staging.h"
#include "conv_phases.h"
#include "gathered_weight_grad.h"
#include "gemm_conv_cpu.h"
#include "packed_gemm.h"

namespace convpool::cpu {
namespace {

using bf16 = c10::BFloat16;

// Output pixels (rows of A) per micro-kernel call: 8 AMX tiles of 16 rows; the float32
// accumulator [rows, columns] stays in L1/L2.
constexpr int64_t kMaxRows = 128;
// Output channels per packed weight panel: a panel of every tap stays in L2 while the pixel
// blocks stream past it.
constexpr int64_t kMaxColumns = 64;
// AMX tiles are 16 columns wide: panels are padded to a multiple (zero weights).
constexpr int64_t kTile = 16;

// The micro-kernels' operands and sums live in c10's allocations, 64-byte aligned: an AMX tile
// whose rows straddle two cache lines loads about 6x slower (16 rows of 64 bytes: 6 against 39
// cycles, one core).
template <typename T>
T* aligned(at::Tensor& holder, int64_t numel) {
  holder = at::empty({numel}, at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
  return holder.data_ptr<T>();
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

bool amx_available() {
#ifdef CPUBLAS_BRGEMM_BF16BF16F32
  static const bool available = at::native::cpublas::could_pack(at::kBFloat16);
  return available;
#else
  return false;
#endif
}

// Which micro-kernel multiplies: ATen's brgemm on AMX, else ours on AVX512-BF16 (bf16_brgemm.h),
// else none (the GEMM engine computes the conv). torch_convpool.testing.gemm_kernel("packed")
// takes ours on an AMX CPU too, "blas" leaves a CPU without AMX to the engine's at::mm. kTiles,
// our AMX batch-reduce (amx_tiles.h), is what the forward takes on AMX where its reduction comes
// in whole tiles (forward_kernel).
enum class MicroKernel { kNone, kAmx, kTiles, kVector };

MicroKernel micro_kernel() {
  if (amx_available() && !packed_gemm_selected()) return MicroKernel::kAmx;
  if (bf16_gemm::available() && !blas_gemm_selected()) return MicroKernel::kVector;
  return MicroKernel::kNone;
}

// plain [K, N] (row stride N) -> the micro-kernel's packed b.
void pack_panel(MicroKernel mk, int64_t K, int64_t N, const bf16* plain, bf16* packed) {
#ifdef CPUBLAS_BRGEMM_BF16BF16F32
  if (mk == MicroKernel::kAmx) {
    at::native::cpublas::pack(K, N, N, N, at::kBFloat16, at::kBFloat16, plain, packed);
    return;
  }
#endif
  bf16_gemm::pack(K, N, N, plain, packed);
}

// c [M, N] (float32, row stride N) (+)= a [M, K] (row stride lda) x packed b.
void multiply(MicroKernel mk, int64_t M, int64_t N, int64_t K, int64_t lda, bool accumulate,
              const bf16* a, const bf16* b, float* c) {
#ifdef CPUBLAS_BRGEMM_BF16BF16F32
  if (mk == MicroKernel::kAmx) {
    at::native::cpublas::brgemm(M, N, K, lda, N, N, accumulate, a, b, c);
    return;
  }
#endif
  bf16_gemm::brgemm(M, N, K, lda, N, accumulate, a, b, c);
}

// Ends a thread's run of AMX calls (its tile configuration).
void release(MicroKernel mk) {
#ifdef CPUBLAS_BRGEMM_BF16BF16F32
  if (mk == MicroKernel::kAmx) at::native::cpublas::brgemm_release();
#else
  (void)mk;
#endif
}

// The conv input, zero-padded to the extent the taps reach, [N, G, CB, Dp, Hp, Wp, B]: the
// group's channels rounded up to even (Cp) in CB blocks of B (one block of Cp, or for our AMX
// tiles blocks of 32, whose tile rows of a are then 64 contiguous bytes).
struct PaddedImage {
  at::Tensor storage;
  const bf16* data;
  int64_t dims[kSpatialDims];
  int64_t channels;  // Cp
  int64_t block;     // B
  int64_t blocks() const { return channels / block; }
  int64_t plane() const { return dims[1] * dims[2]; }
  int64_t volume() const { return dims[0] * dims[1] * dims[2]; }
};

// block: B, a divisor of the group's channel count, or 0 for one block. even: Cp rounded up to
// even (not for gathered rows, which pair values wherever they fall).
PaddedImage pad_image(const bf16* x, bool x_cl, const ConvGeometry& g, int64_t N, int64_t block,
                      bool even = true) {
  PaddedImage p;
  const int64_t C = g.channels, G = g.groups, cg = C / G, Cp = even ? round_up(cg, 2) : cg;
  for (int d = 0; d < kSpatialDims; ++d) {
    p.dims[d] = (g.grid[d] - 1) * g.stride[d] + (g.kernel[d] - 1) * g.dilation[d] + 1;
  }
  p.channels = Cp;
  p.block = block > 0 ? block : Cp;
  const int64_t B = p.block, CB = p.blocks();
  const int64_t Wp = p.dims[2], D = g.image[0], H = g.image[1], W = g.image[2];
  const int64_t lines = N * G * CB * p.dims[0] * p.dims[1];
  // A few values of slack: a virtual block may read up to a line past the last pixel it keeps,
  // and AMX tiles compute whole blocks of 32 rows: up to 31 more.
  const int64_t slack = (Wp + amx_tiles::kRowBlock) * B;
  p.storage = at::empty({lines * Wp * B + slack}, at::TensorOptions().dtype(at::kBFloat16));
  bf16* out = p.storage.data_ptr<bf16>();
  std::fill(out + lines * Wp * B, out + lines * Wp * B + slack, bf16(0));
  p.data = out;
  // Image columns iw = pw - pad land at pw in [w_lo, w_hi).
  const int64_t w_lo = std::clamp<int64_t>(g.pad[2], 0, Wp);
  const int64_t w_hi = std::clamp<int64_t>(W + g.pad[2], w_lo, Wp);
  at::parallel_for(0, lines, 16, [&](int64_t begin, int64_t end) {
    for (int64_t line = begin; line < end; ++line) {
      const int64_t ph = line % p.dims[1], pd = line / p.dims[1] % p.dims[0];
      const int64_t cb = line / (p.dims[0] * p.dims[1]) % CB;
      const int64_t gi = line / (p.dims[0] * p.dims[1] * CB) % G;
      const int64_t n = line / (p.dims[0] * p.dims[1] * CB * G);
      const int64_t id = pd - g.pad[0], ih = ph - g.pad[1];
      bf16* row = out + line * Wp * B;
      if (id < 0 || id >= D || ih < 0 || ih >= H || w_lo == w_hi) {
        std::fill(row, row + Wp * B, bf16(0));
        continue;
      }
      std::fill(row, row + w_lo * B, bf16(0));
      std::fill(row + w_hi * B, row + Wp * B, bf16(0));
      const int64_t iw0 = w_lo - g.pad[2], width = w_hi - w_lo;
      // The block's channels of the image, the last block's odd one aside.
      const int64_t c0 = gi * cg + cb * B, count = std::min(B, cg - cb * B);
      bf16* dst = row + w_lo * B;
      if (x_cl) {
        const bf16* src = x + (((n * D + id) * H + ih) * W + iw0) * C + c0;
        if (count == B && B == C) {
          std::memcpy(dst, src, width * B * sizeof(bf16));
        } else {
          for (int64_t w = 0; w < width; ++w) std::copy_n(src + w * C, count, dst + w * B);
        }
      } else {
        const int64_t volume = D * H * W;
        const bf16* src = x + (n * C + c0) * volume + (id * H + ih) * W + iw0;
        blocked_transpose(src, volume, int64_t{1}, count, width, dst, B, int64_t{1});
      }
      if (count != B) {
        for (int64_t w = 0; w < width; ++w) dst[w * B + count] = bf16(0);
      }
    }
  });
  return p;
}

// The runs of taps one micro-kernel call covers: every (kd, kh) with its KW taps side by side
// (contiguous in the padded image when there is no dilation along W), else every single tap.
struct TapRuns {
  std::vector<int64_t> offset;  // in padded pixels, from the block's tap-(0,0,0) pixel
  std::vector<int64_t> first;   // the run's first tap (flat kd, kh, kw)
  int64_t width;                // taps per run
};

TapRuns tap_runs(const ConvGeometry& g, const PaddedImage& p) {
  TapRuns runs;
  const int64_t KW = g.kernel[2];
  runs.width = g.dilation[2] == 1 ? KW : 1;
  for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
    for (int64_t kh = 0; kh < g.kernel[1]; ++kh) {
      for (int64_t kw = 0; kw < KW; kw += runs.width) {
        runs.offset.push_back((kd * g.dilation[0] * p.dims[1] + kh * g.dilation[1]) * p.dims[2] +
                              kw * g.dilation[2]);
        runs.first.push_back((kd * g.kernel[1] + kh) * KW + kw);
      }
    }
  }
  return runs;
}

// The weight [K, cg, taps] (contiguous) as packed panels, one per (group, column block, run):
// rows (tap of the run, channel < Cp), columns the block's output channels padded to kTile.
struct PackedWeight {
  at::Tensor storage;
  bf16* data;
  int64_t columns, blocks, run_rows, panel_numel, runs;
  const bf16* panel(int64_t gi, int64_t block, int64_t run) const {
    return data + ((gi * blocks + block) * runs + run) * panel_numel;
  }
};

// Where a conv's weight lies: element (k, c, t) (output channel k < kg and input channel c < cg
// of group gi, tap t) at at(gi, k, c, t). Read in place: a plain weight, a channels_last one (a
// channels_last model's, also under autocast), or a conv_transpose's weight read transposed and
// flipped as the stride-1 input gradient's conv. A channels_last weight had gone through a
// contiguous copy and a transpose back, and conv_transpose weights through torch's flip and
// transpose: bfloat16 3x3 N8 channels_last forward, ms: C256 14x14 1.6 -> 1.15, C128 28x28
// 1.27 -> 1.17; resnet18 N8 channels_last under autocast 49.1 -> 47.3 inference, 184 -> 173
// training step.
struct WeightView {
  const bf16* base;
  int64_t g_step, k_step, c_step, t_step;
  const bf16* at(int64_t gi, int64_t k, int64_t c, int64_t t) const {
    return base + gi * g_step + k * k_step + c * c_step + t * t_step;
  }
};

// w [K, cg, taps] (w_cl: [K, taps, cg]) of a conv.
WeightView conv_weight(const bf16* w, bool w_cl, int64_t kg, int64_t cg, int64_t taps) {
  return {w, kg * cg * taps, cg * taps, w_cl ? 1 : taps, w_cl ? cg : 1};
}

// w [C, kg, taps] (w_cl: [C, taps, kg]) of a stride-1 conv_transpose from C to kg channels per
// group, as the weight of the conv that computes it: output channel k < kg, input channel
// c < C / groups = cg, taps reversed.
WeightView transposed_weight(const bf16* w, bool w_cl, int64_t kg, int64_t cg, int64_t taps) {
  const int64_t t_step = w_cl ? kg : 1;
  return {w + (taps - 1) * t_step, cg * kg * taps, w_cl ? 1 : taps, kg * taps, -t_step};
}

// one_panel: every run in one panel per (group, column block), the runs' rows one after another
// and zero rows up to whole steps of 32 at the end (a gathered a's rows, conv_forward_gathered).
PackedWeight pack_weight(MicroKernel mk, const WeightView& w, int64_t K, int64_t G, int64_t cg,
                         int64_t Cp, int64_t taps, const TapRuns& runs, bool one_panel = false) {
  PackedWeight pw;
  const int64_t kg = K / G, run_count = static_cast<int64_t>(runs.first.size());
  const int64_t run_rows = runs.width * Cp;
  pw.blocks = ceil_div(kg, kMaxColumns);
  pw.columns = round_up(ceil_div(kg, pw.blocks), kTile);
  pw.runs = one_panel ? 1 : run_count;
  pw.run_rows = one_panel ? round_up(run_count * run_rows, amx_tiles::kStepDepth) : run_rows;
  pw.panel_numel = pw.run_rows * pw.columns;
  pw.data = aligned<bf16>(pw.storage, G * pw.blocks * pw.runs * pw.panel_numel);
  const int64_t per_block = ceil_div(kg, pw.blocks);
  at::parallel_for(0, G * pw.blocks * pw.runs, 1, [&](int64_t begin, int64_t end) {
    std::vector<bf16> plain(pw.panel_numel);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t panel = i % pw.runs, block = i / pw.runs % pw.blocks,
                    gi = i / (pw.runs * pw.blocks);
      const int64_t k0 = block * per_block, k1 = std::min(kg, k0 + per_block);
      std::fill(plain.begin(), plain.end(), bf16(0));
      const int64_t r0 = one_panel ? 0 : panel, r1 = one_panel ? run_count : panel + 1;
      for (int64_t run = r0; run < r1; ++run) {
        for (int64_t t = 0; t < runs.width; ++t) {
          // Rows k, columns c -> plain rows c, columns k.
          blocked_transpose(w.at(gi, k0, 0, runs.first[run] + t), w.k_step, w.c_step, k1 - k0, cg,
                            plain.data() + ((run - r0) * run_rows + t * Cp) * pw.columns,
                            pw.columns, int64_t{1});
        }
      }
      pack_panel(mk, pw.run_rows, pw.columns, plain.data(), pw.data + i * pw.panel_numel);
    }
  });
  return pw;
}

// Our AMX tiles (amx_tiles.h) where they read the padded image in place: stride 1 along H and W,
// channel blocks of 32. They keep a block's sums in the tile registers over the whole reduction;
// ATen's brgemm loads and stores them around each run of KW taps. Their b comes from L1 while one
// block's 32 columns over the reduction fit there (a 3x3 of 64 channels), from L2 beyond (about
// 70 % of the L1 rate, one core), and still ahead: N8 channels_last forward, 2 threads, ms,
// ATen's brgemm or the GEMM engine -> tiles (torch's oneDNN): 3x3 C64 56x56 1.04-1.06 ->
// 0.87-0.90 (0.63-0.68); C128 28x28 1.39 -> 1.34 (0.80); C256 14x14 1.73 -> 1.20 (1.00); C512
// 7x7 1.86 -> 1.43 (2.28); 5x5 C64 28x28 0.78 -> 0.71 (0.62); 7x7 C32 -> 64 56x56 2.59 -> 2.13
// (1.84). Dilated convs keep to reductions that fit L1 (taps x channels <= 768, the rule before):
// the tiles compute every tap, where beyond 128 channels the GEMM engine skips the taps that
// read padding (live_taps.h: ASPP's dilation 24 on 28x28 C2048 N2, 16.5 against 70 ms).
constexpr int64_t kMaxDilatedTileReduction = 768;

bool tiles_apply(MicroKernel mk, const ConvGeometry& g, int64_t in_channels) {
  bool dilated = false;
  for (int d = 0; d < kSpatialDims; ++d) dilated |= g.dilation[d] != 1;
  return mk == MicroKernel::kAmx && amx_tiles::available() && bf16_gemm::available() &&
         in_channels % amx_tiles::kStepDepth == 0 && g.stride[1] == 1 && g.stride[2] == 1 &&
         (!dilated || g.kernel_numel() * in_channels <= kMaxDilatedTileReduction);
}

MicroKernel forward_kernel(MicroKernel mk, const ConvGeometry& g) {
  return tiles_apply(mk, g, g.channels / g.groups) ? MicroKernel::kTiles : mk;
}

// The a offsets of our AMX tiles' steps, from a block's tap-(0,0,0) pixel, in the order of the
// packed weight's rows: per run, per tap of the run, per channel block.
std::vector<int64_t> tile_steps(const TapRuns& runs, const PaddedImage& p) {
  std::vector<int64_t> steps;
  for (const int64_t offset : runs.offset) {
    for (int64_t t = 0; t < runs.width; ++t) {
      for (int64_t cb = 0; cb < p.blocks(); ++cb) {
        steps.push_back((cb * p.volume() + offset + t) * p.block);
      }
    }
  }
  return steps;
}

// `count` output pixels' sums, acc[i * columns, + width) for the i-th -> output channels k0 to
// k0 + width of pixels pixel + i of sample n, rounded once (scratch: width values, for an NCHW
// y). A channels_last run is one call (per pixel, the calls cost a tenth of a 3x3 C64 forward).
void write_pixels(const float* acc, int64_t columns, int64_t count, int64_t width, bf16* y,
                  bool y_cl, int64_t n, int64_t pixel, int64_t k0, int64_t K, int64_t grid,
                  bf16* scratch) {
  if (y_cl) {
    return bf16_gemm::round_runs_to_bfloat16(acc, columns, count, width,
                                             y + (n * grid + pixel) * K + k0, K);
  }
  for (int64_t i = 0; i < count; ++i) {
    bf16_gemm::round_to_bfloat16(acc + i * columns, width, scratch);
    bf16* to = y + (n * K + k0) * grid + pixel + i;
    for (int64_t k = 0; k < width; ++k) to[k * grid] = scratch[k];
  }
}

// Our AMX tiles where they cannot read the padded image in place: strided convs (in place, a
// block would be a piece of one output line, 7-28 pixels of the 32 rows a pass computes) and
// convs on few channels (a ResNet stem's 3: a tap's channels are no whole step of 32). Each block
// of up to 128 output pixels, across lines and planes, first gathers its rows of a: the runs of
// taps (a kernel row's KW taps x C channels, contiguous in the padded image) one after another,
// zero-filled to whole steps of 32 at the end, into a [rows, steps x 32] buffer of aligned rows
// that stays in L2. A 7x7 stem on 3 channels is 5 steps (147 values; 49 steps of one tap's 4
// channels in place). Output channels in column blocks of up to 64, each over the same rows.
bool gathered_applies(MicroKernel mk, const ConvGeometry& g) {
  return mk == MicroKernel::kAmx && amx_tiles::available() && bf16_gemm::available() &&
         forward_kernel(mk, g) == mk;
}

void conv_forward_gathered(const bf16* x, bool x_cl, const WeightView& w, bf16* y, bool y_cl,
                           const ConvGeometry& g, int64_t N, int64_t K) {
  constexpr int64_t kDepth = amx_tiles::kStepDepth, kRowBlock = amx_tiles::kRowBlock;
  const int64_t G = g.groups, cg = g.channels / G, kg = K / G, taps = g.kernel_numel();
  const PaddedImage p = pad_image(x, x_cl, g, N, 0, /*even=*/false);
  const TapRuns runs = tap_runs(g, p);
  const PackedWeight pw = pack_weight(MicroKernel::kTiles, w, K, G, cg, cg, taps, runs, true);
  const int64_t run_count = static_cast<int64_t>(runs.offset.size()), length = runs.width * cg;
  const int64_t row_numel = pw.run_rows, steps = row_numel / kDepth;
  std::vector<int64_t> step_offsets(steps), run_offsets(run_count);
  for (int64_t s = 0; s < steps; ++s) step_offsets[s] = s * kDepth;
  for (int64_t r = 0; r < run_count; ++r) run_offsets[r] = runs.offset[r] * cg;
  const amx_tiles::RowGather plan = amx_tiles::plan_row_gather(run_offsets, length);
  const int64_t OH = g.grid[1], OW = g.grid[2], grid = g.grid_numel();
  const int64_t per_sample = ceil_div(grid, kMaxRows);
  const int64_t rows = round_up(ceil_div(grid, per_sample), kRowBlock);
  const int64_t columns = pw.columns, per_block = ceil_div(kg, pw.blocks);
  const int64_t pixel_blocks = N * G * per_sample;
  at::parallel_for(0, pixel_blocks * pw.blocks, 1, [&](int64_t begin, int64_t end) {
    at::Tensor acc_storage, rows_storage;
    float* acc = aligned<float>(acc_storage, rows * columns);
    // Rows past a last block's end are computed and dropped: zeros, not stale bits.
    bf16* a = aligned<bf16>(rows_storage, rows * row_numel);
    std::fill(a, a + rows * row_numel, bf16(0));
    std::vector<int64_t> pixels(rows);
    std::vector<bf16> rounded(columns);
    int64_t gathered = -1;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t block = t % pw.blocks, pb = t / pw.blocks;
      const int64_t j = pb % per_sample, gi = pb / per_sample % G, n = pb / (per_sample * G);
      const int64_t q0 = j * rows, M = std::min(rows, grid - q0);
      if (pb != gathered) {
        // The padded image's first value of each pixel's window, walking the grid from q0.
        int64_t ow = q0 % OW, oh = q0 / OW % OH, od = q0 / (OW * OH);
        for (int64_t i = 0; i < M; ++i) {
          pixels[i] =
              ((od * g.stride[0] * p.dims[1] + oh * g.stride[1]) * p.dims[2] + ow * g.stride[2]) *
              cg;
          if (++ow == OW) {
            ow = 0;
            if (++oh == OH) oh = 0, ++od;
          }
        }
        amx_tiles::gather_rows(p.data + (n * G + gi) * p.volume() * cg, pixels.data(), M, plan, a,
                               row_numel);
        gathered = pb;
      }
      amx_tiles::batch_reduce(M, columns, row_numel, a, step_offsets.data(), steps,
                              pw.panel(gi, block, 0), acc, columns);
      const int64_t k0 = gi * kg + block * per_block;
      const int64_t width = std::min(kg, (block + 1) * per_block) - block * per_block;
      write_pixels(acc, columns, M, width, y, y_cl, n, q0, k0, K, grid, rounded.data());
    }
  });
}

// y [N, K, grid] (y_cl: channels_last) = conv(x, w).
void conv_forward(MicroKernel amx_or_vector, const bf16* x, bool x_cl, const WeightView& w, bf16* y,
                  bool y_cl, const ConvGeometry& g, int64_t N, int64_t K) {
  const int64_t G = g.groups, cg = g.channels / G, kg = K / G, taps = g.kernel_numel();
  const MicroKernel mk = forward_kernel(amx_or_vector, g);
  const bool tiles = mk == MicroKernel::kTiles;
  const PaddedImage p = pad_image(x, x_cl, g, N, tiles ? amx_tiles::kStepDepth : 0);
  const TapRuns runs = tap_runs(g, p);
  const PackedWeight pw = pack_weight(mk, w, K, G, cg, p.channels, taps, runs);
  const std::vector<int64_t> steps = tiles ? tile_steps(runs, p) : std::vector<int64_t>{};
  const int64_t Cp = p.channels, Wp = p.dims[2];
  const int64_t OD = g.grid[0], OH = g.grid[1], OW = g.grid[2], grid = g.grid_numel();
  // Virtual blocks (stride 1 in H and W) run over q = oh * Wp + ow of one output plane;
  // otherwise blocks are pieces of one output line.
  // (Our vector kernel computes any number of rows at full speed: it takes the lines as they are,
  // without the Wp - OW dropped pixels per line, which cost it 3-14 % on 56 to 28 pixel lines.)
  const bool virtual_rows = mk != MicroKernel::kVector && g.stride[1] == 1 && g.stride[2] == 1;
  const int64_t span = virtual_rows ? (OH - 1) * Wp + OW : OW;
  const int64_t per_span = ceil_div(span, kMaxRows), rows = ceil_div(span, per_span);
  const int64_t per_plane = virtual_rows ? per_span : per_span * OH;
  const int64_t ld_a = g.stride[2] * p.block, columns = pw.columns;
  const int64_t per_block = ceil_div(kg, pw.blocks);
  const int64_t pixel_blocks = N * OD * per_plane;
  at::parallel_for(0, G * pw.blocks * pixel_blocks, 1, [&](int64_t begin, int64_t end) {
    at::Tensor acc_storage;
    float* acc = aligned<float>(acc_storage, round_up(rows, amx_tiles::kRowBlock) * columns);
    // ATen's brgemm keeps its tile configuration per thread: ours replaces it.
    if (tiles) release(MicroKernel::kAmx);
    std::vector<bf16> rounded(columns);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t pb = t % pixel_blocks, block = t / pixel_blocks % pw.blocks;
      const int64_t gi = t / (pixel_blocks * pw.blocks);
      const int64_t j = pb % per_plane, od = pb / per_plane % OD, n = pb / (per_plane * OD);
      const int64_t oh0 = virtual_rows ? 0 : j / per_span;
      const int64_t q0 = j % per_span * rows, M = std::min(rows, span - q0);
      // The padded pixel of tap (0, 0, 0) for the block's first output pixel.
      const int64_t first = (n * G + gi) * p.blocks() * p.volume() + od * g.stride[0] * p.plane() +
                            oh0 * g.stride[1] * Wp + q0 * g.stride[2];
      const bf16* a = p.data + first * p.block;
      if (tiles) {
        // The runs' panels lie one after another: their rows are the steps'.
        amx_tiles::batch_reduce(M, columns, ld_a, a, steps.data(),
                                static_cast<int64_t>(steps.size()), pw.panel(gi, block, 0), acc,
                                columns);
      } else {
        for (int64_t r = 0; r < pw.runs; ++r) {
          multiply(mk, M, columns, pw.run_rows, ld_a, r > 0, a + runs.offset[r] * Cp,
                   pw.panel(gi, block, r), acc);
        }
      }
      const int64_t k0 = gi * kg + block * per_block;
      const int64_t width = std::min(kg, (block + 1) * per_block) - block * per_block;
      // Runs of the block's pixels along one output line (virtual rows past a line's end are
      // dropped).
      for (int64_t i = 0; i < M;) {
        const int64_t q = q0 + i;
        const int64_t oh = virtual_rows ? q / Wp : oh0, ow = virtual_rows ? q % Wp : q;
        if (ow >= OW) {
          ++i;
          continue;
        }
        const int64_t count = std::min(M - i, OW - ow);
        write_pixels(acc + i * columns, columns, count, width, y, y_cl, n, (od * OH + oh) * OW + ow,
                     k0, K, grid, rounded.data());
        i += count;
      }
    }
    release(mk);
  });
}

// The conv input, zero-padded like PaddedImage but channel-major: [N, G, cg, Dp * Hp * Wp +
// slack], so a row of A (one channel) runs along the pixels, the weight gradient's reduction.
struct ChannelPlanes {
  at::Tensor storage;
  const bf16* data;
  int64_t dims[kSpatialDims];
  int64_t stride;  // between channels
};

// Each plane ends in zeros up to a multiple of 32 values, at least 32 of them: our AMX tiles read
// whole steps of 32 pixels from any tap's offset (a padded-even block of ATen's brgemm reads one
// value past the last pixel); and 31 zero planes follow the last, for the rows a block of 32
// channels reads past a group's end.
ChannelPlanes pad_planes(const bf16* x, bool x_cl, const ConvGeometry& g, int64_t N) {
  ChannelPlanes p;
  const int64_t C = g.channels;
  for (int d = 0; d < kSpatialDims; ++d) {
    p.dims[d] = (g.grid[d] - 1) * g.stride[d] + (g.kernel[d] - 1) * g.dilation[d] + 1;
  }
  const int64_t Dp = p.dims[0], Hp = p.dims[1], Wp = p.dims[2], plane = Dp * Hp * Wp;
  constexpr int64_t kStep = amx_tiles::kStepDepth;
  p.stride = round_up(plane + kStep, kStep);
  const int64_t planes = N * C + kStep - 1;
  p.storage = at::empty({planes * p.stride}, at::TensorOptions().dtype(at::kBFloat16));
  bf16* out = p.storage.data_ptr<bf16>();
  p.data = out;
  std::fill(out + N * C * p.stride, out + planes * p.stride, bf16(0));
  const int64_t D = g.image[0], H = g.image[1], W = g.image[2], volume = D * H * W;
  const int64_t w_lo = std::clamp<int64_t>(g.pad[2], 0, Wp);
  const int64_t w_hi = std::clamp<int64_t>(W + g.pad[2], w_lo, Wp);
  const int64_t iw0 = w_lo - g.pad[2], width = w_hi - w_lo;
  // One task per (sample, channel block of 16, padded line).
  const int64_t cblocks = ceil_div(C, 16), lines = Dp * Hp;
  at::parallel_for(0, N * cblocks * lines, 8, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t line = t % lines, cb = t / lines % cblocks, n = t / (lines * cblocks);
      const int64_t c0 = cb * 16, c1 = std::min(C, c0 + 16);
      const int64_t id = line / Hp - g.pad[0], ih = line % Hp - g.pad[1];
      const bool inside = id >= 0 && id < D && ih >= 0 && ih < H && width > 0;
      for (int64_t c = c0; c < c1; ++c) {
        bf16* row = out + (n * C + c) * p.stride + line * Wp;
        if (!inside) {
          std::fill(row, row + Wp, bf16(0));
        } else {
          std::fill(row, row + w_lo, bf16(0));
          std::fill(row + w_hi, row + Wp, bf16(0));
          if (!x_cl) {
            std::copy_n(x + (n * C + c) * volume + (id * H + ih) * W + iw0, width, row + w_lo);
          }
        }
        if (line == lines - 1) std::fill(row + Wp, row + p.stride - plane + Wp, bf16(0));
      }
      if (inside && x_cl) {
        const bf16* src = x + ((n * D + id) * H + ih) * W * C + iw0 * C + c0;
        blocked_transpose(src, int64_t{1}, C, c1 - c0, width,
                          out + (n * C + c0) * p.stride + line * Wp + w_lo, int64_t{1}, p.stride);
      }
    }
  });
  return p;
}

// Pixels (the reduction) per micro-kernel call of the weight gradient.
constexpr int64_t kWeightGradPixels = 256;
// Pixels per partial sum of the weight gradient: fewer partial sums where there are fewer pixels.
constexpr int64_t kChunkPixels = 2048;
constexpr int64_t kMaxChunks = 8;

// gw [K, cg, taps] (in the input's layout) = sum over pixels of go x image, stride 1 along H and
// W: per tap, acc [cg, columns] += planes [cg, pixels] (rows: the channels' padded planes read
// from the tap's offset) x go [pixels, columns] (packed once, dropped pixels zero).
// On AMX, for 48 to 96 channels per group, our tiles keep each tap's [cg, columns] sums in the
// tile registers over a whole chunk of pixels (its blocks' go panels lie one after another, their
// rows the steps'); ATen's brgemm loads and stores them around every block of 256 pixels, but
// keeps its operands in L1 across the taps. N8, ms, ATen's -> ours (torch): 3x3 C64 56x56
// channels_last 3.0 -> 1.6 (1.6), NCHW 3.2-3.6 -> 2.1-2.2 (2.2-2.6); C96 28x28 NCHW 1.4 -> 1.15.
// With 32 channels (32 -> 64 112x112: 4.8 -> 5.4) or 128 (C128 28x28: 1.7 -> 1.8-1.9) ours lost:
// a chunk's operands stream from L2 for every pair of tiles. Tile rows of a, read from a tap's
// offset, straddle cache lines (aligned, C64 ran 1.9 -> 1.5).
constexpr int64_t kMinTileGradChannels = 48, kMaxTileGradChannels = 96;

void weight_grad(MicroKernel mk, const bf16* go, const bf16* x, bf16* gw, const ConvGeometry& g,
                 int64_t N, int64_t K) {
  constexpr int64_t kStep = amx_tiles::kStepDepth;
  const int64_t G = g.groups, cg = g.channels / G, kg = K / G, taps = g.kernel_numel();
  const bool tiles = mk == MicroKernel::kAmx && amx_tiles::available() && bf16_gemm::available() &&
                     cg >= kMinTileGradChannels && cg <= kMaxTileGradChannels;
  const ChannelPlanes p = pad_planes(x, g.channels_last, g, N);
  const int64_t Hp = p.dims[1], Wp = p.dims[2];
  const int64_t OD = g.grid[0], OH = g.grid[1], OW = g.grid[2], grid = g.grid_numel();
  const int64_t span = (OH - 1) * Wp + OW;
  const int64_t per_span = ceil_div(span, kWeightGradPixels);
  const int64_t pixels = round_up(ceil_div(span, per_span), tiles ? kStep : 2);
  const int64_t blocks = ceil_div(kg, kMaxColumns), per_block = ceil_div(kg, blocks);
  const int64_t columns = round_up(per_block, kTile), panel = pixels * columns;
  const int64_t pixel_blocks = N * OD * per_span;
  // go, packed: [group, column block, pixel block] panels of [pixels, columns].
  at::Tensor packed_storage;
  bf16* packed = aligned<bf16>(packed_storage, pixel_blocks * G * blocks * panel);
  at::parallel_for(0, pixel_blocks * G * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<bf16> plain(panel);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t pb = i % pixel_blocks, block = i / pixel_blocks % blocks,
                    gi = i / (pixel_blocks * blocks);
      const int64_t j = pb % per_span, od = pb / per_span % OD, n = pb / (per_span * OD);
      const int64_t q0 = j * (pixels), k0 = gi * kg + block * per_block;
      const int64_t width = std::min(kg, (block + 1) * per_block) - block * per_block;
      std::fill(plain.begin(), plain.end(), bf16(0));
      for (int64_t r = 0; r < pixels && q0 + r < span; ++r) {
        const int64_t q = q0 + r, oh = q / Wp, ow = q % Wp;
        if (ow >= OW) continue;
        const int64_t pixel = (od * OH + oh) * OW + ow;
        bf16* to = plain.data() + r * columns;
        if (g.channels_last) {
          std::copy_n(go + (n * grid + pixel) * K + k0, width, to);
        } else {
          const bf16* from = go + (n * K + k0) * grid + pixel;
          for (int64_t k = 0; k < width; ++k) to[k] = from[k * grid];
        }
      }
      pack_panel(tiles ? MicroKernel::kTiles : mk, pixels, columns, plain.data(),
                 packed + i * panel);
    }
  });
  const int64_t chunks =
      std::clamp<int64_t>(N * OD * span / kChunkPixels, 1, std::min(kMaxChunks, pixel_blocks));
  const int64_t per_chunk = ceil_div(pixel_blocks, chunks);
  // Rows of a tap's sums: the tiles compute whole blocks of 32.
  const int64_t rows = tiles ? round_up(cg, amx_tiles::kRowBlock) : cg;
  const int64_t acc_numel = taps * rows * columns;
  at::Tensor partial_storage;
  float* partial = aligned<float>(partial_storage, chunks * G * blocks * acc_numel);
  std::vector<int64_t> tap_offset(taps);
  for (int64_t tap = 0; tap < taps; ++tap) {
    int64_t kd, kh, kw;
    split_tap(g, tap, kd, kh, kw);
    tap_offset[tap] = (kd * g.dilation[0] * Hp + kh * g.dilation[1]) * Wp + kw * g.dilation[2];
  }
  // The planes of pixel block pb's first pixel, channel 0 of group gi.
  auto block_start = [&](int64_t pb, int64_t gi) {
    const int64_t j = pb % per_span, od = pb / per_span % OD, n = pb / (per_span * OD);
    return (n * g.channels + gi * cg) * p.stride + od * g.stride[0] * Hp * Wp + j * pixels;
  };
  at::parallel_for(0, chunks * G * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> steps;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t block = t % blocks, gi = t / blocks % G, chunk = t / (blocks * G);
      float* acc = partial + t * acc_numel;
      const int64_t b0 = chunk * per_chunk, b1 = std::min(pixel_blocks, b0 + per_chunk);
      const bf16* b = packed + ((gi * blocks + block) * pixel_blocks + b0) * panel;
      if (tiles) {
        for (int64_t tap = 0; tap < taps; ++tap) {
          steps.clear();
          for (int64_t pb = b0; pb < b1; ++pb) {
            for (int64_t q = 0; q < pixels; q += kStep) {
              steps.push_back(block_start(pb, gi) + q + tap_offset[tap]);
            }
          }
          amx_tiles::batch_reduce(cg, columns, p.stride, p.data, steps.data(),
                                  static_cast<int64_t>(steps.size()), b, acc + tap * rows * columns,
                                  columns);
        }
        continue;
      }
      for (int64_t pb = b0; pb < b1; ++pb) {
        const int64_t M = std::min(pixels, round_up(span - pb % per_span * pixels, 2));
        const bf16* a = p.data + block_start(pb, gi);
        for (int64_t tap = 0; tap < taps; ++tap) {
          multiply(mk, cg, columns, M, p.stride, pb > b0, a + tap_offset[tap],
                   b + (pb - b0) * panel, acc + tap * cg * columns);
        }
      }
    }
    release(mk);
  });
  // Sum the partial sums in chunk order, round once: a row of columns at a time, contiguous in
  // every partial sum (by output channel, the reads were `columns` apart: 0.3 ms of C128 28x28).
  at::parallel_for(0, G * blocks * taps * cg, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> sum(columns);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t c = i % cg, tap = i / cg % taps, block = i / (cg * taps) % blocks,
                    gi = i / (cg * taps * blocks);
      std::fill(sum.begin(), sum.end(), 0.0f);
      for (int64_t chunk = 0; chunk < chunks; ++chunk) {
        const float* from =
            partial + ((chunk * G + gi) * blocks + block) * acc_numel + (tap * rows + c) * columns;
        for (int64_t col = 0; col < columns; ++col) sum[col] += from[col];
      }
      const int64_t k0 = gi * kg + block * per_block;
      const int64_t width = std::min(kg, (block + 1) * per_block) - block * per_block;
      for (int64_t col = 0; col < width; ++col) {
        const int64_t k = k0 + col;
        gw[g.channels_last ? (k * taps + tap) * cg + c : (k * cg + c) * taps + tap] =
            bf16(sum[col]);
      }
    }
  });
}

// The micro-kernel of a conv of these operands, kNone where the path does not apply.
MicroKernel kernel_for(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != at::kBFloat16 || b.scalar_type() != at::kBFloat16)
    return MicroKernel::kNone;
  return micro_kernel();
}

// Where the path pays, measured at one thread against the GEMM engine (N8, resnet18 shapes):
// stride-1 spatial kernels with up to 128 channels per group (3x3 C64 56x56 channels_last
// forward 5.8 -> 4.1-4.4 ms, forward+backward 27 -> 22 ms; NCHW 44 -> 29 ms). A 1x1 conv is one
// plain GEMM in the engine already (1.6 against 4.3 ms here), and with 512 channels the
// packed panels and [cg, K] weight-gradient tiles ran 2-3x slower than the engine (C512 7x7).
constexpr int64_t kMaxGroupChannels = 128;
// Our AVX512-BF16 kernel pays on fewer channels, in and out: one panel of at most 64 output
// channels, read from L1. N8, 2 threads on a Zen 4, engine -> this path (torch), ms, forward /
// forward+backward: 3x3 C32 112x112 channels_last 6.05 / 20.7 -> 4.95 / 20.1 (4.17 / 13.5),
// NCHW 7.78 / 24.4 -> 6.56 / 21.8 (6.14 / 21.7); C64 56x56 channels_last 5.02 / 16.5 -> 4.62 /
// 16.3 (4.06 / 12.9), NCHW 5.77 / 19.8 -> 5.19 / 17.6 (4.45 / 14.0); 5x5 C32 -> 64 28x28
// channels_last 1.73 / 8.0 -> 1.59 / 7.2. With 96 or 128 channels it lost (C128 28x28 forward
// 4.63 -> 5.46, C96 2.65 -> 3.24): two column panels, or a panel read from L2.
constexpr int64_t kMaxVectorChannels = 64;

bool channels_pay(MicroKernel mk, int64_t in_channels, int64_t out_channels) {
  return mk == MicroKernel::kVector
             ? in_channels <= kMaxVectorChannels && out_channels <= kMaxVectorChannels
             : in_channels <= kMaxGroupChannels;
}

bool pays(MicroKernel mk, const ConvGeometry& g, int64_t in_channels, int64_t out_channels) {
  if (g.is_pointwise() || !channels_pay(mk, in_channels, out_channels)) return false;
  for (int d = 0; d < kSpatialDims; ++d) {
    if (g.stride[d] != 1) return false;
  }
  return true;
}

// A forward's products (or those of a stride-1 conv_transpose computed as one): on our AMX
// tiles also beyond kMaxGroupChannels, where the GEMM engine ran.
bool forward_pays(MicroKernel mk, const ConvGeometry& g, int64_t in_channels,
                  int64_t out_channels) {
  if (!g.is_pointwise() && tiles_apply(mk, g, in_channels)) return true;
  return pays(mk, g, in_channels, out_channels);
}

// Strided convs on up to 32 channels per group, where the GEMM engine ran instead. N8
// channels_last, ms, engine -> gathered (torch's oneDNN): 7x7 stride 2 3 -> 64 224x224 (ResNet's
// stem) 4.2 -> 2.1 (1.2); 3x3 stride 2 3 -> 32 224x224 1.47 -> 0.89 (0.53-0.63); 32 -> 64
// 112x112 1.38 -> 1.09 (0.72); 4x4 stride 4 3 -> 96 (ConvNeXt's stem) 0.73 -> 0.67 (0.57). With
// 64 channels it ties, with 128 it loses (0.66 -> 0.74); at stride 1 the taps read in place win
// (3x3 16 -> 32 112x112 1.21 against 1.69; 9x9 3 -> 32 1.32 against 1.42): the gather costs
// about 20 cycles a pixel, and our tiles reach about half of oneDNN's speed.
constexpr int64_t kMaxGatheredChannels = 32;

bool gathered_pays(const ConvGeometry& g, int64_t in_channels) {
  if (g.is_pointwise() || in_channels > kMaxGatheredChannels) return false;
  return g.stride[0] != 1 || g.stride[1] != 1 || g.stride[2] != 1;
}

}  // namespace

bool bfloat16_convs_on_amx() { return micro_kernel() == MicroKernel::kAmx; }

bool brgemm_conv(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
                 const ConvGeometry& g) {
  const MicroKernel mk = kernel_for(input, weight);
  if (mk == MicroKernel::kNone) return false;
  const int64_t cg = g.channels / g.groups;
  const bool gathered = gathered_applies(mk, g) && gathered_pays(g, cg);
  if (!gathered && !forward_pays(mk, g, cg, output.size(1) / g.groups)) return false;
  const WeightLayout staged = weight_in_own_layout(weight);
  const at::Tensor& w = staged.tensor;
  const bool w_cl = staged.channels_last;
  const int64_t K = output.size(1), G = g.groups;
  const WeightView view =
      conv_weight(w.const_data_ptr<bf16>(), w_cl, K / G, g.channels / G, g.kernel_numel());
  const bf16* x = input.const_data_ptr<bf16>();
  bf16* y = output.data_ptr<bf16>();
  if (gathered) {
    conv_forward_gathered(x, g.channels_last, view, y, g.channels_last, g, input.size(0), K);
  } else {
    conv_forward(mk, x, g.channels_last, view, y, g.channels_last, g, input.size(0), K);
  }
  return true;
}

// A strided conv_transpose (the input gradient of a strided conv, a decoder's upsampling) as
// one stride-1 conv per phase (conv_phases.h) on the same micro-kernels: the phase's taps of the
// flipped kernel, relaid as a plain conv weight, over the transpose's input, into a buffer whose
// pixels then go to every stride-th output pixel. Each output is summed whole in float32 and
// rounded once, as in the stride-1 path. Without it these ran as bfloat16 GEMMs per phase: the
// ResNet stem's input gradient (64 -> 3 channels, 7x7 stride 2, N8) took 24 ms channels_last
// and 45 NCHW against torch's 4.5 and 5.
bool strided_transpose(MicroKernel mk, const at::Tensor& input, const at::Tensor& weight,
                       const at::Tensor& output, const ConvGeometry& g) {
  const int64_t K = input.size(1), C = output.size(1), G = g.groups, N = input.size(0);
  const int64_t kg = K / G, cg = C / G;
  // Every phase is a stride-1 conv, a 1x1 one among them where a kernel has a single tap per
  // phase (the 3x3 of stride 2 has one), which the tiles compute as well as the others: up to
  // kMaxGroupChannels (beyond, the phases' small grids lost to the GEMM engine: 3x3 stride 2
  // C256 -> 512 14x14 N8 channels_last 1.7 against 5.0 ms on the tiles). With the 1x1 phase
  // allowed, C64 -> 128 56x56 2.1-2.3 -> 1.7-1.9 ms.
  if (!channels_pay(mk, kg, cg)) return false;
  struct PhaseOf {
    Phase ph[kSpatialDims];
    int64_t residue[kSpatialDims];
  };
  std::vector<PhaseOf> phases;
  bool unreached = false;
  for (int64_t r0 = 0; r0 < g.stride[0]; ++r0) {
    for (int64_t r1 = 0; r1 < g.stride[1]; ++r1) {
      for (int64_t r2 = 0; r2 < g.stride[2]; ++r2) {
        PhaseOf phase{{}, {r0, r1, r2}};
        Phase(&ph)[kSpatialDims] = phase.ph;
        bool empty = false, no_taps = false;
        for (int d = 0; d < kSpatialDims; ++d) {
          ph[d] = phase_of(g, d, phase.residue[d]);
          empty |= ph[d].positions == 0;
          no_taps |= ph[d].taps == 0;
        }
        if (empty) continue;
        if (no_taps) {
          unreached = true;
          continue;
        }
        phases.push_back(phase);
      }
    }
  }
  const at::Tensor w = weight.contiguous();
  const bf16* wt = w.const_data_ptr<bf16>();
  bf16* y = output.data_ptr<bf16>();
  const int64_t image = g.image_numel();
  if (unreached) std::fill(y, y + N * C * image, bf16(0));
  for (const PhaseOf& phase : phases) {
    const Phase(&ph)[kSpatialDims] = phase.ph;
    const ConvGeometry sub = phase_geometry(g, ph, K);
    const int64_t sub_taps = sub.kernel_numel(), grid = sub.grid_numel();
    at::Tensor sub_storage;
    bf16* sub_w = aligned<bf16>(sub_storage, C * kg * sub_taps);
    phase_weight(g, ph, K, wt, sub_w);
    at::Tensor out_storage;
    bf16* out = aligned<bf16>(out_storage, N * C * grid);
    conv_forward(mk, input.const_data_ptr<bf16>(), g.channels_last,
                 conv_weight(sub_w, false, cg, kg, sub_taps), out, g.channels_last, sub, N, C);
    // Phase pixel q (q0, q1, q2) is output pixel (r + stride * q) per dim.
    const int64_t P1 = sub.grid[1], P2 = sub.grid[2], H = g.image[1], W = g.image[2];
    at::parallel_for(0, N * sub.grid[0] * P1, 16, [&](int64_t begin, int64_t end) {
      for (int64_t line = begin; line < end; ++line) {
        const int64_t q1 = line % P1, q0 = line / P1 % sub.grid[0], n = line / (P1 * sub.grid[0]);
        const int64_t o0 = phase.residue[0] + q0 * g.stride[0];
        const int64_t o1 = phase.residue[1] + q1 * g.stride[1];
        const int64_t to = (o0 * H + o1) * W + phase.residue[2], from = (q0 * P1 + q1) * P2;
        for (int64_t q2 = 0; q2 < P2; ++q2) {
          const int64_t o = to + q2 * g.stride[2], q = from + q2;
          if (g.channels_last) {
            copy_short(out + (n * grid + q) * C, C, y + (n * image + o) * C);
          } else {
            for (int64_t c = 0; c < C; ++c)
              y[(n * C + c) * image + o] = out[(n * C + c) * grid + q];
          }
        }
      }
    });
  }
  return true;
}

// A stride-1 conv_transpose is the conv of its input with the flipped, transposed kernel and
// padding dilation * (k - 1) - pad.
bool brgemm_conv_transpose(const at::Tensor& input, const at::Tensor& weight,
                           const at::Tensor& output, const ConvGeometry& g) {
  const MicroKernel mk = kernel_for(input, weight);
  if (mk == MicroKernel::kNone) return false;
  bool strided = false;
  for (int d = 0; d < kSpatialDims; ++d) strided |= g.stride[d] != 1;
  if (strided) return strided_transpose(mk, input, weight, output, g);
  for (int d = 0; d < kSpatialDims; ++d) {
    if (g.pad[d] > g.dilation[d] * (g.kernel[d] - 1)) return false;
  }
  const int64_t K = input.size(1), C = output.size(1), G = g.groups;
  if (!forward_pays(mk, g, K / G, C / G)) return false;
  ConvGeometry t = g;
  t.channels = K;
  for (int d = 0; d < kSpatialDims; ++d) {
    t.image[d] = g.grid[d];
    t.grid[d] = g.image[d];
    t.pad[d] = g.dilation[d] * (g.kernel[d] - 1) - g.pad[d];
  }
  const WeightLayout staged = weight_in_own_layout(weight);
  const at::Tensor& w = staged.tensor;
  const bool w_cl = staged.channels_last;
  conv_forward(mk, input.const_data_ptr<bf16>(), g.channels_last,
               transposed_weight(w.const_data_ptr<bf16>(), w_cl, C / G, K / G, g.kernel_numel()),
               output.data_ptr<bf16>(), g.channels_last, t, input.size(0), C);
  return true;
}

bool brgemm_conv_weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                             const at::Tensor& grad_weight, const ConvGeometry& g) {
  const MicroKernel mk = kernel_for(input, grad_output);
  if (mk == MicroKernel::kAmx && gathered_weight_grad_applies(g)) {
    gathered_weight_grad(grad_output, input, grad_weight, g);
    return true;
  }
  if (mk == MicroKernel::kNone || g.stride[1] != 1 || g.stride[2] != 1) return false;
  if (!pays(mk, g, g.channels / g.groups, grad_output.size(1) / g.groups)) return false;
  // Dropped virtual pixels multiply image values by zero: an inf there would give NaN.
  if (!all_finite(input)) return false;
  weight_grad(mk, grad_output.const_data_ptr<bf16>(), input.const_data_ptr<bf16>(),
              grad_weight.data_ptr<bf16>(), g, input.size(0), grad_output.size(1));
  return true;
}

}  // namespace convpool::cpu
