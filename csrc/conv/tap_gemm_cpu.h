#pragma once
// Channels_last convolution as a sum over taps of indirect GEMMs: for each tap, the output pixels
// whose window has that tap inside the image are multiplied by the tap's [Cg, Kg] weight, each
// pixel's input row read where it lies (packed_gemm_rows: a table of row pointers, no gathered
// copy) and added into its output row (a forward's taps of one kernel row as one product where
// they lie side by side: conv_by_taps). Only the products by image values are computed, pixel by
// pixel: DeepLab's ASPP (dilation 12-36 on 28x28 maps) reads padding with half to seven eighths
// of its taps.
//
// Against the regions of live_taps.h (one im2col conv per region of constant live taps), which it
// replaces where our GEMM computes the products: the weight is packed once per call rather than
// copied per region; every block of output pixels is as large as the batch allows instead of the
// small corner regions that one core computed alone; and with Cg of thousands (ASPP's 2048) a
// region's gathered rows of taps x Cg values left room in L2 for a few dozen pixels, each block
// streaming the region's weight of megabytes again. 2 threads, Zen 4, ms regions -> taps (torch),
// forward / input gradient / weight gradient: N2 C2048 -> 256 28x28 dilation 12 channels_last
// 67 / 75 / 66 -> 40 / 38 / 43 (38 / 39 / 72), NCHW (through channels_last copies) 95 / 112 /
// 101 -> 43 / 44 / 47 (79 / 41 / 47); N8 C256 -> 256 channels_last 23 / 51 / 27 -> 18 / 19 / 22
// (19 / 22 / 23). deeplabv3_resnet50 N2 inference 0.91 -> 1.05x torch channels_last, 1.19 ->
// 1.33x NCHW.
//
// Determinism: a pixel's taps are added in tap order, each as one GEMM row; the blocks depend on
// the shapes only.
#include <cstdint>

#include "../common/conv_geometry.h"
#include "conv_algorithm.h"

namespace convpool::cpu {

// A weight operand per group and tap: element (c, k) (input channel c, output channel k of
// group gi, tap t) at data[gi * group + t * tap + c * in + k * out].
template <typename T>
struct TapWeights {
  const T* data;
  int64_t group, tap, in, out;
};

// Whether conv_by_taps (or, for kWeightGrad, weight_grad_by_taps) is the engine for g (either
// layout: NCHW through channels_last copies): float32 / float64 where the taps engine may run
// (taps_gemm_allowed), for convs whose windows reach far enough into the padding
// for live_tap_regions to split them, and dense convs of several taps over enough channels that
// read padding with a tenth of their tap positions, or (forwards only) are strided
// (tap_gemm_cpu.cpp).
bool taps_engine_for(const ConvGeometry& g, int64_t batch, int64_t out_channels, bool floating,
                     ConvPass pass = ConvPass::kForward);

// Whether conv_by_taps computes a strided conv_transpose of geometry g (an input gradient) whose
// input has `channels` channels: by the rule of dense strided forwards (tap_gemm_cpu.cpp). A
// stride-1 one is the conv of the flipped kernel: taps_engine_for of that conv decides.
bool strided_transpose_by_taps(const ConvGeometry& g, int64_t batch, int64_t channels,
                               bool floating);

// What conv_by_taps computes: the conv of geometry g, with `channels` output channels, or its
// transpose (the input gradient, or conv_transpose), whose input has those `channels`.
struct TapProduct {
  int64_t batch, channels;
  bool transposed;
};

// Forward: y [N, grid..., K] = conv(x [N, image..., C], w) + bias (may be null); transposed:
// y [N, image..., C] = conv_transpose(x [N, grid..., K], w). Channels_last; w's element (c, k) is
// the product's input channel c and output channel k (for the transpose: w[k, c, tap] of the
// conv's weight).
template <typename T>
void conv_by_taps(const T* x, TapWeights<T> w, T* y, const ConvGeometry& g, TapProduct product,
                  const T* bias);

// grad_weight [K, taps, Cg] (channels_last) = sum over the batch of grad_output [N, grid..., K]
// x the live windows of x [N, image..., C], tap by tap.
template <typename T>
void weight_grad_by_taps(const T* grad_output, const T* x, T* grad_weight, const ConvGeometry& g,
                         int64_t batch, int64_t out_channels);

}  // namespace convpool::cpu
