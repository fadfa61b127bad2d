// Every op of the library, its schema, in one place: the C++ API at a glance. Kernels register
// themselves per backend in conv/ and pool/ (CPU, CUDA, Autograd keys).
//
// Size lists have one entry per spatial dim (1, 2 or 3: that is how an op knows its
// dimensionality); `padding` has two, every dim's before-padding then every dim's after-padding,
// so asymmetric ('same') padding never needs a padded copy of the input.
#include <torch/extension.h>
#include <torch/library.h>

#include "build_info.h"

TORCH_LIBRARY(convpool, m) {
  // Convolution family. Weights are laid out as torch's: conv [out, in / groups, *kernel],
  // conv_transpose [in, out / groups, *kernel]. A negative after-padding crops (conv) or extends
  // (conv_transpose, torch's output_padding) the output.
  m.def("conv(Tensor input, Tensor weight, Tensor? bias, SymInt[] stride, SymInt[] padding, "
        "SymInt[] dilation, int groups) -> Tensor");
  m.def("conv_transpose(Tensor input, Tensor weight, Tensor? bias, SymInt[] stride, "
        "SymInt[] padding, SymInt[] dilation, int groups) -> Tensor");
  m.def("conv_weight_grad(Tensor grad_output, Tensor input, SymInt[] weight_size, "
        "SymInt[] stride, SymInt[] padding, SymInt[] dilation, int groups) -> Tensor");
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.doc() = "torch_convpool's compiled operators (registered as torch.ops.convpool.*)";
  module.def("build_info", &convpool::build_info,
             "What this build holds: CUDA compiled in or not, the torch and CUDA versions it was "
             "built against, OpenMP and the parallel backend.");
}
