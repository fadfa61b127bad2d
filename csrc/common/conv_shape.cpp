#include "conv_shape.h"

#include <c10/util/irange.h>

namespace convpool {
namespace {

std::string sizes_str(at::IntArrayRef sizes) { return c10::str(sizes); }

void check_list(const char* op, const char* name, at::IntArrayRef list, size_t expected,
                const char* what) {
  TORCH_CHECK(list.size() == expected, op, ": ", name, " must have ", expected, " entries (", what,
              "), but got ", sizes_str(list));
}

}  // namespace

ConvGeometry conv_geometry(const char* op, ConvRole role, at::IntArrayRef input_sizes,
                           at::IntArrayRef weight_sizes, at::IntArrayRef stride,
                           at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const int64_t dims = static_cast<int64_t>(weight_sizes.size()) - 2;
  TORCH_CHECK(dims >= 1 && dims <= kSpatialDims, op, ": weight must have 3, 4 or 5 dims (",
              "[out, in / groups, *kernel]), but got weight of size ", sizes_str(weight_sizes));
  TORCH_CHECK(static_cast<int64_t>(input_sizes.size()) == dims + 2, op, ": expected a ", dims + 2,
              "-d input (batched, for a ", dims + 2, "-d weight), but got input of size ",
              sizes_str(input_sizes));
  check_list(op, "stride", stride, dims, "one per spatial dim");
  check_list(op, "dilation", dilation, dims, "one per spatial dim");
  check_list(op, "padding", padding, 2 * dims, "before and after each spatial dim");
  TORCH_CHECK(groups > 0, op, ": groups must be positive, but got groups=", groups);
  for (const auto d : c10::irange(dims)) {
    TORCH_CHECK(stride[d] > 0, op,
                ": non-positive stride is not supported, but got stride=", sizes_str(stride));
    TORCH_CHECK(dilation[d] > 0, op,
                ": dilation should be greater than zero, but got dilation=", sizes_str(dilation));
    TORCH_CHECK(padding[d] >= 0, op,
                ": negative padding is not supported, but got padding=", sizes_str(padding));
    TORCH_CHECK(weight_sizes.at(d + 2) > 0, op,
                ": kernel size must be positive, but got weight of size ", sizes_str(weight_sizes));
  }

  // Conv weights are [out, in / groups, k...]; conv_transpose weights are [in, out / groups, k...].
  TORCH_CHECK(weight_sizes.at(0) >= groups, op, ": given groups=", groups,
              ", expected weight to be at least ", groups,
              " at dimension 0, but got weight of size ", sizes_str(weight_sizes), " instead");
  TORCH_CHECK(weight_sizes.at(0) % groups == 0, op, ": given groups=", groups,
              ", expected weight to be divisible by ", groups,
              " at dimension 0, but got weight of size ", sizes_str(weight_sizes));
  const int64_t expected_in =
      role == ConvRole::kConv ? weight_sizes.at(1) * groups : weight_sizes.at(0);
  TORCH_CHECK(input_sizes.at(1) == expected_in, op, ": given groups=", groups, ", weight of size ",
              sizes_str(weight_sizes), ", expected input", sizes_str(input_sizes), " to have ",
              expected_in, " channels, but got ", input_sizes.at(1), " channels instead");
  ConvGeometry g{};
  g.channels =
      role == ConvRole::kConv ? input_sizes.at(1) : conv_out_channels(role, weight_sizes, groups);
  g.groups = groups;
  const int64_t lead = kSpatialDims - dims;
  for (const auto d : c10::irange(kSpatialDims)) {
    g.image[d] = g.grid[d] = g.kernel[d] = g.stride[d] = g.dilation[d] = 1;
    g.pad[d] = 0;
  }
  for (const auto d : c10::irange(dims)) {
    const int64_t s = lead + d;
    const int64_t in = input_sizes.at(d + 2);
    const int64_t pad_after = padding[dims + d];
    g.kernel[s] = weight_sizes.at(d + 2);
    g.stride[s] = stride[d];
    g.pad[s] = padding[d];
    g.dilation[s] = dilation[d];
    const int64_t span = dilation[d] * (g.kernel[s] - 1) + 1;
    if (role == ConvRole::kConv) {
      g.image[s] = in;
      TORCH_CHECK(in + padding[d] + pad_after >= span, op,
                  ": calculated padded input size per channel (", in + padding[d] + pad_after,
                  " in spatial dim ", d, ") is smaller than the dilated kernel size (", span,
                  "); kernel size can't be greater than actual input size");
      g.grid[s] =
          conv_output_length(in, g.kernel[s], stride[d], padding[d], pad_after, dilation[d]);
    } else {
      // As torch's: an empty conv_transpose input must be empty in its batch or channels.
      TORCH_CHECK(in > 0 || input_sizes.at(0) == 0 || input_sizes.at(1) == 0, op,
                  ": only zero batch or zero channel inputs are supported, but got input of size ",
                  sizes_str(input_sizes));
      g.grid[s] = in;
      const int64_t out = conv_transpose_output_length(in, g.kernel[s], stride[d], padding[d],
                                                       pad_after, dilation[d]);
      // torch gives an empty batch its output shape even where that is 0 long (never negative).
      TORCH_CHECK(out > 0 || (out == 0 && input_sizes.at(0) == 0), op,
                  ": output size in spatial dim ", d, " is ", out, " (input ", in, ", kernel ",
                  g.kernel[s], ", stride ", stride[d], ", padding ", padding[d], "/", pad_after,
                  ", dilation ", dilation[d], "), but must be positive");
      g.image[s] = std::max<int64_t>(out, 0);
    }
  }
  if (role == ConvRole::kConv) {
    // As torch's, after every dim's kernel reach: an input empty along a spatial dim must be
    // empty in its batch or channels too, however much padding there is.
    bool spatial_empty = false;
    for (const auto d : c10::irange(dims))
      spatial_empty = spatial_empty || input_sizes.at(d + 2) == 0;
    TORCH_CHECK(!spatial_empty || input_sizes.at(0) == 0 || input_sizes.at(1) == 0, op,
                ": only zero batch or zero channel inputs are supported, but got input of size ",
                sizes_str(input_sizes));
  }
  return g;
}

void check_conv_tensors(const char* op, const at::Tensor& input, const at::Tensor& weight,
                        const c10::optional<at::Tensor>& bias, int64_t out_channels) {
  TORCH_CHECK(input.device() == weight.device(), op, ": input (", input.device(), ") and weight (",
              weight.device(), ") must be on the same device");
  TORCH_CHECK(input.scalar_type() == weight.scalar_type(), op, ": input type (",
              input.scalar_type(), ") and weight type (", weight.scalar_type(),
              ") should be the same");
  TORCH_CHECK(at::isFloatingType(input.scalar_type()), op,
              ": expected a floating point input, but got ", input.scalar_type());
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == out_channels, op,
                ": expected bias to be 1-d with ", out_channels,
                " elements (one per output channel), but got bias of size ",
                sizes_str(bias->sizes()));
    TORCH_CHECK(bias->scalar_type() == input.scalar_type(), op, ": input type (",
                input.scalar_type(), ") and bias type (", bias->scalar_type(),
                ") should be the same");
    TORCH_CHECK(bias->device() == input.device(), op, ": input (", input.device(), ") and bias (",
                bias->device(), ") must be on the same device");
  }
}

std::vector<int64_t> conv_output_sizes(const ConvGeometry& g, ConvRole role, int64_t batch,
                                       int64_t out_channels, int64_t spatial_dims) {
  // torch answers a conv of no input channels with no output channels (its empty-input path),
  // whatever the weight's first dim.
  const bool no_channels = role == ConvRole::kConv && g.channels == 0;
  std::vector<int64_t> sizes{batch, no_channels ? 0 : out_channels};
  const int64_t* spatial = role == ConvRole::kConv ? g.grid : g.image;
  for (int64_t d = kSpatialDims - spatial_dims; d < kSpatialDims; ++d) sizes.push_back(spatial[d]);
  return sizes;
}

}  // namespace convpool
