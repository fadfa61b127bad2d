"""torch_convpool.enabled(): torch's functional conv/pool calls computed by ours, any caller."""
import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import torch_convpool
from torch_convpool.reroute import REROUTED

X1, X2, X3 = (1, 2, 9), (2, 2, 9, 8), (1, 2, 6, 7, 5)

# (torch callable, positional arguments after the input, kwargs, input size)
CALLS = [
    (F.conv1d, (torch.randn(3, 2, 3),), dict(padding=1), X1),
    (F.conv2d, (torch.randn(3, 2, 3, 3),), dict(stride=2, dilation=1), X2),
    (F.conv3d, (torch.randn(4, 1, 3, 3, 3),), dict(groups=2), X3),
    (F.conv_transpose1d, (torch.randn(2, 3, 3),), dict(stride=2), X1),
    (F.conv_transpose2d, (torch.randn(2, 3, 3, 3),), dict(stride=2, output_padding=1), X2),
    (F.conv_transpose3d, (torch.randn(2, 3, 2, 2, 2),), {}, X3),
    (F.max_pool1d, (3,), dict(stride=2, ceil_mode=True), X1),
    (F.max_pool2d, (3,), dict(stride=2, padding=1, return_indices=True), X2),
    (F.max_pool3d, (2,), {}, X3),
    (torch.max_pool1d, (2,), {}, X1),
    (torch.max_pool2d, (3, 2, 1), {}, X2),
    (torch.max_pool3d, (2,), {}, X3),
    (torch.max_pool1d_with_indices, (2,), {}, X1),
    (torch._C._nn.max_pool2d_with_indices, (2,), {}, X2),
    (F.max_pool2d_with_indices, (2, 2, 0, 1, False, False), {}, X2),
    (F.avg_pool1d, (3,), dict(padding=1, count_include_pad=False), X1),
    (F.avg_pool2d, (3, 2), dict(ceil_mode=True), X2),
    (F.avg_pool3d, (2,), dict(divisor_override=3), X3),
    (F.adaptive_avg_pool1d, (4,), {}, X1),
    (F.adaptive_avg_pool2d, ((3, None),), {}, X2),
    (F.adaptive_avg_pool3d, (2,), {}, X3),
    (F.adaptive_max_pool1d, (4,), dict(return_indices=True), X1),
    (F.adaptive_max_pool2d, (3,), {}, X2),
    (F.adaptive_max_pool3d_with_indices, (2,), {}, X3),
    (torch.adaptive_max_pool1d, (3,), {}, X1),
    (torch._C._nn.adaptive_max_pool2d, (3,), {}, X2),
]


def _call_id(call):
    return REROUTED[call[0]].name


@pytest.mark.parametrize("call", CALLS, ids=_call_id)
def test_each_torch_function_is_computed_by_ours_with_torch_results(call):
    func, args, kwargs, size = call
    x = torch.randn(size, dtype=torch.float64, requires_grad=True)
    args = tuple(a.double() if isinstance(a, torch.Tensor) else a for a in args)
    expected = func(x, *args, **kwargs)
    with torch_convpool.enabled() as mode:
        out = func(x, *args, **kwargs)
    # one call, ours (F.max_pool2d(..., return_indices=True) reaches the mode as
    # F.max_pool2d_with_indices: torch dispatches on the flag first)
    assert sum(mode.rerouted.values()) == 1 and not mode.left_to_torch
    assert type(out) is type(expected)
    outs = out if isinstance(out, tuple) else (out,)
    refs = expected if isinstance(expected, tuple) else (expected,)
    for o, r in zip(outs, refs):
        assert_close(o, r, rtol=1e-10, atol=1e-10)
    grad = torch.autograd.grad(outs[0].square().sum(), x)[0]
    assert_close(grad, torch.autograd.grad(refs[0].square().sum(), x)[0], rtol=1e-10, atol=1e-10)


def test_max_unpool_and_modules_are_rerouted_and_the_profiler_sees_no_torch_op():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    conv, pool = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.MaxPool2d(2, return_indices=True)

    def step():
        y, indices = pool(conv(x))
        return F.max_unpool2d(y, indices, 2).sum()

    with torch.profiler.profile() as prof:
        with torch_convpool.enabled() as mode:
            step().backward()
    assert mode.rerouted == {"F.conv2d": 1, "F.max_pool2d_with_indices": 1, "F.max_unpool2d": 1}
    names = {e.name for e in prof.events()}
    assert not {n for n in names if n.startswith("aten::") and ("conv" in n or "pool" in n)}
    assert {"convpool::conv", "convpool::max_pool", "convpool::max_unpool"} <= names
    with torch.profiler.profile() as prof:  # the check can fail: torch's own run shows its ops
        step().backward()
    assert any(e.name.startswith("aten::max_pool2d") for e in prof.events())


def test_errors_are_torchs_and_leave_the_mode():
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(RuntimeError):
        F.max_pool2d(x, 0)
    with torch_convpool.enabled():
        with pytest.raises(RuntimeError, match="kernel_size"):
            F.max_pool2d(x, 0)
    assert F.max_pool2d(x, 2).shape == (1, 2, 2, 2)


def test_tensors_ours_does_not_compute_stay_with_torch():
    x = torch.arange(32).view(1, 2, 4, 4)
    with torch_convpool.enabled() as mode:
        out = F.max_pool2d(x, 2)
    assert torch.equal(out, F.max_pool2d(x, 2))
    assert mode.left_to_torch == {("F.max_pool2d", "dtype torch.int64"): 1}
    assert not mode.rerouted


def test_unsupported_spatial_functions_are_reported():
    x = torch.randn(1, 2, 8, 8)
    with torch_convpool.enabled() as mode:
        F.fractional_max_pool2d(x, 2, output_size=4, _random_samples=torch.rand(1, 2, 2))
    assert ("F.fractional_max_pool2d", "no counterpart in torch_convpool") in mode.left_to_torch


def _graph_targets(fn, *args):
    targets = []

    def backend(gm, example_inputs):
        targets.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm

    return torch.compile(fn, backend=backend, fullgraph=True)(*args), targets


def _functional_net(x, w):
    y = F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), 3, 2, ceil_mode=True)
    return F.adaptive_avg_pool2d(y, 1).flatten(1)


def test_torch_compile_traces_through_the_mode_inside_and_outside():
    x, w = torch.randn(2, 3, 12, 12), torch.randn(4, 3, 3, 3)

    def inside(x, w):
        with torch_convpool.enabled():
            return _functional_net(x, w)

    expected = _functional_net(x, w)
    for fn in (inside, _functional_net):
        with torch_convpool.enabled() if fn is _functional_net else contextlib.nullcontext():
            out, targets = _graph_targets(fn, x, w)
        assert_close(out, expected)
        assert {"convpool.conv.default", "convpool.max_pool_values.default",
                "convpool.adaptive_avg_pool.default"} <= set(targets)
        assert not [t for t in targets if t.startswith("aten.") or "conv2d" in t or "pool2d" in t]


def test_torch_export_records_our_ops():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(4, 3, 3, 3))

        def forward(self, x):
            return _functional_net(x, self.w)

    net, x = Net(), torch.randn(2, 3, 12, 12)
    with torch_convpool.enabled():
        program = torch.export.export(net, (x,))
    ops = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert {"convpool.conv.default", "convpool.max_pool_values.default",
            "convpool.adaptive_avg_pool.default"} <= ops
    assert not [op for op in ops if "convolution" in op or "pool2d" in op]
    assert_close(program.module()(x), net(x))
