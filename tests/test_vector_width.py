"""The CPU kernels written over generic vectors pick AVX-512 registers where the CPU has them and
AVX2's otherwise, with their own register blocking and lane orders. testing.vector_width(256)
forces the AVX2 shapes on an AVX-512 machine: each fast path here runs in both widths against
torch (values and the gradients of input and weight), so one machine checks both."""
import pytest
import torch
import torch.nn.functional as F

import torch_convpool.functional as CF
from torch_convpool.testing import vector_width

CASES = {
    # name: (input shape, weight shape or None, ours, theirs)
    "winograd 3x3": ((2, 32, 12, 11), (32, 32, 3, 3), dict(padding=1), "conv2d"),
    "gemm 5x5 stride 2": ((2, 24, 13, 12), (40, 24, 5, 5), dict(stride=2, padding=2), "conv2d"),
    "depthwise 3x3": ((2, 40, 13, 11), (40, 1, 3, 3), dict(padding=1, groups=40), "conv2d"),
    "depthwise 5x5 stride 2": ((2, 24, 15, 14), (24, 1, 5, 5), dict(stride=2, padding=2,
                                                                     groups=24), "conv2d"),
    "depthwise 7x7 (rows)": ((2, 72, 9, 21), (72, 1, 7, 7), dict(padding=3, groups=72), "conv2d"),
    "grouped 4 per group": ((2, 32, 14, 9), (32, 4, 3, 3), dict(padding=1, groups=8), "conv2d"),
    "grouped 8 per group": ((2, 40, 14, 14), (40, 8, 3, 3), dict(padding=1, groups=5), "conv2d"),
    "grouped 16 per group stride 2": ((2, 48, 13, 11), (48, 16, 3, 3),
                                      dict(stride=2, padding=1, groups=3), "conv2d"),
    "grouped 24 per group": ((2, 72, 7, 7), (72, 24, 3, 3), dict(padding=1, groups=3), "conv2d"),
    "grouped 12 -> 20 per group": ((2, 36, 9, 8), (60, 12, 3, 3), dict(padding=1, groups=3),
                                   "conv2d"),
    "few channels stem": ((2, 3, 29, 27), (24, 3, 7, 7), dict(stride=2, padding=3), "conv2d"),
    "max_pool 3/2": ((2, 40, 15, 14), None, dict(kernel_size=3, stride=2, padding=1),
                     "max_pool2d"),
    "avg_pool 3/1": ((2, 40, 15, 14), None, dict(kernel_size=3, stride=1, padding=1),
                     "avg_pool2d"),
}


@pytest.mark.parametrize("bits", [256, 512])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("name", list(CASES))
def test_both_vector_widths_match_torch(name, channels_last, bits):
    shape, wshape, kw, op = CASES[name]
    torch.manual_seed(0)
    x = torch.randn(shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    args = () if wshape is None else (torch.randn(wshape),)
    xt, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
    at, ao = [a.clone().requires_grad_() for a in args], [a.clone().requires_grad_() for a in args]
    expected = getattr(F, op)(xt, *at, **kw)
    with vector_width(bits):
        out = getattr(CF, op)(xo, *ao, **kw)
        grad = torch.randn_like(expected)
        out.backward(grad)
    expected.backward(grad)
    tol = dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out, expected, **tol)
    torch.testing.assert_close(xo.grad, xt.grad, **tol)
    for ours, theirs in zip(ao, at):
        torch.testing.assert_close(ours.grad, theirs.grad, **tol)


def test_vector_width_restores_and_checks():
    with vector_width(256):
        with vector_width(512):
            pass
    with pytest.raises(ValueError, match="256 or 512"):
        with vector_width(128):
            pass
