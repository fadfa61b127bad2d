"""Swapping a model's torch.nn convolution and pooling layers for torch_convpool's, and rerouting
the functional calls its ``forward`` makes."""
from __future__ import annotations

import copy
import functools
from typing import Any, Optional, Sequence

import torch
from torch import nn

from . import nn as ours
from ._code_scan import ModelScan
from ._eager import only_passthrough_modes
from .conversion_report import ConversionReport, KeptLayer
from .reroute import RerouteMode

__all__ = ["convert", "conversion_report", "CONVERTIBLE"]

# The torch.nn classes convert() knows; each is swapped only if torch_convpool.nn has a class of
# the same name at call time (the families arrive one by one).
CONVERTIBLE: tuple[str, ...] = tuple(
    f"{family}{dims}d"
    for family in ("Conv", "ConvTranspose", "MaxPool", "AvgPool", "AdaptiveAvgPool",
                   "AdaptiveMaxPool", "MaxUnpool")
    for dims in (1, 2, 3)
)

# torch's spatial layer classes, to report the ones that stay (subclasses, layers we lack).
_SPATIAL_BASES: tuple[type, ...] = (
    nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._MaxUnpoolNd, nn.modules.pooling._LPPoolNd, nn.FractionalMaxPool2d,
    nn.FractionalMaxPool3d,
)


