"""conv_transpose1d / 2d / 3d and nn.ConvTranspose1d / 2d / 3d against torch's built-ins: a grid of
forward values and gradients, gradcheck / gradgradcheck, reduced precision, layouts, output_size,
bad input and opcheck."""
import itertools

import pytest
import reference
import torch
from torch.testing import assert_close

import torch_convpool.functional as CF
import torch_convpool.nn as cnn

CONV_T = {1: CF.conv_transpose1d, 2: CF.conv_transpose2d, 3: CF.conv_transpose3d}
MODULE = {1: cnn.ConvTranspose1d, 2: cnn.ConvTranspose2d, 3: cnn.ConvTranspose3d}
TORCH_MODULE = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d,
                3: torch.nn.ConvTranspose3d}
# Uneven sizes and kernels, so that a swapped spatial dim cannot go unnoticed.
SPATIAL = {1: (5,), 2: (4, 5), 3: (3, 4, 4)}
KERNEL = {1: (3,), 2: (3, 2), 3: (3, 2, 2)}


def make_case(dims, groups, device="cpu", dtype=torch.float32, batch=2, in_channels=4,
              out_channels=6, spatial=None, kernel=None, requires_grad=False):
    """Input (N, C_in, *spatial), weight (C_in, C_out / groups, *kernel), bias (C_out,)."""
    x = torch.randn(batch, in_channels, *(spatial or SPATIAL[dims]), device=device, dtype=dtype)
    w = torch.randn(in_channels, out_channels // groups, *(kernel or KERNEL[dims]), device=device,
                    dtype=dtype)
    b = torch.randn(out_channels, device=device, dtype=dtype)
    for t in (x, w, b):
        t.requires_grad_(requires_grad)
    return x, w, b


def min_size(length, kernel, stride, padding, dilation):
    """Output length of a transposed conv with output_padding 0."""
    return (length - 1) * stride - 2 * padding + dilation * (kernel - 1) + 1


def valid(stride, output_padding, dilation):
    """torch's rule: output_padding must be smaller than the stride or than the dilation."""
    return output_padding < stride or output_padding < dilation


def check_grads(out, expected, inputs, rtol=1e-4, atol=1e-4):
    """Same random grad_output into both graphs; the grads of every input must agree."""
    g = torch.randn_like(expected)
    grads = torch.autograd.grad(out, inputs, g)
    want = torch.autograd.grad(expected, inputs, g)
    for name, a, e in zip(("input", "weight", "bias"), grads, want):
        assert_close(a, e, rtol=rtol, atol=atol, msg=lambda m: f"grad of {name}: {m}")


# dims x stride x padding x output_padding x dilation x groups x bias x output_size. Valid torch
# configurations only: output_padding >= stride is kept where it is < dilation; a module's
# output_size reaches output_padding < stride only (torch's rule), so "output_size" rows have that.
GRID = [c + (via,) for c in itertools.product(
    [1, 2, 3],      # dims
    [1, 2, 3],      # stride
    [0, 1, 2],      # padding
    [0, 1, 2],      # output_padding
    [1, 2],         # dilation
    [1, 2],         # groups
) for via in ("functional", "output_size")
    if valid(c[1], c[3], c[4]) and (via == "functional" or c[3] < c[1])]


