"""Grouped convolutions with few channels per group (4-64, a multiple of 4: RegNet, ResNeXt),
which the CPU computes with its direct grouped kernels (grouped_cpu.h) in both layouts: values and
all three gradients against torch, conv_transpose, 1-d to 3-d, strides that split the width into
phases, dilation, padding, odd sizes, batch 1, cg != kg, and a weight gradient bitwise independent
of the thread count."""
import pytest
import torch
import torch.nn.functional as F

import torch_convpool.functional as CF

SHAPES = {1: (29,), 2: (11, 13), 3: (5, 6, 7)}


def _layout(x, channels_last):
    if not channels_last or x.dim() < 4:
        return x
    return x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else
                        torch.channels_last_3d)


def _check(dims, channels_last, cg, kg, groups, kernel=3, stride=1, padding=1, dilation=1,
           dtype=torch.double, batch=2, shape=None):
    shape = shape or SHAPES[dims]
    x = _layout(torch.randn(batch, cg * groups, *shape, dtype=dtype), channels_last)
    w = torch.randn(kg * groups, cg, *([kernel] * dims), dtype=dtype)
    b = torch.randn(kg * groups, dtype=dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    expected = getattr(F, f"conv{dims}d")(x, w, b, **kw)
    xr, wr, br = (t.clone().requires_grad_() for t in (x, w, b))
    out = getattr(CF, f"conv{dims}d")(xr, wr, br, **kw)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float else {}
    torch.testing.assert_close(out, expected, **tol)
    assert out.is_contiguous(memory_format=torch.channels_last) == x.is_contiguous(
        memory_format=torch.channels_last) or dims != 2
    grad = torch.randn_like(expected)
    xt, wt, bt = (t.clone().requires_grad_() for t in (x, w, b))
    getattr(F, f"conv{dims}d")(xt, wt, bt, **kw).backward(grad)
    out.backward(grad)
    for ours, theirs in ((xr, xt), (wr, wt), (br, bt)):
        torch.testing.assert_close(ours.grad, theirs.grad, **tol)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("cg,kg", [(4, 4), (8, 8), (16, 16), (24, 24), (64, 64), (16, 32),
                                   (32, 8), (12, 20)])
def test_channels_per_group(cg, kg, channels_last):
    _check(2, channels_last, cg, kg, groups=3)


# (8, 8, 2): the grouped kernels; (2, 3, 4): the depthwise lanes of narrow groups (below).
@pytest.mark.parametrize("cg,kg,groups", [(8, 8, 2), (2, 3, 4)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("kernel,stride,padding,dilation", [
    (3, 2, 1, 1), (3, 2, 0, 1), (3, 3, 2, 1), (3, 1, 2, 2), (5, 2, 2, 1), (1, 1, 0, 1),
    (1, 2, 0, 1), (2, 1, 0, 1), (3, 1, 4, 1), (3, 2, 1, 3), (7, 1, 3, 1)])
def test_geometry(kernel, stride, padding, dilation, channels_last, cg, kg, groups):
    _check(2, channels_last, cg, kg, groups=groups, kernel=kernel, stride=stride, padding=padding,
           dilation=dilation)


@pytest.mark.parametrize("dims", [1, 3])
def test_1d_and_3d(dims):
    _check(dims, True, 8, 16, groups=2, stride=2)
    _check(dims, False, 8, 8, groups=2)
    _check(dims, True, 3, 2, groups=2, stride=2)  # narrow groups: the lanes
    _check(dims, False, 2, 6, groups=3)


@pytest.mark.parametrize("channels_last", [False, True])
def test_float32_batch_one_and_large(channels_last):
    _check(2, channels_last, 16, 16, groups=8, dtype=torch.float, batch=1, shape=(28, 28))
    _check(2, channels_last, 16, 16, groups=4, dtype=torch.float, batch=3, shape=(15, 17),
           stride=2)
    _check(2, channels_last, 4, 4, groups=32, dtype=torch.float, batch=2, shape=(14, 14))


# 4 into 4 per group: the grouped kernels; 3 into 2: the lanes.
@pytest.mark.parametrize("channels,per_group", [(16, 4), (12, 2)])
def test_grouped_conv_transpose(channels, per_group):
    for stride, padding, output_padding in ((1, 1, 0), (2, 1, 1), (3, 0, 2)):
        x = torch.randn(2, channels, 7, 9, dtype=torch.double)
        w = torch.randn(channels, per_group, 3, 3, dtype=torch.double)
        kw = dict(stride=stride, padding=padding, output_padding=output_padding, groups=4)
        torch.testing.assert_close(CF.conv_transpose2d(x, w, **kw),
                                   F.conv_transpose2d(x, w, **kw))


@pytest.mark.parametrize("channels_last", [False, True])
def test_gradcheck(channels_last):
    x = _layout(torch.randn(1, 8, 5, 6, dtype=torch.double), channels_last).requires_grad_()
    w = torch.randn(8, 4, 3, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w: CF.conv2d(x, w, stride=2, padding=1, groups=2), (x, w))


@pytest.mark.parametrize("channels_last", [False, True])
def test_independent_of_threads(channels_last):
    x = _layout(torch.randn(3, 64, 13, 12), channels_last)
    w = torch.randn(64, 16, 3, 3)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
            out = CF.conv2d(xr, wr, padding=1, groups=4)
            out.backward(torch.ones_like(out))
            results.append((out, xr.grad, wr.grad))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@pytest.mark.parametrize("dims,shape,stride,dilation", [
    (2, (40, 37), 1, 1), (2, (41, 38), 2, 1), (2, (40, 36), 1, 2), (3, (4, 23, 22), 1, 1),
    (3, (5, 24, 21), 2, 1), (1, (3000,), 1, 3)])
def test_nchw_in_bands(dims, shape, stride, dilation):
    """NCHW forwards and input gradients transpose the rows a band reads into a scratch
    (conv_nchw, conv_transpose_nchw): images large enough for several bands per task, band edges
    that cut through the kernel's rows, strides and dilations that skip rows, and depth taps."""
    _check(dims, False, 64, 48, groups=2, stride=stride, dilation=dilation, padding=1,
           shape=shape, batch=1)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("cg", [4, 8, 16, 24, 32, 48, 64])
@pytest.mark.parametrize("shape,groups", [((7, 7), 5), ((14, 9), 3), ((3, 28), 2)])
def test_patch_kernel_stride_one(cg, shape, groups, channels_last):
    """Stride 1 with as many input as output channels per group, in float32: the patch kernel
    (grouped_patch_cpu.h), forward and input gradient, with 1, 2 or 4 groups per register, an odd
    group count (a super-block short of groups), rows of 7k pixels (blocks of 7) and others."""
    _check(2, channels_last, cg, cg, groups=groups, dtype=torch.float, shape=shape)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("kernel,padding,dilation", [
    (3, 0, 1), (3, 2, 1), (3, 4, 1), (5, 1, 1), (3, 2, 2), (2, 1, 1), (1, 0, 1), (3, 0, 3)])
def test_patch_kernel_geometry(kernel, padding, dilation, channels_last):
    """Padding from none to past the kernel's reach (the input gradient's padding turns
    negative), even and dilated kernels, a 1x1 kernel, in float32."""
    _check(2, channels_last, 8, 8, groups=3, kernel=kernel, padding=padding, dilation=dilation,
           dtype=torch.float, shape=(9, 14))


@pytest.mark.parametrize("dims", [1, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_patch_kernel_1d_3d(dims, channels_last):
    _check(dims, channels_last, 8, 8, groups=3, dtype=torch.float, batch=1)
    _check(dims, channels_last, 16, 16, groups=2, dtype=torch.float, padding=2, dilation=2)


def test_patch_kernel_unbatched_and_large():
    x = torch.randn(48, 61, 45)
    w = torch.randn(48, 8, 3, 3)
    torch.testing.assert_close(CF.conv2d(x, w, padding=1, groups=6),
                               F.conv2d(x, w, padding=1, groups=6), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("cg", [4, 8, 16, 24])
@pytest.mark.parametrize("stride,shape", [(2, (14, 14)), (2, (15, 12)), (3, (13, 11)), ((2, 1), (9, 10)),
                                          (5, (12, 12))])
def test_patch_kernel_strided(cg, stride, shape, channels_last):
    """The patch kernel's phase planes (one per stride phase), odd sizes that leave a phase a
    column short, unequal strides; stride 5 is past kMaxPatchStride (the line kernels)."""
    _check(2, channels_last, cg, cg, groups=3, stride=stride, dtype=torch.float, shape=shape)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("cg", [4, 8, 16, 32])
@pytest.mark.parametrize("stride,shape,groups", [(1, (28, 28), 6), (1, (14, 9), 5),
                                                 (2, (28, 28), 6), (2, (15, 12), 3)])
def test_bfloat16_within_bounds(cg, stride, shape, groups, channels_last):
    """bfloat16 on ResNeXt / RegNet-sized maps: the patch kernel on channel pairs (rows in blocks
    of 7 pixels, several bands, a short last register of groups), float32 copies for the weight
    gradient and the strided input gradient; output and gradients within their bounds."""
    from test_fuzz_fast_paths import _assert_within_bounds

    g = torch.Generator().manual_seed(cg * 100 + stride)
    x = _layout(torch.randn(2, cg * groups, *shape, generator=g).bfloat16(), channels_last)
    w = torch.randn(cg * groups, cg, 3, 3, generator=g).bfloat16()
    b = torch.randn(cg * groups, generator=g).bfloat16()
    _assert_within_bounds(0, CF.conv2d, F.conv2d, x, w, b, stride=stride, padding=1, groups=groups)


# Groups too narrow for the grouped kernels (widths that are not a multiple of 4, up to 8 on
# either side and 24 products per group): one depthwise conv over lanes (grouped_lanes_cpu.h),
# computed in NCHW, a few samples at a time.
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("cg,kg", [(2, 2), (3, 3), (2, 5), (6, 3), (8, 2), (3, 8), (5, 4)])
def test_narrow_groups(cg, kg, channels_last):
    _check(2, channels_last, cg, kg, groups=3)
    _check(2, channels_last, cg, kg, groups=2, stride=2, kernel=5, padding=2, dilation=2,
           dtype=torch.float)


def test_narrow_groups_in_chunks_of_samples():
    """Lanes of ~2 MiB per float32 sample: chunks of two samples, the last one short (one sample
    per chunk in float64, whose values are checked: float32 sums of 24,000 products differ from
    torch's by their rounding)."""
    _check(2, True, 2, 2, groups=16, batch=3, shape=(90, 90))
    x = torch.randn(3, 32, 90, 90)
    w = torch.randn(32, 2, 3, 3)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            wr = w.clone().requires_grad_()
            out = CF.conv2d(x, wr, padding=1, groups=16)
            out.backward(torch.ones_like(out))
            results.append(wr.grad)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0], results[1])
