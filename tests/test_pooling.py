"""Pooling against torch's built-ins: values, indices (ties and NaN included), gradients, memory
format, unbatched inputs and 'same' padding."""
import itertools
import math

import pytest
import reference
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import torch_convpool.functional as CF

SIZES = {1: (13,), 2: (9, 10), 3: (7, 6, 8)}
FORMATS = {
    "contiguous": lambda x: x,
    "channels_last": lambda x: x.to(memory_format=torch.channels_last) if x.dim() == 4 else (
        x.to(memory_format=torch.channels_last_3d) if x.dim() == 5 else x),
}


def fn(name, dims):
    return getattr(CF, f"{name}{dims}d"), getattr(F, f"{name}{dims}d")


def make_input(dims, device, dtype=torch.float32, batch=2, channels=3):
    return torch.randn(batch, channels, *SIZES[dims], device=device, dtype=dtype)


MAX_GRID = list(itertools.product([1, 2, 3], [2, 3], [None, 1, 2], [0, 1], [1, 2], [False, True]))


@pytest.mark.emulated_sample(4)
@pytest.mark.parametrize("dims,kernel,stride,padding,dilation,ceil_mode", MAX_GRID)
@pytest.mark.parametrize("fmt", FORMATS)
def test_max_pool_matches_torch(device, dims, kernel, stride, padding, dilation, ceil_mode, fmt):
    ours, theirs = fn("max_pool", dims)
    x = FORMATS[fmt](make_input(dims, device)).requires_grad_()
    kw = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation,
              ceil_mode=ceil_mode, return_indices=True)
    out, idx = ours(x, **kw)
    expected, expected_idx = theirs(x, **kw)
    assert_close(out, expected, rtol=0, atol=0)
    assert torch.equal(idx, expected_idx)
    g = torch.randn_like(expected)  # (no window of this grid is empty: torch's backward is safe)
    # torch's CUDA max_pool3d backward adds overlapping windows' gradients with atomics, in no
    # fixed order; ours adds them in window order, so only there may the sums differ by rounding.
    exact = not (device == "cuda" and dims == 3)
    assert_close(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(expected, x, g)[0],
                 **(dict(rtol=0, atol=0) if exact else {}))
    assert out.is_contiguous(memory_format=torch.channels_last) == expected.is_contiguous(
        memory_format=torch.channels_last)
    with torch.no_grad():  # values only: no index is recorded, a loop of its own
        assert_close(ours(x, **{**kw, "return_indices": False}), expected, rtol=0, atol=0)


# NCHW values only: each tap along w is one pass over the line's outputs rounded up to whole
# vectors, over a row of maxima framed by -inf for the padding and ceil_mode's tail.
@pytest.mark.parametrize("width", [37, 50, 64])
@pytest.mark.parametrize("kernel,stride,padding,dilation,ceil_mode", [
    (2, 2, 0, 1, False), (3, 2, 1, 1, True), (3, 1, 1, 1, False), (4, 3, 2, 1, True),
    (3, 2, 1, 3, True), (5, 4, 2, 2, False), (2, 1, 0, 4, True)])
def test_max_pool_values_only_lines(width, kernel, stride, padding, dilation, ceil_mode):
    x = torch.randn(2, 3, 7, width)
    kw = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation,
              ceil_mode=ceil_mode)
    assert_close(CF.max_pool2d(x, **kw), F.max_pool2d(x, **kw), rtol=0, atol=0)
    assert_close(CF.max_pool1d(x[0], **kw), F.max_pool1d(x[0], **kw), rtol=0, atol=0)


AVG_GRID = list(itertools.product([1, 2, 3], [2, 3], [None, 1, 2], [0, 1], [False, True],
                                  [True, False]))


