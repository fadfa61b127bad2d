"""When an op may be called directly (``_C._eager_*``, csrc/eager_calls.h) instead of through
``torch.ops.convpool``: plain tensors in eager mode. Anything that must see the call as an op
(dynamo tracing it for ``torch.compile``/``torch.export``, a ``__torch_function__`` override or
mode, fx proxies, tensor subclasses) takes torch.ops as before; torch_dispatch modes, autograd
and vmap sit in the dispatcher, which both routes reach."""
from __future__ import annotations

import torch

__all__ = ["direct"]

_PLAIN = (torch.Tensor, torch.nn.Parameter)
_mode_enabled = torch._C._is_torch_function_mode_enabled
_is_compiling = torch.compiler.is_compiling


def direct(*tensors) -> bool:
    """Whether every argument is a plain tensor (or None) and nothing traces or overrides the call."""
    for t in tensors:
        if t is not None and type(t) not in _PLAIN:
            return False
    return not _mode_enabled() and not _is_compiling()
