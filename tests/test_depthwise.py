"""Depthwise convolution (groups == in_channels, any depth multiplier) against torch, in both
layouts and 1-d to 3-d: the CPU's direct kernels (padded phase planes in NCHW, per-pixel channel
vectors in channels_last) at their edges: strides that split the columns into phases, dilation,
padding wider than the kernel reaches, outputs of one element, channel counts that are not a
multiple of the vector width, multipliers > 1, conv_transpose and all three gradients."""
import itertools

import pytest
import torch
import torch.nn.functional as F

import torch_convpool.functional as CF

SHAPES = {1: (13,), 2: (9, 8), 3: (5, 6, 7)}
# NCHW planes of at least 32x32 elements run the NCHW kernels; smaller ones run the
# channels_last kernels on copies, the forward only below 16x16 (kStagedPixels* in
# depthwise_cpu.cpp): every combination is tested.
LARGE = {1: (1100,), 2: (33, 40), 3: (8, 12, 12)}
MEDIUM = {1: (500,), 2: (20, 24), 3: (4, 10, 12)}


def _layout(x, channels_last):
    if not channels_last or x.dim() < 4:
        return x
    return x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else
                        torch.channels_last_3d)


def _check(dims, channels_last, channels, multiplier, kernel, stride, padding, dilation,
           dtype=torch.double, batch=2, shapes=SHAPES):
    x = _layout(torch.randn(batch, channels, *shapes[dims], dtype=dtype), channels_last)
    w = torch.randn(channels * multiplier, 1, *([kernel] * dims), dtype=dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=channels)
    try:
        expected = getattr(F, f"conv{dims}d")(x, w, **kw)
    except RuntimeError:
        return False  # a geometry torch rejects (output smaller than one element)
    x.requires_grad_()
    w.requires_grad_()
    out = getattr(CF, f"conv{dims}d")(x, w, **kw)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.double else dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out, expected, **tol)
    assert out.is_contiguous(memory_format=torch.channels_last) == expected.is_contiguous(
        memory_format=torch.channels_last)
    grad = torch.randn_like(out)
    ours = torch.autograd.grad(out, (x, w), grad)
    theirs = torch.autograd.grad(getattr(F, f"conv{dims}d")(x, w, **kw), (x, w), grad)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, **tol)
    return True


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_geometry_grid(dims, channels_last):
    if channels_last and dims == 1:
        pytest.skip("no channels_last for 3-d tensors")
    checked = 0
    for multiplier, kernel, stride, padding, dilation in itertools.product(
            [1, 2], [1, 2, 3], [1, 2, 3], [0, 2], [1, 2]):
        checked += _check(dims, channels_last, 3, multiplier, kernel, stride, padding, dilation,
                          batch=1 if dims == 3 else 2)
    assert checked > 40


@pytest.mark.parametrize("shapes", [LARGE, MEDIUM], ids=["large", "medium"])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_larger_nchw_planes(dims, shapes):
    checked = 0
    for multiplier, kernel, stride, padding, dilation in [
            (1, 3, 1, 1, 1), (2, 3, 2, 1, 1), (1, 5, 3, 0, 2), (1, 2, 2, 2, 1), (3, 1, 1, 0, 1)]:
        checked += _check(dims, False, 2, multiplier, kernel, stride, padding, dilation, batch=1,
                          shapes=shapes)
    assert checked >= 4  # a 5-tap kernel dilated by 2 does not fit the 3-d depth of 8


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("channels", [1, 15, 17, 33, 80])  # around the 16/32-lane blocks
def test_channel_counts_and_float32(channels, channels_last):
    for kernel, stride, padding in [(3, 1, 1), (3, 2, 1), (5, 1, 2), (7, 2, 0)]:
        _check(2, channels_last, channels, 1, kernel, stride, padding, 1, dtype=torch.float32)


