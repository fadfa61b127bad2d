"""Every CPU algorithm of the dense convolutions (set_conv_algorithm) against torch: forward and
all three gradients, NCHW and channels_last, 1-d/2-d/3-d, over shapes that reach each path's
edges (blocks that straddle lines and samples, tiles that overhang the output, channel counts
that are not a multiple of the vector width, phases of strided transposed convs)."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import torch_convpool as tc
import torch_convpool.functional as CF

ALGORITHMS = ["gemm", "winograd", "im2col"]


@pytest.fixture(params=ALGORITHMS)
def algorithm(request):
    with tc.set_conv_algorithm(request.param):
        yield request.param


def _layout(x, channels_last):
    if not channels_last or x.dim() < 4:
        return x
    return x.to(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)


def _compare(ours, theirs, args, rtol=1e-10, atol=1e-10):
    """Forward values and the gradient of every tensor argument, ours against torch's."""
    out, ref = ours(*args), theirs(*args)
    assert out.shape == ref.shape
    assert out.stride() == ref.stride()  # torch's memory format (test_conv_result_layout.py)
    assert_close(out, ref, rtol=rtol, atol=atol)
    seed = torch.randn_like(ref)
    wanted = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    for g, e in zip(torch.autograd.grad(out, wanted, seed), torch.autograd.grad(ref, wanted, seed)):
        assert_close(g, e, rtol=rtol, atol=atol)
    return out


