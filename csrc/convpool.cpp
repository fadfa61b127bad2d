// Every op of the library, its schema, in one place: the C++ API at a glance. Kernels register
// themselves per backend in conv/ and pool/ (CPU, CUDA, Autograd keys).
//
// Size lists have one entry per spatial dim (1, 2 or 3: that is how an op knows its
// dimensionality); `padding` has two, every dim's before-padding then every dim's after-padding,
// so asymmetric ('same') padding never needs a padded copy of the input.
#include <torch/extension.h>
#include <torch/library.h>

#include "build_info.h"
#include "common/isa_clones.h"
#include "common/cuda_emulation.h"
#include "common/output_memory.h"
#include "conv/conv_algorithm.h"
#include "conv/layout_copy.h"
#include "conv/packed_gemm.h"
#include "eager_calls.h"
#include "shape_checks.h"

TORCH_LIBRARY(convpool, m) {
  // Convolution family. Weights are laid out as torch's: conv [out, in / groups, *kernel],
  // conv_transpose [in, out / groups, *kernel]. A negative after-padding crops (conv) or extends
  // (conv_transpose, torch's output_padding) the output.
  m.def(
      "conv(Tensor input, Tensor weight, Tensor? bias, SymInt[] stride, SymInt[] padding, "
      "SymInt[] dilation, int groups) -> Tensor");
  m.def(
      "conv_transpose(Tensor input, Tensor weight, Tensor? bias, SymInt[] stride, "
      "SymInt[] padding, SymInt[] dilation, int groups) -> Tensor");
  m.def(
      "conv_weight_grad(Tensor grad_output, Tensor input, SymInt[] weight_size, "
      "SymInt[] stride, SymInt[] padding, SymInt[] dilation, int groups) -> Tensor");

  // Pooling family. Inputs are [N, C, *spatial]; indices are flat within each (n, c) plane, as
  // torch's. The backward ops gather (each input element sums what its windows sent it), so they
  // are deterministic on every device; max pooling's double backward gathers at the indices.
  m.def(
      "max_pool(Tensor input, int[] kernel_size, int[] stride, SymInt[] padding, "
      "int[] dilation, bool ceil_mode) -> (Tensor, Tensor)");
  m.def(
      "max_pool_backward(Tensor grad_output, Tensor input, Tensor indices, int[] kernel_size, "
      "int[] stride, SymInt[] padding, int[] dilation, bool ceil_mode) -> Tensor");
  // Max pooling without indices: `values` computes the maximum alone (no gradient needed);
  // `positions` also returns each maximum's position in its window as uint8 (the input's memory
  // format), which is what autograd saves on the CPU, and `positions_backward` takes it back
  // (input_size and channels_last: the forward input's sizes and memory format).
  m.def(
      "max_pool_values(Tensor input, int[] kernel_size, int[] stride, SymInt[] padding, "
      "int[] dilation, bool ceil_mode) -> Tensor");
  m.def(
      "max_pool_positions(Tensor input, int[] kernel_size, int[] stride, SymInt[] padding, "
      "int[] dilation, bool ceil_mode) -> (Tensor, Tensor)");
  m.def(
      "max_pool_positions_backward(Tensor grad_output, Tensor positions, SymInt[] input_size, "
      "bool channels_last, int[] kernel_size, int[] stride, SymInt[] padding, int[] dilation, "
      "bool ceil_mode) -> Tensor");
  m.def("adaptive_max_pool_values(Tensor input, SymInt[] output_size) -> Tensor");
  m.def("adaptive_max_pool_positions(Tensor input, SymInt[] output_size) -> (Tensor, Tensor)");
  m.def(
      "adaptive_max_pool_positions_backward(Tensor grad_output, Tensor positions, "
      "SymInt[] input_size, bool channels_last) -> Tensor");
  m.def(
      "avg_pool(Tensor input, int[] kernel_size, int[] stride, SymInt[] padding, "
      "bool ceil_mode, bool count_include_pad, int? divisor_override) -> Tensor");
  m.def(
      "avg_pool_backward(Tensor grad_output, Tensor input, int[] kernel_size, int[] stride, "
      "SymInt[] padding, bool ceil_mode, bool count_include_pad, int? divisor_override) -> Tensor");
  m.def("adaptive_max_pool(Tensor input, SymInt[] output_size) -> (Tensor, Tensor)");
  m.def("adaptive_max_pool_backward(Tensor grad_output, Tensor input, Tensor indices) -> Tensor");
  m.def("adaptive_avg_pool(Tensor input, SymInt[] output_size) -> Tensor");
  m.def("adaptive_avg_pool_backward(Tensor grad_output, Tensor input) -> Tensor");
  m.def("max_unpool(Tensor input, Tensor indices, SymInt[] output_size) -> Tensor");
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.doc() = "torch_convpool's compiled operators (registered as torch.ops.convpool.*)";
  module.def("build_info", &convpool::build_info,
             "What this build holds: CUDA compiled in or not, the torch and CUDA versions it was "
             "built against, OpenMP and the parallel backend.");
  module.def("_set_cuda_emulation", &convpool::set_cuda_emulation,
             "Testing aid (torch_convpool.testing.cuda_emulation()): compute CPU tensors with the "
             "CUDA kernels' bodies through an emulated grid-stride launch, float16/bfloat16 "
             "included, instead of the CPU's own kernels.");
  module.def("_cuda_emulation", &convpool::cuda_emulation);
  module.def("_set_conv_algorithm", &convpool::set_conv_algorithm,
             "Forces the algorithm of the CPU's dense convolutions: 'auto', 'gemm' or 'im2col'.");
  module.def("_conv_algorithm", &convpool::conv_algorithm_name);
  module.def("_set_gemm_kernel", &convpool::cpu::set_gemm_kernel,
             "Selects the GEMM of the CPU engines' float32/float64 products: 'auto', 'blas' "
             "(at::mm) or 'packed' (ours).");
  module.def("_gemm_kernel", &convpool::cpu::gemm_kernel_name);
  module.def(
      "_set_wide_vectors", [](bool allowed) { convpool::g_wide_vectors_allowed = allowed; },
      "Testing aid (torch_convpool.testing.vector_width()): false runs the CPU kernels written "
      "over generic vectors with 32-byte registers and AVX2's register blocking.");
  module.def("_wide_vectors", [] { return convpool::g_wide_vectors_allowed.load(); });
  module.def("_contiguous_as", &convpool::cpu::contiguous_as,
             "Testing aid: t.contiguous(memory_format) through our NCHW <-> channels_last "
             "transposing copy (the staging of NCHW tensors for channels_last kernels).");
  module.def(
      "_output_cache_info",
      [] {
        const auto info = convpool::output_cache_info();
        return std::make_tuple(info.cached_bytes, info.limit_bytes, info.hits, info.misses);
      },
      "(cached bytes, limit bytes, hits, misses) of the cache our large CPU outputs come from.");
  module.def("_set_output_cache_limit", &convpool::set_output_cache_limit,
             "The most bytes the CPU output cache holds; 0 turns it off.");
  module.def(
      "_set_poison_outputs", [](bool on) { convpool::g_poison_outputs = on; },
      "Testing aid (torch_convpool.testing.poison_outputs()): CPU outputs start as NaN.");
  module.def("_poison_outputs", [] { return convpool::g_poison_outputs.load(); });
  module.def("_release_output_cache", &convpool::release_output_cache,
             "Returns every block the CPU output cache holds to the system.");
  convpool::bind_shape_checks(module);
  convpool::bind_eager_calls(module);
}
