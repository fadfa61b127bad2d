"""convert() reroutes functional calls only where the model's code can make them, and our own
functions do not pay for the rerouting mode's Python on their tensor calls."""
import collections
import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.testing import assert_close

import torch_convpool
from torch_convpool import conversion_report, convert
from torch_convpool._code_scan import may_call_spatial_functions
from torch_convpool.reroute import RerouteMode


def _pool_helper(x):
    return F.max_pool2d(x, 2)


def _indirect_helper(x):
    return _pool_helper(x) + 0


class Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.pool, self.bn = nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.BatchNorm2d(4)

    def forward(self, x):
        return torch.relu(self.bn(self.pool(self.conv(x)))).flatten(1)


class DirectCall(Plain):
    def forward(self, x):
        return F.avg_pool2d(super().forward(x).view(x.shape[0], 4, 3, 3), 3).flatten(1)


class GlobalHelper(Plain):
    def forward(self, x):
        return _indirect_helper(self.conv(x)).flatten(1)


class Attribute(Plain):
    def __init__(self):
        super().__init__()
        self.reduce = F.adaptive_avg_pool2d

    def forward(self, x):
        return self.reduce(self.conv(x), 1).flatten(1)


class ByName(Plain):
    def forward(self, x):
        return getattr(F, "max_pool2d")(self.conv(x), 2).flatten(1)  # noqa: B009 (the point)


def _closure_model():
    pool = functools.partial(F.max_pool2d, kernel_size=2)

    class Closure(Plain):
        def forward(self, x):
            return pool(self.conv(x)).flatten(1)

    return Closure()


def _hooked_model():
    model = Plain()
    model.pool.register_forward_hook(lambda m, args, out: F.max_pool2d(out, 1))
    return model


class InnerFunction(Plain):
    def forward(self, x):
        def reduce(y):
            return F.adaptive_max_pool2d(y, 2)

        return reduce(self.conv(x)).flatten(1)


CALLING = {
    "direct": (DirectCall, "F.avg_pool2d"),
    "global_helper": (GlobalHelper, "F.max_pool2d"),
    "attribute": (Attribute, "F.adaptive_avg_pool2d"),
    "by_name": (ByName, "F.max_pool2d"),
    "closure": (_closure_model, "F.max_pool2d"),
    "hook": (_hooked_model, "F.max_pool2d"),
    "inner_function": (InnerFunction, "F.adaptive_max_pool2d"),
}


def _torch_spatial_ops(model, x):
    with torch.profiler.profile() as prof:
        model(x).sum().backward()
    return {e.name for e in prof.events()
            if e.name.startswith("aten::") and ("conv" in e.name or "pool" in e.name)}


def test_a_model_without_functional_calls_runs_without_the_mode():
    torch.manual_seed(0)
    model = Plain()
    fast = convert(model)
    assert not conversion_report(fast).rerouting and "forward" not in fast.__dict__
    assert "none in the model's code" in str(conversion_report(fast))
    x = torch.randn(2, 3, 8, 8)
    assert _torch_spatial_ops(model, x)  # the check can fail
    assert not _torch_spatial_ops(fast, x)
    assert_close(fast(x), model(x))


@pytest.mark.parametrize("name", CALLING)
def test_every_way_of_naming_a_function_turns_the_mode_on(name):
    factory, call = CALLING[name]
    torch.manual_seed(0)
    model = factory()
    fast = convert(model)
    report = conversion_report(fast)
    assert report.rerouting
    x = torch.randn(2, 3, 8, 8)
    assert _torch_spatial_ops(model, x)
    assert not _torch_spatial_ops(fast, x)
    assert report.rerouted[call] >= 1
    assert_close(fast(x), model(x))


def test_the_scan_sees_unconverted_layers_and_skips_ours():
    assert may_call_spatial_functions(nn.Sequential(nn.Conv2d(1, 1, 1)))
    assert not may_call_spatial_functions(convert(nn.Sequential(nn.Conv2d(1, 1, 1)), functional=False))

    class MyPool(nn.MaxPool2d):  # kept by convert: its forward calls F.max_pool2d
        pass

    assert may_call_spatial_functions(convert(nn.Sequential(MyPool(2)), functional=False))


def test_reconverting_decides_again():
    fast = convert(DirectCall())
    assert "forward" in fast.__dict__
    again = convert(fast, inplace=True, functional=False)
    assert not any("forward" in m.__dict__ for m in again.modules())
    assert not conversion_report(again).rerouting


class _Features(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())

    def forward(self, x):
        return torch.relu(self.body(x))


class DenseNetStyle(nn.Module):
    """A top-level forward with a functional pooling call, and children without any."""

    def __init__(self):
        super().__init__()
        self.features, self.fc = _Features(), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def test_children_without_functional_calls_run_outside_the_mode():
    torch.manual_seed(0)
    model = DenseNetStyle().eval()
    fast = convert(model)
    seen = collections.Counter()
    original = RerouteMode.__torch_function__

    def counting(self, func, types, args=(), kwargs=None):
        seen[getattr(func, "__name__", str(func))] += 1
        return original(self, func, types, args, kwargs)

    x = torch.randn(2, 3, 8, 8)
    RerouteMode.__torch_function__ = counting
    try:
        out = fast(x)
    finally:
        RerouteMode.__torch_function__ = original
    # the top level's own calls only: none of the children's batch_norm and relu
    assert seen == {"adaptive_avg_pool2d": 1, "flatten": 1}
    assert conversion_report(fast).rerouted == {"F.adaptive_avg_pool2d": 1}
    assert_close(out, model(x))
    assert not _torch_spatial_ops(fast, x)
    assert "forward" in fast.features.__dict__ and "forward" in fast.fc.__dict__
    # Called on its own, a child computes as before (with or without a mode).
    assert_close(fast.features(x), model.features(x))
    with torch_convpool.enabled():
        assert_close(fast.features(x), model.features(x))


class _Counting(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls[getattr(func, "__name__", str(func))] += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("layer", [
    nn.Conv2d(3, 4, 3), nn.ConvTranspose2d(3, 4, 3, stride=2), nn.MaxPool2d(2),
    nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(2), nn.AdaptiveMaxPool2d(2)], ids=lambda m: type(m).__name__)
def test_our_layers_run_outside_the_rerouting_mode_and_inside_any_other(layer):
    ours = convert(layer)
    x = torch.randn(2, 3, 8, 8)
    seen = collections.Counter()
    original = RerouteMode.__torch_function__

    def counting(self, func, types, args=(), kwargs=None):
        seen[getattr(func, "__name__", str(func))] += 1
        return original(self, func, types, args, kwargs)

    RerouteMode.__torch_function__ = counting
    try:
        with torch_convpool.enabled():
            out = ours(x)
    finally:
        RerouteMode.__torch_function__ = original
    assert not seen
    assert_close(out, ours(x))
    # A mode of the user's still sees our op, as torch.ops.
    with _Counting() as mode:
        ours(x)
    assert any(name.startswith(("conv", "max_pool", "avg_pool", "adaptive")) for name in mode.calls)
