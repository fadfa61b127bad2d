#pragma once
// The CPU's dense-convolution engine: blocked implicit GEMM in the tensors' own memory format.
//
// A block of output pixels gathers its column matrix (every tap of every input channel of one
// group) into a per-thread buffer sized for L2, and one BLAS GEMM (at::mm_out, MKL) turns it into
// that block's outputs, written in place. NCHW blocks are [taps * Cg, pixels] (rows are strided
// copies of input lines); channels_last blocks are [pixels, taps * Cg] (each tap a contiguous run
// of channels), so a channels_last conv never leaves channels_last. A 1x1 conv with stride 1 and no
// padding needs no gather: its input is its column matrix.
//
// conv_transpose is computed as a gather too, by phases: the image positions i = s * j + r of one
// residue r (per dim) are reached by a fixed subset of taps, so each phase is a stride-1 conv of
// the grid with a sub-kernel of the flipped, transposed weight (a stride-1 conv_transpose is one
// phase: the conv with the flipped kernel). No col2im scatter, no atomics, and only the
// multiplications that are not by zero.
//
// Determinism: block boundaries depend on the shapes only, every GEMM runs single-threaded inside
// at::parallel_for, and the weight gradient sums a fixed number of partial sums in a fixed order,
// so results are bitwise the same for any thread count.
#include <ATen/core/Tensor.h>

#include "../common/conv_geometry.h"

namespace convpool::cpu {

// output [N, K, grid...] = conv(input [N, C, image...], weight [K, C / groups, kernel...]).
// input and output are both NCHW-contiguous or both channels_last (g.channels_last); the weight
// may have any layout (used as it is when it has the input's, as in a channels_last model).
// The bias (undefined: none) is added to each block of outputs while it is in cache.
void gemm_conv(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
               const ConvGeometry& g, const at::Tensor& bias = {});

// output [N, C, image...] = conv_transpose(input [N, K, grid...], weight [K, C / groups, ...]):
// the input gradient of gemm_conv with the same geometry.
void gemm_conv_transpose(const at::Tensor& input, const at::Tensor& weight,
                         const at::Tensor& output, const ConvGeometry& g);

// The conv a stride-1 conv_transpose computes: the flipped kernel over its input, which has
// `channels` channels (the transpose's input channels).
ConvGeometry stride_one_transpose_geometry(const ConvGeometry& g, int64_t channels);

// That conv's weight: the transpose's [K, C / groups, kernel...] as [C, K / groups, kernel...],
// transposed per group and flipped in every spatial dim.
at::Tensor stride_one_transpose_weight(const at::Tensor& weight, int64_t groups);

// grad_weight [K, C / groups, kernel...] = sum over batch and grid of grad_output x im2col(input),
// written in the input's memory format.
void gemm_conv_weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                           const at::Tensor& grad_weight, const ConvGeometry& g);

// The dtypes the engine computes in: float32, float64, and bfloat16 through a bfloat16 GEMM
// (oneDNN: AMX / AVX512-BF16 where the CPU has them) that accumulates in float32, as torch's
// bfloat16 convolutions do. float16 is not among them: at::mm in float16 ran slower than in
// float32 on the machines measured (82-146 against 90-190 GFLOP/s, one thread), so float16
// convs are computed in float32 and rounded once.
bool gemm_engine_computes(at::ScalarType type);

// Whether a floating-point tensor holds no inf or NaN (one parallel pass).
bool all_finite(const at::Tensor& t);

}  // namespace convpool::cpu
