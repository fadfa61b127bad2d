// Winograd F(4x4, 3x3) for convs with many channels and few tiles (ResNet's 14x14 and 7x7
// stages): the 36 per-point GEMMs span the tiles of the whole batch, so each transformed weight
// is made once per call (per group of tile panels) instead of once per block of tiles as in
// winograd_cpu.cpp's fused blocks.
//
// Forward: V = B^T d B of all tiles, stored transposed as GEMM panels [C, 32 tiles] per point;
// then one task per (chunk of 32 output channels, group of panels): for each block of input
// channels, U^T = G g G^T of that [32, block] of weights goes to an L2-sized buffer and is read
// straight away as the micro-kernel's broadcast operand, M^T [32, tiles] += U^T x V per point;
// finally y = A^T M A, vectorised over tiles. The transformed weights (36 x C x K values, 4x the
// weight) never leave L2: materialising them for BLAS wrote and re-packed 38 MB per C512 7x7
// forward (2.0 + 1.4 of 7 ms).
// Weight gradient: per chunk of output channels, acc = sum over tile chunks of V^T x (A dY A^T)
// per point (BLAS), then G^T acc G.
// Every split depends on the shapes only, so results are the same bits for any thread count.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <atomic>
#include <memory>

#include "../common/isa_clones.h"
#include "../common/thread_scratch.h"
#include "channel_block_transpose.h"
#include "winograd_cpu.h"
#include "winograd_grad_tiles.h"

