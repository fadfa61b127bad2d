"""When an op may be called directly (``_C._eager_*``, csrc/eager_calls.h) instead of through
``torch.ops.convpool``: plain tensors in eager mode. Anything that must see the call as an op
(dynamo tracing it for ``torch.compile``/``torch.export``, a ``__torch_function__`` override or
mode, fx proxies, tensor subclasses) takes torch.ops as before; torch_dispatch modes, autograd
and vmap sit in the dispatcher, which both routes reach."""
from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import torch

__all__ = ["direct", "PASSTHROUGH", "only_passthrough_modes", "outside_passthrough_modes"]

_PLAIN = (torch.Tensor, torch.nn.Parameter)
_mode_enabled = torch._C._is_torch_function_mode_enabled
_is_compiling = torch.compiler.is_compiling
_stack_length = torch._C._len_torch_function_stack
_stack_at = torch._C._get_function_stack_at
_DisableTorchFunction = torch._C.DisableTorchFunction

# A TorchFunctionMode class attribute: the mode hands every call it does not send to
# torch_convpool straight on to torch (reroute.RerouteMode). Our functions, called under such
# modes only, run with them switched off: the mode has nothing to do with the tensor methods
# they call, and under it each call cost ~5 us of Python (9 per conv: ~5 ms of a regnet_x_400mf
# forward at batch 4 whose convs take 20 ms).
PASSTHROUGH = "_convpool_passthrough"

F = TypeVar("F", bound=Callable[..., Any])


def direct(*tensors) -> bool:
    """Whether every argument is a plain tensor (or None) and nothing traces or overrides the call."""
    for t in tensors:
        if t is not None and type(t) not in _PLAIN:
            return False
    return not _mode_enabled() and not _is_compiling()


def only_passthrough_modes(args: tuple, kwargs: dict) -> bool:
    """Whether the only active torch function modes are passthrough ones (and there is one),
    outside torch.compile, with every tensor argument plain."""
    if _is_compiling() or not _mode_enabled():
        return False
    for i in range(_stack_length()):
        if not getattr(_stack_at(i), PASSTHROUGH, False):
            return False
    # A tensor subclass's own __torch_function__ must still see the calls.
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor) and type(a) not in _PLAIN:
            return False
    return True


def outside_passthrough_modes(fn: F) -> F:
    """``fn`` run with torch function handling off where the only active modes are passthrough
    ones and every tensor argument is plain; otherwise as it is."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        if only_passthrough_modes(args, kwargs):
            with _DisableTorchFunction():
                return fn(*args, **kwargs)
        return fn(*args, **kwargs)

    return run  # type: ignore[return-value]