@pytest.mark.parametrize("channels_last", [False, True])
def test_windows_larger_than_the_input(channels_last):
    # Padding makes a window reach past both ends; one output element per dim.
    assert _check(2, channels_last, 4, 1, 5, 3, 4, 2, batch=1)
    assert _check(2, channels_last, 4, 3, 9, 1, 4, 1, batch=1)


def test_unbatched_and_batch_one():
    x = torch.randn(6, 10, 11, dtype=torch.double, requires_grad=True)
    w = torch.randn(12, 1, 3, 3, dtype=torch.double, requires_grad=True)
    torch.testing.assert_close(CF.conv2d(x, w, padding=1, groups=6),
                               F.conv2d(x, w, padding=1, groups=6))
    torch.autograd.gradcheck(lambda a, b: CF.conv2d(a[None], b, stride=2, padding=1, groups=6),
                             (x, w))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("stride,padding,output_padding", [(1, 0, 0), (2, 1, 1), (3, 2, 0)])
def test_conv_transpose(stride, padding, output_padding, channels_last):
    x = _layout(torch.randn(2, 6, 7, 8, dtype=torch.double), channels_last)
    for multiplier in [1, 2]:
        w = torch.randn(6, multiplier, 3, 3, dtype=torch.double)
        kw = dict(stride=stride, padding=padding, output_padding=output_padding, groups=6)
        torch.testing.assert_close(CF.conv_transpose2d(x, w, **kw), F.conv_transpose2d(x, w, **kw))


@pytest.mark.parametrize("channels_last", [False, True])
def test_gradgradcheck(channels_last):
    x = _layout(torch.randn(1, 3, 6, 5, dtype=torch.double), channels_last).requires_grad_()
    w = torch.randn(6, 1, 3, 3, dtype=torch.double, requires_grad=True)
    fn = lambda a, b: CF.conv2d(a, b, stride=2, padding=1, dilation=1, groups=3)  # noqa: E731
    torch.autograd.gradcheck(fn, (x, w))
    torch.autograd.gradgradcheck(fn, (x, w))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_types_accumulate_in_float32(dtype):
    x = torch.randn(2, 8, 12, 12).to(dtype)
    w = torch.randn(8, 1, 3, 3).to(dtype)
    ours = CF.conv2d(x, w, padding=1, groups=8).float()
    exact = F.conv2d(x.double(), w.double(), padding=1, groups=8).float()
    # One rounding of the float32 sum to the half type.
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(ours, exact, rtol=eps, atol=eps * exact.abs().max().item())


# bfloat16 channels_last forwards in bands of output rows widened to float32 (2-d, multiplier
# 1): the same bits as the float32 conv rounded once (the sums and their order are its), in
# channels_last; bands of one row (a wide image), a partial last band, NaN inputs, the bias.
@pytest.mark.parametrize("geometry", [
    dict(size=(17, 23), kernel=3, stride=1, padding=1, dilation=1, channels=40),
    dict(size=(56, 56), kernel=3, stride=2, padding=1, dilation=1, channels=24),
    dict(size=(9, 600), kernel=5, stride=1, padding=2, dilation=1, channels=40),
    dict(size=(11, 10), kernel=3, stride=(2, 1), padding=2, dilation=2, channels=7),
    dict(size=(7, 7), kernel=7, stride=1, padding=3, dilation=1, channels=96),
    dict(size=(30, 4), kernel=(5, 1), stride=3, padding=(1, 0), dilation=1, channels=1),
], ids=lambda g: f"{g['size']} k{g['kernel']} s{g['stride']} C{g['channels']}")
@pytest.mark.parametrize("bias", [False, True])
def test_bfloat16_channels_last_is_float32_rounded_once(geometry, bias):
    channels, kernel = geometry["channels"], geometry["kernel"]
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = torch.randn(3, channels, *geometry["size"]).bfloat16()
    x[1, 0, 2, 3] = float("nan")
    x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(channels, 1, *kernel).bfloat16()
    b = torch.randn(channels).bfloat16() if bias else None
    kw = dict(stride=geometry["stride"], padding=geometry["padding"],
              dilation=geometry["dilation"], groups=channels)
    out = CF.conv2d(x, w, b, **kw)
    expected = F.conv2d(x.double(), w.double(), None if b is None else b.double(), **kw)
    once = CF.conv2d(x.float(), w.float(), None if b is None else b.float(), **kw).bfloat16()
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out.isnan(), once.isnan()) and out.isnan().any()
    assert torch.equal(out.nan_to_num(0).view(torch.int16), once.nan_to_num(0).view(torch.int16))
    eps = torch.finfo(torch.bfloat16).eps
    torch.testing.assert_close(out.double(), expected, rtol=eps, atol=eps, equal_nan=True)


