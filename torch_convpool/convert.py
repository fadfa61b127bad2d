"""Swapping a model's torch.nn convolution and pooling layers for torch_convpool's."""
from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn

from . import nn as ours

__all__ = ["convert", "CONVERTIBLE"]

# The torch.nn classes convert() knows; each is swapped only if torch_convpool.nn has a class of
# the same name at call time (the families arrive one by one).
CONVERTIBLE: tuple[str, ...] = tuple(
    f"{family}{dims}d"
    for family in ("Conv", "ConvTranspose", "MaxPool", "AvgPool", "AdaptiveAvgPool",
                   "AdaptiveMaxPool", "MaxUnpool")
    for dims in (1, 2, 3)
)


def convert(model: nn.Module, inplace: bool = False) -> nn.Module:
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

    Returns:
        nn.Module: the converted model: ``model`` itself when ``inplace`` (unless ``model`` is
        itself a convertible layer: then its replacement), a new model otherwise.

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
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert() expects an nn.Module, got {type(model).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    memo: dict[int, nn.Module] = {}
    return _convert(model, memo)


def _convert(module: nn.Module, memo: dict[int, nn.Module]) -> nn.Module:
    if id(module) in memo:
        return memo[id(module)]
    replacement = _twin(module)
    if replacement is not None:
        memo[id(module)] = replacement
        return replacement
    memo[id(module)] = module
    for name, child in list(module._modules.items()):
        if child is not None:
            new = _convert(child, memo)
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
