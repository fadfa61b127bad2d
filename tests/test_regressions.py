"""Regression tests of issue 10's findings, one behaviour per test: inputs that crashed the process,
empty max-pool windows, the rule for bad indices, and the cases where we answered while torch
rejected (or the reverse). The property-based tests (test_fuzz_*.py) search the same ground at
random; these pin the cases found."""
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import torch_convpool.functional as CF

CONV = {1: (CF.conv1d, F.conv1d), 2: (CF.conv2d, F.conv2d), 3: (CF.conv3d, F.conv3d)}
CONV_T = {1: (CF.conv_transpose1d, F.conv_transpose1d), 2: (CF.conv_transpose2d, F.conv_transpose2d),
          3: (CF.conv_transpose3d, F.conv_transpose3d)}


def grads_match(ours_out, torch_out, inputs, rtol=1e-10, atol=1e-10):
    g = torch.randn_like(torch_out)
    assert_close(ours_out, torch_out, rtol=rtol, atol=atol)
    ours = torch.autograd.grad(ours_out, inputs, g, allow_unused=True)
    theirs = torch.autograd.grad(torch_out, inputs, g, allow_unused=True)
    for name, a, e in zip(("input", "weight", "bias"), ours, theirs):
        assert_close(a, e, rtol=rtol, atol=atol, msg=lambda m: f"grad of {name}: {m}")


def leaves(*shapes, dtype=torch.float64):
    return [torch.randn(*s, dtype=dtype, requires_grad=True) for s in shapes]


# ---- padding wider than the input, with dilation and several channels per group: im2col's line
# runs started past the end of the column row (SIGSEGV) ------------------------------------------

def test_issue_example_conv2d():
    x, w = leaves((1, 2, 3, 2), (1, 2, 2, 3))
    grads_match(CF.conv2d(x, w, None, 1, [1, 3], [3, 3], 1),
                F.conv2d(x, w, None, 1, [1, 3], [3, 3], 1), (x, w))


# (dims, in channels, groups, kernel, stride, padding, dilation, spatial)
WIDE_PADDING = [
    (1, 2, 1, 3, 1, 4, 3, 2),
    (1, 4, 2, 2, 2, 5, 4, 1),
    (2, 2, 1, (2, 3), 1, (1, 3), 3, (3, 2)),
    (2, 4, 2, (2, 3), (1, 2), (0, 4), (1, 3), (3, 2)),
    (2, 3, 1, 2, 3, (4, 2), 2, (1, 2)),
    (3, 2, 1, (1, 2, 3), 1, (0, 1, 3), (1, 1, 3), (2, 3, 2)),
    (3, 4, 2, 2, 2, 3, 2, (2, 1, 2)),
]


