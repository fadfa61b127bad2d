"""Complex and integer convolutions (torch's CPU convolutions take them; OpInfo lists complex64,
complex128 and int64 for every conv op): values against torch's, complex gradients through
gradcheck / gradgradcheck, the same rejections, and meta tensors rejected where real ones are."""
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck
from torch.testing import assert_close

import torch_convpool.functional as CF

SPATIAL = {1: (9,), 2: (7, 6), 3: (5, 4, 6)}
CASES = list(itertools.product(
    [1, 2, 3],                    # dims
    [False, True],                # transposed
    [(1, 0, 1, 1), (2, 1, 1, 2), (2, 2, 2, 1), (3, 1, 1, 1)],  # stride, padding, dilation, groups
))


def _fn(transposed, dims, lib):
    return getattr(lib, f"conv_transpose{dims}d" if transposed else f"conv{dims}d")


def _case(dims, transposed, groups, dtype, make):
    x = make((2, 4) + SPATIAL[dims], dtype)
    w = make(((4, 6 // groups) if transposed else (6, 4 // groups)) + (3,) * dims, dtype)
    return x, w, make((6,), dtype)


def _randn(shape, dtype):
    return torch.randn(shape, dtype=dtype)


def _randint(shape, dtype):
    low = 0 if dtype == torch.uint8 else -60
    return torch.randint(low, 60, shape).to(dtype)


def _kwargs(transposed, stride, padding, dilation, groups):
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    if transposed and stride > 1:
        kw["output_padding"] = 1
    return kw


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize("dims,transposed,args", CASES)
def test_complex_matches_torch(dims, transposed, args, dtype):
    x, w, b = _case(dims, transposed, args[3], dtype, _randn)
    kw = _kwargs(transposed, *args)
    for bias in (b, None):
        want = _fn(transposed, dims, F)(x, w, bias, **kw)
        got = _fn(transposed, dims, CF)(x, w, bias, **kw)
        assert got.dtype == want.dtype
        assert_close(got, want)
    # conjugate views are resolved, not read as their underlying values
    assert_close(_fn(transposed, dims, CF)(x.conj(), w.conj(), **kw),
                 _fn(transposed, dims, F)(x.conj(), w.conj(), **kw))


@pytest.mark.parametrize("dims,transposed", [(1, False), (2, False), (2, True), (3, True)])
def test_complex_gradients(dims, transposed):
    c = torch.complex128
    x = torch.randn((1, 2) + (4,) * dims, dtype=c, requires_grad=True)
    w = torch.randn((2, 1) + (2,) * dims, dtype=c, requires_grad=True)
    b = torch.randn(2, dtype=c, requires_grad=True)
    kw = _kwargs(transposed, 2, 1, 1, 2)

    def fn(x, w, b):
        return _fn(transposed, dims, CF)(x, w, b, **kw)

    assert gradcheck(fn, (x, w, b))
    assert gradgradcheck(fn, (x, w, b))


@pytest.mark.parametrize("transposed", [False, True])
def test_complex_under_autocast_keeps_its_dtype(transposed):
    x, w, b = _case(2, transposed, 1, torch.complex64, _randn)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = _fn(transposed, 2, F)(x, w, b)
        got = _fn(transposed, 2, CF)(x, w, b)
        compiled = torch.compile(_fn(transposed, 2, CF), fullgraph=True)(x, w, b)
    assert got.dtype == want.dtype == compiled.dtype == torch.complex64
    assert_close(got, want)
    assert_close(compiled, want)


def test_complex_half():
    x, w, b = _case(2, False, 1, torch.complex32, _randn)
    got, want = CF.conv2d(x, w, b, padding=1), F.conv2d(x, w, b, padding=1)
    assert got.dtype == torch.complex32
    assert_close(got.to(torch.complex64), want.to(torch.complex64), atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8])
@pytest.mark.parametrize("dims,transposed,args", CASES)
def test_integer_matches_torch_exactly(dims, transposed, args, dtype):
    x, w, b = _case(dims, transposed, args[3], dtype, _randint)
    kw = _kwargs(transposed, *args)
    fn = _fn(transposed, dims, CF)
    try:
        want = _fn(transposed, dims, F)(x, w, b, **kw)
    except NotImplementedError:
        # torch takes only int64 in conv_transpose and dilated convs: so do we
        with pytest.raises(NotImplementedError, match="not implemented for"):
            fn(x, w, b, **kw)
        return
    got = fn(x, w, b, **kw)
    assert got.dtype == dtype and got.shape == want.shape
    # int8 sums overflow and wrap around as torch's do; equal to the last bit
    assert torch.equal(got, want)


def test_integer_layout_and_large_values():
    x = torch.full((1, 2, 5, 5), 3 << 40).contiguous(memory_format=torch.channels_last)
    w = torch.full((3, 2, 3, 3), (1 << 20) + 1)
    want = F.conv2d(x, w, padding=1)
    got = CF.conv2d(x, w, padding=1)
    assert torch.equal(got, want)  # beyond float64's 53 bits: no rounding
    assert got.stride() == want.stride()


def test_integer_rejections_and_empty_results():
    x = torch.ones(2, 2, 5, 5, dtype=torch.bool)
    w = torch.ones(3, 2, 3, 3, dtype=torch.bool)
    for fn in (F.conv2d, CF.conv2d):
        with pytest.raises(NotImplementedError, match="not implemented for 'Bool'"):
            fn(x, w)
    # an empty batch has its result shape, whatever the dtype (as torch's)
    assert CF.conv2d(x[:0], w).shape == F.conv2d(x[:0], w).shape == (0, 3, 3, 3)
    # mismatched dtypes are named
    with pytest.raises(RuntimeError, match="should be the same"):
        CF.conv2d(x.long(), w.int())
    with pytest.raises(RuntimeError, match="should be the same"):
        CF.conv2d(torch.randn(1, 2, 5, 5, dtype=torch.complex64), torch.randn(3, 2, 3, 3))
    # sizes are checked before the dtype, as torch's
    with pytest.raises(RuntimeError, match="kernel size can't be greater"):
        CF.conv2d(x[:, :, :2], w)


@pytest.mark.parametrize("transposed", [False, True])
def test_meta_tensors_are_rejected_where_real_ones_are(transposed):
    # kernel larger than the padded input / conv_transpose output of length 0
    x = torch.zeros(1, 2, 2, 6)
    w = torch.zeros(2, 3, 3, 3) if transposed else torch.zeros(3, 2, 3, 3)
    kw = dict(padding=(2, 0)) if transposed else {}
    fn = CF.conv_transpose2d if transposed else CF.conv2d
    with pytest.raises(RuntimeError) as real:
        fn(x, w, **kw)
    with pytest.raises(RuntimeError) as meta:
        fn(x.to("meta"), w.to("meta"), **kw)
    assert str(meta.value) == str(real.value)
    assert fn(x.to("meta")[:, :, :1].expand(1, 2, 5, 6), w.to("meta")).device.type == "meta"
