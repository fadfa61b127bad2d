#include "eager_calls.h"

#include <optional>
#include <vector>

#include "conv/conv_ops.h"
#include "pool/pool_ops.h"

namespace convpool {
namespace {

using Sizes = std::vector<int64_t>;

c10::SymIntArrayRef symbolic(const Sizes& sizes) { return c10::fromIntArrayRefSlow(sizes); }

at::Tensor conv(const at::Tensor& input, const at::Tensor& weight,
                const std::optional<at::Tensor>& bias, const Sizes& stride, const Sizes& padding,
                const Sizes& dilation, int64_t groups) {
  return ops::conv(input, weight, bias, symbolic(stride), symbolic(padding), symbolic(dilation),
                   groups);
}

at::Tensor conv_transpose(const at::Tensor& input, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias, const Sizes& stride,
                          const Sizes& padding, const Sizes& dilation, int64_t groups) {
  return ops::conv_transpose(input, weight, bias, symbolic(stride), symbolic(padding),
                             symbolic(dilation), groups);
}

at::Tensor max_pool_values(const at::Tensor& input, const Sizes& kernel, const Sizes& stride,
                           const Sizes& padding, const Sizes& dilation, bool ceil_mode) {
  return ops::max_pool_values(input, kernel, stride, symbolic(padding), dilation, ceil_mode);
}

at::Tensor avg_pool(const at::Tensor& input, const Sizes& kernel, const Sizes& stride,
                    const Sizes& padding, bool ceil_mode, bool count_include_pad,
                    std::optional<int64_t> divisor_override) {
  return ops::avg_pool(input, kernel, stride, symbolic(padding), ceil_mode, count_include_pad,
                       divisor_override);
}

at::Tensor adaptive_avg_pool(const at::Tensor& input, const Sizes& output_size) {
  return ops::adaptive_avg_pool(input, symbolic(output_size));
}

}  // namespace

void bind_eager_calls(pybind11::module& module) {
  // The GIL is released while the op runs, as torch.ops does.
  const auto release = pybind11::call_guard<pybind11::gil_scoped_release>();
  module.def("_eager_conv", &conv, release);
  module.def("_eager_conv_transpose", &conv_transpose, release);
  module.def("_eager_max_pool_values", &max_pool_values, release);
  module.def("_eager_avg_pool", &avg_pool, release);
  module.def("_eager_adaptive_avg_pool", &adaptive_avg_pool, release);
}

}  // namespace convpool