@pytest.mark.parametrize("dims,channels,groups,kernel,stride,padding,dilation,spatial", WIDE_PADDING)
@pytest.mark.parametrize("bias", [False, True])
def test_conv_padding_wider_than_input(cpu_kernels, dims, channels, groups, kernel, stride,
                                       padding, dilation, spatial, bias):
    spatial = (spatial,) * dims if isinstance(spatial, int) else spatial
    kernel = (kernel,) * dims if isinstance(kernel, int) else kernel
    x, w, b = leaves((2, channels, *spatial), (4, channels // groups, *kernel), (4,))
    b = b if bias else None
    ours, theirs = CONV[dims]
    args = (b, stride, padding, dilation, groups)
    grads_match(ours(x, w, *args), theirs(x, w, *args), [t for t in (x, w, b) if t is not None])


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("groups", [1, 2])
def test_conv_same_padding_wider_than_input(cpu_kernels, dims, groups):
    # 'same' with kernel 3, dilation 4: 8 elements of padding around a length-2 input.
    x, w = leaves((1, 4, *([2] * dims)), (2, 4 // groups, *([3] * dims)))
    ours, theirs = CONV[dims]
    grads_match(ours(x, w, None, 1, "same", 4, groups), theirs(x, w, None, 1, "same", 4, groups),
                (x, w))


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("groups", [1, 2])
def test_conv_transpose_padding_wider_than_output(cpu_kernels, dims, groups):
    # kernel 3, dilation 3, stride 2, padding 3 on a length-2 input: the output (length 3) is
    # narrower than the padding; every tap but the middle one falls outside it.
    x, w, b = leaves((2, 4, *([2] * dims)), (4, 6 // groups, *([3] * dims)), (6,))
    ours, theirs = CONV_T[dims]
    args = (b, 2, 3, 0, groups, 3)
    grads_match(ours(x, w, *args), theirs(x, w, *args), (x, w, b))


def test_conv1d_exhaustive_small_wide_padding(cpu_kernels):
    """Every small 1-d case of padding >= input with dilation, two channels per group."""
    for length, kernel, stride, padding, dilation in itertools.product(
            [1, 2, 3], [1, 2, 3], [1, 2, 3], [2, 3, 5], [1, 2, 3]):
        if length + 2 * padding < dilation * (kernel - 1) + 1:
            continue
        x, w = leaves((1, 2, length), (2, 2, kernel))
        grads_match(CF.conv1d(x, w, None, stride, padding, dilation),
                    F.conv1d(x, w, None, stride, padding, dilation), (x, w))


# ---- max pooling with empty dilated windows: -inf forward, gradient goes nowhere ---------------

def empty_window_mask(x, **kw):
    """True where the output's window holds no input element (torch's forward is -inf there even
    for a finite input). torch's own backward writes out of bounds for such windows, so it is
    never called on them here."""
    return F.__dict__[f"max_pool{x.dim() - 2}d"](torch.zeros_like(x), **kw) == -float("inf")


EMPTY_WINDOWS = [
    (1, (2,), dict(kernel_size=2, dilation=3, padding=1)),
    (1, (3,), dict(kernel_size=2, stride=2, dilation=4, padding=1, ceil_mode=True)),
    (2, (3, 2), dict(kernel_size=2, stride=1, dilation=3, padding=1)),
    (2, (2, 5), dict(kernel_size=(2, 3), stride=1, dilation=(3, 2), padding=1)),
    (3, (2, 3, 2), dict(kernel_size=2, stride=1, dilation=(3, 1, 3), padding=1)),
    (3, (3, 2, 2), dict(kernel_size=2, stride=1, dilation=(1, 3, 1), padding=1)),
]


@pytest.mark.parametrize("dims,spatial,kw", EMPTY_WINDOWS)
@pytest.mark.parametrize("fmt", ["contiguous", "channels_last"])
def test_max_pool_empty_window(cpu_kernels, dims, spatial, kw, fmt):
    x = torch.randn(2, 3, *spatial, dtype=torch.float64)
    if fmt == "channels_last":
        if dims == 1:
            pytest.skip("no channels_last for 3-d tensors")
        x = x.to(memory_format=torch.channels_last if dims == 2 else torch.channels_last_3d)
    x.requires_grad_()
    ours, theirs = CF.__dict__[f"max_pool{dims}d"], F.__dict__[f"max_pool{dims}d"]
    out, idx = ours(x, return_indices=True, **kw)
    expected, expected_idx = theirs(x, return_indices=True, **kw)
    empty = empty_window_mask(x, **kw)
    assert empty.any()
    assert_close(out, expected, rtol=0, atol=0)
    # An empty window's index names no element of it; ours is torch's contiguous kernel's (its
    # channels_last 3-d kernel reports another), the others' must be torch's.
    assert torch.equal(idx[~empty], expected_idx[~empty])
    contiguous_idx = theirs(x.contiguous(), return_indices=True, **kw)[1]
    assert torch.equal(idx[empty], contiguous_idx[empty])
    # Only empty windows get a gradient: nothing reaches the input.
    (grad,) = torch.autograd.grad(out, x, empty.double(), retain_graph=True)
    assert torch.equal(grad, torch.zeros_like(x))
    # The others' gradients land where torch's indices say.
    g = torch.randn_like(out) * ~empty
    (grad,) = torch.autograd.grad(out, x, g)
    want = torch.zeros(x.shape[0] * x.shape[1], x[0, 0].numel(), dtype=x.dtype)
    keep = ~empty.flatten(2).flatten(0, 1)
    rows = torch.arange(want.shape[0]).unsqueeze(1).expand_as(keep)
    want.index_put_((rows[keep], expected_idx.contiguous().flatten(2).flatten(0, 1)[keep]),
                    g.contiguous().flatten(2).flatten(0, 1)[keep], accumulate=True)
    assert_close(grad, want.view_as(x), rtol=1e-12, atol=1e-12)


def test_max_pool_empty_window_double_backward():
    x = torch.randn(1, 2, 2, dtype=torch.float64, requires_grad=True)
    out = CF.max_pool1d(x, 2, dilation=3, padding=1)
    (grad,) = torch.autograd.grad(out, x, torch.ones_like(out), create_graph=True)
    assert torch.equal(grad, torch.zeros_like(x))
    (gg,) = torch.autograd.grad(grad.sum(), x, allow_unused=True)
    assert gg is None or torch.equal(gg, torch.zeros_like(x))


# ---- one rule for bad indices on every device: checked once, before any kernel runs ----------

def raw_backward(grad, x, idx):
    return torch.ops.convpool.max_pool_backward(grad, x, idx, [2], [2], [0, 0], [1], False)


@pytest.mark.parametrize("bad", [-1, 4, 1 << 40])
def test_max_pool_backward_rejects_out_of_plane_index(device, bad):
    x = torch.randn(2, 3, 4, device=device)
    _, idx = torch.ops.convpool.max_pool(x, [2], [2], [0, 0], [1], False)
    idx = idx.clone()
    idx[1, 2, 0] = bad
    with pytest.raises(RuntimeError, match=f"invalid max index: {bad} "):
        raw_backward(torch.ones(2, 3, 2, device=device), x, idx)


def test_max_pool_backward_rejects_out_of_plane_index_channels_last():
    x = torch.randn(2, 3, 4, 4).to(memory_format=torch.channels_last)
    _, idx = torch.ops.convpool.max_pool(x, [2, 2], [2, 2], [0, 0, 0, 0], [1, 1], False)
    idx = idx.clone()
    idx[0, 1, 1, 1] = 16
    with pytest.raises(RuntimeError, match="invalid max index: 16 "):
        torch.ops.convpool.max_pool_backward(torch.ones_like(idx, dtype=x.dtype), x, idx, [2, 2],
                                             [2, 2], [0, 0, 0, 0], [1, 1], False)


def test_adaptive_max_pool_backward_rejects_out_of_plane_index():
    x = torch.randn(1, 2, 6)
    _, idx = torch.ops.convpool.adaptive_max_pool(x, [3])
    idx = idx.clone()
    idx[0, 0, 0] = -3
    with pytest.raises(RuntimeError, match="invalid max index: -3 "):
        torch.ops.convpool.adaptive_max_pool_backward(torch.ones(1, 2, 3), x, idx)


def test_max_pool_backward_accepts_empty_window_index_outside_plane():
    x = torch.randn(1, 1, 2)
    out, idx = torch.ops.convpool.max_pool(x, [2], [1], [1, 1], [3], False)
    assert idx.item() == 2  # outside the plane of 2, as torch reports it
    grad = torch.ops.convpool.max_pool_backward(torch.ones_like(out), x, idx, [2], [1], [1, 1], [3],
                                                False)
    assert torch.equal(grad, torch.zeros_like(x))


# ---- where torch rejects, we reject; where torch answers, we answer ---------------------------

def same_outcome(ours, theirs):
    """Both raise the same exception type, or both answer the same."""
    try:
        expected = theirs()
    except Exception as e:  # noqa: BLE001  (the type is what is compared)
        with pytest.raises(type(e)):
            ours()
        return
    got = ours()
    if isinstance(expected, tuple):
        for a, e in zip(got, expected):
            assert_close(a, e, rtol=0, atol=0) if a.is_floating_point() else torch.equal(a, e)
    else:
        assert got.shape == expected.shape
        assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spatial,kw", [
    ((2, 2, 2), dict(kernel_size=3, padding=1)),
    ((3, 2, 3), dict(kernel_size=3, padding=1, ceil_mode=True)),
    ((4, 4, 1), dict(kernel_size=(1, 1, 2), padding=(0, 0, 1), count_include_pad=False)),
])
@pytest.mark.parametrize("batched", [True, False])
def test_avg_pool3d_input_smaller_than_kernel(spatial, kw, batched):
    x = torch.randn(*((2,) if batched else ()), 3, *spatial, dtype=torch.float64)
    with pytest.raises(RuntimeError):
        F.avg_pool3d(x, **kw)
    with pytest.raises(RuntimeError, match="smaller than kernel size"):
        CF.avg_pool3d(x, **kw)


@pytest.mark.parametrize("name", ["max_pool", "avg_pool"])
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("length,kernel,stride,padding", [
    (5, 2, 2, 1), (4, 3, 2, 1), (6, 3, 4, 1), (2, 3, 2, 1), (7, 2, 3, 0), (1, 2, 2, 1),
])
def test_ceil_mode_tails_like_torch(name, dims, batched, length, kernel, stride, padding):
    x = torch.randn(*((2,) if batched else ()), 3, *([length] * dims), dtype=torch.float64)
    kw = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=True)
    ours, theirs = CF.__dict__[f"{name}{dims}d"], F.__dict__[f"{name}{dims}d"]
    same_outcome(lambda: ours(x, **kw), lambda: theirs(x, **kw))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_max_unpool_default_size_with_zero(dims):
    # kernel 1, stride 2, padding... torch's default size (L - 1) * s + k - 2p is 0 for L = 1,
    # k = 2, s = 2, p = 1: an empty output, not an error.
    x = torch.randn(2, 1, *([1] * (dims - 1)), 1)
    idx = torch.zeros_like(x, dtype=torch.long)
    kw = dict(kernel_size=[2] * dims, stride=2, padding=[0] * (dims - 1) + [1])
    expected = F.__dict__[f"max_unpool{dims}d"](x, idx, **kw)
    got = CF.__dict__[f"max_unpool{dims}d"](x, idx, **kw)
    assert got.shape == expected.shape and expected.numel() == 0


def test_max_unpool2d_issue_example():
    x = torch.randn(2, 1, 2, 4)
    pooled, idx = F.max_pool2d(x, (1, 1), return_indices=True)
    expected = F.max_unpool2d(pooled, idx, (1, 1), padding=0, output_size=None, stride=(1, 1))
    assert CF.max_unpool2d(pooled, idx, (1, 1), (1, 1)).shape == expected.shape


# ---- no input channels: torch answers with no output channels whatever the weight's first dim
# (its empty-input path), and every gradient is zero (torch's test_conv_empty_channel) ----------

@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("batched", [True, False])
def test_conv_of_no_input_channels_has_no_output_channels(dims, batched):
    ours_fn, torch_fn = CONV[dims]
    x, w, b = leaves((2, 0, *[5] * dims), (8, 0, *[2] * dims), (8,))
    xi = x if batched else x[0]
    out, expected = ours_fn(xi, w, b, stride=2, padding=1), torch_fn(xi, w, b, stride=2, padding=1)
    assert out.shape == expected.shape
    grads = torch.autograd.grad(out, (x, w, b), torch.rand_like(out))
    for grad, leaf in zip(grads, (x, w, b)):
        assert grad.shape == leaf.shape and not grad.any()


@pytest.mark.parametrize("module", ["Conv1d", "Conv2d", "Conv3d"])
def test_conv_module_of_no_input_channels_as_torch(module):
    import torch_convpool.nn as cnn
    dims = int(module[-2])
    with pytest.warns(UserWarning):  # torch's: initialising a zero-element weight is a no-op
        ours = getattr(cnn, module)(0, 8, 3, stride=2)
    x = torch.randn(2, 0, *[9] * dims, requires_grad=True)
    out = ours(x)
    assert out.shape == (2, 0, *[4] * dims)
    out.backward(torch.rand_like(out))
    assert not ours.bias.grad.any() and ours.bias.grad.shape == (8,)
