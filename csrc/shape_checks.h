#pragma once
// The kernels' own shape and argument checks, callable from the fake (meta) kernels in
// torch_convpool/_library.py: a meta or fake tensor is rejected exactly where a real one is, with
// the same message, and no second copy of the rules lives in Python.
#include <torch/extension.h>

namespace convpool {

void bind_shape_checks(pybind11::module& module);

}  // namespace convpool
