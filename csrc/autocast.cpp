// Autocast (torch.autocast) for every op, registered for the AutocastCPU and AutocastCUDA keys
// the way torch registers its own ops (ATen/autocast_mode.cpp): each kernel casts its floating
// arguments (at::autocast::cached_cast: weights are cast once per autocast region) with the
// dispatch key excluded, then calls the op again, which reaches autograd and the backends.
//
// The policies are torch's, read from its dispatch table (torch 2.14):
//   conv, conv_transpose     lower precision (the autocast dtype: bfloat16 by default on the CPU,
//                            float16 on CUDA) on both devices, as conv{1,2,3}d and
//                            conv_transpose{1,2,3}d.
//   3-d pooling on the CPU   float32, as max_pool3d, avg_pool3d, adaptive_avg_pool3d and
//                            adaptive_max_pool3d; 1-d and 2-d pooling follow their input.
//   max_unpool on the CPU    float32 at every dimensionality (torch's max_unpool1d is its
//                            max_unpool2d).
//   CUDA pooling             follows its input: no kernel, the key falls through.
// torch's max_pool3d with return_indices=True (max_pool3d_with_indices) follows its input: so
// does max_pool (the op return_indices=True calls), while max_pool_values (without indices)
// computes 3-d pooling in float32.
// The backward ops have no autocast kernel (torch's have none either).
#include <ATen/autocast_mode.h>
#include <torch/library.h>

#include "conv/conv_ops.h"
#include "pool/pool_ops.h"

namespace convpool {
namespace {

using at::autocast::CastPolicy;
using at::autocast::WrapFunction;
using c10::DeviceType;

using ConvSignature = at::Tensor(const at::Tensor&, const at::Tensor&,
                                 const std::optional<at::Tensor>&, c10::SymIntArrayRef,
                                 c10::SymIntArrayRef, c10::SymIntArrayRef, int64_t);

template <DeviceType device, ConvSignature* op>
constexpr auto lower_precision = &WrapFunction<CastPolicy::lower_precision_fp, device,
                                               ConvSignature, ConvSignature, op>::type::call;

// `op` with float32 arguments where the pooling has three spatial dims (torch's *_pool3d), with
// unchanged arguments otherwise; autocast is off inside either way.
template <typename Signature, Signature* op>
struct Fp32For3d;

template <typename Ret, typename... Args, Ret (*op)(Args...)>
struct Fp32For3d<Ret(Args...), op> {
  static Ret call(Args... args) {
    const auto& input = std::get<0>(std::forward_as_tuple(args...));
    // The spatial dims: the op's input is batched, [N, C, spatial...].
    if (input.dim() == 5) {
      return WrapFunction<CastPolicy::fp32, DeviceType::CPU, Ret(Args...), Ret(Args...),
                          op>::type::call(args...);
    }
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCPU);
    return op(args...);
  }
};

template <typename Signature, Signature* op>
constexpr auto fp32 =
    &WrapFunction<CastPolicy::fp32, DeviceType::CPU, Signature, Signature, op>::type::call;

using MaxPoolValuesSignature = decltype(ops::max_pool_values);
using AdaptiveMaxValuesSignature = decltype(ops::adaptive_max_pool_values);
using AvgPoolSignature = decltype(ops::avg_pool);
using AdaptiveMaxSignature = decltype(ops::adaptive_max_pool);
using AdaptiveAvgSignature = decltype(ops::adaptive_avg_pool);
using UnpoolSignature = decltype(ops::max_unpool);

}  // namespace

TORCH_LIBRARY_IMPL(convpool, AutocastCPU, m) {
  m.impl("conv", lower_precision<DeviceType::CPU, ops::conv>);
  m.impl("conv_transpose", lower_precision<DeviceType::CPU, ops::conv_transpose>);
  m.impl("max_pool_values", &Fp32For3d<MaxPoolValuesSignature, ops::max_pool_values>::call);
  m.impl("adaptive_max_pool_values",
         &Fp32For3d<AdaptiveMaxValuesSignature, ops::adaptive_max_pool_values>::call);
  m.impl("avg_pool", &Fp32For3d<AvgPoolSignature, ops::avg_pool>::call);
  m.impl("adaptive_max_pool", &Fp32For3d<AdaptiveMaxSignature, ops::adaptive_max_pool>::call);
  m.impl("adaptive_avg_pool", &Fp32For3d<AdaptiveAvgSignature, ops::adaptive_avg_pool>::call);
  m.impl("max_unpool", fp32<UnpoolSignature, ops::max_unpool>);
}

TORCH_LIBRARY_IMPL(convpool, AutocastCUDA, m) {
  m.impl("conv", lower_precision<DeviceType::CUDA, ops::conv>);
  m.impl("conv_transpose", lower_precision<DeviceType::CUDA, ops::conv_transpose>);
}

}  // namespace convpool
