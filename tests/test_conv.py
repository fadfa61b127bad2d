"""conv1d / conv2d / conv3d against torch's built-ins: values, gradients, fakes, errors."""
import itertools

import pytest
import reference
import torch
from torch.testing import assert_close

import torch_convpool.functional as CF

CONV = {1: CF.conv1d, 2: CF.conv2d, 3: CF.conv3d}
TORCH_CONV = {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d, 3: torch.nn.functional.conv3d}
SPATIAL = {1: (11,), 2: (9, 10), 3: (6, 7, 5)}


def make_case(dims, groups, kernel, device="cpu", dtype=torch.float32, batch=2, channels=4,
              out_channels=6, requires_grad=False):
    x = torch.randn(batch, channels, *SPATIAL[dims], device=device, dtype=dtype)
    w = torch.randn(out_channels, channels // groups, *([kernel] * dims), device=device, dtype=dtype)
    b = torch.randn(out_channels, device=device, dtype=dtype)
    for t in (x, w, b):
        t.requires_grad_(requires_grad)
    return x, w, b


GRID = list(itertools.product(
    [1, 2, 3],            # dims
    [1, 2],               # stride
    [0, 1, "valid", "same"],
    [1, 2],               # dilation
    [1, 2],               # groups
    [2, 3],               # kernel: even, odd
))


@pytest.mark.emulated_sample(4)
@pytest.mark.parametrize("dims,stride,padding,dilation,groups,kernel", GRID)
@pytest.mark.parametrize("bias", [True, False])
def test_forward_and_gradients_match_torch(device, dims, stride, padding, dilation, groups, kernel, bias):
    x, w, b = make_case(dims, groups, kernel, device, requires_grad=True)
    b = b if bias else None
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    out, expected = CONV[dims](x, w, b, **kw), reference.conv(x, w, b, **kw)
    assert_close(out, expected, rtol=1e-4, atol=1e-4)
    inputs = [t for t in (x, w, b) if t is not None]
    g = torch.randn_like(expected)
    for name, a, e in zip(("input", "weight", "bias"), torch.autograd.grad(out, inputs, g),
                          torch.autograd.grad(expected, inputs, g)):
        assert_close(a, e, rtol=1e-4, atol=1e-4, msg=lambda m: f"grad of {name}: {m}")


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("padding", [1, "same"])
def test_unbatched(device, dims, padding):
    x, w, b = make_case(dims, 1, 3, device)
    assert_close(CONV[dims](x[0], w, b, padding=padding), reference.conv(x[0], w, b, padding=padding))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_depthwise(device, dims):
    x, _, b = make_case(dims, 1, 3, device)
    w = torch.randn(8, 1, *([3] * dims), device=device)  # depth multiplier 2
    b = torch.randn(8, device=device)
    kw = dict(stride=2, padding=1, groups=4)
    assert_close(CONV[dims](x, w, b, **kw), reference.conv(x, w, b, **kw), rtol=1e-4, atol=1e-4)


@pytest.mark.emulated_sample(6)
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", [1, "same", "valid"])
@pytest.mark.parametrize("dilation,groups,kernel", [(1, 1, 3), (2, 2, 2), (1, 2, 1)])
def test_gradcheck(device, dims, stride, padding, dilation, groups, kernel):
    x, w, b = make_case(dims, groups, kernel, device, torch.float64, batch=2, channels=2,
                        out_channels=2, requires_grad=True)
    if dims == 3:
        x = x[..., :4, :5, :4].detach().requires_grad_()
    fn = lambda x, w, b: CF.__dict__[f"conv{dims}d"](x, w, b, stride, padding, dilation, groups)
    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradgradcheck(fn, (x, w, b))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_backward_matches_torch(device, dims):
    x, w, b = make_case(dims, 2, 3, device, requires_grad=True)
    kw = dict(stride=2, padding=1, dilation=1, groups=2)
    grads = torch.autograd.grad(CONV[dims](x, w, b, **kw).square().sum(), (x, w, b))
    expected = torch.autograd.grad(reference.conv(x, w, b, **kw).square().sum(), (x, w, b))
    for g, e in zip(grads, expected):
        assert_close(g, e, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("groups,out_channels", [(1, 6), (2, 6), (4, 8)],
                         ids=["dense", "grouped", "depthwise"])
def test_reduced_precision_accumulates_in_float32(device, dtype, dims, groups, out_channels):
    """Forward and every gradient within the error of a float32 sum rounded once (the bound is
    derived from the dtype and the sum's length: reference.float32_accumulation_bound)."""
    x, w, b = make_case(dims, groups, 3, device, dtype, out_channels=out_channels)
    kw = dict(stride=1, padding=1, dilation=1, groups=groups)
    # Longest sum: a weight gradient's, over the batch and every output position.
    terms = max(x.shape[1] // groups * 3 ** dims + 1, x.shape[0] * x[0, 0].numel())
    reference.assert_float32_accumulation(lambda x, w, b: CONV[dims](x, w, b, **kw),
                                          lambda x, w, b: reference.conv(x, w, b, **kw),
                                          (x, w, b), terms,
                                          rounded_apart=reference.rounded_apart(device, dtype))


def test_non_contiguous_input_and_weight(device):
    x = torch.randn(2, 9, 10, 4, device=device).permute(0, 3, 1, 2)  # channels_last-like view
    w = torch.randn(4, 6, 3, 3, device=device).transpose(0, 1)
    assert not x.is_contiguous() and not w.is_contiguous()
    assert_close(CF.conv2d(x, w, padding=1), reference.conv(x, w, padding=1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("groups", [1, 4])
def test_channels_last_input_gives_channels_last_output(device, groups):
    x = torch.randn(2, 4, 9, 10, device=device).to(memory_format=torch.channels_last)
    w = torch.randn(8, 4 // groups, 3, 3, device=device)
    out = CF.conv2d(x, w, padding=1, groups=groups)
    expected = reference.conv(x, w, padding=1, groups=groups)
    assert_close(out, expected, rtol=1e-4, atol=1e-4)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert out.stride() == expected.stride()
    t = CF.conv_transpose2d(x, w.transpose(0, 1).contiguous() if groups == 1
                            else torch.randn(4, 2, 3, 3, device=device),
                            stride=2, groups=groups)
    assert t.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_opcheck():
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64).to(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.convpool.conv.default, (x, w, None, [1, 1], [1, 1, 1, 1], [1, 1], 2))
    torch.library.opcheck(torch.ops.convpool.conv_transpose.default,
                          (x, torch.randn(4, 3, 2, 2, dtype=torch.float64), None, [2, 2],
                           [0, 0, 0, 0], [1, 1], 2))
    # depthwise: the channels_last kernels (forward, transpose, weight gradient)
    dw = torch.randn(8, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.convpool.conv.default, (x, dw, None, [2, 1], [1, 1, 1, 1], [1, 2], 4))
    go = torch.randn(2, 8, 6, 5, dtype=torch.float64).to(memory_format=torch.channels_last).requires_grad_()
    torch.library.opcheck(torch.ops.convpool.conv_weight_grad.default,
                          (go, x, [8, 1, 3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 4))


def test_zero_batch(device):
    x = torch.randn(0, 4, 9, 10, device=device, requires_grad=True)
    w = torch.randn(6, 4, 3, 3, device=device, requires_grad=True)
    out = CF.conv2d(x, w, padding=1)
    assert out.shape == (0, 6, 9, 10)
    out.sum().backward()
    assert x.grad.shape == x.shape and torch.equal(w.grad, torch.zeros_like(w))


def test_one_by_one_fast_path(device):
    x, _, b = make_case(2, 1, 1, device)
    w = torch.randn(6, 4, 1, 1, device=device)
    assert_close(CF.conv2d(x, w, b), reference.conv(x, w, b), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("stride", [2, 3])
@pytest.mark.parametrize("kernel,dilation", [(3, 1), (2, 1), (3, 2), (1, 1)])
def test_strided_same_is_tensorflow_rule(dims, stride, kernel, dilation):
    x, w, b = make_case(dims, 1, kernel)
    out = CONV[dims](x, w, b, stride=stride, padding="same", dilation=dilation)
    assert list(out.shape[2:]) == [-(-n // stride) for n in SPATIAL[dims]]
    assert_close(out, reference.conv(x, w, b, stride=stride, padding="same", dilation=dilation),
                 rtol=1e-4, atol=1e-4)


def test_same_padding_odd_pixel_goes_after():
    # L=4, k=2, s=2 -> no padding; L=5, k=2, s=2 -> out 3, total 1: 0 before, 1 after.
    x = torch.arange(5.0).view(1, 1, 5)
    w = torch.ones(1, 1, 2)
    assert CF.conv1d(x, w, stride=2, padding="same").flatten().tolist() == [1.0, 5.0, 4.0]


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("multiplier", [1, 2])
@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 1, 1), (1, 2, 2), (2, "same", 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_depthwise_channels_last(device, dims, multiplier, stride, padding, dilation, dtype):
    fmt = torch.channels_last if dims == 2 else torch.channels_last_3d
    x = torch.randn(2, 4, *SPATIAL[dims], device=device).to(dtype).to(memory_format=fmt).requires_grad_()
    w = torch.randn(4 * multiplier, 1, *([3] * dims), device=device).to(dtype).requires_grad_()
    b = torch.randn(4 * multiplier, device=device).to(dtype).requires_grad_()
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=4)
    out = CONV[dims](x, w, b, **kw)
    # torch's layout: channels_last, except 3-d bfloat16 convs where its CPU kernel is
    # slow_conv3d (no native bfloat16 in mkldnn), contiguous.
    # (padding does not change it; torch has no 'same' with stride)
    theirs = TORCH_CONV[dims](x.detach(), w.detach(), b.detach(), **dict(kw, padding=0))
    for memory_format in (torch.contiguous_format, fmt):
        assert out.is_contiguous(memory_format=memory_format) == theirs.is_contiguous(
            memory_format=memory_format)
    ref_args = [t.detach().float().requires_grad_() for t in (x, w, b)]
    expected = reference.conv(*ref_args, **kw)
    if dtype == torch.bfloat16:
        terms = max(3 ** dims + 1, x.shape[0] * out[0, 0].numel())
        reference.assert_float32_accumulation(lambda x, w, b: CONV[dims](x, w, b, **kw),
                                              lambda x, w, b: reference.conv(x, w, b, **kw),
                                              (x, w, b), terms,
                                              rounded_apart=reference.rounded_apart(device, dtype))
        return
    assert_close(out, expected, rtol=1e-4, atol=1e-4)
    g = torch.randn_like(expected)
    grads = torch.autograd.grad(out, (x, w, b), g)
    expected_grads = torch.autograd.grad(expected, ref_args, g)
    for got, exp in zip(grads, expected_grads):
        assert_close(got, exp, rtol=1e-4, atol=1e-4)
    assert grads[0].is_contiguous(memory_format=fmt)


# 1-d convs reach the GEMM engine as 2-d convs of height 1 (conv_cpu.cpp as_2d): short sequences
# over many channels take its channels_last staging and pixel-row GEMMs, long ones its NCHW
# GEMMs; conv_transpose1d and all three gradients, strides, dilation, padding, groups.
@pytest.mark.parametrize("length,channels,out_channels,kernel,stride,padding,dilation,groups", [
    (16, 48, 24, 3, 3, 0, 2, 1), (16, 40, 64, 7, 1, 3, 1, 1), (9, 64, 32, 3, 2, 1, 1, 2),
    (300, 16, 24, 5, 2, 2, 3, 1), (5, 32, 32, 1, 1, 0, 1, 1)])
@pytest.mark.parametrize("transpose", [False, True])
def test_conv1d_as_height_one(length, channels, out_channels, kernel, stride, padding, dilation,
                              groups, transpose):
    x = torch.randn(5, channels, length, dtype=torch.double)
    if transpose:
        w = torch.randn(channels, out_channels // groups, kernel, dtype=torch.double)
        args = (stride, padding, 0, groups, dilation)
        ours, theirs = CF.conv_transpose1d, torch.nn.functional.conv_transpose1d
    else:
        w = torch.randn(out_channels, channels // groups, kernel, dtype=torch.double)
        args = (stride, padding, dilation, groups)
        ours, theirs = CF.conv1d, torch.nn.functional.conv1d
    b = torch.randn(out_channels, dtype=torch.double)
    leaves = [t.requires_grad_() for t in (x, w, b)]
    out, expected = ours(*leaves, *args), theirs(*leaves, *args)
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(expected)
    for a, e in zip(torch.autograd.grad(out, leaves, grad),
                    torch.autograd.grad(expected, leaves, grad)):
        torch.testing.assert_close(a, e)