# The channel-vector kernels (multiplier 1, float32/float64): NCHW through 16-channel blocks,
# channels_last as it is. Channel counts around the block and vector widths, strides that
# split the image columns into phases for the input gradient, dilation, padding, 3-d.
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.double])
@pytest.mark.parametrize("channels", [5, 16, 31, 48])
def test_channel_vector_kernels(channels, dtype, channels_last):
    for kernel, stride, padding, dilation in [(3, 1, 1, 1), (3, 2, 1, 1), (5, 2, 2, 1),
                                              (3, 3, 0, 2), (4, 2, 3, 1)]:
        assert _check(2, channels_last, channels, 1, kernel, stride, padding, dilation,
                      dtype=dtype, shapes={2: (19, 23)})


@pytest.mark.parametrize("channels_last", [False, True])
def test_channel_vector_kernels_3d_and_batch_one(channels_last):
    assert _check(3, channels_last, 20, 1, 3, 2, 1, 1, batch=1)
    assert _check(3, channels_last, 17, 1, 3, 1, 2, 2, batch=1, shapes={3: (6, 7, 9)})
    assert _check(1, False, 33, 1, 5, 2, 2, 1, batch=1, shapes={1: (37,)})


# Depth multipliers > 1 on the channel-vector kernels, through the image's channels repeated m
# times (depthwise_cpu.cpp): in channels_last all three ops, in NCHW the two gradients (the
# input gradient sums each channel's m copies).
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.double])
@pytest.mark.parametrize("multiplier", [2, 3, 4])
def test_multipliers_on_channel_vector_kernels(multiplier, dtype, channels_last):
    for channels, kernel, stride, padding, dilation in [(5, 3, 1, 1, 1), (17, 3, 2, 1, 1),
                                                        (8, 5, 1, 2, 2), (3, 7, 2, 3, 1)]:
        assert _check(2, channels_last, channels, multiplier, kernel, stride, padding, dilation,
                      dtype=dtype, shapes={2: (19, 23)})
    assert _check(3, channels_last, 6, multiplier, 3, 2, 1, 1, dtype=dtype, batch=1)


@pytest.mark.parametrize("channels_last", [False, True])
def test_channel_vector_weight_gradient_is_independent_of_threads(channels_last):
    x = _layout(torch.randn(3, 40, 17, 18), channels_last)
    w = torch.randn(40, 1, 3, 3)
    grad = _layout(torch.randn(3, 40, 9, 9), channels_last)
    args = ([2, 2], [1, 1, 1, 1], [1, 1], 40)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(torch.ops.convpool.conv_weight_grad(grad, x, list(w.shape), *args))
    finally:
        torch.set_num_threads(threads)
    for r in results[1:]:
        assert torch.equal(r, results[0])


