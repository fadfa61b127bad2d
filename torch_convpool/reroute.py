"""Rerouting torch's functional convolution and pooling calls to ours, for any code in a block.

``convert()`` swaps modules; a model's ``forward`` may also call ``F.adaptive_avg_pool2d`` or
``torch.conv2d`` directly (torchvision's mobilenet_v2 and densenet121 do). A
:class:`~torch.overrides.TorchFunctionMode` sees every such call, whatever module or function makes
it, and hands the ones torch_convpool computes to :mod:`torch_convpool.functional`. A mode, rather
than a torch.fx rewrite, works on code with data-dependent control flow, and torch.compile and
torch.export trace through it (the modes active while tracing are part of what they trace).
"""
from __future__ import annotations

import collections
import contextlib
from typing import Any, Callable, Iterator, NamedTuple, Optional

import torch
from torch import Tensor
from torch.nn import functional as torch_F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from . import functional as ours
from ._library import _C

__all__ = ["enabled", "RerouteMode", "REROUTED", "UNSUPPORTED"]


class _Route(NamedTuple):
    name: str                      # how the report names the torch function
    target: Callable[..., Any]     # ours, with the same parameter order
    indices: bool = False          # the torch function always returns (values, indices)


def _routes() -> dict[Callable[..., Any], _Route]:
    """Every torch entry point of a family we compute, to our function of the same parameters.

    ``F.conv2d`` is ``torch.conv2d`` and ``F.avg_pool2d`` is ``torch._C._nn.avg_pool2d`` (the same
    objects); ``F.max_pool2d`` is a Python function that reaches the mode itself, so the builtins
    below it (``torch.max_pool2d``, ...) are listed for code that calls them directly."""
    nn_c = torch._C._nn
    routes: dict[Callable[..., Any], _Route] = {}

    def add(func: Optional[Callable[..., Any]], name: str, target: Callable[..., Any],
            indices: bool = False) -> None:
        if func is not None:
            routes[func] = _Route(name, target, indices)

    for n in (1, 2, 3):
        for family in ("conv", "conv_transpose"):
            add(getattr(torch, f"{family}{n}d"), f"F.{family}{n}d",
                getattr(ours, f"{family}{n}d"))
        max_pool = getattr(ours, f"max_pool{n}d")
        add(getattr(torch_F, f"max_pool{n}d"), f"F.max_pool{n}d", max_pool)
        add(getattr(torch_F, f"max_pool{n}d_with_indices"), f"F.max_pool{n}d_with_indices",
            max_pool, indices=True)
        add(getattr(torch, f"max_pool{n}d"), f"torch.max_pool{n}d", max_pool)
        add(getattr(torch, f"max_pool{n}d_with_indices", None) or
            getattr(nn_c, f"max_pool{n}d_with_indices", None),
            f"torch.max_pool{n}d_with_indices", max_pool, indices=True)
        add(getattr(torch_F, f"avg_pool{n}d"), f"F.avg_pool{n}d", getattr(ours, f"avg_pool{n}d"))
        adaptive_avg = getattr(ours, f"adaptive_avg_pool{n}d")
        add(getattr(torch_F, f"adaptive_avg_pool{n}d"), f"F.adaptive_avg_pool{n}d", adaptive_avg)
        add(getattr(nn_c, f"adaptive_avg_pool{n}d", None),
            f"torch._C._nn.adaptive_avg_pool{n}d", adaptive_avg)
        adaptive_max = getattr(ours, f"adaptive_max_pool{n}d")
        add(getattr(torch_F, f"adaptive_max_pool{n}d"), f"F.adaptive_max_pool{n}d", adaptive_max)
        add(getattr(torch_F, f"adaptive_max_pool{n}d_with_indices"),
            f"F.adaptive_max_pool{n}d_with_indices", adaptive_max, indices=True)
        add(getattr(torch, f"adaptive_max_pool{n}d", None) or
            getattr(nn_c, f"adaptive_max_pool{n}d", None),
            f"torch.adaptive_max_pool{n}d", adaptive_max, indices=True)
        add(getattr(torch_F, f"max_unpool{n}d"), f"F.max_unpool{n}d",
            getattr(ours, f"max_unpool{n}d"))
    return routes


REROUTED: dict[Callable[..., Any], _Route] = _routes()

