#pragma once
// Direct calls of the most frequent ops from Python, for plain tensors in eager mode
// (torch_convpool/_eager.py decides when): the same typed dispatcher call that torch.ops makes,
// so autograd, every backend and torch_dispatch modes see the same op, without torch.ops boxing
// each argument through the op's schema first. On a 1x1 conv of a 1x8x1x1 tensor that boxing was
// 8 of the call's 22 microseconds; a mobilenet at batch 1 makes over a hundred such calls.
#include <torch/extension.h>

namespace convpool {

void bind_eager_calls(pybind11::module& module);

}  // namespace convpool