@pytest.mark.emulated_sample(4)
@pytest.mark.parametrize("dims,kernel,stride,padding,ceil_mode,count_include_pad", AVG_GRID)
@pytest.mark.parametrize("divisor_override", [None, 3])
def test_avg_pool_matches_torch(device, dims, kernel, stride, padding, ceil_mode,
                                count_include_pad, divisor_override):
    ours, theirs = fn("avg_pool", dims)
    x = make_input(dims, device)
    kw = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode,
              count_include_pad=count_include_pad)
    if dims > 1:
        kw["divisor_override"] = divisor_override
    elif divisor_override is not None:
        pytest.skip("avg_pool1d has no divisor_override (as torch)")
    x.requires_grad_()
    out, expected = ours(x, **kw), theirs(x, **kw)
    assert_close(out, expected, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(expected)
    assert_close(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(expected, x, g)[0],
                 rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("output_size", [1, 3, 4, 5, "none-first"])
@pytest.mark.parametrize("kind", ["adaptive_avg_pool", "adaptive_max_pool"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_adaptive_matches_torch(device, dims, output_size, kind, fmt):
    ours, theirs = fn(kind, dims)
    x = FORMATS[fmt](make_input(dims, device))
    if output_size == "none-first":
        if dims == 1:
            pytest.skip("torch's adaptive 1-d pooling takes no None")
        output_size = (None,) + (3,) * (dims - 1)
    if kind == "adaptive_max_pool":
        out, idx = ours(x, output_size, return_indices=True)
        expected, expected_idx = theirs(x, output_size, return_indices=True)
        assert torch.equal(idx, expected_idx)
    else:
        out, expected = ours(x, output_size), theirs(x, output_size)
    assert_close(out, expected, rtol=1e-5, atol=1e-6)
    if dims == 2:  # torch keeps channels_last in 2-d adaptive pooling (not in 3-d; we do)
        assert out.stride() == expected.stride()


# Empty inputs the adaptive ops take or refuse as torch's do: zero channels (1-d and 2-d average
# pooling in both forms, max and 3-d average pooling unbatched only), an empty window under an
# output of 1s (torch's mean: NaN), and the gradients of what is taken.
@pytest.mark.parametrize("name,output_size,shape", [
    ("adaptive_avg_pool2d", 3, (2, 0, 4, 4)), ("adaptive_avg_pool2d", 3, (0, 4, 4)),
    ("adaptive_max_pool2d", 3, (0, 4, 4)), ("adaptive_max_pool2d", 3, (2, 0, 4, 4)),
    ("adaptive_avg_pool2d", 1, (2, 3, 0, 4)), ("adaptive_avg_pool2d", 1, (2, 0, 4, 4)),
    ("adaptive_avg_pool2d", 1, (3, 0, 4)), ("adaptive_avg_pool2d", 3, (2, 3, 0, 4)),
    ("adaptive_avg_pool1d", 2, (2, 0, 4)), ("adaptive_avg_pool1d", 1, (2, 3, 0)),
    ("adaptive_max_pool1d", 2, (0, 4)), ("adaptive_max_pool1d", 2, (2, 0, 4)),
    ("adaptive_avg_pool3d", 2, (0, 4, 4, 4)), ("adaptive_avg_pool3d", 2, (2, 0, 4, 4, 4)),
    ("adaptive_avg_pool3d", 1, (2, 0, 4, 4, 4)), ("adaptive_max_pool3d", (2, 1, 3), (0, 4, 4, 4)),
])
def test_adaptive_empty_inputs_as_torch(name, output_size, shape):
    def outcome(f):
        x = torch.randn(*shape, requires_grad=True)
        try:
            y = f(x, output_size)
        except RuntimeError:
            return "raises"
        try:
            g = torch.autograd.grad(y, x, torch.ones_like(y))[0]
        except RuntimeError:
            return y.shape, y.isnan().all().item(), "backward raises"
        return y.shape, y.isnan().all().item(), g.shape

    assert outcome(getattr(CF, name)) == outcome(getattr(F, name))


# Ranks: torch's adaptive average into 1s is a mean over the last dims of a tensor of any rank
# (at least that many dims), and its avg_pool2d reads size(-3) before it checks the rank
# (IndexError); every other rank error is a RuntimeError, as ours.
@pytest.mark.parametrize("name,args", [
    ("adaptive_avg_pool2d", (1,)), ("adaptive_avg_pool3d", (1,)), ("adaptive_avg_pool2d", (2,)),
    ("adaptive_avg_pool1d", (1,)), ("adaptive_max_pool2d", (1,)), ("avg_pool2d", (2,)),
    ("max_pool2d", (2,)), ("avg_pool1d", (2,)), ("avg_pool3d", (2,)),
])
def test_ranks_as_torch(name, args):
    for shape in [(), (4,), (2, 4), (2, 3, 4), (2, 3, 4, 4), (2, 3, 4, 4, 4), (1, 2, 3, 4, 4, 4)]:
        results = []
        x = torch.randn(shape)
        for f in (getattr(CF, name), getattr(F, name)):
            try:
                results.append(f(x, *args))
            except (RuntimeError, IndexError) as e:
                results.append(type(e))
        ours, theirs = results
        if isinstance(theirs, torch.Tensor):
            assert_close(ours, theirs)
        else:
            assert ours is theirs, (shape, ours, theirs)


# channels_last global averages sum each pixel's channels as one run, up to 8 vectors at a time:
# channel counts below a vector, with a part-filled last vector, and over 8 vectors.
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels", [1, 15, 16, 17, 129, 300])
def test_global_average_channels_last(channels, dtype):
    x = torch.randn(3, channels, 5, 7, dtype=dtype).to(memory_format=torch.channels_last)
    x.requires_grad_()
    out, expected = CF.adaptive_avg_pool2d(x, 1), F.adaptive_avg_pool2d(x, 1)
    assert_close(out, expected)
    assert out.stride() == expected.stride()
    g = torch.randn_like(expected)
    assert_close(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(expected, x, g)[0])
    x3 = torch.randn(2, channels, 3, 4, 5, dtype=dtype).to(memory_format=torch.channels_last_3d)
    assert_close(CF.adaptive_avg_pool3d(x3, 1), F.adaptive_avg_pool3d(x3, 1))


# channels_last windows of at least 6 x 6 that barely overlap are swept input row by input row
# (pool_cpu_loops.h sweep_rows); the window-by-window loops keep up to 8 vectors of channels in
# registers (float32 max pooling: with AVX-512, the rest in memory): channel counts around the
# vector blocks, windows that end before the input does, padding and ceil_mode tails, adaptive
# windows of uneven sizes, 3-d, and (max) ties, NaN, indices and the saved positions' gradients.
SWEEP_CASES = [
    ("avg_pool2d", (2, 13, 20), dict(kernel_size=6)),
    ("avg_pool2d", (2, 17, 30), dict(kernel_size=7, stride=6, padding=3, ceil_mode=True)),
    ("avg_pool2d", (2, 37, 26), dict(kernel_size=(8, 6), stride=(5, 4), padding=(2, 3),
                                     count_include_pad=False)),
    ("avg_pool2d", (1, 130, 16), dict(kernel_size=8, divisor_override=5)),
    ("adaptive_avg_pool2d", (2, 16, 45), dict(output_size=(6, 7))),
    ("adaptive_avg_pool2d", (2, 33, 50), dict(output_size=7)),
    ("max_pool2d", (2, 13, 20), dict(kernel_size=6)),
    ("max_pool2d", (2, 37, 26), dict(kernel_size=(8, 6), stride=(5, 4), padding=(3, 2),
                                     ceil_mode=True)),
    ("max_pool2d", (2, 19, 30), dict(kernel_size=7, stride=6, dilation=1, return_indices=True)),
    ("adaptive_max_pool2d", (2, 16, 45), dict(output_size=(6, 7))),
    ("adaptive_max_pool2d", (1, 131, 48), dict(output_size=7, return_indices=True)),
    ("adaptive_avg_pool3d", (2, 20, 18), dict(output_size=(2, 3, 2))),
    ("adaptive_max_pool3d", (2, 20, 18), dict(output_size=(2, 3, 2), return_indices=True)),
    ("avg_pool2d", (2, 40, 24), dict(kernel_size=4)),  # window by window, 8-vector blocks
    ("max_pool2d", (2, 129, 21), dict(kernel_size=3, stride=2, padding=1)),
    ("max_pool2d", (2, 240, 13), dict(kernel_size=3, stride=2, padding=1, return_indices=True)),
    ("max_pool2d", (1, 16, 9), dict(kernel_size=2, ceil_mode=True)),
    ("max_pool2d", (2, 48, 11), dict(kernel_size=3, stride=1, padding=1, dilation=2)),
    ("max_pool3d", (2, 48, 7), dict(kernel_size=3, stride=2, padding=1, return_indices=True)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name,shape,kw", SWEEP_CASES)
def test_channels_last_window_loops(name, shape, kw, dtype):
    batch, channels, size = shape
    dims = 3 if name.endswith("3d") else 2
    x = torch.randn(batch, channels, *([size] * dims), dtype=dtype)
    if name.startswith("max") or name.startswith("adaptive_max"):
        x = x.round(decimals=1)  # ties: the first of the window wins
        x.view(-1)[:: 97] = float("nan")
    x = x.to(memory_format=torch.channels_last if dims == 2 else torch.channels_last_3d)
    xo, xt = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, expected = getattr(CF, name)(xo, **kw), getattr(F, name)(xt, **kw)
    if kw.get("return_indices"):
        assert torch.equal(out[1], expected[1])
        out, expected = out[0], expected[0]
    assert_close(out, expected, equal_nan=True)
    if dims == 2:  # torch's CPU 3-d average pools answer channels_last_3d in NCDHW; ours keep it
        assert out.stride() == expected.stride()
    g = torch.randn_like(expected)
    assert_close(torch.autograd.grad(out, xo, g)[0], torch.autograd.grad(expected, xt, g)[0],
                 equal_nan=True)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("kernel,stride,padding", [(2, None, 0), (3, 2, 1), (3, 1, 1)])
def test_max_unpool_matches_torch(device, dims, kernel, stride, padding):
    x = make_input(dims, device)
    pooled, idx = F.__dict__[f"max_pool{dims}d"](x, kernel, stride, padding, return_indices=True)
    ours, theirs = fn("max_unpool", dims)
    size = list(x.shape[2:])
    assert_close(ours(pooled, idx, kernel, stride, padding, output_size=size),
                 theirs(pooled, idx, kernel, stride, padding, output_size=size))
    default = [(n - 1) * (stride or kernel) - 2 * padding + kernel for n in pooled.shape[2:]]
    if idx.max() < math.prod(default):
        assert_close(ours(pooled, idx, kernel, stride, padding),
                     theirs(pooled, idx, kernel, stride, padding))
        return
    # The default size is smaller than the pooled input: indices overflow. torch's CPU kernel
    # raises; its CUDA kernel fails a device-side assert, which ends the process's CUDA context.
    if device != "cuda":
        with pytest.raises(RuntimeError):
            theirs(pooled, idx, kernel, stride, padding)
    with pytest.raises(RuntimeError, match="invalid max index"):
        ours(pooled, idx, kernel, stride, padding)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_max_pool_ties_pick_torchs_element(device, dims):
    x = torch.randint(0, 3, (2, 3, *SIZES[dims]), device=device).float()
    ours, theirs = fn("max_pool", dims)
    for kw in (dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2, ceil_mode=True)):
        assert torch.equal(ours(x, return_indices=True, **kw)[1], theirs(x, return_indices=True, **kw)[1])
    a_ours, a_theirs = fn("adaptive_max_pool", dims)
    assert torch.equal(a_ours(x, 4, True)[1], a_theirs(x, 4, True)[1])


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_nan_propagates_like_torch(device, dims):
    x = make_input(dims, device)
    x.view(-1)[::7] = float("nan")
    for name, kw in (("max_pool", dict(kernel_size=3, stride=2, padding=1, return_indices=True)),
                     ("adaptive_max_pool", dict(output_size=3, return_indices=True))):
        ours, theirs = fn(name, dims)
        (out, idx), (expected, expected_idx) = ours(x, **kw), theirs(x, **kw)
        assert_close(out, expected, equal_nan=True)
        assert torch.equal(idx, expected_idx)
    ours, theirs = fn("avg_pool", dims)
    assert_close(ours(x, 2), theirs(x, 2), equal_nan=True)


def test_all_minus_infinity_window_reports_first_element(device):
    x = torch.full((1, 1, 4), -float("inf"), device=device)
    out, idx = CF.max_pool1d(x, 2, padding=1, return_indices=True)
    assert idx.tolist() == F.max_pool1d(x, 2, padding=1, return_indices=True)[1].tolist()


def torch_input_grad(theirs, x, g, args):
    """torch's gradient of its op at x. torch's CUDA avg_pool2d backward is wrong for
    channels_last inputs with padding (pytorch#188344, in the torch of our GPU machine): there it
    is taken on an NCHW copy, the same numbers."""
    if x.is_cuda and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        x = x.detach().contiguous().requires_grad_()
    return torch.autograd.grad(theirs(x, **args), x, g)[0]


@pytest.mark.parametrize("name,args", [
    ("max_pool", dict(kernel_size=3, stride=2, padding=1)),
    ("avg_pool", dict(kernel_size=3, stride=2, padding=1)),
    ("adaptive_avg_pool", dict(output_size=2)),
    ("adaptive_max_pool", dict(output_size=2)),
])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_unbatched(device, name, args, dims):
    ours, theirs = fn(name, dims)
    x = make_input(dims, device)[0]
    assert_close(ours(x, **args), theirs(x, **args))


@pytest.mark.emulated_sample(2)
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("name,args", [
    ("max_pool", dict(kernel_size=3, stride=2, padding=1, dilation=1)),
    ("max_pool", dict(kernel_size=2, stride=1, padding=1, dilation=2, ceil_mode=True)),
    ("avg_pool", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("avg_pool", dict(kernel_size=2, stride=1, padding=1, count_include_pad=False)),
    ("adaptive_avg_pool", dict(output_size=3)),
    ("adaptive_max_pool", dict(output_size=3)),
])
def test_gradcheck(device, dims, name, args):
    ours, _ = fn(name, dims)
    sizes = {1: (7,), 2: (5, 6), 3: (4, 5, 4)}[dims]
    # distinct values: max pooling is differentiable away from ties
    x = torch.randperm(2 * 2 * torch.Size(sizes).numel(), device=device).double()
    x = (x / 7).view(2, 2, *sizes).requires_grad_()
    f = lambda x: ours(x, **args)
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_max_unpool_gradcheck(device, dims):
    x = make_input(dims, device, torch.float64)
    pooled, idx = F.__dict__[f"max_pool{dims}d"](x, 2, return_indices=True)
    pooled.requires_grad_()
    f = lambda p: CF.__dict__[f"max_unpool{dims}d"](p, idx, 2)
    assert torch.autograd.gradcheck(f, (pooled,))
    assert torch.autograd.gradgradcheck(f, (pooled,))


@pytest.mark.parametrize("name,args", [
    ("max_pool", dict(kernel_size=3, stride=2, padding=1)),
    ("avg_pool", dict(kernel_size=3, stride=2, padding=1)),
    ("adaptive_avg_pool", dict(output_size=(4, 3))),
    ("adaptive_max_pool", dict(output_size=(4, 3))),
])
def test_backward_matches_torch_channels_last(device, name, args):
    ours, theirs = fn(name, 2)
    x = make_input(2, device).to(memory_format=torch.channels_last).requires_grad_()
    g = torch.randn_like(theirs(x, **args))
    (grad,) = torch.autograd.grad(ours(x, **args), x, g)
    expected = torch_input_grad(theirs, x, g, args)
    assert_close(grad, expected, rtol=1e-5, atol=1e-6)
    assert grad.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name,args", [
    ("max_pool", dict(kernel_size=3, stride=2, padding=1)),
    ("max_pool", dict(kernel_size=2, stride=1, dilation=2, ceil_mode=True)),
    ("avg_pool", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ("avg_pool", dict(kernel_size=2, stride=1, padding=1)),
    ("adaptive_avg_pool", dict(output_size=4)),
    ("adaptive_max_pool", dict(output_size=4)),
])
def test_backward_matches_torch(device, dims, fmt, name, args):
    ours, theirs = fn(name, dims)
    x = FORMATS[fmt](make_input(dims, device)).requires_grad_()
    g = torch.randn_like(theirs(x, **args))
    (grad,) = torch.autograd.grad(ours(x, **args), x, g)
    expected = torch_input_grad(theirs, x, g, args)
    assert_close(grad, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backward", [False, True])
@pytest.mark.parametrize("name,args", [
    ("max_pool", dict(kernel_size=3, stride=2, padding=1)),
    ("avg_pool", dict(kernel_size=3, stride=2, padding=1)),
    ("adaptive_avg_pool", dict(output_size=3)),
    ("adaptive_max_pool", dict(output_size=3)),
])
def test_float64(device, name, args, backward):
    ours, theirs = fn(name, 2)
    x = make_input(2, device, torch.float64).requires_grad_()
    out, expected = ours(x, **args), theirs(x, **args)
    assert out.dtype == torch.float64
    assert_close(out, expected, rtol=1e-12, atol=1e-12)
    if backward:
        g = torch.randn_like(out)
        assert_close(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(expected, x, g)[0],
                     rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name,args,window", [
    ("max_pool", dict(kernel_size=3, stride=2, padding=1), 9),
    ("avg_pool", dict(kernel_size=3, stride=2, padding=1), 9),
    ("adaptive_avg_pool", dict(output_size=3), 16),
    ("adaptive_max_pool", dict(output_size=3), 16),
])
def test_reduced_precision_accumulates_in_float32(device, dtype, name, args, window):
    """Value and gradient within the error of a float32 sum rounded once (derived from the dtype
    and the window: reference.float32_accumulation_bound; one more term for the division)."""
    ours, theirs = fn(name, 2)
    first = lambda result: result[0] if isinstance(result, tuple) else result
    reference.assert_float32_accumulation(lambda x: first(ours(x, **args)),
                                          lambda x: first(theirs(x, **args)),
                                          (make_input(2, device, dtype),), window + 1)


def test_zero_batch(device):
    x = torch.randn(0, 3, 8, 8, device=device)
    assert CF.max_pool2d(x, 2).shape == (0, 3, 4, 4)
    assert CF.avg_pool2d(x, 2).shape == (0, 3, 4, 4)
    assert CF.adaptive_avg_pool2d(x, 3).shape == (0, 3, 3, 3)


def test_adaptive_zero_output_size(device):
    x = make_input(2, device)
    assert CF.adaptive_avg_pool2d(x, 0).shape == F.adaptive_avg_pool2d(x, 0).shape


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("kernel,stride,dilation", [(3, 2, 1), (2, 2, 1), (3, 3, 1), (2, 1, 1), (3, 2, 2)])
def test_same_padding_max_pool(dims, kernel, stride, dilation):
    x = make_input(dims, "cpu")
    out = CF.__dict__[f"max_pool{dims}d"](x, kernel, stride, "same", dilation)
    assert list(out.shape[2:]) == [-(-n // stride) for n in SIZES[dims]]
    assert_close(out, reference.max_pool_same(x, dims, kernel, stride, dilation))


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("kernel,stride", [(3, 2), (2, 2), (3, 3), (2, 1), (4, 3)])
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_same_padding_avg_pool_excludes_padding(dims, kernel, stride, count_include_pad):
    x = make_input(dims, "cpu")
    out = CF.__dict__[f"avg_pool{dims}d"](x, kernel, stride, "same",
                                          count_include_pad=count_include_pad)
    assert list(out.shape[2:]) == [-(-n // stride) for n in SIZES[dims]]
    assert_close(out, reference.avg_pool_same(x, dims, kernel, stride))


def test_same_padding_gradients():
    x = torch.randperm(2 * 3 * 90).double().view(2, 3, 9, 10).div(7).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: CF.max_pool2d(x, 3, 2, "same"), (x,))
    assert torch.autograd.gradgradcheck(lambda x: CF.avg_pool2d(x, 4, 3, "same"), (x,))