@pytest.mark.emulated_sample(8)
@pytest.mark.parametrize("dims,stride,padding,output_padding,dilation,groups,via", GRID)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_grid_matches_torch(device, dims, stride, padding, output_padding, dilation, groups, bias,
                            via):
    """Forward and input/weight/bias gradients, float32. 'output_size': our module, built with
    output_padding=0, is asked for the size that torch's output_padding gives."""
    x, w, b = make_case(dims, groups, device, requires_grad=True)
    b = b if bias else None
    expected = reference.conv_transpose(x, w, b, stride, padding, output_padding, groups, dilation)
    if via == "functional":
        ours_w, ours_b = w, b
        out = CONV_T[dims](x, w, b, stride, padding, output_padding, groups, dilation)
    else:
        m = MODULE[dims](4, 6, KERNEL[dims], stride, padding, 0, groups, bias, dilation,
                         device=device)
        with torch.no_grad():
            m.weight.copy_(w)
            if bias:
                m.bias.copy_(b)
        ours_w, ours_b = m.weight, m.bias
        out = m(x, output_size=list(expected.shape[2:]))
    assert out.shape == expected.shape
    assert_close(out, expected, rtol=1e-4, atol=1e-4)
    g = torch.randn_like(expected)
    grads = torch.autograd.grad(out, [t for t in (x, ours_w, ours_b) if t is not None], g)
    want = torch.autograd.grad(expected, [t for t in (x, w, b) if t is not None], g)
    for name, a, e in zip(("input", "weight", "bias"), grads, want):
        assert_close(a, e, rtol=1e-4, atol=1e-4, msg=lambda m: f"grad of {name}: {m}")


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_per_dim_arguments(device, dims):
    """Different stride / padding / output_padding / dilation in each spatial dim."""
    stride, padding, output_padding, dilation = (3, 1, 2), (1, 0, 2), (2, 0, 1), (1, 2, 2)
    kw = dict(stride=stride[:dims], padding=padding[:dims], output_padding=output_padding[:dims],
              dilation=dilation[:dims], groups=2)
    x, w, b = make_case(dims, 2, device, requires_grad=True)
    out = CONV_T[dims](x, w, b, **kw)
    expected = reference.conv_transpose(x, w, b, **kw)
    assert_close(out, expected, rtol=1e-4, atol=1e-4)
    check_grads(out, expected, (x, w, b))


# (stride, padding, output_padding, dilation, groups, bias); the op's after-padding
# (padding - output_padding) is negative in several.
GRADCHECK = [
    (1, 0, 0, 1, 1, True),
    (2, 0, 1, 1, 2, True),
    (3, 1, 2, 1, 1, False),
    (1, 1, 1, 2, 2, True),
    (2, 1, 0, 2, 1, True),
]