# The row kernels of the channel-vector lines (depthwise_cl_lines.cpp): 3, 5 or 7 taps per kernel
# row at stride 1, 5 at stride 2, in blocks of 8 output pixels whose taps all lie in the image;
# the input gradient at stride 1 walks its rows backwards. Interior widths on both sides of whole
# blocks, kernels of other widths beside them (taken tap by tap), and dilation 2 (tap by tap).
# The forward's sums start from the bias (every other case has one).
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("width", [9, 10, 18, 27])
@pytest.mark.parametrize("kernel", [(3, 3), (5, 5), (3, 5), (5, 3), (1, 3), (3, 7), (7, 7)])
def test_row_kernels(kernel, width, channels_last):
    for stride, padding, dilation in [(1, 1, 1), (1, 0, 1), (2, 2, 1), (1, 2, 2)]:
        # 40 float32 channels: two-vector row blocks (5 taps, AVX-512), then a tail.
        for channels, dtype in [(9, torch.double), (24, torch.float32), (40, torch.float32)]:
            x = _layout(torch.randn(2, channels, max(6, 2 * kernel[0]), width, dtype=dtype),
                        channels_last)
            w = torch.randn(channels, 1, *kernel, dtype=dtype)
            b = torch.randn(channels, dtype=dtype) if stride == padding else None
            kw = dict(stride=stride, padding=padding, dilation=dilation, groups=channels)
            x.requires_grad_()
            w.requires_grad_()
            out = CF.conv2d(x, w, b, **kw)
            expected = F.conv2d(x, w, b, **kw)
            tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.double else {}
            torch.testing.assert_close(out, expected, **tol)
            grad = torch.randn_like(out)
            # The weight gradient sums a few hundred float32 products, in the vector width's
            # order (AVX-512 and AVX2 differ): float32 rounding of sums of magnitude ~15.
            if dtype == torch.float32:
                tol = dict(rtol=1e-5, atol=1e-4)
            for a, b in zip(torch.autograd.grad(out, (x, w), grad),
                            torch.autograd.grad(expected, (x, w), grad)):
                torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("channels_last", [False, True])
def test_row_kernels_3d(channels_last):
    assert _check(3, channels_last, 20, 1, 3, 1, 1, 1, dtype=torch.float32, shapes={3: (3, 4, 21)})
    assert _check(3, channels_last, 7, 1, 5, 2, 2, 1, shapes={3: (5, 5, 30)})


