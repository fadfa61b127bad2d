#pragma once
// Winograd minimal filtering F(4x4, 3x3) (Lavin and Gray, CVPR 2016) for the CPU: a 4x4 output
// tile from a 6x6 input tile with 36 multiplications per (input channel, output channel) pair
// instead of 144, so 4x fewer than any direct or GEMM algorithm.
//
// Per block of tiles: the input tiles are transformed (B^T d B, vectorised over channels) into
// 36 matrices [tiles, C]; 36 small GEMMs with the transformed weights U = G g G^T [C, K] (our own
// register-blocked micro-kernel, cloned per vector ISA) give 36 matrices [tiles, K]; the output
// transform (A^T m A) writes the 4x4 outputs in place, in NCHW or channels_last. Everything of a
// block stays in L2.
//
// Accuracy (points 0, +-1, +-2, inf): the transforms' coefficients reach 8 (A) and 5 (B), so
// rounding errors grow. Measured in float32 against a float64 reference, as a fraction of the
// output's RMS: largest error 2e-5 (16 channels) to 9e-5 (512 channels), RMS error 1e-6 to 4e-6;
// the GEMM engine and torch's direct convolution reach ~3e-6 / 3e-7. float64 stays at ~1e-15.
// tests/test_conv_algorithms.py holds the bound (1e-4 of the RMS). Larger kernels sum one 3x3
// block per 3x3 of taps in the transformed domain: 5x5, four blocks, measured up to 1.1e-4 (RMS
// error 6e-6) at 512 channels, held to 2e-4 (the bound times the square root of the blocks).
#include <cstdint>

#include "../common/conv_geometry.h"

namespace convpool::cpu {

// F(4x4, 3x3) computes this conv: a 3x3 kernel along (h, w) with stride 1, one group. Larger
// kernels (3x5, 5x5, up to 9x9) are summed from 3x3 blocks of taps, each one more GEMM per point
// into the same accumulators: 5x5 in 4 x 36 multiplications per 4x4 outputs, against 25 x 16. A
// dilation d splits the outputs into d x d phases, each an undilated conv of the input pixels of
// its own residue mod d, tiled on its own (DeepLab's dilated ResNet stages). In 3-d the depth taps
// may be anything (kernel, stride, dilation, padding): each output plane sums one 2-d conv per
// depth tap, in the transformed domain, so a 3x3x3 conv costs 3 x 36 multiplications per 4x4
// outputs against 27 x 16.
bool winograd_applies(const ConvGeometry& g);

// Whether each output plane is the 2-d conv of its own input plane with a 3x3 kernel (2-d, and
// 1x3x3 in 3-d with no depth padding or stride): the batched variant takes these only.
bool winograd_planewise(const ConvGeometry& g);

// The chunks of output channels whose float32 transformed weights the fused blocks hold at once
// (each chunk transforms the input tiles again).
int64_t winograd_weight_chunks(const ConvGeometry& g, int64_t out_channels);

// The 3x3 blocks of taps of the kernel's height x width.
int64_t winograd_blocks(const ConvGeometry& g);

// The tiles of 4x4 outputs of one image (over all depth planes and dilation phases).
int64_t winograd_tiles_per_image(const ConvGeometry& g);

// The weight handed to winograd_conv: the conv's own [K, C, 3, 3], or the forward weight
// [C, K, 3, 3] of a stride-1 conv_transpose (an input gradient), whose flipped transpose is the
// conv's weight (read as it is: no flipped copy is made); and its layout.
struct WinogradWeight {
  bool channels_last;
  bool flipped_transpose;
};

// Where the outputs go: as they are, or interleaved s x s: output channel (a * s + b) * K + k of
// output (oh, ow) is channel k of output (s * oh + a, s * ow + b) of y [N, K, s * OH, s * OW]
// (a strided conv_transpose computed as one 3x3 conv, gemm_conv_cpu.cpp's run_winograd_phases);
// plus a bias [K] where one is given, added as each tile is written (a pass of its own over the
// output was 2.5 % of squeezenet's channels_last inference).
template <typename T>
struct WinogradOutput {
  int64_t interleave = 1;
  const T* bias = nullptr;
};

// y = conv(x, w) for a geometry winograd_applies to, in g's layout (NCHW or channels_last).
// Returns false, with y unspecified, where x or w holds an inf or a NaN: the transforms mix a
// tile's values (inf - inf = NaN where a direct sum gives inf), so such data is left to the GEMM
// engine, which gives torch's answer. The weight gradient likewise.
bool winograd_conv(const float* x, const float* w, float* y, const ConvGeometry& g, int64_t batch,
                   int64_t out_channels, WinogradWeight weight, WinogradOutput<float> output = {});
bool winograd_conv(const double* x, const double* w, double* y, const ConvGeometry& g,
                   int64_t batch, int64_t out_channels, WinogradWeight weight,
                   WinogradOutput<double> output = {});

// grad_weight [K, C, 3, 3] of such a conv from its grad_output [N, K, grid...] and input, all in
// g's layout (winograd_weight_grad_cpu.cpp).
bool winograd_weight_grad(const float* grad_output, const float* x, float* grad_weight,
                          const ConvGeometry& g, int64_t batch, int64_t out_channels);
bool winograd_weight_grad(const double* grad_output, const double* x, double* grad_weight,
                          const ConvGeometry& g, int64_t batch, int64_t out_channels);

// The variant for many channels and few tiles (winograd_batched_cpu.cpp): whether it beats the
// fused blocks of winograd_conv for this conv, and its forward and weight gradient. winograd_conv
// and winograd_weight_grad call them where they pay.
bool winograd_batched_pays(const ConvGeometry& g, int64_t batch, int64_t out_channels);
bool winograd_conv_batched(const float* x, const float* w, float* y, const ConvGeometry& g,
                           int64_t batch, int64_t out_channels, WinogradWeight weight,
                           WinogradOutput<float> output = {});
bool winograd_conv_batched(const double* x, const double* w, double* y, const ConvGeometry& g,
                           int64_t batch, int64_t out_channels, WinogradWeight weight,
                           WinogradOutput<double> output = {});
bool winograd_weight_grad_batched(const float* gy, const float* x, float* gw, const ConvGeometry& g,
                                  int64_t batch, int64_t out_channels);
bool winograd_weight_grad_batched(const double* gy, const double* x, double* gw,
                                  const ConvGeometry& g, int64_t batch, int64_t out_channels);

}  // namespace convpool::cpu
