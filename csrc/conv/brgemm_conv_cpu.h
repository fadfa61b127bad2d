#pragma once
// bfloat16 convolutions on AMX through ATen's batch-reduce GEMM micro-kernel
// (at::native::cpublas::brgemm): implicit GEMM with float32 accumulation and one rounding per
// output, as torch's oneDNN convolutions round.
//
// The input is copied once into a zero-padded channels_last image (the padding the taps reach,
// channels rounded up to even: VNNI pairs the reduction rows). Then every tap of every output
// pixel reads inside that image, and for a fixed (kd, kh) the KW taps of one pixel are one
// contiguous run of KW * C values (no dilation along W). A block of output pixels is a strided
// view of it, ld = stride_w * C: the micro-kernel multiplies it by the tap row's packed weight
// [KW * C, K] straight from the image, with no column matrix. With stride 1 a block runs over
// "virtual" pixels oh * Wp + ow of the padded width Wp, so it spans output lines (small 7x7
// images still fill the AMX tiles); the Wp - OW pixels past each line's end are computed and
// dropped. Strided convs on few channels per group (stems) instead gather each block's rows of
// taps into an aligned buffer for our AMX tiles (conv_forward_gathered).
//
// Determinism: every output is summed by one thread in a fixed order of taps; blocks depend on
// the shapes only.
#include <ATen/core/Tensor.h>

#include "../common/conv_geometry.h"

namespace convpool::cpu {

// Each computes what gemm_conv / gemm_conv_transpose / gemm_conv_weight_grad compute and returns
// true, or returns false having done nothing where it does not apply (not bfloat16, no AMX
// packing on this CPU or in this torch build, or a geometry it leaves to the GEMM engine).
// Whether bfloat16 convs multiply on AMX here (else our AVX512-BF16 kernel or the GEMM engine).
bool bfloat16_convs_on_amx();

bool brgemm_conv(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
                 const ConvGeometry& g);
bool brgemm_conv_transpose(const at::Tensor& input, const at::Tensor& weight,
                           const at::Tensor& output, const ConvGeometry& g);
bool brgemm_conv_weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                             const at::Tensor& grad_weight, const ConvGeometry& g);

}  // namespace convpool::cpu
