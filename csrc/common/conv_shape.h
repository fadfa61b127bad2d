#pragma once
// Shape rules and argument checks of the convolution family: the one place the kernels of every
// backend learn their geometry. (The Python fakes mirror these formulas in
// torch_convpool/_shapes.py; tests compare fake and real shapes over the whole grid.)
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Optional.h>

#include "conv_geometry.h"

namespace convpool {

// Length of a conv output along one dim. `padding_after` may be negative (a crop): conv's
// backward needs it when the stride does not divide the padded input exactly.
inline int64_t conv_output_length(int64_t input, int64_t kernel, int64_t stride, int64_t pad_before,
                                  int64_t pad_after, int64_t dilation) {
  return (input + pad_before + pad_after - dilation * (kernel - 1) - 1) / stride + 1;
}

// Length of a conv_transpose output along one dim (the inverse of conv_output_length).
inline int64_t conv_transpose_output_length(int64_t input, int64_t kernel, int64_t stride,
                                            int64_t pad_before, int64_t pad_after,
                                            int64_t dilation) {
  return (input - 1) * stride - pad_before - pad_after + dilation * (kernel - 1) + 1;
}

enum class ConvRole { kConv, kTranspose };

// Checks the shapes and size arguments of a conv (kConv: `input` is the image) or conv_transpose
// (kTranspose: `input` is the grid) and returns its geometry. Errors name the op, the argument
// and the values. `padding` holds the before-padding of each spatial dim, then the after-padding;
// only the before-padding must be non-negative (a negative after-padding crops).
ConvGeometry conv_geometry(const char* op, ConvRole role, at::IntArrayRef input_sizes,
                           at::IntArrayRef weight_sizes, at::IntArrayRef stride,
                           at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);

// Checks that input, weight and bias agree in dtype and device and that bias has `out_channels`
// entries.
void check_conv_tensors(const char* op, const at::Tensor& input, const at::Tensor& weight,
                        const c10::optional<at::Tensor>& bias, int64_t out_channels);

// Output channels of a conv / conv_transpose with this weight.
inline int64_t conv_out_channels(ConvRole role, at::IntArrayRef weight_sizes, int64_t groups) {
  return role == ConvRole::kConv ? weight_sizes[0] : weight_sizes[1] * groups;
}

// The output sizes [N, C, spatial...] of a conv / conv_transpose with this geometry.
std::vector<int64_t> conv_output_sizes(const ConvGeometry& g, ConvRole role, int64_t batch,
                                       int64_t out_channels, int64_t spatial_dims);

}  // namespace convpool