namespace convpool::cpu {
namespace {

using namespace winograd;

// The transformed inputs (and, for the weight gradient, output gradients) of a chunk of tiles:
// a fixed upper size whatever the input size, in L3 between the pass that writes them and the
// tasks that read them.
constexpr int64_t kInputBytes = 8 * 1024 * 1024;

// The element-wise transforms, each over a range [begin, end) of tiles (inputs, outputs, grads)
// or of input channels (weights, taps). Buffers of tiles hold the tiles from `first` on, `ld` rows
// per point.
enum class Pass { kInputs, kGrads };

template <typename T>
struct PassArgs {
  Pass pass;
  const Plan* p;
  const T* src;
  T* dst;
  int64_t first, ld, k0, kc;
};

// Returns whether every value the pass stored is finite (always true for the outputs and taps).
template <typename T, int B>
[[gnu::always_inline]] inline bool run_pass(const PassArgs<T>& a, int64_t begin, int64_t end) {
  const Plan& p = *a.p;
  FiniteCheck<T, B> finite;
  switch (a.pass) {
    case Pass::kInputs:
      transform_inputs(a.src, p, begin, end, a.dst + (begin - a.first) * p.Cp, a.ld, finite);
      break;
    case Pass::kGrads:
      transform_grads(a.src, p, begin, end, a.k0, a.kc, a.dst + (begin - a.first) * a.kc, a.ld,
                      finite);
      break;
  }
  return finite.ok();
}

CONVPOOL_CLONES bool run_pass_f32(const PassArgs<float>& a, int64_t begin, int64_t end) {
  return wide_vector_registers() ? run_pass<float, 64>(a, begin, end)
                                 : run_pass<float, 32>(a, begin, end);
}
CONVPOOL_CLONES bool run_pass_f64(const PassArgs<double>& a, int64_t begin, int64_t end) {
  return wide_vector_registers() ? run_pass<double, 64>(a, begin, end)
                                 : run_pass<double, 32>(a, begin, end);
}
bool run_pass_any(const PassArgs<float>& a, int64_t b, int64_t e) { return run_pass_f32(a, b, e); }
bool run_pass_any(const PassArgs<double>& a, int64_t b, int64_t e) { return run_pass_f64(a, b, e); }

// Runs a pass over [begin, end) on every core; returns whether all it stored is finite.
template <typename T>
[[nodiscard]] bool parallel_pass(const PassArgs<T>& a, int64_t begin, int64_t end, int64_t grain) {
  std::atomic<bool> finite{true};
  at::parallel_for(begin, end, grain, [&](int64_t b, int64_t e) {
    if (!run_pass_any(a, b, e)) finite = false;
  });
  return finite;
}

// Tiles per GEMM panel: the micro-kernel's two vectors of columns (32 float32, 16 float64).
template <typename T>
constexpr int64_t kPanelTiles = 2 * kLanes<T>;
// Output channels per task: four of the micro-kernel's 8-row register blocks.
constexpr int64_t kTaskChannels = 32;
// A task's U^T block [36, 32, input channels] and its accumulators M^T [panels, 36, 32, 32 tiles]
// stay within these: together about half of a 1-2 MiB L2, the rest for the panels of V passing.
constexpr int64_t kWeightBlockBytes = 576 * 1024;
constexpr int64_t kAccumulatorBytes = 320 * 1024;

// Element (o, tap, i) of the conv's 3x3 weight (output channel o, tap 0..8, input channel i) at
// data[o * o_stride + tap * tap_stride + i * i_stride].
template <typename T>
struct WeightView {
  const T* data;
  int64_t o_stride, tap_stride, i_stride;
};

template <typename T>
WeightView<T> weight_view(const T* w, const Plan& p) {
  const int64_t C = p.C, K = p.K;
  if (!p.weight_flipped_transpose) {
    // [K, C, 3, 3]: channels_last holds [K, 3, 3, C].
    return p.weight_channels_last ? WeightView<T>{w, 9 * C, C, 1} : WeightView<T>{w, 9 * C, 1, 9};
  }
  // The conv_transpose's forward weight [C, K, 3, 3] (channels_last [C, 3, 3, K]): tap t of the
  // conv's (k, c) is its tap 8 - t of (c, k).
  return p.weight_channels_last ? WeightView<T>{w + 8 * K, 1, -K, 9 * K}
                                : WeightView<T>{w + 8, 9, -1, 9 * K};
}

// Ut[xi][r][cn] = (G g G^T)[xi] of output channel r (r < rows) and input channels [c0, c0 + cn)
// (whole vectors; zero beyond C) of w (its output channels from the task's first), vectorised
// over input channels.
template <typename T, int B>
[[gnu::always_inline]] inline void transform_weight_block(const WeightView<T>& w, const Plan& p,
                                                          int64_t rows, int64_t c0, int64_t cn,
                                                          T* Ut, FiniteCheck<T, B>& finite) {
  using V = Vec<T, B>;
  constexpr int64_t L = kLanes<T, B>;
  for (int64_t cv = 0; cv < cn; cv += L) {
    const int64_t c = c0 + cv, lanes = std::clamp<int64_t>(p.C - c, 0, L);
    for (int64_t r = 0; r < rows; ++r) {
      const T* taps = w.data + r * w.o_stride + c * w.i_stride;
      V g[9];
      for (int t = 0; t < 9; ++t) {
        if (lanes == L && w.i_stride == 1) {
          g[t] = load<B>(taps + t * w.tap_stride);
        } else {
          g[t] = V{};
          for (int64_t l = 0; l < lanes; ++l) g[t][l] = taps[t * w.tap_stride + l * w.i_stride];
        }
      }
      V u[kPoints];
      kernel_tile_transform(g, u);
      for (int xi = 0; xi < kPoints; ++xi) {
        store(Ut + (xi * rows + r) * cn + cv, u[xi]);
        finite.add(u[xi]);
      }
    }
  }
}

// The weights of output channels [0, rows) of w and input channels [c0, c0 + cn) as [rows, 9, cn]
// (zero beyond C), for a channels_last conv_transpose weight: the conv's input channels (its
// output channels) 9 x K apart and its taps K apart, so a lane's gather touched 9 cache lines
// (2 of 7.5 ms of a C512 7x7 input gradient). Where the 9 taps are adjacent (NCHW weights) the
// transform gathers them as they are: staging those was 2-8 % slower.
template <typename T>
WeightView<T> stage_weight_block(const WeightView<T>& w, const Plan& p, int64_t rows, int64_t c0,
                                 int64_t cn, T* block) {
  const int64_t live = std::clamp<int64_t>(p.C - c0, 0, cn);
  for (int t = 0; t < 9; ++t) {
    blocked_transpose(w.data + t * w.tap_stride + c0 * w.i_stride, w.i_stride, w.o_stride, live,
                      rows, block + t * cn, 9 * cn, int64_t{1});
    for (int64_t r = 0; r < rows; ++r)
      std::fill(block + (r * 9 + t) * cn + live, block + (r * 9 + t + 1) * cn, T(0));
  }
  return {block - c0, 9 * cn, cn, 1};
}

// The transformed inputs of tiles [t0, t1) as GEMM panels: tile t (t >= first) is column
// (t - first) % P of panel (t - first) / P, each panel [36][Cp][P]. Tiles past the last real one
// are zero. A group of up to 16 tiles of one panel is transformed into an L1 scratch [tile][36][L]
// and each point's [tiles, L] block is transposed into the panel in registers (16 x 16 tiles):
// scattered lane by lane, the stores took a third of a C128 28x28 channels_last forward on an
// Intel Xeon (AVX-512, 2 threads: 1.75 of 5.3 ms).
template <typename T, int B>
[[gnu::always_inline]] inline void transform_input_panels(const T* x, const Plan& p, int64_t first,
                                                          int64_t t0, int64_t t1, T* Vt,
                                                          FiniteCheck<T, B>& finite) {
  using V = Vec<T, B>;
  constexpr int64_t L = kLanes<T, B>, P = kPanelTiles<T>, kGroup = 16;
  alignas(64) T scratch[kGroup * kPoints * L];
  for (int64_t t = t0; t < t1;) {
    const int64_t rel = t - first, n = std::min({kGroup, t1 - t, P - rel % P});
    T* panel = Vt + rel / P * kPoints * p.Cp * P + rel % P;
    for (int64_t c0 = 0; c0 < p.Cp; c0 += L) {
      for (int64_t i = 0; i < n; ++i) {
        V v[kPoints] = {};
        if (t + i < p.tiles) input_tile_points<T, B>(x, p, tile_window(p, t + i, 0), c0, v);
        for (int xi = 0; xi < kPoints; ++xi) {
          finite.add(v[xi]);
          store(scratch + (i * kPoints + xi) * L, v[xi]);
        }
      }
      for (int xi = 0; xi < kPoints; ++xi) {
        transpose_matrix(scratch + xi * L, kPoints * L, n, L, panel + (xi * p.Cp + c0) * P, P);
      }
    }
    t += n;
  }
}

// y = A^T m A for the tiles of one panel (from tile t0) and output channels [k0, k0 + rows), from
// M^T [36][rows][P], vectorised over tiles.
template <typename T, int B>
[[gnu::always_inline]] inline void panel_outputs(const T* M, const Plan& p, int64_t t0, int64_t k0,
                                                 int64_t rows, T* y) {
  using V = Vec<T, B>;
  constexpr int64_t L = kLanes<T, B>, P = kPanelTiles<T>;
  constexpr int kOutputs = kTile * kTile;
  const int64_t live = std::min(P, p.tiles - t0);
  const int64_t s = p.interleave, channels = p.K / (s * s);
  // Where output (i, j) of each tile lies for channel 0 of phase (0, 0), -1 past the edge; a
  // channel and phase only add a constant (output_offset is linear in both).
  int64_t base[P][kOutputs];
  for (int64_t l = 0; l < live; ++l) {
    const OutputTile o = output_tile(p, t0 + l);
    for (int i = 0; i < kTile; ++i) {
      for (int j = 0; j < kTile; ++j) {
        base[l][i * kTile + j] =
            i < o.rows && j < o.cols ? output_offset(p, o, i, j, {0, channels, 0, 0}) : -1;
      }
    }
  }
  const int64_t OW = p.OW * s, plane_numel = p.OH * s * OW;
  for (int64_t r = 0; r < rows; ++r) {
    const OutputChannel ch = output_channel(p, k0 + r);
    const T* bias = static_cast<const T*>(p.bias);
    const int64_t shift = ch.phase_h * OW + ch.phase_w;
    const int64_t delta =
        p.channels_last ? shift * channels + ch.k : ch.k * p.out_depth * plane_numel + shift;
    for (int64_t l0 = 0; l0 < live; l0 += L) {
      V m[kPoints];
      for (int xi = 0; xi < kPoints; ++xi) m[xi] = load<B>(M + (xi * rows + r) * P + l0);
      V cols[kTile * kAlpha];  // A^T m: [4, 6]
      for (int j = 0; j < kAlpha; ++j) output_transform(m + j, kAlpha, cols + j, kAlpha);
      V out[kOutputs];  // A^T m A
      for (int i = 0; i < kTile; ++i) output_transform(cols + i * kAlpha, 1, out + i * kTile, 1);
      if (bias) {
        for (int o = 0; o < kOutputs; ++o) out[o] += bias[ch.k];
      }
      const int64_t n = std::min(L, live - l0);
      for (int64_t l = 0; l < n; ++l) {
        const int64_t* tile_base = base[l0 + l];
        for (int o = 0; o < kOutputs; ++o) {
          if (tile_base[o] >= 0) y[tile_base[o] + delta] = out[o][l];
        }
      }
    }
  }
}

// One task of the forward: output channels [k0, k0 + rows) of the panels [panel0, panel1) of a
// chunk whose first tile is `first`.
template <typename T>
struct ForwardTask {
  const Plan* p;
  WeightView<T> w;
  const T* Vt;
  T* y;
  int64_t first, panel0, panel1, k0, rows, block_channels;
  int64_t last_panel_tiles;  // real tiles in panel1 - 1
};

template <typename T, int B>
[[gnu::always_inline]] inline bool run_task(const ForwardTask<T>& a) {
  constexpr int64_t P = kPanelTiles<T>;
  const Plan& p = *a.p;
  const int64_t panels = a.panel1 - a.panel0;
  const ThreadScratch<T> Ut_scratch(1, kPoints * a.rows * a.block_channels);
  T* Ut = Ut_scratch.data();
  const ThreadScratch<T> M_scratch(2, panels * kPoints * a.rows * P);
  T* M = M_scratch.data();
  const WeightView<T> w{a.w.data + a.k0 * a.w.o_stride, a.w.o_stride, a.w.tap_stride, a.w.i_stride};
  const bool staged = w.i_stride != 1 && std::abs(w.tap_stride) != 1;
  const ThreadScratch<T> staged_scratch(3, staged ? a.rows * 9 * a.block_channels : 0);
  FiniteCheck<T, B> finite;
  for (int64_t c0 = 0; c0 < p.Cp; c0 += a.block_channels) {
    const int64_t cn = std::min(a.block_channels, p.Cp - c0);
    const WeightView<T> block =
        staged ? stage_weight_block(w, p, a.rows, c0, cn, staged_scratch.data()) : w;
    transform_weight_block<T, B>(block, p, a.rows, c0, cn, Ut, finite);
    for (int64_t q = 0; q < panels; ++q) {
      for (int xi = 0; xi < kPoints; ++xi) {
        const Operand<T> u{Ut + xi * a.rows * cn, cn, 1};
        const T* v = a.Vt + ((a.panel0 + q) * kPoints + xi) * p.Cp * P + c0 * P;
        T* m = M + (q * kPoints + xi) * a.rows * P;
        // A last panel of at most one vector of tiles: one vector of columns.
        if (q == panels - 1 && a.last_panel_tiles <= kLanes<T>) {
          if (c0 == 0) {
            gemm_rows<T, 1, false>(u, v, P, m, P, a.rows, cn);
          } else {
            gemm_rows<T, 1, true>(u, v, P, m, P, a.rows, cn);
          }
        } else if (c0 == 0) {
          gemm_rows<T, 2, false>(u, v, P, m, P, a.rows, cn);
        } else {
          gemm_rows<T, 2, true>(u, v, P, m, P, a.rows, cn);
        }
      }
    }
  }
  for (int64_t q = 0; q < panels; ++q) {
    panel_outputs<T, B>(M + q * kPoints * a.rows * P, p, a.first + (a.panel0 + q) * P, a.k0, a.rows,
                        a.y);
  }
  return finite.ok();
}

template <typename T, int B>
[[gnu::always_inline]] inline bool run_input_panels(const T* x, const Plan& p, int64_t first,
                                                    int64_t t0, int64_t t1, T* Vt) {
  FiniteCheck<T, B> finite;
  transform_input_panels<T, B>(x, p, first, t0, t1, Vt, finite);
  return finite.ok();
}

CONVPOOL_CLONES bool run_task_f32(const ForwardTask<float>& a) {
  return wide_vector_registers() ? run_task<float, 64>(a) : run_task<float, 32>(a);
}
CONVPOOL_CLONES bool run_task_f64(const ForwardTask<double>& a) {
  return wide_vector_registers() ? run_task<double, 64>(a) : run_task<double, 32>(a);
}
bool run_task_any(const ForwardTask<float>& a) { return run_task_f32(a); }
bool run_task_any(const ForwardTask<double>& a) { return run_task_f64(a); }

CONVPOOL_CLONES bool input_panels_f32(const float* x, const Plan& p, int64_t first, int64_t t0,
                                      int64_t t1, float* Vt) {
  return wide_vector_registers() ? run_input_panels<float, 64>(x, p, first, t0, t1, Vt)
                                 : run_input_panels<float, 32>(x, p, first, t0, t1, Vt);
}
CONVPOOL_CLONES bool input_panels_f64(const double* x, const Plan& p, int64_t first, int64_t t0,
                                      int64_t t1, double* Vt) {
  return wide_vector_registers() ? run_input_panels<double, 64>(x, p, first, t0, t1, Vt)
                                 : run_input_panels<double, 32>(x, p, first, t0, t1, Vt);
}
bool input_panels_any(const float* x, const Plan& p, int64_t first, int64_t t0, int64_t t1,
                      float* Vt) {
  return input_panels_f32(x, p, first, t0, t1, Vt);
}
bool input_panels_any(const double* x, const Plan& p, int64_t first, int64_t t0, int64_t t1,
                      double* Vt) {
  return input_panels_f64(x, p, first, t0, t1, Vt);
}

template <typename T>
bool conv_batched(const T* x, const T* w, T* y, const ConvGeometry& g, int64_t batch,
                  int64_t out_channels, WinogradWeight weight, WinogradOutput<T> output) {
  constexpr int64_t P = kPanelTiles<T>, L = kLanes<T>, size = sizeof(T);
  Plan p = make_plan<T>(g, batch, out_channels);
  p.weight_channels_last = weight.channels_last;
  p.weight_flipped_transpose = weight.flipped_transpose;
  p.interleave = output.interleave;
  p.bias = output.bias;
  const int64_t rows_max = std::min(kTaskChannels, p.K);
  const int64_t blocks = std::max<int64_t>(
      1, (kPoints * rows_max * p.Cp * size + kWeightBlockBytes - 1) / kWeightBlockBytes);
  const int64_t block_channels = round_up((p.Cp + blocks - 1) / blocks, L);
  const int64_t group = std::max<int64_t>(1, kAccumulatorBytes / (kPoints * rows_max * P * size));
  const int64_t panels = (p.tiles + P - 1) / P;
  const int64_t chunk_panels =
      std::clamp<int64_t>(kInputBytes / (kPoints * p.Cp * P * size), 1, panels);
  const int64_t k_tasks = (p.K + kTaskChannels - 1) / kTaskChannels;
  const ThreadScratch<T> Vt_scratch(0, chunk_panels * kPoints * p.Cp * P);
  T* Vt = Vt_scratch.data();
  const WeightView<T> wv = weight_view(w, p);
  std::atomic<bool> finite{true};
  for (int64_t pc0 = 0; pc0 < panels; pc0 += chunk_panels) {
    const int64_t n_panels = std::min(chunk_panels, panels - pc0), first = pc0 * P;
    at::parallel_for(first, first + n_panels * P, 4, [&](int64_t b, int64_t e) {
      if (!input_panels_any(x, p, first, b, e, Vt)) finite = false;
    });
    if (!finite) return false;
    const int64_t groups = (n_panels + group - 1) / group;
    at::parallel_for(0, groups * k_tasks, 1, [&](int64_t b, int64_t e) {
      for (int64_t task = b; task < e; ++task) {
        const int64_t gi = task / k_tasks, k0 = task % k_tasks * kTaskChannels;
        const int64_t panel1 = std::min(n_panels, (gi + 1) * group);
        const ForwardTask<T> a{&p,
                               wv,
                               Vt,
                               y,
                               first,
                               gi * group,
                               panel1,
                               k0,
                               std::min(kTaskChannels, p.K - k0),
                               block_channels,
                               std::min(P, p.tiles - first - (panel1 - 1) * P)};
        if (!run_task_any(a)) finite = false;
      }
    });
    if (!finite) return false;
  }
  return true;
}

// One task of the weight gradient: output channels [k0, k0 + kw) (one or two 64-byte vectors) and
// input channels [c0, c0 + cn) over the tiles of a chunk: acc [36][cn][two vectors] = V^T x Gy
// per point (in L2), then G^T acc G into taps [C][9][Kp], added to what earlier chunks left.
template <typename T>
struct GradTask {
  const Plan* p;
  const T* V;   // [36][rows][Cp]
  const T* Gy;  // [36][rows][Kp]
  T* taps;
  int64_t rows, k0, kw, c0, cn;
  bool accumulate;
};

template <typename T, int B>
[[gnu::always_inline]] inline void run_grad_task(const GradTask<T>& a) {
  using V = Vec<T, B>;
  constexpr int64_t L = kLanes<T, B>, W = kPanelTiles<T>;
  const Plan& p = *a.p;
  const int64_t cn = std::min(a.cn, p.C - a.c0);
  const ThreadScratch<T> acc_scratch(2, kPoints * cn * W);
  T* acc = acc_scratch.data();
  for (int xi = 0; xi < kPoints; ++xi) {
    const Operand<T> v{a.V + xi * a.rows * p.Cp + a.c0, 1, p.Cp};
    const T* gy = a.Gy + xi * a.rows * p.Kp + a.k0;
    T* m = acc + xi * cn * W;
    if (a.kw > kLanes<T>) {
      gemm_rows<T, 2, false>(v, gy, p.Kp, m, W, cn, a.rows);
    } else {
      gemm_rows<T, 1, false>(v, gy, p.Kp, m, W, cn, a.rows);
    }
  }
  for (int64_t c = 0; c < cn; ++c) {
    T* row = a.taps + (a.c0 + c) * 9 * p.Kp + a.k0;
    for (int64_t kv = 0; kv < a.kw; kv += L) {
      V m[kPoints];
      for (int xi = 0; xi < kPoints; ++xi) m[xi] = load<B>(acc + (xi * cn + c) * W + kv);
      V g[9];
      tap_tile_transform(m, g);
      for (int i = 0; i < 9; ++i) {
        T* dst = row + i * p.Kp + kv;
        if (a.accumulate) g[i] += load<B>(dst);
        store(dst, g[i]);
      }
    }
  }
}

CONVPOOL_CLONES void run_grad_task_f32(const GradTask<float>& a) {
  wide_vector_registers() ? run_grad_task<float, 64>(a) : run_grad_task<float, 32>(a);
}
CONVPOOL_CLONES void run_grad_task_f64(const GradTask<double>& a) {
  wide_vector_registers() ? run_grad_task<double, 64>(a) : run_grad_task<double, 32>(a);
}
void run_grad_task_any(const GradTask<float>& a) { run_grad_task_f32(a); }
void run_grad_task_any(const GradTask<double>& a) { run_grad_task_f64(a); }

template <typename T>
bool weight_grad_batched(const T* gy, const T* x, T* gw, const ConvGeometry& g, int64_t batch,
                         int64_t out_channels) {
  constexpr int64_t L = kLanes<T>, W = kPanelTiles<T>, size = sizeof(T);
  const Plan p = make_plan<T>(g, batch, out_channels);
  const int64_t per_tile = kPoints * (p.Cp + p.Kp) * size;
  const int64_t chunk_max = std::max<int64_t>(1, 2 * kInputBytes / per_tile);
  const int64_t chunks = (p.tiles + chunk_max - 1) / chunk_max;
  const int64_t tile_chunk = (p.tiles + chunks - 1) / chunks;
  const int64_t blocks =
      std::max<int64_t>(1, (kPoints * W * p.Cp * size + kWeightBlockBytes - 1) / kWeightBlockBytes);
  const int64_t block_channels = round_up((p.Cp + blocks - 1) / blocks, L);
  const int64_t c_blocks = (p.C + block_channels - 1) / block_channels;
  const int64_t k_tasks = (p.Kp + W - 1) / W;
  const ThreadScratch<T> V_scratch(0, kPoints * tile_chunk * p.Cp);
  T* V = V_scratch.data();
  const ThreadScratch<T> Gy_scratch(1, kPoints * tile_chunk * p.Kp);
  T* Gy = Gy_scratch.data();
  const ThreadScratch<T> taps_scratch(3, p.C * 9 * p.Kp);
  T* taps = taps_scratch.data();
  for (int64_t t0 = 0; t0 < p.tiles; t0 += tile_chunk) {
    const int64_t t1 = std::min(p.tiles, t0 + tile_chunk), rows = t1 - t0;
    if (!parallel_pass<T>({Pass::kInputs, &p, x, V, t0, rows, 0, 0}, t0, t1, 4)) return false;
    if (!parallel_pass<T>({Pass::kGrads, &p, gy, Gy, t0, rows, 0, p.Kp}, t0, t1, 4)) return false;
    at::parallel_for(0, k_tasks * c_blocks, 1, [&](int64_t b, int64_t e) {
      for (int64_t task = b; task < e; ++task) {
        const int64_t k0 = task / c_blocks * W;
        run_grad_task_any(GradTask<T>{&p, V, Gy, taps, rows, k0, std::min(W, p.Kp - k0),
                                      task % c_blocks * block_channels, block_channels, t0 > 0});
      }
    });
  }
  at::parallel_for(0, p.K, 16, [&](int64_t b, int64_t e) { write_grad_weight(taps, p, gw, b, e); });
  return true;
}

}  // namespace

// From 128 x 128 channels on, on planes of at most 16 tiles (maps up to 16x16: ResNet's 14x14
// and 7x7 stages), the batched variant is faster: C256 14x14 N8 channels_last 3.7 against 4.7
// ms forward; C512 7x7 N8 forward 5.5 against 7.0. On larger planes the fused blocks win since
// their transforms went through register transposes (Xeon, N8, channels_last, batched -> fused,
// ms: C128 28x28 forward 4.4 -> 2.6, input gradient 4.9 -> 2.9, weight gradient 4.3 -> 2.9;
// squeezenet's C64 27x27 -> 256 N4 2.5 -> 1.7; NCHW C256 20x20 8.3 -> 6.7). Below 128 x 128
// channels the fused blocks win everywhere (C64 56x56: 6.9 against 9.3 ms).
bool winograd_batched_pays(const ConvGeometry& g, int64_t batch, int64_t out_channels) {
  (void)batch;
  const int64_t plane_tiles =
      tiles_along(g.grid[1], g.dilation[1]) * tiles_along(g.grid[2], g.dilation[2]);
  return winograd_planewise(g) && g.channels * out_channels >= 128 * 128 && plane_tiles <= 16;
}

bool winograd_conv_batched(const float* x, const float* w, float* y, const ConvGeometry& g,
                           int64_t batch, int64_t out_channels, WinogradWeight weight,
                           WinogradOutput<float> output) {
  return conv_batched(x, w, y, g, batch, out_channels, weight, output);
}
bool winograd_conv_batched(const double* x, const double* w, double* y, const ConvGeometry& g,
                           int64_t batch, int64_t out_channels, WinogradWeight weight,
                           WinogradOutput<double> output) {
  return conv_batched(x, w, y, g, batch, out_channels, weight, output);
}
bool winograd_weight_grad_batched(const float* gy, const float* x, float* gw, const ConvGeometry& g,
                                  int64_t batch, int64_t out_channels) {
  return weight_grad_batched(gy, x, gw, g, batch, out_channels);
}
bool winograd_weight_grad_batched(const double* gy, const double* x, double* gw,
                                  const ConvGeometry& g, int64_t batch, int64_t out_channels) {
  return weight_grad_batched(gy, x, gw, g, batch, out_channels);
}

}  // namespace convpool::cpu
