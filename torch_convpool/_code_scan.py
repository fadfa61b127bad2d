"""Whether a model's Python code can call torch's convolution or pooling functions.

convert() runs a model under :class:`~torch_convpool.reroute.RerouteMode` only where this finds
such a call: the mode sees every torch function the forward calls (batch_norm, relu, add, ...),
at ~2.5 us of Python each, which is 2-5 % of a small model's inference at batch 4 even when
nothing is rerouted (regnet_x_400mf, 160 calls). The scan reads the code a forward can run: the
methods of every layer's class (torch_convpool's own excepted: they call our functions), the
functions those name as globals (to a depth of four), nested functions, closures, hooks, and
callables kept in layers' attributes. A name of one of the functions RerouteMode handles
(``max_pool2d``, ``adaptive_avg_pool2d``, ``conv2d``, ...) anywhere in that code, or one of
those functions held in an attribute, means the mode is needed. Calls the scan cannot see (a
name built at run time) stay torch's: :func:`torch_convpool.enabled` reroutes those.
"""
from __future__ import annotations

import functools
import types
from typing import Any

import torch
from torch import nn

from .reroute import REROUTED, UNSUPPORTED

__all__ = ["ModelScan", "may_call_spatial_functions"]

_MAX_DEPTH = 4
# Code no torch_convpool-visible conv/pool call comes from.
_SKIPPED_CLASSES = (nn.Module, object)


def _spatial_names() -> frozenset[str]:
    names = {route.name for route in REROUTED.values()} | set(UNSUPPORTED.values())
    return frozenset(name.rsplit(".", 1)[-1] for name in names)


_NAMES = _spatial_names()
_FUNCTIONS = frozenset(id(f) for f in (*REROUTED, *UNSUPPORTED))


class _Scan:
    def __init__(self) -> None:
        # Answers per code object and per layer class (a code object being read counts as
        # False for the calls it makes to itself).
        self.codes: dict[int, bool] = {}
        self.classes: dict[type, bool] = {}

    def code(self, code: types.CodeType, globals_: dict, depth: int) -> bool:
        if id(code) not in self.codes:
            self.codes[id(code)] = False
            self.codes[id(code)] = self._reads(code, globals_, depth)
        return self.codes[id(code)]

    def _reads(self, code: types.CodeType, globals_: dict, depth: int) -> bool:
        if _NAMES.intersection(code.co_names):
            return True
        for const in code.co_consts:
            if isinstance(const, types.CodeType) and self.code(const, globals_, depth):
                return True
            if isinstance(const, str) and const in _NAMES:  # getattr(F, "max_pool2d")
                return True
        if depth >= _MAX_DEPTH:
            return False
        for name in code.co_names:
            target = globals_.get(name)
            if isinstance(target, types.FunctionType) and self.callable(target, depth + 1):
                return True
        return False

    def callable(self, obj: Any, depth: int = 0) -> bool:
        """Whether calling ``obj`` can reach a rerouted (or reported) torch function."""
        if id(obj) in _FUNCTIONS:
            return True
        if isinstance(obj, (staticmethod, classmethod)):
            obj = obj.__func__
        elif isinstance(obj, property):
            return any(self.callable(f, depth) for f in (obj.fget, obj.fset) if f is not None)
        elif isinstance(obj, functools.partial):
            return self.callable(obj.func, depth) or any(
                self.callable(a, depth) for a in (*obj.args, *obj.keywords.values()))
        elif isinstance(obj, types.MethodType):
            obj = obj.__func__
        if not isinstance(obj, types.FunctionType):
            return False
        wrapped = getattr(obj, "__wrapped__", None)
        if wrapped is not None and self.callable(wrapped, depth):
            return True
        for cell in obj.__closure__ or ():
            try:
                content = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if self.callable(content, depth):
                return True
        return self.code(obj.__code__, obj.__globals__, depth)

    def layer_class(self, cls: type) -> bool:
        if cls not in self.classes:
            self.classes[cls] = False
            for klass in cls.__mro__:
                if klass.__module__.startswith("torch_convpool"):
                    break  # ours, and the torch class it overrides: they call our functions
                if klass in _SKIPPED_CLASSES:
                    continue
                if any(self.callable(attr) for attr in vars(klass).values()):
                    self.classes[cls] = True
                    break
        return self.classes[cls]

    def module(self, module: nn.Module) -> bool:
        """Whether ``module``'s own code (not its children's) can make such a call."""
        if not isinstance(module, torch.jit.ScriptModule) and self.layer_class(type(module)):
            return True
        hooks = (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks,
                 module._backward_pre_hooks)
        if any(self.callable(hook) for table in hooks for hook in table.values()):
            return True
        for value in module.__dict__.values():
            if isinstance(value, (list, tuple)):
                if any(self.callable(v) for v in value):
                    return True
            elif self.callable(value):
                return True
        return False


class ModelScan:
    """Which parts of a model can call a torch function that RerouteMode handles."""

    def __init__(self) -> None:
        self._scan = _Scan()
        self._subtrees: dict[int, bool] = {}

    def needs(self, module: nn.Module) -> bool:
        """Whether running ``module`` (its children included) can make such a call."""
        if id(module) not in self._subtrees:
            self._subtrees[id(module)] = self._scan.module(module) or any(
                self.needs(child) for child in module.children())
        return self._subtrees[id(module)]

    def free_subtrees(self, model: nn.Module) -> list[nn.Module]:
        """The largest submodules of ``model`` that cannot make such a call while ``model`` can:
        they may run outside the mode."""
        found: dict[int, nn.Module] = {}

        def collect(module: nn.Module) -> None:
            for child in module.children():
                if self.needs(child):
                    collect(child)
                else:
                    found.setdefault(id(child), child)

        if self.needs(model):
            collect(model)
        return list(found.values())


def may_call_spatial_functions(model: nn.Module) -> bool:
    """Whether running ``model`` can call a torch function that RerouteMode handles."""
    return ModelScan().needs(model)
