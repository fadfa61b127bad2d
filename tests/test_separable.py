"""DepthwiseSeparableConv{1,2,3}d against depthwise-then-pointwise torch.nn.functional convs."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import torch_convpool.nn as cnn
from torch_convpool.nn.separable import (
    DepthwiseSeparableConv1d,
    DepthwiseSeparableConv2d,
    DepthwiseSeparableConv3d,
)

SEPARABLE = {1: DepthwiseSeparableConv1d, 2: DepthwiseSeparableConv2d, 3: DepthwiseSeparableConv3d}
OURS_CONV = {1: cnn.Conv1d, 2: cnn.Conv2d, 3: cnn.Conv3d}
TORCH_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
SPATIAL = {1: (13,), 2: (9, 8), 3: (6, 5, 7)}
DIMS = [1, 2, 3]


def tf_same_pad(lengths, kernel, stride, dilation):
    """TensorFlow's 'same' padding as F.pad's list (last dim first), the odd pixel after."""
    pads = []
    for length, k, s, d in zip(lengths, kernel, stride, dilation):
        total = max((math.ceil(length / s) - 1) * s + (k - 1) * d + 1 - length, 0)
        pads.append((total // 2, total - total // 2))
    return [p for before, after in reversed(pads) for p in (before, after)]


def reference(module, x):
    """The module's computation with torch.nn.functional on its own weights."""
    dims = module._dims
    dw, pw = module.depthwise, module.pointwise
    padding = dw.padding
    if padding == "same" and any(s != 1 for s in dw.stride):
        x = F.pad(x, tf_same_pad(x.shape[-dims:], dw.kernel_size, dw.stride, dw.dilation))
        padding = 0
    elif dw.padding_mode != "zeros":
        pad = [p for q in reversed(dw.padding) for p in (q, q)]
        x = F.pad(x, pad, mode=dw.padding_mode)
        padding = 0
    hidden = TORCH_CONV[dims](x, dw.weight, dw.bias, dw.stride, padding, dw.dilation,
                              groups=module.in_channels)
    return TORCH_CONV[dims](hidden, pw.weight, pw.bias)


CONFIGS = [
    dict(),
    dict(stride=2, padding=1, depth_multiplier=2),
    dict(padding=2, dilation=2, bias=False),
    dict(padding="same", depth_multiplier=3),
    dict(padding="valid", stride=2),
    dict(padding=1, padding_mode="reflect"),
    dict(padding=1, padding_mode="circular", depth_multiplier=2),
]


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("kwargs", CONFIGS,
                         ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()) or "default")
def test_output_equals_depthwise_then_pointwise(device, dims, kwargs):
    module = SEPARABLE[dims](4, 6, 3, device=device, **kwargs)
    x = torch.randn(2, 4, *SPATIAL[dims], device=device)
    assert_close(module(x), reference(module, x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("lengths", [(8, 9, 6), (9, 7, 5)], ids=["even", "odd"])
def test_same_padding_with_stride_2_is_tensorflows(device, dims, lengths):
    module = SEPARABLE[dims](3, 5, 4, stride=2, padding="same", device=device)
    x = torch.randn(2, 3, *lengths[:dims], device=device)
    out = module(x)
    assert tuple(out.shape[2:]) == tuple(math.ceil(n / 2) for n in lengths[:dims])
    assert_close(out, reference(module, x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("multiplier", [1, 2])
def test_children_are_our_depthwise_and_pointwise_convs(dims, multiplier):
    module = SEPARABLE[dims](4, 6, 3, stride=2, padding=1, dilation=1, depth_multiplier=multiplier)
    assert type(module.depthwise) is OURS_CONV[dims] and type(module.pointwise) is OURS_CONV[dims]
    assert (module.depthwise.in_channels, module.depthwise.out_channels) == (4, 4 * multiplier)
    assert module.depthwise.groups == 4
    assert module.depthwise.stride == (2,) * dims and module.depthwise.padding == (1,) * dims
    assert (module.pointwise.in_channels, module.pointwise.out_channels) == (4 * multiplier, 6)
    assert module.pointwise.kernel_size == (1,) * dims and module.pointwise.groups == 1


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("cin,cout,k,m", [(4, 6, 3, 1), (8, 16, 5, 2), (3, 32, 3, 4)])
def test_parameter_counts_follow_the_formula(dims, cin, cout, k, m):
    module = SEPARABLE[dims](cin, cout, k, depth_multiplier=m)
    taps = k ** dims
    separable = cin * taps * m + cin * m * cout
    dense = cin * cout * taps
    assert module.weight_counts() == (separable, dense)
    biases = cin * m + cout
    assert sum(p.numel() for p in module.parameters()) == separable + biases
    dense_conv = torch.nn.Conv1d if dims == 1 else torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d
    assert dense_conv(cin, cout, k, bias=False).weight.numel() == dense


@pytest.mark.parametrize("dims", DIMS)
def test_bias_false_removes_both_biases(dims):
    module = SEPARABLE[dims](4, 6, 3, bias=False)
    assert module.depthwise.bias is None and module.pointwise.bias is None
    assert sum(p.numel() for p in module.parameters()) == module.weight_counts()[0]


def test_extra_repr_shows_geometry_and_saving():
    module = DepthwiseSeparableConv2d(32, 64, 3, stride=2, padding=1, depth_multiplier=1)
    # 32*9*1 + 32*1*64 = 2336 weights against 32*64*9 = 18432: 7.89x fewer.
    assert module.extra_repr() == (
        "32, 64, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), depth_multiplier=1, "
        "weights=2336, dense_weights=18432, saving=7.89x")


def test_extra_repr_shows_non_default_options():
    module = DepthwiseSeparableConv1d(4, 8, 3, padding="same", dilation=2, bias=False,
                                      depth_multiplier=2, padding_mode="reflect")
    text = module.extra_repr()
    for part in ("padding='same'", "dilation=(2,)", "bias=False", "padding_mode='reflect'",
                 "depth_multiplier=2"):
        assert part in text
    assert "DepthwiseSeparableConv1d(" in repr(module) and "(depthwise): Conv1d" in repr(module)


@pytest.mark.parametrize("dims", DIMS)
def test_unbatched_input_matches_batched(device, dims):
    module = SEPARABLE[dims](4, 6, 3, padding=1, device=device)
    x = torch.randn(4, *SPATIAL[dims], device=device)
    out = module(x)
    assert out.shape[0] == 6 and out.dim() == dims + 1
    assert_close(out, module(x.unsqueeze(0)).squeeze(0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dims", DIMS)
def test_gradients_flow_to_input_and_every_parameter(device, dims):
    module = SEPARABLE[dims](4, 6, 3, stride=2, padding="same", depth_multiplier=2, device=device)
    x = torch.randn(2, 4, *SPATIAL[dims], device=device, requires_grad=True)
    module(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("dims", DIMS)
def test_gradients_match_the_functional_reference(dims):
    module = SEPARABLE[dims](4, 6, 3, padding=1, depth_multiplier=2, dtype=torch.float64)
    x = torch.randn(2, 4, *SPATIAL[dims], dtype=torch.float64, requires_grad=True)
    params = list(module.parameters())
    ours = torch.autograd.grad(module(x).sum(), [x, *params])
    theirs = torch.autograd.grad(reference(module, x).sum(), [x, *params])
    for a, b in zip(ours, theirs):
        assert_close(a, b)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_depth_multiplier_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match="depth_multiplier"):
        DepthwiseSeparableConv2d(4, 6, 3, depth_multiplier=bad)
