"""torch_convpool.nn pooling modules against their torch.nn namesakes, and GlobalAvgPool."""
import pytest
import torch
from torch.testing import assert_close

import torch_convpool.nn as cnn

SIZES = {1: (12,), 2: (9, 8), 3: (6, 5, 7)}

CASES = [
    ("MaxPool", dict(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=True)),
    ("MaxPool", dict(kernel_size=2, return_indices=True)),
    ("AvgPool", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ("AdaptiveAvgPool", dict(output_size=3)),
    ("AdaptiveMaxPool", dict(output_size=2, return_indices=True)),
]


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("family,kwargs", CASES)
def test_module_matches_torch(device, dims, family, kwargs):
    ours = getattr(cnn, f"{family}{dims}d")(**kwargs)
    theirs = getattr(torch.nn, f"{family}{dims}d")(**kwargs)
    assert repr(ours) == repr(theirs)
    assert isinstance(ours, type(theirs))
    x = torch.randn(2, 3, *SIZES[dims], device=device)
    assert_close(ours(x), theirs(x))
    assert_close(ours(x[0]), theirs(x[0]))


@pytest.mark.parametrize("dims", [2, 3])
def test_avg_pool_divisor_override_module(dims):
    ours = getattr(cnn, f"AvgPool{dims}d")(2, divisor_override=3)
    theirs = getattr(torch.nn, f"AvgPool{dims}d")(2, divisor_override=3)
    x = torch.randn(2, 3, *SIZES[dims])
    assert_close(ours(x), theirs(x))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_max_unpool_module_round_trip(dims):
    pool = getattr(cnn, f"MaxPool{dims}d")(2, return_indices=True)
    unpool = getattr(cnn, f"MaxUnpool{dims}d")(2)
    theirs = getattr(torch.nn, f"MaxUnpool{dims}d")(2)
    assert repr(unpool) == repr(theirs)
    x = torch.randn(2, 3, *SIZES[dims])
    out, idx = pool(x)
    assert_close(unpool(out, idx, output_size=x.shape), theirs(out, idx, output_size=x.shape))


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("flatten", [False, True])
def test_global_avg_pool(device, dims, flatten):
    m = getattr(cnn, f"GlobalAvgPool{dims}d")(flatten=flatten)
    x = torch.randn(2, 5, *SIZES[dims], device=device)
    expected = x.mean(dim=tuple(range(2, 2 + dims)), keepdim=not flatten)
    assert_close(m(x), expected)
    assert_close(m(x[0]), expected[0])
    assert f"flatten={flatten}" in repr(m)


def test_same_padding_pool_modules():
    x = torch.randn(1, 2, 11, 8)
    assert cnn.MaxPool2d(3, 2, padding="same")(x).shape == (1, 2, 6, 4)
    assert cnn.AvgPool2d(2, 2, padding="same")(x).shape == (1, 2, 6, 4)
