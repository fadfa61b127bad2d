"""The dense engine's col2im conv_transpose (a strided conv's input gradient, a strided
conv_transpose's forward): NCHW at batch >= 2, and channels_last with at most 8 image channels
(the ResNet stem's input gradient). Values and all three gradients against torch over shapes that reach its
edges: blocks that straddle grid lines, taps that land in the padding or past the image, strides
larger than the kernel, asymmetric padding, output_padding, 1-d/2-d/3-d; and the paths beside it
(batch 1, groups, wider channels_last, stride 1) on the same shapes."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import torch_convpool as tc
import torch_convpool.functional as CF


def _layout(x, channels_last):
    if not channels_last or x.dim() < 4:
        return x
    return x.to(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)


CONV = {1: (CF.conv1d, F.conv1d), 2: (CF.conv2d, F.conv2d), 3: (CF.conv3d, F.conv3d)}
TRANSPOSE = {1: (CF.conv_transpose1d, F.conv_transpose1d),
             2: (CF.conv_transpose2d, F.conv_transpose2d),
             3: (CF.conv_transpose3d, F.conv_transpose3d)}

CONV_CASES = [
    # input shape, out channels, kernel, stride, padding, dilation, groups
    ((2, 3, 61, 45), 16, 7, 2, 3, 1, 1),      # the stem; many blocks per sample
    ((3, 5, 13, 11), 7, 3, 3, 1, 1, 1),       # stride 3: odd sizes, some positions unreached
    ((2, 4, 9, 12), 6, (2, 5), (2, 1), (1, 2), (1, 2), 1),  # even kernel, dilation
    ((2, 6, 8, 8), 8, 1, 2, 0, 1, 1),         # 1x1 stride 2: three quarters of the image zero
    ((2, 3, 7, 6), 4, 5, 2, 2, 1, 1),         # kernel as large as the image
    ((2, 8, 10, 9), 8, 3, 2, 1, 1, 2),        # groups: the phases
    ((1, 3, 15, 17), 5, 3, 2, 1, 1, 1),       # batch 1: the phases
    ((2, 12, 15, 17), 10, 3, 2, 1, 1, 1),     # channels_last with 12 channels: the phases
    ((2, 5, 9, 8), 6, 5, 1, 2, 1, 1),         # stride 1: one phase, a plain conv
    ((3, 4, 700), 5, 5, 3, 2, 1, 1),          # conv1d: blocks cut a long line
    ((2, 3, 5, 9, 8), 4, 3, 2, 1, 1, 1),      # conv3d
]


@pytest.fixture(autouse=True)
def gemm():
    with tc.set_conv_algorithm("gemm"):
        yield


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x".join(map(str, c[0])))
def test_strided_conv_gradients_match_torch(case, channels_last):
    shape, out_channels, kernel, stride, padding, dilation, groups = case
    dims = len(shape) - 2
    kernel = (kernel,) * dims if isinstance(kernel, int) else kernel
    x = _layout(torch.randn(*shape, dtype=torch.float64), channels_last).requires_grad_()
    w = torch.randn(out_channels, shape[1] // groups, *kernel, dtype=torch.float64,
                    requires_grad=True)
    ours, theirs = CONV[dims]
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    out, ref = ours(x, w, **kw), theirs(x, w, **kw)
    assert_close(out, ref, rtol=1e-10, atol=1e-10)
    seed = torch.randn_like(ref)
    for got, want in zip(torch.autograd.grad(out, (x, w), seed),
                         torch.autograd.grad(ref, (x, w), seed)):
        assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("case", [
    # input shape, out channels, kernel, stride, padding, output_padding, dilation
    ((2, 8, 9, 7), 3, 4, 2, 1, 0, 1),
    ((3, 6, 5, 6), 4, 3, 3, 0, 2, 1),         # output_padding: trailing rows no tap reaches
    ((2, 5, 6, 4), 2, (3, 2), (2, 3), (1, 0), (1, 2), (2, 1)),
    ((2, 7, 40), 3, 6, 4, 1, 3, 1),
])
def test_conv_transpose_matches_torch(case, channels_last):
    shape, out_channels, kernel, stride, padding, output_padding, dilation = case
    dims = len(shape) - 2
    kernel = (kernel,) * dims if isinstance(kernel, int) else kernel
    x = _layout(torch.randn(*shape, dtype=torch.float64), channels_last).requires_grad_()
    w = torch.randn(shape[1], out_channels, *kernel, dtype=torch.float64, requires_grad=True)
    b = torch.randn(out_channels, dtype=torch.float64, requires_grad=True)
    ours, theirs = TRANSPOSE[dims]
    kw = dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation)
    out, ref = ours(x, w, b, **kw), theirs(x, w, b, **kw)
    assert_close(out, ref, rtol=1e-10, atol=1e-10)
    seed = torch.randn_like(ref)
    for got, want in zip(torch.autograd.grad(out, (x, w, b), seed),
                         torch.autograd.grad(ref, (x, w, b), seed)):
        assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_asymmetric_padding_same_with_stride():
    """padding='same' with stride 2 pads one pixel more after: the op's asymmetric padding."""
    x = torch.randn(2, 3, 10, 9, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 4, 4, dtype=torch.float64)
    y = CF.conv2d(x, w, stride=2, padding="same")
    seed = torch.randn_like(y)
    (got,) = torch.autograd.grad(y, x, seed)
    padded = F.pad(x, (1, 2, 1, 2))
    ref = F.conv2d(padded, w, stride=2)
    (want,) = torch.autograd.grad(ref, x, seed)
    assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_gradcheck(channels_last):
    x = _layout(torch.randn(2, 3, 9, 8, dtype=torch.float64), channels_last).requires_grad_()
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: CF.conv2d(x, w, stride=2, padding=1), (x, w))


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("threads", [1, 2])
def test_input_gradient_independent_of_thread_count(threads, channels_last):
    x = _layout(torch.randn(3, 3, 45, 37), channels_last).requires_grad_()
    w = torch.randn(16, 3, 7, 7)

    def run():
        y = CF.conv2d(x, w, stride=2, padding=3)
        return torch.autograd.grad(y, x, torch.randn(y.shape, generator=torch.Generator().manual_seed(0)))[0]

    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        expected = run()
        torch.set_num_threads(threads)
        assert torch.equal(run(), expected)
    finally:
        torch.set_num_threads(previous)
