#pragma once
// The inner loops of the channels_last depthwise kernels (depth multiplier 1): a line of pixels
// whose taps each read a plain strided run of pixels, the channels being the vector. Compiled
// per vector ISA (see common/isa_clones.h).
#include <cstdint>

namespace convpool::cpu {

// One tap of a line: pixel j (lo <= j < hi) reads the channels at src + j * step and multiplies
// them by the per-channel weights w (line) or adds its products into the per-channel sums
// (weight gradient). src may point outside the tensor; only [lo, hi) is read.
template <typename T>
struct LineTap {
  const T* src;
  T* sums;  // weight gradient: this tap's [channels] sums; null in lines
  const T* w;
  int64_t lo, hi;
};

// How a line's taps group into kernel rows, where they do: each run of `per_row` consecutive
// taps has sources `src_step` elements apart (one pixel, so dilation 1; negative where the taps
// walk the row backwards, as conv_transpose's do) and weights `w_step` apart. The interior then
// loads each input vector once for all the taps of its row that read it, instead of once per
// tap. per_row = 0, or taps that turn out not to be so grouped: every tap on its own.
// `streams`: the op's tensors are larger than the last-level cache, so lines come from memory:
// the row kernels, whose prefetches hide its latency, then pay off even where they read each
// column for fewer taps than their bookkeeping costs in cache (3 taps at stride 2).
struct TapRows {
  int64_t per_row = 0;
  int64_t src_step = 0;
  int64_t w_step = 0;
  bool streams = false;
};

// out[j * out_step + c] = bias[c] + sum over the taps valid at j of w[c] * src[j * step + c],
// for j < count and c < channels (a pixel no tap reaches gets the bias). bias: [channels], or
// nullptr for zero; the sums start from it (a separate pass over the output cost a third of a
// 3x3 forward: N8 C256 28x28 channels_last 0.48 -> 0.34 ms).
void depthwise_tap_line(float* out, int64_t out_step, int64_t count, const LineTap<float>* taps,
                        int64_t ntaps, int64_t step, int64_t channels, TapRows rows,
                        const float* bias = nullptr);
void depthwise_tap_line(double* out, int64_t out_step, int64_t count, const LineTap<double>* taps,
                        int64_t ntaps, int64_t step, int64_t channels, TapRows rows,
                        const double* bias = nullptr);

// sums[c] += sum over lo <= j < hi of grad[j * grad_step + c] * src[j * step + c], per tap, in
// an order fixed by the line (deterministic); taps grouped by kernel row as `rows` says (w_step
// unused) share their gradient loads.
void depthwise_tap_sums(const float* grad, int64_t grad_step, const LineTap<float>* taps,
                        int64_t ntaps, int64_t step, int64_t channels, TapRows rows);
void depthwise_tap_sums(const double* grad, int64_t grad_step, const LineTap<double>* taps,
                        int64_t ntaps, int64_t step, int64_t channels, TapRows rows);

// A 2-d depthwise forward over one block of kPaddedLanes<T> channels (64 bytes) of one sample,
// staged zero-padded to the windows' reach: staged[(y * width + x) * lanes + c] for y <
// rows, x < width; weights w[(kh * KW + kw) * lanes + c]; sums start from bias[c] (nullptr:
// zero). Every window lies inside, so no pixel checks a bound. Writes channels c < channels of
// output pixel (oh, ow) at out + (oh * grid_w + ow) * out_pixel.
template <typename T>
constexpr int64_t kPaddedLanes = 64 / sizeof(T);

struct PaddedPlane {
  int64_t width;               // staged pixels per row
  int64_t grid_h, grid_w;      // output rows and columns
  int64_t kernel_h, kernel_w;  // taps
  int64_t stride_h, stride_w;  // in staged pixels
  int64_t dilation_h, dilation_w;
};

void depthwise_padded_plane(const float* staged, const float* w, const float* bias,
                            const PaddedPlane& p, float* out, int64_t out_pixel, int64_t channels);
void depthwise_padded_plane(const double* staged, const double* w, const double* bias,
                            const PaddedPlane& p, double* out, int64_t out_pixel, int64_t channels);

}  // namespace convpool::cpu