# Spatial ops of torch's that torch_convpool has no counterpart for: left to torch, and reported.
UNSUPPORTED: dict[Callable[..., Any], str] = {
    func: name for name, func in (
        *((f"F.lp_pool{n}d", getattr(torch_F, f"lp_pool{n}d", None)) for n in (1, 2, 3)),
        ("F.fractional_max_pool2d", torch_F.fractional_max_pool2d),
        ("F.fractional_max_pool3d", torch_F.fractional_max_pool3d),
        ("F.fractional_max_pool2d_with_indices", torch_F.fractional_max_pool2d_with_indices),
        ("F.fractional_max_pool3d_with_indices", torch_F.fractional_max_pool3d_with_indices),
        ("torch.convolution", torch.convolution),
        ("torch.conv_tbc", torch.conv_tbc),
        ("F.unfold", torch_F.unfold),
        ("F.fold", torch_F.fold),
    ) if func is not None
}


_DEVICES = ("cpu", "meta", "cuda") if _C.build_info()["cuda"] == "yes" else ("cpu", "meta")


def _why_not_ours(args: tuple, kwargs: dict) -> Optional[str]:
    """Why a call must stay with torch, or None. Ours computes floating-point tensors on the CPU
    (and CUDA where built, meta for tracing); integer and quantized tensors, and other devices, keep
    torch's behaviour (its kernels, its errors)."""
    for leaf in tree_leaves((args, kwargs)):
        if not isinstance(leaf, Tensor):
            continue
        if leaf.device.type not in _DEVICES:
            return f"device {leaf.device.type}"
        if leaf.is_quantized:
            return "quantized tensor"
    first = args[0] if args else kwargs.get("input")
    if isinstance(first, Tensor) and not first.is_floating_point():
        return f"dtype {first.dtype}"
    return None


class RerouteMode(TorchFunctionMode):
    """Sends torch's convolution and pooling functions to :mod:`torch_convpool.functional`.

    ``rerouted`` counts the calls sent to ours per torch function, ``left_to_torch`` the calls
    that stayed with torch, per ``(function, reason)``. Counting happens in eager runs only (not
    while torch.compile or torch.export traces: the counters are Python state)."""

    # (_eager.PASSTHROUGH) Every call it does not reroute goes straight to torch: our own
    # functions switch it off while they run (_eager.outside_passthrough_modes).
    _convpool_passthrough = True

    def __init__(self, rerouted: Optional[collections.Counter] = None,
                 left_to_torch: Optional[collections.Counter] = None) -> None:
        super().__init__()
        # Given counters (a ConversionReport's) accumulate over runs.
        self.rerouted: collections.Counter = collections.Counter() if rerouted is None else rerouted
        self.left_to_torch: collections.Counter = (
            collections.Counter() if left_to_torch is None else left_to_torch)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        route = REROUTED.get(func)
        if route is None:
            if func in UNSUPPORTED and not torch.compiler.is_compiling():
                self.left_to_torch[(UNSUPPORTED[func], "no counterpart in torch_convpool")] += 1
            return func(*args, **kwargs)
        reason = _why_not_ours(args, kwargs)
        if reason is not None:
            if not torch.compiler.is_compiling():
                self.left_to_torch[(route.name, reason)] += 1
            return func(*args, **kwargs)
        if not torch.compiler.is_compiling():
            self.rerouted[route.name] += 1
        if route.indices:
            # torch's *_with_indices always return (values, indices); our functions do so when
            # asked. A positional return_indices (the last parameter) is replaced.
            kwargs = {**kwargs, "return_indices": True}
            params = list(_parameters(route.target))
            args = args[: params.index("return_indices")]
        return route.target(*args, **kwargs)


def _parameters(func: Callable[..., Any]) -> tuple[str, ...]:
    return func.__code__.co_varnames[: func.__code__.co_argcount]


@contextlib.contextmanager
def enabled() -> Iterator[RerouteMode]:
    r"""Run a block with torch's convolution and pooling calls computed by torch_convpool.

    Inside the block every call of ``torch.nn.functional``'s (and ``torch``'s) ``conv*``,
    ``conv_transpose*``, ``max_pool*``, ``avg_pool*``, ``adaptive_avg_pool*``,
    ``adaptive_max_pool*`` and ``max_unpool*``, made by any code (``torch.nn`` modules included),
    runs our operator with the same arguments: same results, gradients and errors. Calls on
    tensors ours does not compute (integer or quantized tensors, devices other than the CPU and,
    where built, CUDA) stay with torch. Works under ``torch.compile`` and ``torch.export``.

    Yields:
        RerouteMode: the active mode; its ``rerouted`` and ``left_to_torch`` counters say which
        calls went where (eager runs only).

    Examples::

        >>> model = torchvision.models.mobilenet_v2()  # doctest: +SKIP
        >>> with torch_convpool.enabled() as mode:      # doctest: +SKIP
        ...     model(torch.randn(1, 3, 64, 64))
        >>> mode.rerouted                               # doctest: +SKIP
        Counter({'F.conv2d': 52, 'F.adaptive_avg_pool2d': 1})
    """
    mode = RerouteMode()
    with mode:
        yield mode
