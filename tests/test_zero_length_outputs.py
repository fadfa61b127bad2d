"""conv_transpose calls whose output is 0 long in some dim: torch's CPU raises, except where
oneDNN computes the call, which answers the empty result (functional/_zero_length_outputs.py).
Ours answers or raises as torch does, over a grid that reaches each term of that rule: dtype,
groups, batch, kernel size, stride, dilation, output_padding, thread count; and the empty result
is on the autograd graph, as torch's."""
import itertools

import pytest
import torch
import torch.nn.functional as F

import torch_convpool as tc
import torch_convpool.functional as CF

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.complex64,
          torch.complex128]
# (dims, input spatial, kernel, stride, padding, output_padding, dilation): output length 0.
GEOMETRIES = [
    (2, (1, 1), (2, 2), 1, 1, 0, 1),         # 2x2 kernel, padding 1
    (2, (1, 1), (1, 1), 1, (0, 0), 0, 1),    # 1x1: answered by torch (length 1), a control
    (2, (1, 2), (1, 1), (1, 3), (0, 2), 0, 1),  # stride 3 along one dim
    (2, (1, 1), (4, 4), 1, 4, 1, 2),         # output_padding 1 with stride 1: torch's own path
    (2, (1, 1), (4, 4), 1, 2, 0, 1),         # a kernel over 3x3
    (1, (2,), (2,), 2, 2, 1, 1),             # 1-d, output_padding with stride 2
    (3, (1, 1, 1), (2, 2, 2), 1, 1, 0, 1),
]


def _outcome(fn):
    try:
        out = fn()
    except (RuntimeError, ValueError) as e:
        return type(e).__name__
    return tuple(out.shape), out.dtype, out.requires_grad


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: f"{g[0]}d-k{g[2]}-s{g[3]}-p{g[4]}")
@pytest.mark.parametrize("groups, batch", [(1, 1), (2, 1), (1, 2), (2, None)])
def test_answers_or_raises_as_torch(threads, dtype, geometry, groups, batch):
    dims, spatial, kernel, stride, padding, output_padding, dilation = geometry
    shape = ((batch,) if batch is not None else ()) + (2 * groups, *spatial)
    x = torch.randn(shape).to(dtype).requires_grad_()
    w = torch.randn(2 * groups, 3, *kernel).to(dtype)
    args = (None, stride, padding, output_padding, groups, dilation)
    name = f"conv_transpose{dims}d"
    theirs = _outcome(lambda: getattr(F, name)(x, w, *args))
    ours = _outcome(lambda: getattr(CF, name)(x, w, *args))
    assert ours == theirs


def test_empty_result_backward_gives_zero_gradients():
    x = torch.randn(2, 4, 1, 1, requires_grad=True)
    w = torch.randn(4, 3, 2, 2, requires_grad=True)
    b = torch.randn(6, requires_grad=True)
    expected = F.conv_transpose2d(x, w, b, padding=1, groups=2)
    out = CF.conv_transpose2d(x, w, b, padding=1, groups=2)
    assert out.shape == expected.shape == (2, 6, 0, 0)
    grads = torch.autograd.grad(out.sum(), (x, w, b))
    for got, want in zip(grads, torch.autograd.grad(expected.sum(), (x, w, b))):
        torch.testing.assert_close(got, want)


def test_module_and_meta_agree():
    m = torch.nn.ConvTranspose2d(4, 6, 2, padding=1, groups=2)
    ours = tc.convert(torch.nn.Sequential(m))
    x = torch.randn(2, 4, 1, 1)
    assert ours(x).shape == m(x).shape == (2, 6, 0, 0)
    assert CF.conv_transpose2d(x.to("meta"), m.weight.to("meta"), padding=1,
                               groups=2).shape == (2, 6, 0, 0)


def test_grid_reaches_both_outcomes():
    """The grid is not vacuous: some calls answer and some raise (on any CPU)."""
    outcomes = set()
    for dtype, groups in itertools.product([torch.float32, torch.float64], [1, 2]):
        x = torch.randn(2, 2 * groups, 1, 1).to(dtype)
        w = torch.randn(2 * groups, 3, 2, 2).to(dtype)
        outcomes.add(isinstance(_outcome(lambda: CF.conv_transpose2d(x, w, None, 1, 1, 0, groups)),
                                str))
    assert outcomes == {True, False}