# Channel counts that are no multiple of a register finish in half and quarter registers before
# the scalar loop (depthwise_cl_lines.cpp): every split of a 16-float register, in both vector
# widths, through the line interiors, the row kernels and the weight-gradient sums; the forward
# with a bias (its sums start from it) where the stride is 1.
@pytest.mark.parametrize("bits", [256, 512])
# 256: pixels 1 KiB apart (rows with AVX-512, taps one by one with AVX2).
@pytest.mark.parametrize("channels", [1, 3, 4, 7, 12, 20, 29, 58, 72, 256])
def test_channel_tails_channels_last(channels, bits):
    from torch_convpool.testing import vector_width
    for kernel, stride, padding in [(3, 1, 1), (5, 2, 2), (7, 1, 3)]:
        x = torch.randn(2, channels, 11, 19).to(memory_format=torch.channels_last)
        w = torch.randn(channels, 1, kernel, kernel)
        b = torch.randn(channels) if stride == 1 else None
        x.requires_grad_()
        w.requires_grad_()
        kw = dict(stride=stride, padding=padding, groups=channels)
        with vector_width(bits):
            out = CF.conv2d(x, w, b, **kw)
            grad = torch.randn_like(out)
            ours = torch.autograd.grad(out, (x, w), grad)
        expected = F.conv2d(x, w, b, **kw)
        torch.testing.assert_close(out, expected)
        for a, b in zip(ours, torch.autograd.grad(expected, (x, w), grad)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


# Small maps under 5x5 and larger kernels take channel blocks staged zero-padded
# (depthwise_channels_last.cpp, padded_blocks_apply), in either layout: rows of every width the
# blocks split into (8, or 7 where the width is a multiple of 7, then 4, 2, 1 pixels; overlapping
# last blocks), the row form (3-, 5-, 7-tap
# rows) and the tap-by-tap form (dilation, 6-tap rows, AVX2), channel counts that leave a
# part-filled block, 'same' padding of an even kernel (more after than before), batch 1 and
# unbatched; and the input gradients, stride-1 conv_transposes that run as the same forward.
@pytest.mark.parametrize("bits", [256, 512])
@pytest.mark.parametrize("dtype", [torch.float32, torch.double])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_padded_blocks(bits, dtype, channels_last):
    from torch_convpool.testing import vector_width
    cases = [  # (channels, height, width), kernel, padding, dilation
        ((16, 7, 7), (7, 7), 3, 1), ((20, 7, 7), (5, 5), 2, 1), ((33, 9, 13), (7, 7), 3, 1),
        ((7, 5, 3), (5, 5), 2, 1), ((5, 4, 2), (5, 5), 2, 1), ((3, 6, 1), (5, 5), 2, 1),
        ((24, 14, 14), (9, 3), (4, 1), 1), ((17, 7, 9), (5, 5), 4, 2), ((18, 8, 8), (6, 6), "same", 1),
        ((16, 10, 11), (5, 7), (2, 3), 1), ((16, 5, 21), (5, 5), 2, 1), ((9, 6, 28), (7, 7), 3, 1),
    ]
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.double else dict(rtol=1e-5, atol=1e-5)
    for (channels, height, width), kernel, padding, dilation in cases:
        for batch in (None, 1, 3):
            shape = (channels, height, width) if batch is None else (batch, channels, height, width)
            x = torch.randn(shape, dtype=dtype)
            if batch is not None and channels_last:
                x = x.to(memory_format=torch.channels_last)
            w = torch.randn(channels, 1, *kernel, dtype=dtype)
            # The blocks start their sums from the bias; batch 1 runs without one, unbatched
            # inputs with a strided one (added after the kernel).
            b = None if batch == 1 else torch.randn(2 * channels, dtype=dtype)[::2]
            if batch == 3:
                b = b.contiguous()
            x.requires_grad_()
            kw = dict(padding=padding, dilation=dilation, groups=channels)
            with vector_width(bits):
                out = CF.conv2d(x, w, b, **kw)
                grad = torch.randn_like(out)
                # The input gradient: a stride-1 transpose, computed as the flipped forward.
                (ours,) = torch.autograd.grad(out, x, grad)
            expected = F.conv2d(x, w, b, **kw)
            torch.testing.assert_close(out, expected, **tol)
            torch.testing.assert_close(ours, torch.autograd.grad(expected, x, grad)[0], **tol)


def test_padded_blocks_3d_of_depth_one():
    """A 3-d depthwise conv of depth 1 is a 2-d one unless padded in depth (then its outer planes
    are the bias alone): only the first takes the 2-d staged blocks."""
    x = torch.randn(2, 16, 1, 7, 7)
    w = torch.randn(16, 1, 1, 5, 5)
    b = torch.randn(16)
    for padding in [(0, 2, 2), (1, 2, 2), (2, 3, 1)]:
        for layout in (torch.contiguous_format, torch.channels_last_3d):
            xl = x.to(memory_format=layout)
            torch.testing.assert_close(CF.conv3d(xl, w, b, padding=padding, groups=16),
                                       F.conv3d(xl, w, b, padding=padding, groups=16))


# Tensors past 24 MiB stream from memory and take the row kernels also for 3 taps at stride 2
# (depthwise_cl_lines.cpp; TapRows::streams): odd and even widths, padding 0 and 1, a channel
# tail, in both vector widths.
@pytest.mark.parametrize("bits", [256, 512])
@pytest.mark.parametrize("channels,width,padding", [(96, 113, 1), (100, 112, 0)])
def test_streaming_rows_stride_2(bits, channels, width, padding):
    from torch_convpool.testing import vector_width
    x = torch.randn(6, channels, 112, width).to(memory_format=torch.channels_last)
    assert x.nbytes > 24 << 20
    w = torch.randn(channels, 1, 3, 3)
    kw = dict(stride=2, padding=padding, groups=channels)
    with vector_width(bits):
        out = CF.conv2d(x, w, **kw)
    torch.testing.assert_close(out, F.conv2d(x, w, **kw))