def _conv_args(shape, out_channels, kernel, groups, channels_last, dtype=torch.float64):
    dims = len(shape) - 2
    x = _layout(torch.randn(*shape, dtype=dtype), channels_last).requires_grad_()
    w = torch.randn(out_channels, shape[1] // groups, *kernel[:dims], dtype=dtype, requires_grad=True)
    b = torch.randn(out_channels, dtype=dtype, requires_grad=True)
    return x, w, b


CONV_CASES = [
    # shape, out channels, kernel, stride, padding, dilation, groups
    ((3, 8, 37, 23), 12, (3, 3), 1, 1, 1, 1),       # Winograd: tiles overhang both edges
    ((2, 17, 9, 14), 5, (3, 3), 1, 0, 1, 1),        # channels not a multiple of the vector width
    ((1, 33, 6, 5), 20, (3, 3), 1, 2, 1, 1),        # padding wider than a tile's overlap
    ((2, 16, 30, 30), 16, (3, 3), 1, "same", 1, 1),
    ((2, 6, 11, 13), 9, (3, 3), 2, 1, 1, 1),        # strided: GEMM
    ((2, 6, 11, 13), 6, (3, 3), 1, 2, 2, 3),        # dilated, grouped
    ((2, 8, 12, 10), 24, (1, 1), 1, 0, 1, 1),       # pointwise: the input is the column matrix
    ((2, 8, 12, 10), 24, (1, 1), 2, 1, 1, 2),       # 1x1 with stride and padding: not pointwise
    ((1, 3, 40, 40), 16, (7, 7), 2, 3, 1, 1),       # a stem
    ((2, 4, 5, 6), 6, (5, 4), 1, (2, 1), 1, 2),     # kernel larger than an image dim
    ((4, 8, 300), 8, (3,), 1, 8, 8, 1),             # conv1d: long lines cut into blocks
    # Few pixels and many output channels: channels_last blocks cut along the output channels
    # (an uneven last part), a 1x1 one too wide for the line kernel, and a grouped one.
    ((2, 12, 5, 7), 300, (3, 3), 1, 1, 1, 1),
    ((1, 40, 7, 7), 520, (1, 1), 1, 0, 1, 1),
    ((2, 8, 3, 5), 512, (3, 3), 1, 1, 1, 2),
    ((1, 20, 6, 5), 24, (3, 3), 1, 1, 1, 1),        # one small NCHW sample: gradients via NHWC
    ((2, 6, 5, 7, 6), 8, (3, 3, 3), 1, 1, 1, 1),    # conv3d
    ((2, 16, 3, 9, 10), 16, (1, 3, 3), 1, (0, 1, 1), 1, 1),  # 1x3x3: Winograd per depth slice
    # Winograd in 3-d sums one 2-d conv per depth tap: depth stride, dilation and padding, a
    # depth kernel longer than the input, input and output channels not multiples of a vector.
    ((1, 17, 7, 7, 6), 19, (2, 3, 3), (2, 1, 1), (1, 1, 1), (2, 1, 1), 1),
    ((2, 16, 3, 5, 5), 16, (5, 3, 3), 1, (2, 0, 2), 1, 1),
    ((2, 16, 6, 8, 8), 24, (3, 3, 3), 1, (0, 1, 1), 1, 1),
    # Dilated Winograd: d x d phases tiled on their own, phases of unequal length, a dilation
    # larger than the image (phases without outputs), h and w dilated differently, and in 3-d.
    ((2, 16, 13, 11), 17, (3, 3), 1, 2, 2, 1),
    ((1, 16, 5, 7), 16, (3, 3), 1, (4, 6), (4, 6), 1),
    ((2, 18, 21, 9), 16, (3, 3), 1, (3, 1), (3, 1), 1),
    ((1, 16, 4, 9, 10), 16, (3, 3, 3), 1, (1, 2, 2), (1, 2, 2), 1),
    ((2, 16, 11, 12), 16, (3, 3), 1, 0, 2, 1),
    # Kernels larger than 3x3 by Winograd, as 3x3 blocks of taps (zero where a block overhangs
    # the kernel): 5x5, 3x5, 6x6 (whole blocks), 7x7 and 9x9, dilated, and 3x5x5 in 3-d.
    ((2, 16, 13, 11), 17, (5, 5), 1, 2, 1, 1),
    ((1, 17, 9, 10), 16, (3, 5), 1, (1, 2), 1, 1),
    ((2, 16, 12, 12), 16, (6, 6), 1, (0, 2), 1, 1),
    ((2, 16, 12, 13), 16, (7, 7), 1, 3, 1, 1),
    ((1, 16, 16, 15), 18, (9, 9), 1, 4, 1, 1),
    ((1, 16, 15, 14), 20, (5, 5), 1, 4, 2, 1),
    ((1, 16, 4, 9, 10), 16, (3, 5, 5), 1, (1, 2, 2), 1, 1),
    # Winograd's batched variant (128 x 128 channels and more): output channels that are not a
    # multiple of the vector width; several chunks of tiles and of output channels.
    ((2, 128, 9, 11), 130, (3, 3), 1, 1, 1, 1),
    ((2, 130, 58, 30), 260, (3, 3), 1, 1, 1, 1),
    # Its GEMM panels of 32 (float32) or 16 (float64) tiles: a last panel of one vector or less
    # (6 tiles), several panels per task and output channels past whole tasks of 32 (48 tiles,
    # 200 channels).
    ((1, 128, 7, 9), 128, (3, 3), 1, 1, 1, 1),
    ((3, 144, 13, 13), 200, (3, 3), 1, 1, 1, 1),
    # NCHW convs over few output pixels with a large weight: the weight as it lies is the GEMM's
    # broadcast operand (small_image_gemm_cpu.cpp): stride 2, dilation, 1-d, 3-d, 65+ columns.
    ((1, 64, 9, 7), 128, (3, 3), 2, 1, 1, 1),
    ((2, 64, 8, 8), 130, (3, 3), 1, 2, 2, 1),
    ((3, 128, 40), 70, (9,), 1, 4, 1, 1),
    ((1, 32, 4, 5, 6), 80, (3, 3, 3), 1, 1, 1, 1),
    # NCHW convs with many taps over 16+ channels run on channels_last copies (all passes at 25
    # taps, the forward from 7): odd sizes, a 3-d one, batch 1.
    ((2, 16, 11, 9), 17, (5, 5), 1, 2, 1, 1),
    ((1, 20, 7, 13), 16, (1, 7), 1, (0, 3), 1, 1),
    ((2, 16, 4, 5, 6), 16, (3, 3, 3), 2, 1, 1, 1),
    # 4x4 stride 2 padding 1 (a DCGAN discriminator): its input gradient is the conv_transpose
    # Winograd computes as one 3x3 conv with interleaved outputs.
    ((2, 32, 16, 14), 16, (4, 4), 2, 1, 1, 1),
    # Windows far into the padding: the GEMM engine computes region by region with the live taps
    # only (live_taps.h; forced "gemm" takes it at these sizes): ASPP-like dilations, spans of
    # unequal length, regions whose windows read no pixel (zero + bias), a single region with a
    # smaller kernel, stride, groups, 1-d and 3-d, channels_last copies of NCHW (9 taps, 16+).
    ((2, 16, 9, 10), 8, (3, 3), 1, 6, 6, 1),
    ((1, 8, 11, 7), 6, (3, 3), 1, (5, 4), (5, 4), 1),
    ((2, 6, 5, 6), 4, (3, 3), 1, 12, 10, 1),
    ((2, 6, 7, 7), 5, (3, 3), 1, 9, 9, 1),
    ((2, 6, 13, 12), 6, (5, 3), 2, (6, 2), (3, 2), 2),
    ((3, 4, 40), 5, (3,), 1, 24, 24, 1),
    ((1, 4, 5, 6, 7), 4, (3, 3, 3), 1, 4, 4, 1),
    ((2, 16, 5, 6), 16, (3, 3), 1, 3, 3, 1),
    # Strided forwards over 64+ channels per group go tap by tap (tap_gemm_cpu.h) where our GEMM
    # computes: 2-d, groups, 3-d, odd grids, asymmetric stride.
    ((2, 64, 17, 15), 40, (3, 3), 2, 1, 1, 1),
    ((3, 128, 11, 9), 66, (3, 3), (2, 1), 1, 1, 2),
    ((2, 64, 5, 6, 7), 16, (3, 3, 3), 2, 1, 1, 1),
    # ... and their input gradients (64+ output channels per group): transposed products.
    ((2, 16, 13, 11), 64, (3, 3), 2, 1, 1, 1),
    ((2, 32, 15, 13), 64, (3, 3), 2, 2, 2, 1),
    ((2, 8, 5, 6, 7), 128, (3, 3, 3), 2, 1, 1, 2),
    # Stride 1 with a tenth or more of the tap positions in the padding (inception's 1x7 on
    # small maps): taps forward and input gradient.
    ((2, 64, 6, 9), 64, (1, 7), 1, (0, 3), 1, 1),
]


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x".join(map(str, c[0])))
def test_conv_matches_torch(algorithm, case, channels_last):
    shape, out_channels, kernel, stride, padding, dilation, groups = case
    x, w, b = _conv_args(shape, out_channels, kernel, groups, channels_last)
    dims = len(shape) - 2
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[dims]
    ours = {1: CF.conv1d, 2: CF.conv2d, 3: CF.conv3d}[dims]
    _compare(lambda x, w, b: ours(x, w, b, stride, padding, dilation, groups),
             lambda x, w, b: fn(x, w, b, stride, padding, dilation, groups), (x, w, b))


TRANSPOSE_CASES = [
    # shape, out channels, kernel, stride, padding, output_padding, dilation, groups
    ((2, 8, 9, 11), 6, (3, 3), 1, 1, 0, 1, 1),      # stride 1: the flipped conv (Winograd)
    ((2, 136, 7, 9), 128, (3, 3), 1, 1, 0, 1, 1),   # the same, batched Winograd
    ((2, 16, 7, 6), 16, (3, 3), 1, 0, 0, 1, 1),
    ((2, 16, 9, 8), 17, (3, 3), 1, 2, 0, 2, 1),   # dilated stride 1: Winograd by phases
    ((2, 16, 9, 8), 16, (5, 5), 1, 1, 0, 1, 1),   # 5x5 stride 1: Winograd by 3x3 blocks
    # Strided ones whose phases read input offsets -1..1 only: one 3x3 Winograd conv with
    # stride^2 x K outputs written interleaved (4x4 stride 2, 8x8 stride 4, the batched variant).
    ((2, 16, 7, 9), 16, (4, 4), 2, 1, 0, 1, 1),
    ((2, 16, 6, 5), 32, (8, 8), 4, 2, 0, 1, 1),
    ((2, 130, 9, 8), 64, (4, 4), 2, 1, 0, 1, 1),
    ((1, 24, 5, 6), 16, (4, 3), 2, 1, (0, 1), 1, 1),  # 4x3: not every dim pays, GEMM
    ((2, 136, 13, 11), 128, (3, 3), 1, 1, 0, 3, 1),  # the same, batched
    ((2, 8, 7, 6), 4, (4, 4), 2, 1, 0, 1, 1),       # every phase has taps
    ((2, 6, 5, 7), 6, (3, 3), 2, 1, 1, 1, 2),       # output_padding, groups
    ((2, 4, 5, 5), 4, (1, 1), 2, 0, 1, 1, 1),       # phases without taps stay zero
    ((1, 4, 6, 5), 6, (3, 2), 3, (2, 1), (1, 2), 2, 2),  # stride and dilation share no factor
    ((2, 4, 13), 3, (5,), 4, 3, 2, 3, 1),
    ((2, 16, 4, 6, 5), 12, (3, 3, 3), 1, 1, 0, 1, 1),  # Winograd, every dim flipped
    ((1, 8, 3, 5, 5), 8, (2, 3, 3), 1, (1, 1, 1), 0, (2, 1, 1), 1),  # depth dilation
    ((1, 4, 3, 4, 5), 4, (3, 2, 3), (2, 1, 2), 1, 0, 1, 2),
    ((2, 16, 6, 7), 18, (5, 5), 2, 2, 1, 1, 1),    # 25 taps, 16+ channels: channels_last copies
    ((2, 6, 9, 8), 5, (3, 3), 1, 0, 0, 6, 1),      # dilated: phases by live-tap regions
    ((2, 6, 5, 6), 4, (3, 3), 2, 0, 1, 5, 1),
]


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=lambda c: "x".join(map(str, c[0])))
def test_conv_transpose_matches_torch(algorithm, case, channels_last):
    shape, out_channels, kernel, stride, padding, output_padding, dilation, groups = case
    dims = len(shape) - 2
    x = _layout(torch.randn(*shape, dtype=torch.float64), channels_last).requires_grad_()
    w = torch.randn(shape[1], out_channels // groups, *kernel, dtype=torch.float64,
                    requires_grad=True)
    b = torch.randn(out_channels, dtype=torch.float64, requires_grad=True)
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[dims]
    ours = {1: CF.conv_transpose1d, 2: CF.conv_transpose2d, 3: CF.conv_transpose3d}[dims]
    kw = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups,
              dilation=dilation)
    _compare(lambda x, w, b: ours(x, w, b, **kw), lambda x, w, b: fn(x, w, b, **kw), (x, w, b))


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("channels", [16, 64, 256, 512])  # 512 x 48: the batched variant
@pytest.mark.parametrize("kernel", [3, 5])
def test_float32_winograd_error_bound(channels_last, channels, kernel):
    """F(4x4, 3x3) in float32: the largest error of the output and of the input gradient stays
    below 1e-4 of the result's RMS (measured 2e-5 to 9e-5 for 16 to 512 channels; direct and GEMM
    convolutions reach ~3e-6). A 5x5 kernel sums four 3x3 blocks in the transformed domain, so
    four times the rounded terms: the bound grows by sqrt(4) (measured up to 1.1e-4 at 512)."""
    blocks = ((kernel + 2) // 3) ** 2
    x, w, _ = _conv_args((2, channels, 29, 31), 48, (kernel, kernel), 1, channels_last,
                         torch.float32)
    x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    with tc.set_conv_algorithm("winograd"):
        y = CF.conv2d(x, w, padding=kernel // 2)
        seed = torch.randn_like(y)
        (gx,) = torch.autograd.grad(y, (x,), seed)
    ref = F.conv2d(x64, w64, padding=kernel // 2)
    (ref_gx,) = torch.autograd.grad(ref, (x64,), seed.double())
    for got, want in [(y, ref), (gx, ref_gx)]:
        scale = want.pow(2).mean().sqrt()
        assert (got.double() - want).abs().max() <= 1e-4 * blocks**0.5 * scale


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_float32_winograd_phases_error_bound(channels_last):
    """conv_transpose 4x4 stride 2 as one 3x3 Winograd conv keeps the 3x3 bound (measured 5e-5
    at 64 channels)."""
    x = _layout(torch.randn(4, 64, 28, 28), channels_last)
    w = torch.randn(64, 32, 4, 4)
    with tc.set_conv_algorithm("winograd"):
        y = CF.conv_transpose2d(x, w, stride=2, padding=1)
    ref = F.conv_transpose2d(x.double(), w.double(), stride=2, padding=1)
    assert (y.double() - ref).abs().max() <= 1e-4 * ref.pow(2).mean().sqrt()


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_float32_winograd_error_bound_3d(channels_last):
    """3x3x3 by Winograd: three depth taps summed in the transformed domain keep the 2-d bound
    for the output and all three gradients (128 channels x 27 taps per output)."""
    x, w, _ = _conv_args((2, 128, 6, 13, 11), 32, (3, 3, 3), 1, channels_last, torch.float32)
    x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    with tc.set_conv_algorithm("winograd"):
        y = CF.conv3d(x, w, padding=1)
        seed = torch.randn_like(y)
        got = (y, *torch.autograd.grad(y, (x, w), seed))
    ref = F.conv3d(x64, w64, padding=1)
    want = (ref, *torch.autograd.grad(ref, (x64, w64), seed.double()))
    for a, b in zip(got, want):
        assert (a.double() - b).abs().max() <= 1e-4 * b.pow(2).mean().sqrt()


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_unbatched(algorithm, channels_last):
    x = torch.randn(8, 13, 11, dtype=torch.float64, requires_grad=True)
    w = torch.randn(16, 8, 3, 3, dtype=torch.float64, requires_grad=True)
    _compare(lambda x, w: CF.conv2d(x, w, padding=1), lambda x, w: F.conv2d(x, w, padding=1), (x, w))


@pytest.mark.parametrize("shape,out_channels,kernel", [
    ((2, 16, 13, 11), 24, 3), ((2, 128, 9, 7), 136, 3), ((2, 16, 10, 11), 17, 5),
], ids=["fused-winograd", "batched-winograd", "winograd-5x5"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_channels_last_weight(algorithm, shape, out_channels, kernel, channels_last):
    """A channels_last model's weights are channels_last whatever the input's layout: every path
    reads them as they are (the input gradient's flipped transpose too)."""
    x = _layout(torch.randn(*shape, dtype=torch.float64), channels_last).requires_grad_()
    w = torch.randn(out_channels, shape[1], kernel, kernel, dtype=torch.float64)
    w = w.to(memory_format=torch.channels_last).requires_grad_()
    p = kernel // 2
    _compare(lambda x, w: CF.conv2d(x, w, padding=p), lambda x, w: F.conv2d(x, w, padding=p), (x, w))


@pytest.mark.parametrize("case", [
    ((2, 3, 6, 7), 4, (3, 3), 1, 1, 1, 1),
    ((2, 4, 5, 6), 4, (3, 2), 2, 1, 2, 2),
    ((2, 4, 6, 5), 2, (1, 1), 1, 0, 1, 1),
], ids=["winograd-shape", "strided-dilated", "pointwise"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_gradcheck(algorithm, case, channels_last):
    shape, out_channels, kernel, stride, padding, dilation, groups = case
    x, w, b = _conv_args(shape, out_channels, kernel, groups, channels_last)
    fn = lambda x, w, b: CF.conv2d(x, w, b, stride, padding, dilation, groups)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradgradcheck(fn, (x, w, b))


def test_set_conv_algorithm_restores_and_rejects():
    assert tc.get_conv_algorithm() == "auto"
    with tc.set_conv_algorithm("gemm"):
        assert tc.get_conv_algorithm() == "gemm"
        with tc.set_conv_algorithm("winograd"):
            assert tc.get_conv_algorithm() == "winograd"
        assert tc.get_conv_algorithm() == "gemm"
    assert tc.get_conv_algorithm() == "auto"
    with pytest.raises(ValueError, match="unknown algorithm 'fft'"):
        tc.set_conv_algorithm("fft")
    with pytest.raises(ValueError, match="unknown algorithm"):
        tc._C._set_conv_algorithm("fft")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("channels", [16, 128], ids=["fused-winograd", "batched-winograd"])
def test_results_independent_of_thread_count(threads, channels):
    """Blocks and partial sums depend on the shapes only, so every thread count gives the same
    bits (the reference is computed with 2 threads)."""
    x = torch.randn(3, channels, 21, 19).to(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(channels + 8, channels, 3, 3, requires_grad=True)

    def run():
        y = CF.conv2d(x, w, padding=1)
        return [y, *torch.autograd.grad(y, (x, w), torch.ones_like(y))]

    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        expected = run()
        torch.set_num_threads(threads)
        for got, want in zip(run(), expected):
            assert torch.equal(got, want)
    finally:
        torch.set_num_threads(previous)


def test_every_algorithm_agrees_on_a_resnet_block():
    x = torch.randn(2, 32, 20, 20).to(memory_format=torch.channels_last)
    w = torch.randn(32, 32, 3, 3)
    results = {}
    for name in ["gemm", "winograd", "im2col"]:
        with tc.set_conv_algorithm(name):
            results[name] = CF.conv2d(x, w, padding=1)
    for name, y in results.items():
        assert_close(y, F.conv2d(x, w, padding=1), rtol=1e-4, atol=1e-3, msg=name)




def _poison(t):
    flat = t.view(-1)
    flat[::17] = float("inf")
    flat[5::23] = -float("inf")
    flat[7::29] = float("nan")


@pytest.mark.parametrize("where", ["input", "weight", "grad_output"])
@pytest.mark.parametrize("channels", [16, 128], ids=["fused-winograd", "batched-winograd"])
def test_non_finite_values_as_torch_on_winograd_shapes(where, channels):
    """inf and NaN give torch's answer also where auto would pick Winograd (whose transforms would
    turn inf - inf into NaN): Winograd sees them in its transforms and hands over to the GEMM
    engine."""
    x = torch.randn(4, channels, 16, 16, dtype=torch.float64)  # 16 tiles per image: Winograd
    w = torch.randn(channels, channels, 3, 3, dtype=torch.float64)
    if where != "grad_output":
        _poison(x if where == "input" else w)
    x.requires_grad_()
    w.requires_grad_()
    out, ref = CF.conv2d(x, w, padding=1), F.conv2d(x, w, padding=1)
    assert_close(out, ref, equal_nan=True)
    seed = torch.randn_like(ref)
    if where == "grad_output":
        _poison(seed)
    for g, e in zip(torch.autograd.grad(out, (x, w), seed), torch.autograd.grad(ref, (x, w), seed)):
        assert_close(g, e, equal_nan=True)
