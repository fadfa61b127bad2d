#pragma once
#include <ATen/Dispatch.h>

// The dtypes every kernel accepts: float32/float64 and the two reduced-precision float types.
#define CONVPOOL_DISPATCH_FLOATING_TYPES(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)
