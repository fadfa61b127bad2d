#include "shape_checks.h"

#include <string>
#include <vector>

#include "common/conv_shape.h"
#include "common/pool_shape.h"

namespace convpool {

void bind_shape_checks(pybind11::module& module) {
  module.def(
      "_check_conv_geometry",
      [](const std::string& op, bool transposed, std::vector<int64_t> input_sizes,
         std::vector<int64_t> weight_sizes, std::vector<int64_t> stride,
         std::vector<int64_t> padding, std::vector<int64_t> dilation, int64_t groups) {
        conv_geometry(op.c_str(), transposed ? ConvRole::kTranspose : ConvRole::kConv, input_sizes,
                      weight_sizes, stride, padding, dilation, groups);
      },
      "conv / conv_transpose: the kernels' checks of shapes and size arguments.");
  module.def(
      "_check_pool_geometry",
      [](const std::string& op, const at::Tensor& input, std::vector<int64_t> kernel,
         std::vector<int64_t> stride, std::vector<int64_t> padding, std::vector<int64_t> dilation,
         bool ceil_mode, const std::string& types) {
        const PoolTypes accepted = types == "integral" ? PoolTypes::kFloatingOrIntegral
                                   : types == "int64"  ? PoolTypes::kFloatingOrInt64
                                                       : PoolTypes::kFloating;
        pool_geometry(op.c_str(), input, kernel, stride, padding, dilation, ceil_mode, accepted);
      },
      "Regular-window pooling: the kernels' checks of the input (rank, dtype: 'floating', "
      "'int64' or 'integral' besides floating point) and of the size arguments.");
  module.def(
      "_check_adaptive_pool_geometry",
      [](const std::string& op, const at::Tensor& input, std::vector<int64_t> output_size) {
        adaptive_pool_geometry(op.c_str(), input, output_size);
      },
      "Adaptive pooling: the kernels' checks of the input and output_size.");
}

}  // namespace convpool