def convert(model: nn.Module, inplace: bool = False, *, functional: bool = True,
            example_inputs: Optional[Sequence[Any]] = None, verbose: bool = False) -> nn.Module:
    r"""Replace every ``torch.nn`` convolution and pooling layer of ``model`` by its
    ``torch_convpool.nn`` namesake, weights, buffers, hooks and mode kept.

    A layer is replaced when its type is exactly one of torch's ``Conv{1,2,3}d``,
    ``ConvTranspose{1,2,3}d``, ``MaxPool{1,2,3}d``, ``AvgPool{1,2,3}d``,
    ``AdaptiveAvgPool{1,2,3}d``, ``AdaptiveMaxPool{1,2,3}d`` or ``MaxUnpool{1,2,3}d`` and
    :mod:`torch_convpool.nn` has a class of that name. Subclasses (yours, or already ours) are left
    alone: their ``forward`` may not be torch's. Our classes subclass torch's and keep its
    attributes, so the replacement is the same object state under the new class: it shares the
    original layer's parameters, buffers and hook dictionaries (hook handles keep working), and
    keeps its ``training`` flag, device and dtype. ``state_dict`` keys do not change. A layer that
    appears in several places stays one shared layer. Like
    :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm`.

    Args:
        model (nn.Module): the model, or a single layer.
        inplace (bool, optional): ``True`` swaps the layers inside ``model`` itself (the new layers
            share the old ones' parameters); ``False`` converts a deep copy and leaves ``model``
            untouched. Default: ``False``
        functional (bool, optional): also reroute the convolution and pooling functions that
            ``forward`` calls (``F.adaptive_avg_pool2d``, ``torch.conv2d``, ...: any code run
            while the model is called, submodules' included) to ours, as
            :func:`torch_convpool.enabled` does: the model's ``forward`` becomes its class's
            ``forward`` run under that mode (a ``functools.partial``: it pickles, deep-copies,
            compiles and exports with the model). Only where the model's code names such a
            function (its layers' methods, the functions they call, hooks; the report says
            which): the mode costs a few microseconds per torch call of the forward, and most
            models (resnet18, regnet, efficientnet) make no such call. Submodules whose code
            makes none run outside the mode (their ``forward`` is wrapped likewise).
            Default: ``True``
        example_inputs (sequence, optional): positional arguments for one forward pass (under
            ``torch.no_grad``, buffers such as BatchNorm statistics restored after), so that the
            report lists the functional calls too. Default: ``None``
        verbose (bool, optional): print the report. Default: ``False``

    Returns:
        nn.Module: the converted model: ``model`` itself when ``inplace`` (unless ``model`` is
        itself a convertible layer: then its replacement), a new model otherwise.
        :func:`conversion_report` gives what was replaced and what was not.

    Layers that stay torch's are listed in the report with the reason: subclasses of torch's
    classes (their ``forward`` may differ; the functional calls it makes are rerouted),
    ``LPPool*`` and ``FractionalMaxPool*`` (no counterpart here).

    Examples::

        >>> model = torch.nn.Sequential(
        ...     torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2))
        >>> fast = convert(model)
        >>> type(fast[0])
        <class 'torch_convpool.nn.conv.Conv2d'>
        >>> torch.equal(fast[0].weight, model[0].weight)  # a copy: same values, own tensors
        True
        >>> convert(model, inplace=True) is model
        True
        >>> print(conversion_report(fast))  # doctest: +SKIP
        torch_convpool.convert: 2 layer(s) replaced, 0 kept
          replaced     1 x nn.Conv2d
          replaced     1 x nn.MaxPool2d
        ...
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert() expects an nn.Module, got {type(model).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    report = ConversionReport(functional=functional)
    memo: dict[int, nn.Module] = {}
    model = _convert(model, "", memo, report)
    earlier = model.__dict__.get("_convpool_report")
    if isinstance(earlier, ConversionReport):  # converted before: the call counts go on
        report.rerouted, report.left_to_torch = earlier.rerouted, earlier.left_to_torch
    model.__dict__["_convpool_report"] = report
    for module in model.modules():  # converted before: decided again below
        forward = module.__dict__.get("forward")
        if isinstance(forward, functools.partial) and forward.func in (_rerouted_forward,
                                                                       _forward_outside_mode):
            del module.forward
    scan = ModelScan()
    report.rerouting = (functional and not type(model).__module__.startswith("torch_convpool")
                        and scan.needs(model))
    if report.rerouting:
        model.forward = functools.partial(_rerouted_forward, model)
        for sub in scan.free_subtrees(model):
            if _may_leave_mode(sub):
                sub.forward = functools.partial(_forward_outside_mode, sub)
    if example_inputs is not None:
        _run_once(model, tuple(example_inputs))
    if verbose:
        print(report)
    return model


def conversion_report(model: nn.Module) -> ConversionReport:
    r"""What :func:`convert` replaced in ``model`` and what it could not; the functional-call
    counts grow as the converted model runs (eagerly). ``print()`` it for a summary.

    Raises:
        ValueError: ``model`` is not the result of :func:`convert`.
    """
    report = getattr(model, "_convpool_report", None)
    if not isinstance(report, ConversionReport):
        raise ValueError(f"{type(model).__name__} was not made by torch_convpool.convert()")
    return report


def _rerouted_forward(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """``module``'s class ``forward`` under :class:`RerouteMode`, counting into its report.
    convert() binds it with ``functools.partial`` (which torch.export and torch.compile know,
    and which pickles and deep-copies with the model)."""
    report = module.__dict__["_convpool_report"]
    with RerouteMode(report.rerouted, report.left_to_torch):
        return type(module).forward(module, *args, **kwargs)


def _forward_outside_mode(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """``module``'s class ``forward`` with the rerouting mode off where it is the only mode
    active: the module's code calls nothing the mode reroutes, and under it each torch call
    the module makes (batch_norm, relu, cat, ...) cost microseconds of Python (DenseNet-121's
    forward under the mode makes ~600)."""
    forward = type(module).forward
    if only_passthrough_modes(args, kwargs):
        with torch._C.DisableTorchFunction():
            return forward(module, *args, **kwargs)
    return forward(module, *args, **kwargs)


def _may_leave_mode(module: nn.Module) -> bool:
    """Whether a submodule whose code makes no rerouted call may run with torch function handling
    off: its own forward (none set on the instance), and plain parameters and buffers (a tensor
    subclass's __torch_function__ must still see its calls)."""
    if "forward" in module.__dict__ or isinstance(module, torch.jit.ScriptModule):
        return False
    plain = (torch.Tensor, nn.Parameter)
    return all(type(t) in plain for t in (*module.parameters(), *module.buffers()))


def _run_once(model: nn.Module, example_inputs: tuple) -> None:
    saved = {name: b.detach().clone() for name, b in model.named_buffers()}
    with torch.no_grad():
        model(*example_inputs)
        for name, b in model.named_buffers():
            b.copy_(saved[name])


def _convert(module: nn.Module, path: str, memo: dict[int, nn.Module],
             report: ConversionReport) -> nn.Module:
    if id(module) in memo:
        return memo[id(module)]
    replacement = _twin(module)
    if replacement is not None:
        memo[id(module)] = replacement
        report.replaced[f"nn.{type(module).__name__}"] += 1
        return replacement
    memo[id(module)] = module
    reason = _why_kept(module, report.functional)
    if reason is not None:
        report.kept.append(KeptLayer(path, type(module).__name__, reason))
    for name, child in list(module._modules.items()):
        if child is not None:
            new = _convert(child, f"{path}.{name}" if path else name, memo, report)
            if new is not child:
                # _modules directly, not setattr: a ModuleList/ModuleDict child name is not an
                # attribute, and setattr would route through user __setattr__ overrides.
                module._modules[name] = new
    return module


def _twin(module: nn.Module) -> Optional[nn.Module]:
    """Our class's instance with ``module``'s state, or None when ``module`` is not convertible."""
    name = type(module).__name__
    if name not in CONVERTIBLE or type(module) is not getattr(nn, name, None):
        return None
    cls = getattr(ours, name, None)
    if cls is None or not issubclass(cls, type(module)):
        return None
    twin = cls.__new__(cls)
    # A shallow copy of the instance dict: the parameter, buffer, child and hook dictionaries are
    # the original's own objects, so nothing is copied and the two cannot drift apart.
    twin.__dict__.update(module.__dict__)
    return twin


def _why_kept(module: nn.Module, functional: bool) -> Optional[str]:
    """Why a torch spatial layer that _twin() did not replace stays, or None for other layers."""
    if (not isinstance(module, _SPATIAL_BASES)
            or type(module).__module__.startswith("torch_convpool")):
        return None
    base = next(b for b in type(module).__mro__ if b.__module__.startswith("torch.nn"))
    if isinstance(module, (nn.modules.pooling._LPPoolNd, nn.FractionalMaxPool2d,
                           nn.FractionalMaxPool3d)):
        return "no counterpart in torch_convpool"
    return (f"a subclass of nn.{base.__name__}: its forward may not be torch's"
            + (" (the torch functions it calls are rerouted)" if functional else ""))
