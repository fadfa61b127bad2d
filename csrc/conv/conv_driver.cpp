#include "conv_driver.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/DeviceGuard.h>
#include <c10/util/strides.h>

#include "../common/conv_shape.h"
#include "../common/output_memory.h"
#include "layout_copy.h"

namespace convpool {

void add_bias(const at::Tensor& output, const c10::optional<at::Tensor>& bias) {
  // An empty output (a conv of no input channels has no output channels either) takes nothing.
  if (!bias.has_value() || !bias->defined() || output.numel() == 0) return;
  std::vector<int64_t> shape(output.dim(), 1);
  shape[1] = bias->size(0);
  output.add_(bias->view(shape));
}

namespace {

bool is_reduced_precision(const at::Tensor& t) {
  return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
}

at::Tensor to_float(const at::Tensor& t) { return t.to(at::kFloat); }

c10::optional<at::Tensor> to_float(const c10::optional<at::Tensor>& t) {
  if (!t.has_value() || !t->defined()) return t;
  return t->to(at::kFloat);
}

// The dtype results are computed in: the input's, or float32 for float16/bfloat16 on a backend
// that takes them as they are (its kernels and GEMMs sum in float32 and write float32; the
// bias is added to that and the result rounded once).
at::ScalarType result_type(const at::Tensor& input, const ConvBackend& backend) {
  return is_reduced_precision(input) && !backend.upcast_reduced_precision ? at::kFloat
                                                                          : input.scalar_type();
}

// out = a @ b (batched), out in the result type.
void bmm_into(at::Tensor out, const at::Tensor& a, const at::Tensor& b,
              const ConvBackend& backend) {
  if (out.scalar_type() == a.scalar_type()) {
    at::bmm_out(out, a, b);
  } else {
    backend.mixed_precision_bmm(out, a, b);
  }
}

}  // namespace

namespace {

// A depthwise kernel takes a channels_last input as it is, into a channels_last output.
bool depthwise_in_place(const at::Tensor& input, bool depthwise, const ConvBackend& backend) {
  return depthwise && backend.depthwise_channels_last &&
         input.suggest_memory_format() != at::MemoryFormat::Contiguous && input.numel() > 0;
}

bool dense_engine(const ConvBackend& backend, const at::Tensor& input, const ConvGeometry& g) {
  return backend.use_dense_engine != nullptr && backend.all_finite != nullptr &&
         backend.dense_engine_computes != nullptr &&
         backend.dense_engine_computes(input.scalar_type()) && backend.use_dense_engine(g);
}

// Whether a float16/bfloat16 call that the dense engine does not take is computed in float32.
bool upcasts(const at::Tensor& input, bool dense, const ConvBackend& backend) {
  return !dense && backend.upcast_reduced_precision && is_reduced_precision(input);
}

using ConvCompute = at::Tensor (*)(const at::Tensor&, const at::Tensor&,
                                   const c10::optional<at::Tensor>&, const ConvGeometry&, int64_t,
                                   const ConvBackend&);

// `compute` in float32 on float32 copies, rounded once to the input's dtype.
at::Tensor in_float32(ConvCompute compute, const at::Tensor& input, const at::Tensor& weight,
                      const c10::optional<at::Tensor>& bias, const ConvGeometry& g,
                      int64_t out_channels, const ConvBackend& backend) {
  return compute(to_float(input), to_float(weight), to_float(bias), g, out_channels, backend)
      .to(input.scalar_type());
}

using LayoutKernel = void (*)(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                              const ConvGeometry&);

// Runs compute(input, weight, output, g), a kernel that computes in the input's own memory
// format, into an output of that format, and adds the bias unless the kernel does
// (`adds_bias`). The depthwise kernels take a contiguous weight; the dense engine takes it in any
// layout.
template <typename Compute>
at::Tensor in_input_format(Compute&& compute, const at::Tensor& input, const at::Tensor& weight,
                           const c10::optional<at::Tensor>& bias, ConvGeometry g,
                           std::vector<int64_t> sizes, bool any_weight_layout, bool adds_bias) {
  const auto format = input.suggest_memory_format();
  auto output = empty_output(sizes, input.options().memory_format(format));
  if (output.numel() == 0) return output;
  if (input.numel() == 0) return output.zero_(), add_bias(output, bias), output;
  g.channels_last = format != at::MemoryFormat::Contiguous;
  compute(input.contiguous(format), any_weight_layout ? weight : weight.contiguous(), output, g);
  if (!adds_bias) add_bias(output, bias);
  return output;
}

at::Tensor run_in_input_format(LayoutKernel kernel, const at::Tensor& input,
                               const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                               ConvGeometry g, std::vector<int64_t> sizes,
                               bool any_weight_layout = false) {
  return in_input_format(kernel, input, weight, bias, g, std::move(sizes), any_weight_layout,
                         /*adds_bias=*/false);
}

// conv on checked arguments, in the result type, into a new NCHW-contiguous output (or, for a
// depthwise kernel that takes channels_last tensors as they are, a channels_last one).
at::Tensor conv_nchw(const at::Tensor& input, const at::Tensor& weight,
                     const c10::optional<at::Tensor>& bias, const ConvGeometry& g,
                     int64_t out_channels, const ConvBackend& backend) {
  const int64_t batch = input.size(0), groups = g.groups;
  const auto sizes = conv_output_sizes(g, ConvRole::kConv, batch, out_channels, input.dim() - 2);
  const bool depthwise = backend.depthwise_conv != nullptr && groups == g.channels;
  const bool dense = !depthwise && dense_engine(backend, input, g);
  const bool depthwise_as_is = depthwise && backend.depthwise_conv_computes != nullptr &&
                               backend.depthwise_conv_computes(input, out_channels, g);
  if (upcasts(input, dense || depthwise_as_is, backend)) {
    return in_float32(conv_nchw, input, weight, bias, g, out_channels, backend);
  }
  const at::Tensor b = bias.has_value() ? *bias : at::Tensor();
  if (depthwise_in_place(input, depthwise, backend)) {
    const auto compute = [&](const at::Tensor& in, const at::Tensor& w, const at::Tensor& out,
                             const ConvGeometry& geometry) {
      backend.depthwise_conv(in, w, b, out, geometry);
    };
    return in_input_format(compute, input, weight, bias, g, sizes, /*any_weight_layout=*/false,
                           /*adds_bias=*/true);
  }
  if (dense) {
    const auto compute = [&](const at::Tensor& in, const at::Tensor& w, const at::Tensor& out,
                             const ConvGeometry& geometry) {
      backend.dense_conv(in, w, b, out, geometry);
    };
    return in_input_format(compute, input, weight, bias, g, sizes, /*any_weight_layout=*/true,
                           /*adds_bias=*/true);
  }
  auto output = empty_output(sizes, input.options().dtype(result_type(input, backend)));
  if (output.numel() == 0) return output;
  if (input.numel() == 0) return output.zero_(), add_bias(output, bias), output;

  const auto x = input.contiguous();
  if (depthwise) {
    backend.depthwise_conv(x, weight.contiguous(), b, output, g);
    return output;
  }
  const int64_t rows_per_group = g.channels / groups * g.kernel_numel();
  const auto w = weight.contiguous().view({groups, out_channels / groups, rows_per_group});
  const bool pointwise = g.is_pointwise();
  auto col = pointwise ? at::Tensor()
                       : at::empty({g.channels * g.kernel_numel(), g.grid_numel()}, x.options());
  auto out = output.view({batch, groups, out_channels / groups, g.grid_numel()});
  for (int64_t n = 0; n < batch; ++n) {
    const auto image = x[n];
    if (pointwise) {
      col = image.view({g.channels, g.grid_numel()});
    } else {
      backend.im2col(image, col, g);
    }
    bmm_into(out[n], w, col.view({groups, rows_per_group, g.grid_numel()}), backend);
  }
  add_bias(output, bias);
  return output;
}

// conv_transpose on checked arguments, in the result type, into a new NCHW-contiguous output.
at::Tensor conv_transpose_nchw(const at::Tensor& input, const at::Tensor& weight,
                               const c10::optional<at::Tensor>& bias, const ConvGeometry& g,
                               int64_t out_channels, const ConvBackend& backend) {
  const int64_t batch = input.size(0), groups = g.groups;
  const auto sizes =
      conv_output_sizes(g, ConvRole::kTranspose, batch, out_channels, input.dim() - 2);
  const bool depthwise = backend.depthwise_conv_transpose != nullptr && groups == out_channels;
  // The dense engine gathers by phases, multiplying padding zeros by the weight; with inf or NaN
  // weights that gives NaN where torch's scatter gives inf, so those take the im2col path.
  const bool dense = !depthwise && dense_engine(backend, input, g) && backend.all_finite(weight);
  if (upcasts(input, dense, backend)) {
    return in_float32(conv_transpose_nchw, input, weight, bias, g, out_channels, backend);
  }
  if (depthwise_in_place(input, depthwise, backend)) {
    return run_in_input_format(backend.depthwise_conv_transpose, input, weight, bias, g, sizes);
  }
  if (dense) {
    return run_in_input_format(backend.dense_conv_transpose, input, weight, bias, g, sizes, true);
  }
  const auto result_options = input.options().dtype(result_type(input, backend));
  auto output = empty_output(sizes, result_options);
  if (output.numel() == 0) return output;
  if (input.numel() == 0) return output.zero_(), add_bias(output, bias), output;

  const auto x = input.contiguous();
  if (depthwise) {
    backend.depthwise_conv_transpose(x, weight.contiguous(), output, g);
    add_bias(output, bias);
    return output;
  }
  const int64_t in_per_group = input.size(1) / groups;
  const int64_t rows_per_group = out_channels / groups * g.kernel_numel();
  // [groups, in / groups, out / groups * K] -> its transpose, so each group's GEMM maps the
  // input channels to the column rows of its output channels.
  const auto w = weight.contiguous().view({groups, in_per_group, rows_per_group}).transpose(1, 2);
  const bool pointwise = g.is_pointwise();
  // The column matrix is a GEMM result: in the result type, so col2im sums unrounded products.
  auto col = pointwise ? at::Tensor()
                       : at::empty({g.channels * g.kernel_numel(), g.grid_numel()}, result_options);
  for (int64_t n = 0; n < batch; ++n) {
    auto image = output[n];
    const auto grid = x[n].view({groups, in_per_group, g.grid_numel()});
    if (pointwise) {
      bmm_into(image.view({groups, rows_per_group, g.grid_numel()}), w, grid, backend);
    } else {
      bmm_into(col.view({groups, rows_per_group, g.grid_numel()}), w, grid, backend);
      backend.col2im(col, image, g);
    }
  }
  add_bias(output, bias);
  return output;
}

// Whether torch computes a 3-d conv on the CPU with mkldnn (channels_last_3d results by the rule
// below) rather than slow_conv3d (contiguous results): its use_mkldnn choice, by dtype, the CPU's
// extensions and, for float32, a size heuristic.
bool cpu_mkldnn_3d(const at::Tensor& input, const at::Tensor& weight, const ConvGeometry& g) {
  if (input.scalar_type() == at::kBFloat16 || input.scalar_type() == at::kHalf) {
    // torch's own answers (mkldnn_bf16_device_check / mkldnn_fp16_device_check).
    const auto supported = [](const char* name) {
      const auto op = c10::Dispatcher::singleton().findSchema({name, ""});
      return op.has_value() && op->typed<bool()>().call();
    };
    static const bool bf16 = supported("mkldnn::_is_mkldnn_bf16_supported");
    static const bool fp16 = supported("mkldnn::_is_mkldnn_fp16_supported");
    return input.scalar_type() == at::kBFloat16 ? bf16 : fp16;
  }
  if (input.scalar_type() != at::kFloat) return false;
  bool strided = false, dilated = false;
  for (int d = 0; d < kSpatialDims; ++d) {
    strided = strided || g.stride[d] != 1;
    dilated = dilated || g.dilation[d] != 1;
  }
  const int64_t kh = weight.size(-2), kw = weight.size(-1), batch = input.size(0);
  const bool not_single_threaded_1x1 =
      strided || dilated || batch >= 16 || kw != 1 || kh != 1 || at::get_num_threads() > 1;
  const bool not_tiny = g.groups > 1 || (kw > 3 && kh > 3) || batch > 1 ||
                        input.size(0) * input.size(1) * input.size(2) * input.size(3) > 20480;
  return not_single_threaded_1x1 && not_tiny;
}

// The memory format torch gives a conv's result (its mkldnn, thnn and cudnn paths): channels_last
// where the input or the weight suggests it (a channels_last model's NCHW slices meet
// channels_last weights: shufflenet), but contiguous where torch's kernel is one that ignores
// layouts: 3-d convs that are not mkldnn's on the CPU (slow_conv3d), float64 on CUDA (cudnn
// leaves it out of NHWC). _library.py's fakes follow the same rule.
at::MemoryFormat conv_result_format(const at::Tensor& input, const at::Tensor& weight,
                                    const ConvGeometry& g) {
  if (input.dim() != 4 && input.dim() != 5) return at::MemoryFormat::Contiguous;
  if (input.is_cuda() && input.scalar_type() == at::kDouble) return at::MemoryFormat::Contiguous;
  if (!input.is_cuda() && input.dim() == 5 && !cpu_mkldnn_3d(input, weight, g)) {
    return at::MemoryFormat::Contiguous;
  }
  const auto channels_last =
      input.dim() == 5 ? at::MemoryFormat::ChannelsLast3d : at::MemoryFormat::ChannelsLast;
  const bool either = input.suggest_memory_format() == channels_last ||
                      weight.suggest_memory_format() == channels_last;
  return either ? channels_last : at::MemoryFormat::Contiguous;
}

// Runs `compute` on the input in the result's memory format (conv_result_format) and gives the
// result that format.
at::Tensor run_conv(ConvCompute compute, const at::Tensor& input, const at::Tensor& weight,
                    const c10::optional<at::Tensor>& bias, const ConvGeometry& g,
                    int64_t out_channels, const ConvBackend& backend) {
  const c10::DeviceGuard guard(input.device());
  const auto format = conv_result_format(input, weight, g);
  // float16/bfloat16 results of kernels that sum in float32 (CUDA's) are rounded here, once.
  const auto result =
      compute(cpu::contiguous_as(input, format), weight, bias, g, out_channels, backend)
          .to(input.scalar_type());
  if (format == at::MemoryFormat::Contiguous) {
    // A kernel that computed in channels_last for an input whose layouts coincide (size-1 dims)
    // leaves strides torch's contiguous result does not have.
    if (result.strides() == at::IntArrayRef(c10::contiguous_strides(result.sizes()))) return result;
    return result.clone(at::MemoryFormat::Contiguous);
  }
  const auto formatted = empty_output(result.sizes(), result.options().memory_format(format));
  if (result.strides() == formatted.strides()) return result;  // made in place (depthwise)
  cpu::copy_layout(formatted, result);
  return formatted;
}

}  // namespace

at::Tensor compute_conv(const at::Tensor& input, const at::Tensor& weight,
                        const c10::optional<at::Tensor>& bias, at::IntArrayRef stride,
                        at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                        const ConvBackend& backend) {
  const char* op = "convpool::conv";
  const auto g = conv_geometry(op, ConvRole::kConv, input.sizes(), weight.sizes(), stride, padding,
                               dilation, groups);
  const int64_t out_channels = conv_out_channels(ConvRole::kConv, weight.sizes(), groups);
  check_conv_tensors(op, input, weight, bias, out_channels);
  return run_conv(conv_nchw, input, weight, bias, g, out_channels, backend);
}

at::Tensor compute_conv_transpose(const at::Tensor& input, const at::Tensor& weight,
                                  const c10::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                  at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                  const ConvBackend& backend) {
  const char* op = "convpool::conv_transpose";
  const auto g = conv_geometry(op, ConvRole::kTranspose, input.sizes(), weight.sizes(), stride,
                               padding, dilation, groups);
  const int64_t out_channels = conv_out_channels(ConvRole::kTranspose, weight.sizes(), groups);
  check_conv_tensors(op, input, weight, bias, out_channels);
  return run_conv(conv_transpose_nchw, input, weight, bias, g, out_channels, backend);
}

at::Tensor compute_conv_weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                                    at::IntArrayRef weight_size, at::IntArrayRef stride,
                                    at::IntArrayRef padding, at::IntArrayRef dilation,
                                    int64_t groups, const ConvBackend& backend) {
  const char* op = "convpool::conv_weight_grad";
  const auto g = conv_geometry(op, ConvRole::kConv, input.sizes(), weight_size, stride, padding,
                               dilation, groups);
  const int64_t out_channels = conv_out_channels(ConvRole::kConv, weight_size, groups);
  const auto expected =
      conv_output_sizes(g, ConvRole::kConv, input.size(0), out_channels, input.dim() - 2);
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef(expected), op,
              ": expected grad_output of size ", at::IntArrayRef(expected), " for input of size ",
              input.sizes(), " and weight of size ", weight_size, ", but got ",
              grad_output.sizes());
  check_conv_tensors(op, input, grad_output, c10::nullopt, out_channels);
  const c10::DeviceGuard guard(input.device());
  const bool empty = grad_output.numel() == 0 || input.numel() == 0;
  const bool depthwise = backend.depthwise_weight_grad != nullptr && groups == g.channels;
  const bool dense = !empty && !depthwise && dense_engine(backend, input, g);
  if (upcasts(input, dense, backend)) {
    return compute_conv_weight_grad(to_float(grad_output), to_float(input), weight_size, stride,
                                    padding, dilation, groups, backend)
        .to(input.scalar_type());
  }
  // The result has the input's memory format (as the fakes say), whichever kernel computes it.
  const auto format = input.suggest_memory_format();
  if (dense) {
    ConvGeometry in_format = g;
    in_format.channels_last = format != at::MemoryFormat::Contiguous;
    auto result = at::empty(weight_size, input.options().memory_format(format));
    backend.dense_weight_grad(cpu::contiguous_as(grad_output, format),
                              cpu::contiguous_as(input, format), result, in_format);
    return result;
  }
  const int64_t batch = input.size(0);
  const int64_t rows_per_group = g.channels / groups * g.kernel_numel();
  // Summed over the batch in the result type (float32 for float16/bfloat16), rounded once.
  auto grad_weight = at::zeros({groups, out_channels / groups, rows_per_group},
                               input.options().dtype(result_type(input, backend)));
  const auto finish = [&] {
    return grad_weight.view(weight_size).contiguous(format).to(input.scalar_type());
  };
  if (empty) return finish();
  if (depthwise) {
    // channels_last where the kernels take it as it is, else NCHW.
    ConvGeometry in_layout = g;
    in_layout.channels_last = depthwise_in_place(input, depthwise, backend);
    const auto kernel_format = in_layout.channels_last ? format : at::MemoryFormat::Contiguous;
    backend.depthwise_weight_grad(grad_output.contiguous(kernel_format),
                                  input.contiguous(kernel_format), grad_weight, in_layout);
    return finish();
  }
  const auto x = input.contiguous();
  const auto go =
      grad_output.contiguous().view({batch, groups, out_channels / groups, g.grid_numel()});
  const bool pointwise = g.is_pointwise();
  auto col = pointwise ? at::Tensor()
                       : at::empty({g.channels * g.kernel_numel(), g.grid_numel()}, x.options());
  const bool mixed = grad_weight.scalar_type() != input.scalar_type();
  auto partial = mixed ? at::empty_like(grad_weight) : at::Tensor();
  for (int64_t n = 0; n < batch; ++n) {
    const auto image = x[n];
    if (pointwise) {
      col = image.view({g.channels, g.grid_numel()});
    } else {
      backend.im2col(image, col, g);
    }
    const auto col_t = col.view({groups, rows_per_group, g.grid_numel()}).transpose(1, 2);
    if (mixed) {
      bmm_into(partial, go[n], col_t, backend);
      grad_weight.add_(partial);
    } else {
      grad_weight.baddbmm_(go[n], col_t);
    }
  }
  return finish();
}

}  // namespace convpool
