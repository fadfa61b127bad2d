#include "pool_shape.h"

#include <ATen/ATen.h>
#include <c10/util/irange.h>

namespace convpool {
namespace {

int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// Fills the trailing `dims` entries of a kSpatialDims array, the leading ones with `fill`.
void place(int64_t* dst, at::IntArrayRef src, int64_t fill) {
  const int64_t lead = kSpatialDims - static_cast<int64_t>(src.size());
  for (const auto d : c10::irange(kSpatialDims)) dst[d] = d < lead ? fill : src[d - lead];
}

// `empty_channels`: the adaptive ops take zero channels, as torch's do (an empty output).
int64_t check_input(const char* op, const at::Tensor& input, int64_t dims,
                    PoolTypes types = PoolTypes::kFloating, bool empty_channels = false) {
  TORCH_CHECK(dims >= 1 && dims <= kSpatialDims, op, ": expected 1 to 3 spatial dims, got ", dims);
  TORCH_CHECK(input.dim() == dims + 2, op, ": expected a ", dims + 2, "-d input [N, C, ",
              dims == 1   ? "L"
              : dims == 2 ? "H, W"
                          : "D, H, W",
              "], but got input of size ", input.sizes());
  for (int64_t d = empty_channels ? 2 : 1; d < input.dim(); ++d) {
    TORCH_CHECK(input.size(d) > 0, op, ": expected non-empty ",
                empty_channels ? "spatial dims (only the batch and channels"
                               : "channel and spatial dims (only the batch",
                " may be 0), but got input of size ", input.sizes());
  }
  const auto type = input.scalar_type();
  const bool taken = at::isFloatingType(type) ||
                     (types == PoolTypes::kFloatingOrInt64 && type == at::kLong) ||
                     (types == PoolTypes::kFloatingOrIntegral && at::isIntegralType(type, false));
  TORCH_CHECK_NOT_IMPLEMENTED(taken, op, ": not implemented for '", c10::toString(type), "' (",
                              types == PoolTypes::kFloating ? "floating point types only"
                              : types == PoolTypes::kFloatingOrInt64
                                  ? "floating point types and int64 only"
                                  : "floating point and integer types only",
                              ", as torch's)");
  return dims;
}

void check_list(const char* op, const char* name, at::IntArrayRef list, int64_t expected) {
  TORCH_CHECK(static_cast<int64_t>(list.size()) == expected, op, ": ", name, " must have ",
              expected, " entries, but got ", list);
}

}  // namespace

int64_t pool_output_length(int64_t input, int64_t kernel, int64_t stride, int64_t pad_before,
                           int64_t pad_after, int64_t dilation, bool ceil_mode) {
  const int64_t span = dilation * (kernel - 1) + 1;
  int64_t out =
      floor_div(input + pad_before + pad_after - span + (ceil_mode ? stride - 1 : 0), stride) + 1;
  if (ceil_mode && (out - 1) * stride >= input + pad_before) --out;
  return out;
}

PoolGeometry pool_geometry(const char* op, const at::Tensor& input, at::IntArrayRef kernel,
                           at::IntArrayRef stride, at::IntArrayRef padding,
                           at::IntArrayRef dilation, bool ceil_mode, PoolTypes types) {
  const int64_t dims = check_input(op, input, static_cast<int64_t>(kernel.size()), types);
  check_list(op, "stride", stride, dims);
  check_list(op, "dilation", dilation, dims);
  check_list(op, "padding", padding, 2 * dims);
  PoolGeometry g{};
  g.planes = input.size(0) * input.size(1);
  g.channels = input.size(1);
  g.adaptive = false;
  g.count_include_pad = true;
  g.divisor_override = 0;
  place(g.input, input.sizes().slice(2), 1);
  place(g.kernel, kernel, 1);
  place(g.stride, stride, 1);
  place(g.dilation, dilation, 1);
  place(g.pad, padding.slice(0, dims), 0);
  int64_t pad_after[kSpatialDims];
  place(pad_after, padding.slice(dims, dims), 0);
  bool output_ok = true;
  for (const auto d : c10::irange(kSpatialDims)) {
    TORCH_CHECK(g.kernel[d] > 0, op, ": kernel_size should be greater than zero, but got ", kernel);
    TORCH_CHECK(g.stride[d] > 0, op, ": stride should be greater than zero, but got ", stride);
    TORCH_CHECK(g.dilation[d] > 0, op, ": dilation should be greater than zero, but got ",
                dilation);
    const int64_t half_span = (g.dilation[d] * (g.kernel[d] - 1) + 1) / 2;
    TORCH_CHECK(g.pad[d] >= 0 && pad_after[d] >= 0, op, ": padding must be non-negative, but got ",
                padding);
    TORCH_CHECK(g.pad[d] <= half_span && pad_after[d] <= half_span, op, ": padding (", padding,
                ") must be at most half of the effective kernel size (kernel_size ", kernel,
                ", dilation ", dilation, ")");
    g.pad_end[d] = g.input[d] + pad_after[d];
    g.output[d] = pool_output_length(g.input[d], g.kernel[d], g.stride[d], g.pad[d], pad_after[d],
                                     g.dilation[d], ceil_mode);
    output_ok = output_ok && g.output[d] > 0;
  }
  TORCH_CHECK(output_ok, op, ": given input size ", input.sizes().slice(1),
              ", the calculated output size ",
              at::IntArrayRef(g.output + kSpatialDims - dims, dims), " is too small (kernel_size ",
              kernel, ", stride ", stride, ", padding ", padding, ", dilation ", dilation, ")");
  return g;
}

PoolGeometry adaptive_pool_geometry(const char* op, const at::Tensor& input,
                                    at::IntArrayRef output_size) {
  check_input(op, input, static_cast<int64_t>(output_size.size()), PoolTypes::kFloating,
              /*empty_channels=*/true);
  PoolGeometry g{};
  g.planes = input.size(0) * input.size(1);
  g.channels = input.size(1);
  g.adaptive = true;
  g.count_include_pad = false;
  g.divisor_override = 0;
  for (const auto size : output_size) {
    TORCH_CHECK(size >= 0, op, ": elements of output_size must be greater than or equal to 0, ",
                "but got ", output_size);
  }
  place(g.input, input.sizes().slice(2), 1);
  place(g.output, output_size, 1);
  for (const auto d : c10::irange(kSpatialDims)) {
    g.kernel[d] = g.stride[d] = g.dilation[d] = 1;
    g.pad[d] = 0;
    g.pad_end[d] = g.input[d];
  }
  return g;
}

at::Tensor input_shape(at::IntArrayRef input_size, const at::Tensor& like) {
  return at::empty(input_size, like.options().device(at::kMeta));
}

std::vector<int64_t> pool_output_sizes(const at::Tensor& input, const PoolGeometry& g) {
  std::vector<int64_t> sizes{input.size(0), input.size(1)};
  for (int64_t d = kSpatialDims - (input.dim() - 2); d < kSpatialDims; ++d) {
    sizes.push_back(g.output[d]);
  }
  return sizes;
}

void check_pool_grad(const char* op, const at::Tensor& input, const PoolGeometry& g,
                     const at::Tensor& grad_output, const at::Tensor* indices) {
  const auto expected = pool_output_sizes(input, g);
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef(expected), op,
              ": expected grad_output of size ", at::IntArrayRef(expected), ", but got ",
              grad_output.sizes());
  TORCH_CHECK(grad_output.scalar_type() == input.scalar_type(), op, ": grad_output type (",
              grad_output.scalar_type(), ") and input type (", input.scalar_type(),
              ") should be the same");
  TORCH_CHECK(grad_output.device() == input.device(), op,
              ": grad_output and input must be on the same device");
  if (indices != nullptr) {
    TORCH_CHECK(indices->sizes() == grad_output.sizes(), op, ": expected indices of size ",
                grad_output.sizes(), ", but got ", indices->sizes());
    TORCH_CHECK(indices->scalar_type() == at::kLong, op, ": expected int64 indices, but got ",
                indices->scalar_type());
    TORCH_CHECK(indices->device() == input.device(), op,
                ": indices and input must be on the same device");
  }
}

}  // namespace convpool
