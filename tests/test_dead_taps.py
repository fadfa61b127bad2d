"""Kernels cropped to their live taps (conv_cpu.cpp, live_kernel in live_taps.cpp): rows, columns
or planes of taps that read only padding for every output pixel are dropped before a kernel is
chosen, in the forward, the input gradient and the weight gradient (whose dropped taps get zero).
Each case against torch in float64, values and all three gradients, in both layouts and under
every algorithm: dilated kernels wider than the image (ASPP on a small map), a 1x1 image, taps
dead along one dim only, strides, groups, 'same' padding of an even kernel, 1-d and 3-d, and
leading dead taps beyond the padding (cropped only down to padding 0)."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import torch_convpool as tc
import torch_convpool.functional as CF

# (input shape without batch, weight shape, stride, padding, dilation, groups)
CASES = [
    ((8, 14, 14), (6, 8, 3, 3), 1, 24, 24, 1),  # ASPP dilation 24: the centre tap alone
    ((8, 14, 14), (6, 8, 3, 3), 1, 12, 12, 1),  # dilation 12: every tap live somewhere
    ((4, 1, 1), (5, 4, 3, 3), 1, 1, 1, 1),  # 1x1 image
    ((4, 5, 9), (6, 2, 3, 3), 1, 6, 6, 2),  # dead along the height only, 2 groups
    ((3, 7, 7), (4, 3, 3, 3), 2, 5, 5, 1),  # stride 2
    ((3, 5, 5), (4, 3, 4, 4), 1, "same", 8, 1),  # 'same' padding of an even kernel
    ((3, 2, 6), (2, 3, 5, 1), (1, 2), (4, 0), (2, 1), 1),  # rows beyond the image, stride 2 in w
    ((2, 3), (3, 2, 5), 1, 5, 3, 1),  # 1-d: leading dead taps past the padding
    ((3, 1, 4, 4), (2, 3, 3, 3, 3), 1, 1, 1, 1),  # 3-d: a depth-1 image padded in depth
]


@pytest.mark.parametrize("algorithm", ["auto", "gemm", "winograd"])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_dead_taps_cropped(case, channels_last, algorithm):
    shape, wshape, stride, padding, dilation, groups = CASES[case]
    torch.manual_seed(case)
    x = torch.randn(2, *shape, dtype=torch.double)
    w = torch.randn(wshape, dtype=torch.double)
    b = torch.randn(wshape[0], dtype=torch.double)
    if channels_last and x.dim() >= 4:
        fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
        x, w = x.to(memory_format=fmt), w.to(memory_format=fmt)
    x.requires_grad_()
    w.requires_grad_()
    b.requires_grad_()
    ours_fn = {3: CF.conv1d, 4: CF.conv2d, 5: CF.conv3d}[x.dim()]
    torch_fn = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[x.dim()]
    with tc.set_conv_algorithm(algorithm):
        out = ours_fn(x, w, b, stride, padding, dilation, groups)
        seed = torch.randn_like(out)
        grads = torch.autograd.grad(out, (x, w, b), seed)
    ref = torch_fn(x, w, b, stride, padding, dilation, groups)
    assert_close(out, ref, rtol=1e-10, atol=1e-10)
    for g, e in zip(grads, torch.autograd.grad(ref, (x, w, b), seed)):
        assert_close(g, e, rtol=1e-10, atol=1e-10)


def test_dead_taps_float32_and_gradcheck():
    """float32 through the fast paths the cropped 1x1 conv takes, and gradcheck of a cropped conv."""
    x = torch.randn(2, 16, 6, 6).to(memory_format=torch.channels_last)
    w = torch.randn(8, 16, 3, 3)
    assert_close(CF.conv2d(x, w, padding=9, dilation=9), F.conv2d(x, w, padding=9, dilation=9),
                 rtol=1e-5, atol=1e-5)
    xd = torch.randn(1, 3, 2, 2, dtype=torch.double, requires_grad=True)
    wd = torch.randn(2, 3, 3, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: CF.conv2d(a, b, padding=4, dilation=4), (xd, wd))