@pytest.mark.emulated_sample(3)
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("stride,padding,output_padding,dilation,groups,bias", GRADCHECK)
def test_gradcheck_and_gradgradcheck(device, dims, stride, padding, output_padding, dilation,
                                     groups, bias):
    spatial = {1: (4,), 2: (3, 2), 3: (2, 2, 2)}[dims]
    kernel = {1: (3,), 2: (2, 3), 3: (2, 2, 2)}[dims]
    x, w, b = make_case(dims, groups, device, torch.float64, batch=2, in_channels=2,
                        out_channels=2, spatial=spatial, kernel=kernel, requires_grad=True)
    inputs = (x, w, b) if bias else (x, w)

    def fn(x, w, b=None):
        return CONV_T[dims](x, w, b, stride, padding, output_padding, groups, dilation)

    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_unbatched(device, dims):
    kw = dict(stride=2, padding=1, output_padding=1, groups=2, dilation=1)
    x, w, b = make_case(dims, 2, device, batch=1, requires_grad=True)
    out = CONV_T[dims](x[0], w, b, **kw)
    expected = reference.conv_transpose(x[0], w, b, **kw)
    assert out.shape == expected.shape == (6, *expected.shape[1:])
    assert_close(out, expected, rtol=1e-4, atol=1e-4)
    check_grads(out, expected, (x, w, b))
    # Unbatched equals the batch of one, squeezed.
    assert_close(out, CONV_T[dims](x, w, b, **kw)[0], rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_reduced_precision_accumulates_in_float32(device, dtype, dims):
    """Forward and every gradient within the error of a float32 sum rounded once (the bound is
    derived from the dtype and the sum's length: reference.float32_accumulation_bound)."""
    kw = dict(stride=2, padding=1, output_padding=1, groups=2, dilation=1)
    x, w, b = make_case(dims, 2, device, dtype)
    # Longest sum: a weight gradient's, over the batch and every input position.
    terms = max(6 // 2 * w[0, 0].numel() + 1, x.shape[0] * x[0, 0].numel())
    reference.assert_float32_accumulation(lambda x, w, b: CONV_T[dims](x, w, b, **kw),
                                          lambda x, w, b: reference.conv_transpose(x, w, b, **kw),
                                          (x, w, b), terms,
                                          rounded_apart=reference.rounded_apart(device, dtype))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_non_contiguous(device, dims):
    """Strided input view, transposed weight view, strided bias, non-contiguous grad_output."""
    kw = dict(stride=2, padding=1, output_padding=1, dilation=2)
    # every other element of each spatial dim, channels not innermost
    big = torch.randn(2, *[2 * n for n in SPATIAL[dims]], 4, device=device)
    x = big.movedim(-1, 1)[(..., *[slice(None, None, 2)] * dims)].requires_grad_()
    w = torch.randn(6, 4, *KERNEL[dims], device=device).transpose(0, 1).requires_grad_()
    b = torch.randn(12, device=device)[::2].requires_grad_()
    assert not (x.is_contiguous() or w.is_contiguous() or b.is_contiguous())
    out = CONV_T[dims](x, w, b, **kw)
    expected = reference.conv_transpose(x, w, b, **kw)
    assert_close(out, expected, rtol=1e-4, atol=1e-4)
    g = torch.randn(*reversed(expected.shape), device=device).permute(
        *reversed(range(expected.dim())))
    assert not g.is_contiguous()
    grads = torch.autograd.grad(out, (x, w, b), g)
    want = torch.autograd.grad(expected, (x, w, b), g)
    for a, e in zip(grads, want):
        assert_close(a, e, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dims", [2, 3])
def test_channels_last(device, dims):
    fmt = {2: torch.channels_last, 3: torch.channels_last_3d}[dims]
    x, w, b = make_case(dims, 1, device)
    x = x.to(memory_format=fmt).requires_grad_()
    w = w.to(memory_format=fmt).requires_grad_()
    b.requires_grad_()
    kw = dict(stride=3, padding=1, output_padding=2)
    out = CONV_T[dims](x, w, b, **kw)
    expected = reference.conv_transpose(x, w, b, **kw)
    assert_close(out, expected, rtol=1e-4, atol=1e-4)
    check_grads(out, expected, (x, w, b))


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("batch", [1, 5])
def test_pointwise_channels_last(dims, groups, batch):
    """1x1 stride-1 conv_transposes (a 1x1 conv's input gradient) in channels_last: the forward's
    blocks of pixels over the whole batch with the weight as it lies; float64 values and all
    three gradients against torch."""
    fmt = {1: torch.contiguous_format, 2: torch.channels_last, 3: torch.channels_last_3d}[dims]
    spatial = {1: (37,), 2: (9, 7), 3: (3, 5, 4)}[dims]
    x = torch.randn(batch, 6 * groups, *spatial, dtype=torch.double).to(memory_format=fmt)
    w = torch.randn(6 * groups, 5, *([1] * dims), dtype=torch.double).to(memory_format=fmt)
    b = torch.randn(5 * groups, dtype=torch.double)
    x, w, b = (t.requires_grad_() for t in (x, w, b))
    out = CONV_T[dims](x, w, b, groups=groups)
    expected = getattr(torch.nn.functional, f"conv_transpose{dims}d")(x, w, b, groups=groups)
    assert_close(out, expected)
    check_grads(out, expected, (x, w, b))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_zero_batch(device, dims):
    kw = dict(stride=2, padding=1, output_padding=1, groups=2)
    x, w, b = make_case(dims, 2, device, batch=0, requires_grad=True)
    out = CONV_T[dims](x, w, b, **kw)
    expected = reference.conv_transpose(x.detach(), w.detach(), b.detach(), **kw)
    assert out.shape == expected.shape and out.shape[0] == 0
    out.sum().backward()
    assert x.grad.shape == x.shape
    assert torch.equal(w.grad, torch.zeros_like(w))
    assert torch.equal(b.grad, torch.zeros_like(b))


# (stride, padding, dilation, groups) for the modules' output_size; per-dim strides, so that every
# dim has its own number of reachable sizes.
OUTPUT_SIZE_CASES = [
    ((3, 2, 1), (1, 0, 1), (1, 2, 1), 1),
    ((2, 3, 2), (0, 1, 0), (2, 1, 1), 2),
]


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("stride,padding,dilation,groups", OUTPUT_SIZE_CASES)
def test_module_output_size_every_reachable_size(device, dims, stride, padding, dilation, groups):
    stride, padding, dilation = stride[:dims], padding[:dims], dilation[:dims]
    args = (4, 6, KERNEL[dims], stride, padding, 0, groups, True, dilation)
    torch.manual_seed(1)
    ours = MODULE[dims](*args, device=device)
    torch.manual_seed(1)
    theirs = TORCH_MODULE[dims](*args, device=device)
    x = torch.randn(2, 4, *SPATIAL[dims], device=device)
    lo = [min_size(n, k, s, p, d) for n, k, s, p, d in
          zip(SPATIAL[dims], KERNEL[dims], stride, padding, dilation)]
    hi = [m + s - 1 for m, s in zip(lo, stride)]
    sizes = list(itertools.product(*[range(a, b + 1) for a, b in zip(lo, hi)]))
    assert len(sizes) == torch.Size(stride).numel()
    for size in sizes:
        out, expected = ours(x, output_size=list(size)), theirs(x, output_size=list(size))
        assert list(out.shape[2:]) == list(size)
        assert_close(out, expected, rtol=1e-4, atol=1e-4)
    # With the non-spatial dims too, and unbatched (C, *spatial) sizes for an unbatched input.
    size = list(sizes[-1])
    assert_close(ours(x, output_size=[2, 6, *size]), theirs(x, output_size=size),
                 rtol=1e-4, atol=1e-4)
    assert_close(ours(x[1], output_size=[6, *size]), theirs(x[1], output_size=size),
                 rtol=1e-4, atol=1e-4)
    assert_close(ours(x[1], output_size=size), theirs(x[1], output_size=size),
                 rtol=1e-4, atol=1e-4)
    # One dim out of range, the others fine: torch's ValueError.
    for d in range(dims):
        for bad in (lo[d] - 1, hi[d] + 1):
            size = list(lo)
            size[d] = bad
            with pytest.raises(ValueError, match="requested an output size"):
                theirs(x, output_size=size)
            with pytest.raises(ValueError, match="requested an output size"):
                ours(x, output_size=size)
    with pytest.raises(ValueError, match="output_size must have"):
        ours(x, output_size=lo + [lo[0]] * 3)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_module_output_size_with_backward(device, dims):
    torch.manual_seed(1)
    ours = MODULE[dims](4, 6, KERNEL[dims], stride=3, padding=1, groups=2, device=device)
    torch.manual_seed(1)
    theirs = TORCH_MODULE[dims](4, 6, KERNEL[dims], stride=3, padding=1, groups=2, device=device)
    x = torch.randn(2, 4, *SPATIAL[dims], device=device, requires_grad=True)
    size = [min_size(n, k, 3, 1, 1) + 2 for n, k in zip(SPATIAL[dims], KERNEL[dims])]
    out, expected = ours(x, output_size=size), theirs(x, output_size=size)
    assert_close(out, expected, rtol=1e-4, atol=1e-4)
    g = torch.randn_like(expected)
    grads = torch.autograd.grad(out, (x, ours.weight, ours.bias), g)
    want = torch.autograd.grad(expected, (x, theirs.weight, theirs.bias), g)
    for a, e in zip(grads, want):
        assert_close(a, e, rtol=1e-4, atol=1e-4)


def _bad_input_cases(dims):
    """(call(fn), error, fragment), called with our and with torch's functional. 2-d cases that
    test_conv_errors.py holds are repeated here in 1-d and 3-d, and as modules."""
    x = torch.randn(1, 4, *SPATIAL[dims])
    k = KERNEL[dims]
    return [
        (lambda f: f(x, torch.randn(4, 2, *k), stride=2, output_padding=2), RuntimeError,
         "output padding must be smaller"),
        # >= stride and == dilation in the last dim only
        (lambda f: f(x, torch.randn(4, 2, *k), stride=(2,) * (dims - 1) + (1,),
                     dilation=(1,) * (dims - 1) + (2,), output_padding=(1,) * (dims - 1) + (2,)),
         RuntimeError, "output padding must be smaller"),
        (lambda f: f(x, torch.randn(4, 2, *k), output_padding=-1), RuntimeError,
         "negative output_padding"),
        (lambda f: f(x, torch.randn(4, 2, *k), groups=3), RuntimeError, "divisible by 3"),
        (lambda f: f(x, torch.randn(6, 2, *k), groups=2), RuntimeError, "to have 6 channels"),
        (lambda f: f(x, torch.randn(3, 2, *k)), RuntimeError, "to have 3 channels, but got 4"),
        (lambda f: f(x, torch.randn(4, 2, *k), padding="same"), TypeError,
         "must be tuple of ints"),
        (lambda f: f(x, torch.randn(4, 2, *k), padding="valid"), TypeError,
         "must be tuple of ints"),
        (lambda f: f(x, torch.randn(4, 2, *k), torch.randn(3), groups=2), RuntimeError,
         "4 elements"),
    ]


@pytest.mark.parametrize("dims", [1, 3])
@pytest.mark.parametrize("case", range(9))
def test_bad_input_functional(dims, case):
    call, error, fragment = _bad_input_cases(dims)[case]
    fn = CONV_T[dims]
    with pytest.raises(error, match=fragment):
        call(fn)
    with pytest.raises(error, match=fragment):  # the spec is torch's
        call({1: torch.nn.functional.conv_transpose1d,
              3: torch.nn.functional.conv_transpose3d}[dims])


MODULE_BAD = [
    (dict(in_channels=4, stride=2, output_padding=2), RuntimeError,
     "output padding must be smaller"),
    (dict(in_channels=3), RuntimeError, "to have 3 channels, but got 4"),
    (dict(in_channels=4, padding="same"), TypeError, "must be tuple of ints"),
]


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("kwargs,error,fragment", MODULE_BAD, ids=["output_padding", "channels",
                                                                    "string_padding"])
def test_bad_input_modules(dims, kwargs, error, fragment):
    x = torch.randn(1, 4, *SPATIAL[dims])
    for cls in (TORCH_MODULE[dims], MODULE[dims]):  # torch's, then ours: same type and words
        m = cls(out_channels=6, kernel_size=3, **kwargs)
        with pytest.raises(error, match=fragment):
            m(x)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_module_construction_and_dilation_output_padding(dims):
    with pytest.raises(ValueError, match="divisible by groups"):
        MODULE[dims](4, 6, 3, groups=4)
    # output_padding >= stride is fine where it is < dilation
    x = torch.randn(1, 4, *SPATIAL[dims])
    m = MODULE[dims](4, 6, 3, stride=1, dilation=2, output_padding=1)
    t = TORCH_MODULE[dims](4, 6, 3, stride=1, dilation=2, output_padding=1)
    t.load_state_dict(m.state_dict())
    assert_close(m(x), t(x), rtol=1e-4, atol=1e-4)


def transpose_samples(device):
    """(input, weight, bias-or-None, stride, [before..., after...], dilation, groups); after is
    padding - output_padding, negative where output_padding > padding."""
    f64 = dict(device=device, dtype=torch.float64)
    yield (torch.randn(2, 4, 6, **f64, requires_grad=True),
           torch.randn(4, 1, 3, **f64, requires_grad=True),
           torch.randn(2, **f64, requires_grad=True), [3], [1, -1], [2], 2)
    yield (torch.randn(2, 3, 3, 4, **f64, requires_grad=True),
           torch.randn(3, 1, 2, 3, **f64, requires_grad=True),
           torch.randn(3, **f64), [2, 1], [0, 1, -1, 0], [1, 2], 3)
    yield (torch.randn(1, 2, 2, 3, 2, **f64, requires_grad=True),
           torch.randn(2, 2, 2, 2, 3, **f64, requires_grad=True), None, [2, 1, 3],
           [1, 0, 1, 0, 0, -1], [1, 2, 1], 1)
    yield (torch.randn(1, 2, 2, 3, 2, **f64, requires_grad=True),
           torch.randn(2, 2, 2, 2, 3, **f64), None, [2, 1, 3],
           [1, 0, 1, 0, 0, -1], [1, 2, 1], 1)
    yield (torch.randn(0, 4, 5, **f64, requires_grad=True),
           torch.randn(4, 3, 3, **f64, requires_grad=True),
           torch.randn(6, **f64, requires_grad=True), [2], [1, 0], [1], 2)


@pytest.mark.parametrize("index", range(5))
def test_opcheck(device, index):
    args = list(transpose_samples(device))[index]
    torch.library.opcheck(torch.ops.convpool.conv_transpose.default, args)


@pytest.mark.parametrize("index", range(5))
def test_raw_op_matches_torch(index):
    """The raw op's [before..., after...] padding is torch's (padding, output_padding)."""
    x, w, b, stride, pad, dilation, groups = list(transpose_samples("cpu"))[index]
    dims = len(stride)
    before, after = pad[:dims], pad[dims:]
    out = torch.ops.convpool.conv_transpose.default(x, w, b, stride, pad, dilation, groups)
    expected = reference.conv_transpose(x, w, b, stride, before,
                                        [p - a for p, a in zip(before, after)], groups, dilation)
    assert_close(out, expected)
