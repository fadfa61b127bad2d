"""Property-based tests (hypothesis) of the CPU fast paths that only wide or specially shaped
convs reach, so the general draws of test_fuzz_conv.py never do: Winograd's batched variant
(from 128 x 128 channels), the depthwise line kernels (any channel count, stride, dilation,
padding), the grouped kernels (4-64 channels per group, multiples of 4, and with one group few
input channels in channels_last; the stride-1 patch kernel in float32), NCHW convs with many
taps staged through our channels_last copies (and the copies themselves), few pixels with many
output channels (the GEMM blocks cut along the channels), small NCHW images with a large weight
(the weight as the GEMM's broadcast operand), the taps engine (64+ channels per group, strided
or reading padding), the bfloat16 implicit GEMM on AMX (stride 1, <= 128 channels per group)
and our AMX tiles (32-channel blocks; on gathered rows for strided convs), the dot-product
kernel of convs into few output channels, and stride-1 conv_transposes from few channels (the
line kernel). Values and the gradients of input, weight and bias against torch (float64), or
against float64 within the bfloat16 bounds of test_bfloat16_conv.py; both memory layouts, batch
1 and unbatched."""
import torch
import torch.nn.functional as F
from fuzz_support import compare, leaves, size_arg, tensors
from hypothesis import assume, given
from hypothesis import strategies as st
from test_bfloat16_conv import _exact_and_bounds, _reduction_lengths, _value_and_grads

import torch_convpool as tc
import torch_convpool.functional as CF
from torch_convpool.testing import gemm_kernel, vector_width

TOL = dict(rtol=1e-10, atol=1e-10)
LAYOUT = st.sampled_from(["contiguous", "channels_last"])


@given(data=st.data())
def test_batched_winograd_matches_torch(data):
    """3x3 stride-1 convs and their transposes with 128 x 128 channels or more: tiles that
    overhang the output, channel counts off the vector width, batch 1 and unbatched."""
    cin, cout = data.draw(st.integers(128, 140)), data.draw(st.integers(128, 140))
    batch = data.draw(st.sampled_from([None, 1, 2]))
    spatial = [data.draw(st.integers(1, 9)) for _ in range(2)]
    padding = tuple(data.draw(st.integers(0, 3)) for _ in range(2))
    transpose = data.draw(st.booleans())
    layout = data.draw(LAYOUT)
    x = data.draw(tensors(((batch,) if batch else ()) + (cin, *spatial), layout))
    w = data.draw(tensors((cin, cout, 3, 3) if transpose else (cout, cin, 3, 3), layout))
    b = data.draw(tensors((cout,)))
    leaves((x, w, b))
    name = "conv_transpose2d" if transpose else "conv2d"
    with tc.set_conv_algorithm("winograd"):
        compare(lambda x, w, b: CF.__dict__[name](x, w, b, 1, padding),
                lambda x, w, b: F.__dict__[name](x, w, b, 1, padding), (x, w, b), **TOL)


@given(data=st.data())
def test_depthwise_matches_torch(data):
    """Depthwise convs (one group per input channel, depth multiplier 1-3: above 1 the image's
    channels repeated): channel counts around the 16-lane blocks, any kernel, stride, dilation
    and padding."""
    channels = data.draw(st.integers(1, 40))
    multiplier = data.draw(st.sampled_from([1, 1, 2, 3]))
    batch = data.draw(st.sampled_from([None, 1, 2]))
    spatial = [data.draw(st.integers(1, 12)) for _ in range(2)]
    kernel = [data.draw(st.integers(1, 5)) for _ in range(2)]
    stride, dilation = size_arg(data.draw, 2, 1, 3), size_arg(data.draw, 2, 1, 2)
    padding = size_arg(data.draw, 2, 0, 3)
    layout = data.draw(LAYOUT)
    x = data.draw(tensors(((batch,) if batch else ()) + (channels, *spatial), layout))
    w = data.draw(tensors((channels * multiplier, 1, *kernel), layout))
    b = data.draw(tensors((channels * multiplier,)))
    leaves((x, w, b))
    compare(lambda x, w, b: CF.conv2d(x, w, b, stride, padding, dilation, channels),
            lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation, channels), (x, w, b),
            **TOL)


@given(data=st.data())
def test_grouped_matches_torch(data):
    """Grouped convs with 4-64 channels per group (multiples of 4, input and output counts
    apart), as RegNet and ResNeXt have them."""
    groups = data.draw(st.integers(2, 3))
    cg, kg = 4 * data.draw(st.integers(1, 6)), 4 * data.draw(st.integers(1, 6))
    batch = data.draw(st.sampled_from([None, 1, 2]))
    spatial = [data.draw(st.integers(1, 10)) for _ in range(2)]
    kernel = [data.draw(st.integers(1, 3)) for _ in range(2)]
    stride, dilation = size_arg(data.draw, 2, 1, 2), size_arg(data.draw, 2, 1, 2)
    padding = size_arg(data.draw, 2, 0, 2)
    layout = data.draw(LAYOUT)
    x = data.draw(tensors(((batch,) if batch else ()) + (groups * cg, *spatial), layout))
    w = data.draw(tensors((groups * kg, cg, *kernel), layout))
    b = data.draw(tensors((groups * kg,)))
    leaves((x, w, b))
    compare(lambda x, w, b: CF.conv2d(x, w, b, stride, padding, dilation, groups),
            lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation, groups), (x, w, b),
            **TOL)


@given(data=st.data())
def test_narrow_groups_match_torch(data):
    """Grouped convs and conv_transposes with 2-8 channels per group on either side, not both
    multiples of 4 (depthwise lanes, grouped_lanes_cpu.h): 1-3 dims, any kernel, stride,
    dilation and padding, either layout."""
    dims = data.draw(st.integers(1, 3))
    groups = data.draw(st.integers(2, 5))
    cg, kg = data.draw(st.integers(2, 8)), data.draw(st.integers(1, 8))
    assume(cg % 4 != 0 or kg % 4 != 0)
    transpose = data.draw(st.booleans())
    batch = data.draw(st.sampled_from([None, 1, 3]))
    spatial = [data.draw(st.integers(1, 9 if dims < 3 else 5)) for _ in range(dims)]
    kernel = [data.draw(st.integers(1, 3)) for _ in range(dims)]
    stride, dilation = size_arg(data.draw, dims, 1, 2), size_arg(data.draw, dims, 1, 2)
    padding = size_arg(data.draw, dims, 0, 2)
    layout = data.draw(LAYOUT)
    x = data.draw(tensors(((batch,) if batch else ()) + (groups * cg, *spatial), layout))
    w_shape = (groups * cg, kg, *kernel) if transpose else (groups * kg, cg, *kernel)
    w = data.draw(tensors(w_shape, layout))
    b = data.draw(tensors((groups * kg,)))
    leaves((x, w, b))
    name = f"conv_transpose{dims}d" if transpose else f"conv{dims}d"
    args = (stride, padding, 0, groups, dilation) if transpose else (stride, padding, dilation,
                                                                     groups)
    compare(lambda x, w, b: getattr(CF, name)(x, w, b, *args),
            lambda x, w, b: getattr(F, name)(x, w, b, *args), (x, w, b), **TOL)


@given(data=st.data())
def test_grouped_patch_matches_torch(data):
    """Grouped convs with as many input as output channels per group, in float32: the patch
    kernel (1, 2 or 4 groups per register, blocks of 7 pixels or one run, phase planes for
    strides), forward and the stride-1 input gradient, 1-3 dims, padding up to past the kernel's
    reach, dilation, odd group counts."""
    dims = data.draw(st.integers(1, 3))
    cg = data.draw(st.sampled_from([4, 8, 16, 24, 32]))
    groups = data.draw(st.integers(2, 5))
    batch = data.draw(st.sampled_from([None, 1, 2]))
    spatial = [data.draw(st.integers(1, 16 if dims < 3 else 6)) for _ in range(dims)]
    kernel = [data.draw(st.integers(1, 3)) for _ in range(dims)]
    dilation = size_arg(data.draw, dims, 1, 2)
    padding = size_arg(data.draw, dims, 0, 3)
    stride = size_arg(data.draw, dims, 1, 3)
    layout = data.draw(LAYOUT)
    x = data.draw(tensors(((batch,) if batch else ()) + (groups * cg, *spatial), layout)).float()
    w = data.draw(tensors((groups * cg, cg, *kernel), layout)).float()
    b = data.draw(tensors((groups * cg,))).float()
    leaves((x, w, b))
    conv = getattr(CF, f"conv{dims}d")
    reference = getattr(F, f"conv{dims}d")

    def theirs(x, w, b):
        # torch 2.14's float32 grouped conv crashes the process (SIGSEGV in oneDNN) on some
        # channels_last inputs, e.g. [2, 32, 14, 1], 1x1 kernel, groups 4, stride (1, 2),
        # padding 1, dilation 2, with a bias: the reference runs on an NCHW copy and returns in
        # the input's layout.
        out = reference(x.contiguous(), w.contiguous(), b, stride, padding, dilation, groups)
        if x.is_contiguous(memory_format=torch.channels_last) and x.dim() == 4:
            return out.contiguous(memory_format=torch.channels_last)
        if x.is_contiguous(memory_format=torch.channels_last_3d) and x.dim() == 5:
            return out.contiguous(memory_format=torch.channels_last_3d)
        return out

    with vector_width(data.draw(st.sampled_from([256, 512]))):  # AVX2's shapes, AVX-512's
        compare(lambda x, w, b: conv(x, w, b, stride, padding, dilation, groups), theirs,
                (x, w, b), rtol=1e-4, atol=1e-4)


@given(data=st.data())
def test_few_channels_direct_matches_torch(data):
    """One group, up to 16 input channels (an RGB stem) or a 1x1 kernel: the grouped line
    kernel with one group and its wide output-channel vectors (24, 32; with AVX-512 one block of
    48 or 64 for 33-64 channels, the last lanes padded), in channels_last and on NCHW bands
    staged through channels_last scratch; 2-d and 3-d, any kernel, stride, padding and
    dilation, with or without bias."""
    dims = data.draw(st.integers(2, 3))
    pointwise = data.draw(st.booleans())  # 1x1: up to 192 input channels
    cin = data.draw(st.integers(1, 40 if pointwise else 16))
    cout = data.draw(st.sampled_from([1, 4, 5, 8, 12, 17, 24, 32, 40, 48, 58, 64]))  # any: padded
    batch = data.draw(st.integers(1, 2))
    spatial = [data.draw(st.integers(1, 12 if dims == 2 else 6)) for _ in range(dims)]
    kernel = [1 if pointwise else data.draw(st.integers(1, 7 if dims == 2 else 3))
              for _ in range(dims)]
    stride, dilation = size_arg(data.draw, dims, 1, 3), size_arg(data.draw, dims, 1, 2)
    padding = size_arg(data.draw, dims, 0, 3)
    x = data.draw(tensors((batch, cin, *spatial), data.draw(LAYOUT)))
    w = data.draw(tensors((cout, cin, *kernel)))
    b = data.draw(tensors((cout,))) if data.draw(st.booleans()) else None
    leaves([t for t in (x, w, b) if t is not None])
    ours, theirs = (CF.conv2d, F.conv2d) if dims == 2 else (CF.conv3d, F.conv3d)
    compare(lambda *a: ours(*a, stride=stride, padding=padding, dilation=dilation),
            lambda *a: theirs(*a, stride=stride, padding=padding, dilation=dilation),
            (x, w, b), **TOL)


@given(data=st.data())
def test_wide_strided_stems_match_torch(data):
    """Stems and patch embeddings: few input channels, kernels up to 11 wide, strides up to the
    kernel (AlexNet's 11x11/4, a ViT's 16x16/16 scaled down), in both layouts: the line kernel's
    kernel rows read as one run, the GEMM engine's strided gathers (stride 4 by shuffles), and
    over 256 output channels the engine in channels_last too."""
    cin = data.draw(st.integers(1, 16))
    cout = data.draw(st.sampled_from([8, 40, 264]))
    kernel = [data.draw(st.integers(2, 11)) for _ in range(2)]
    stride = tuple(data.draw(st.integers(1, k)) for k in kernel)
    padding = tuple(data.draw(st.integers(0, k // 2)) for k in kernel)
    spatial = [data.draw(st.integers(k, k + 12)) for k in kernel]
    batch = data.draw(st.sampled_from([None, 1, 2]))
    layout = data.draw(LAYOUT)
    x = data.draw(tensors(((batch,) if batch else ()) + (cin, *spatial), layout))
    w = data.draw(tensors((cout, cin, *kernel), layout))
    b = data.draw(tensors((cout,))) if data.draw(st.booleans()) else None
    leaves([t for t in (x, w, b) if t is not None])
    compare(lambda *a: CF.conv2d(*a, stride=stride, padding=padding),
            lambda *a: F.conv2d(*a, stride=stride, padding=padding), (x, w, b), **TOL)


@given(data=st.data())
def test_few_output_channels_match_torch(data):
    """Convs into 1-12 output channels per group (a decoder's last layer, 64 -> 3; groups of 16+
    channels into 1-3) and stride-1 conv_transposes into 1-12 (their input gradients), 16+
    channels in, 1-3 dims, both layouts:
    the dot-product kernel's merged kernel rows, dilated runs, windows cut by the edges (padding
    up to past the kernel's reach, where the transpose's conv crops), runs off the vector width,
    and its weight gradient."""
    dims = data.draw(st.integers(1, 3))
    transpose = data.draw(st.booleans())
    groups = 1 if transpose else data.draw(st.sampled_from([1, 1, 2, 3]))
    cin = groups * data.draw(st.integers(14, 40 if groups == 1 else 20))
    cout = groups * data.draw(st.integers(1, 13))
    kernel = [data.draw(st.integers(1, 5 if dims < 3 else 3)) for _ in range(dims)]
    dilation = [data.draw(st.integers(1, 2)) for _ in range(dims)]
    stride = [1] * dims if transpose else [data.draw(st.integers(1, 3)) for _ in range(dims)]
    reach = [d * (k - 1) for d, k in zip(dilation, kernel)]
    padding = [data.draw(st.integers(0, r + 1 if transpose else max(r // 2, 0)))
               for r in reach]
    spatial = [data.draw(st.integers(max(1, r + 1 - 2 * p), r + 10 if dims < 3 else r + 4))
               for r, p in zip(reach, padding)]
    batch = data.draw(st.sampled_from([None, 1, 2]))
    layout = data.draw(LAYOUT)
    x = data.draw(tensors(((batch,) if batch else ()) + (cin, *spatial), layout))
    w = data.draw(tensors((cin, cout, *kernel) if transpose else (cout, cin // groups, *kernel),
                          layout))
    b = data.draw(tensors((cout,))) if data.draw(st.booleans()) else None
    leaves([t for t in (x, w, b) if t is not None])
    name = f"conv_transpose{dims}d" if transpose else f"conv{dims}d"
    kw = dict(stride=tuple(stride), padding=tuple(padding), dilation=tuple(dilation))
    if groups > 1:
        kw["groups"] = groups
    with vector_width(data.draw(st.sampled_from([256, 512]))):  # AVX2's blocks, AVX-512's
        compare(lambda *a: CF.__dict__[name](*a, **kw), lambda *a: F.__dict__[name](*a, **kw),
                (x, w, b), **TOL)


@given(data=st.data())
def test_few_channel_transposes_match_torch(data):
    """Stride-1 conv_transposes from 1-16 channels into more, or grouped from 1-12 per group into
    14-24 (the input gradients of convs into few channels): computed as the conv with the flipped,
    transposed weight by the line kernel, padding up to the kernel's reach (beyond it, the GEMM
    engine's phases)."""
    dims = data.draw(st.integers(1, 3))
    groups = data.draw(st.sampled_from([1, 1, 2, 3]))
    cin = groups * data.draw(st.integers(1, 16 if groups == 1 else 12))
    cout = groups * data.draw(st.integers(8, 40) if groups == 1 else st.integers(14, 24))
    kernel = [data.draw(st.integers(2, 5 if dims < 3 else 3)) for _ in range(dims)]
    dilation = [data.draw(st.integers(1, 2)) for _ in range(dims)]
    reach = [d * (k - 1) for d, k in zip(dilation, kernel)]
    padding = [data.draw(st.integers(0, r + 1)) for r in reach]
    spatial = [data.draw(st.integers(max(1, 2 * p - r), 2 * p + 8)) for r, p in zip(reach, padding)]
    batch = data.draw(st.sampled_from([None, 1, 2]))
    layout = data.draw(LAYOUT)
    x = data.draw(tensors(((batch,) if batch else ()) + (cin, *spatial), layout))
    w = data.draw(tensors((cin, cout // groups, *kernel), layout))
    b = data.draw(tensors((cout,))) if data.draw(st.booleans()) else None
    leaves([t for t in (x, w, b) if t is not None])
    name = f"conv_transpose{dims}d"
    kw = dict(padding=tuple(padding), dilation=tuple(dilation), groups=groups)
    compare(lambda *a: CF.__dict__[name](*a, **kw), lambda *a: F.__dict__[name](*a, **kw),
            (x, w, b), **TOL)


@given(data=st.data())
def test_bfloat16_stride_one_within_bounds(data):
    """bfloat16 stride-1 convs (the implicit GEMM on AMX or AVX512-BF16 where the CPU has it):
    odd channel counts, kernels 2-5, padding, dilation, groups; every element of the output and
    both gradients within its error bound against float64."""
    groups = data.draw(st.integers(1, 2))
    cin, cout = groups * data.draw(st.integers(1, 12)), groups * data.draw(st.integers(1, 12))
    batch = data.draw(st.integers(1, 2))
    spatial = [data.draw(st.integers(3, 12)) for _ in range(2)]
    kernel = data.draw(st.integers(2, 5))
    padding, dilation = data.draw(st.integers(0, 3)), data.draw(st.integers(1, 2))
    assume(all(dilation * (kernel - 1) < s + 2 * padding for s in spatial))
    seed = data.draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cin, *spatial, generator=g).bfloat16()
    if data.draw(st.booleans()):
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(cout, cin // groups, kernel, kernel, generator=g).bfloat16()
    if data.draw(st.booleans()):
        w = w.contiguous(memory_format=torch.channels_last)
    b = torch.randn(cout, generator=g).bfloat16()
    kw = dict(padding=padding, dilation=dilation, groups=groups)
    # Each element within its bound. (test_bfloat16_conv.py also compares the RMS error with
    # torch's own bfloat16 conv; over the few dozen elements drawn here that ratio is chance.)
    _assert_within_bounds(seed, CF.conv2d, F.conv2d, x, w, b, **kw)


@given(data=st.data())
def test_bfloat16_amx_tiles_within_bounds(data):
    """bfloat16 stride-1 convs in blocks of 32 channels per group: our AMX tile kernel
    (amx_tiles.cpp) where the CPU has AMX, at any channel count undilated, taps x channels <= 768
    dilated. 1-3 dims, groups, output channels off the 16-column tiles, images whose last block
    of 32 rows runs past the last pixel, padding and dilation; every element of the output and
    both gradients within its bound against float64."""
    dims = data.draw(st.integers(1, 3))
    groups = data.draw(st.integers(1, 2))
    cg = data.draw(st.sampled_from([32, 64, 96, 160, 256]))
    kernel = [data.draw(st.integers(1, 3)) for _ in range(dims)]
    cout = groups * data.draw(st.integers(1, 40))
    batch = data.draw(st.integers(1, 2))
    spatial = [data.draw(st.integers(1, 12 if dims < 3 else 5)) for _ in range(dims)]
    padding = [data.draw(st.integers(0, 2)) for _ in range(dims)]
    dilation = [data.draw(st.integers(1, 2)) for _ in range(dims)]
    assume(cg * torch.Size(kernel).numel() <= 768 or all(d == 1 for d in dilation))
    assume(all(d * (k - 1) < s + 2 * p for d, k, s, p in zip(dilation, kernel, spatial, padding)))
    _assert_bfloat16_conv_within_bounds(data, batch, groups, cg, cout, spatial, kernel,
                                        any_weight_layout=True, padding=padding,
                                        dilation=dilation)


@given(data=st.data())
def test_bfloat16_strided_weight_grad_within_bounds(data):
    """bfloat16 strided convs of up to 64 channels per group, whose weight gradients run on our
    AMX tiles from stride-phase lines where the CPU has AMX (gathered_weight_grad.cpp): 1-3
    dims, groups, strides 2-3 (one dim may stay 1), dilation, padding, lines of output pixels
    longer than a block of 32, both layouts; every element of the output and both gradients
    within its bound against float64."""
    dims = data.draw(st.integers(1, 3))
    groups = data.draw(st.integers(1, 2))
    cg = data.draw(st.sampled_from([1, 3, 16, 33, 64]))
    kernel = [data.draw(st.integers(1, 5 if dims < 3 else 3)) for _ in range(dims)]
    assume(torch.Size(kernel).numel() > 1)
    stride = [data.draw(st.integers(1, 3)) for _ in range(dims)]
    assume(max(stride) > 1)
    dilation = [data.draw(st.integers(1, 2)) for _ in range(dims)]
    padding = [data.draw(st.integers(0, (k - 1) * d // 2 + 1)) for k, d in zip(kernel, dilation)]
    spatial = [data.draw(st.integers(1, 80 if dims == 1 else (72 if dims == 2 else 9)))
               for _ in range(dims)]
    assume(all(d * (k - 1) < s + 2 * p for d, k, s, p in zip(dilation, kernel, spatial, padding)))
    cout = groups * data.draw(st.integers(1, 40))
    batch = data.draw(st.integers(1, 2))
    _assert_bfloat16_conv_within_bounds(data, batch, groups, cg, cout, spatial, kernel,
                                        stride=stride, padding=padding, dilation=dilation)


def _assert_bfloat16_conv_within_bounds(data, batch, groups, cg, cout, spatial, kernel,
                                        any_weight_layout=False, **kw):
    """Draws a seed, builds bfloat16 x (either layout), w (either layout if any_weight_layout)
    and b of these shapes and checks our conv against torch's as _assert_within_bounds does."""
    seed = data.draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, groups * cg, *spatial, generator=g).bfloat16()
    x = _maybe_channels_last(data, x)
    w = torch.randn(cout, cg, *kernel, generator=g).bfloat16()
    if any_weight_layout:
        w = _maybe_channels_last(data, w)
    b = torch.randn(cout, generator=g).bfloat16()
    dims = len(spatial)
    ours_fn, torch_fn = getattr(CF, f"conv{dims}d"), getattr(F, f"conv{dims}d")
    _assert_within_bounds(seed, ours_fn, torch_fn, x, w, b, groups=groups, **kw)


def _assert_within_bounds(seed, ours_fn, torch_fn, x, w, b, transpose=False, **kw):
    """Every element of ours_fn's output and both gradients within its error bound against
    torch_fn in float64 (test_bfloat16_conv.py's bounds)."""
    ours, grad_out = _value_and_grads(ours_fn, x, w, b, **kw)
    length = _reduction_lengths(x, w, ours[0], transpose)
    exact, bounds = _exact_and_bounds(torch_fn, x, w, b, grad_out, length, **kw)
    for what, o, e, bound in zip(("output", "input grad", "weight grad"), ours, exact, bounds):
        worst = ((o.double() - e).abs() / bound.clamp_min(1e-30)).max().item()
        assert worst <= 1, f"seed {seed}, {what}: error {worst:.2f}x the bound"


def _maybe_channels_last(data, t):
    """t, or (as hypothesis draws) its channels_last copy where it has 2 or 3 spatial dims."""
    dims = t.dim() - 2
    if dims > 1 and data.draw(st.booleans()):
        return t.contiguous(memory_format=torch.channels_last if dims == 2
                            else torch.channels_last_3d)
    return t


@given(data=st.data())
def test_dead_taps_cropped_match_torch(data):
    """Kernels cropped to their live taps (live_taps.cpp): dilated kernels reaching past small
    images, padding up to the kernel's reach, strides, groups, 1-3 dims, either layout; float64
    values and all three gradients against torch's."""
    dims = data.draw(st.integers(1, 3))
    groups = data.draw(st.integers(1, 2))
    kernel = [data.draw(st.integers(1, 5 if dims < 3 else 3)) for _ in range(dims)]
    dilation = [data.draw(st.integers(1, 9)) for _ in range(dims)]
    stride = [data.draw(st.integers(1, 3)) for _ in range(dims)]
    spatial = [data.draw(st.integers(1, 10 if dims < 3 else 5)) for _ in range(dims)]
    padding = [data.draw(st.integers(0, d * (k - 1) + 1)) for d, k in zip(dilation, kernel)]
    assume(all(d * (k - 1) < s + 2 * p for d, k, s, p in zip(dilation, kernel, spatial, padding)))
    seed = data.draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    cin = groups * data.draw(st.integers(1, 6))
    cout = groups * data.draw(st.integers(1, 6))
    x = _maybe_channels_last(
        data, torch.randn(data.draw(st.integers(1, 2)), cin, *spatial, generator=g).double())
    w = _maybe_channels_last(
        data, torch.randn(cout, cin // groups, *kernel, generator=g).double())
    b = torch.randn(cout, generator=g).double()
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    ours_fn, torch_fn = getattr(CF, f"conv{dims}d"), getattr(F, f"conv{dims}d")
    args = [t.requires_grad_() for t in (x, w, b)]
    out, ref = ours_fn(*args, **kw), torch_fn(*args, **kw)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    grad = torch.randn(ref.shape, generator=g, dtype=torch.double)
    for a, e in zip(torch.autograd.grad(out, args, grad), torch.autograd.grad(ref, args, grad)):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)


@given(data=st.data())
def test_bfloat16_gathered_rows_within_bounds(data):
    """bfloat16 strided convs on up to 32 channels per group: our AMX tiles on rows gathered per
    block of pixels where the CPU has AMX (stems, grouped stride-2 convs). 1-3 dims, strides 2-4
    in some dims, kernels up to 7, runs cut across the 32-value steps, groups, output channels
    over one or two column blocks, padding and dilation; every element of the output and both
    gradients within its bound against float64."""
    dims = data.draw(st.integers(1, 3))
    groups = data.draw(st.integers(1, 3))
    cg = data.draw(st.integers(1, 32))
    kernel = [data.draw(st.integers(1, 7 if dims < 3 else 3)) for _ in range(dims)]
    stride = [data.draw(st.integers(1, 4)) for _ in range(dims)]
    assume(any(st_ > 1 for st_ in stride) and max(kernel) > 1)
    cout = groups * data.draw(st.integers(1, 70))
    batch = data.draw(st.integers(1, 2))
    spatial = [data.draw(st.integers(1, 20 if dims < 3 else 7)) for _ in range(dims)]
    padding = [data.draw(st.integers(0, 3)) for _ in range(dims)]
    dilation = [data.draw(st.integers(1, 2)) for _ in range(dims)]
    padding = [min(p, k // 2) for p, k in zip(padding, kernel)]
    assume(all(d * (k - 1) < s + 2 * p for d, k, s, p in zip(dilation, kernel, spatial, padding)))
    _assert_bfloat16_conv_within_bounds(data, batch, groups, cg, cout, spatial, kernel,
                                        stride=stride, padding=padding, dilation=dilation)


@given(data=st.data())
def test_bfloat16_strided_transposes_within_bounds(data):
    """bfloat16 strided conv_transposes, one stride-1 conv per phase on the bfloat16 micro-kernels
    (brgemm_conv_cpu.cpp): 1-3 dims, strides 2-3 in some dims, kernels shorter than the stride
    (phases no tap reaches), output_padding, groups, dilation; every element of the output and
    both gradients within its bound against float64."""
    dims = data.draw(st.integers(1, 3))
    groups = data.draw(st.integers(1, 2))
    cin, cout = groups * data.draw(st.integers(1, 40)), groups * data.draw(st.integers(1, 12))
    kernel = [data.draw(st.integers(1, 5 if dims < 3 else 3)) for _ in range(dims)]
    stride = [data.draw(st.integers(1, 3)) for _ in range(dims)]
    assume(any(s_ > 1 for s_ in stride))
    dilation = [data.draw(st.integers(1, 2)) for _ in range(dims)]
    padding = [data.draw(st.integers(0, d * (k - 1))) for d, k in zip(dilation, kernel)]
    output_padding = [data.draw(st.integers(0, max(s_, d) - 1)) for s_, d in zip(stride, dilation)]
    spatial = [data.draw(st.integers(1, 9 if dims < 3 else 4)) for _ in range(dims)]
    batch = data.draw(st.integers(1, 2))
    seed = data.draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    x = _maybe_channels_last(data, torch.randn(batch, cin, *spatial, generator=g).bfloat16())
    w = torch.randn(cin, cout // groups, *kernel, generator=g).bfloat16()
    b = torch.randn(cout, generator=g).bfloat16()
    kw = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups,
              dilation=dilation)
    torch_fn = getattr(F, f"conv_transpose{dims}d")
    try:
        torch_fn(x[:1, :, ...].double(), w.double(), None, **kw)
    except RuntimeError:
        assume(False)  # a geometry torch rejects (an empty output)
    _assert_within_bounds(seed, getattr(CF, f"conv_transpose{dims}d"), torch_fn, x, w, b,
                          transpose=True, **kw)


@given(data=st.data())
def test_bfloat16_channels_last_depthwise_is_float32_rounded_once(data):
    """bfloat16 channels_last depthwise forwards in bands of rows (depthwise_channels_last.cpp):
    the bits of our float32 conv rounded once, for any kernel, stride, dilation, padding and
    channel count, with and without a bias."""
    channels = data.draw(st.integers(1, 70))
    kernel = [data.draw(st.integers(1, 7)) for _ in range(2)]
    stride = [data.draw(st.integers(1, 3)) for _ in range(2)]
    dilation = [data.draw(st.integers(1, 2)) for _ in range(2)]
    padding = [data.draw(st.integers(0, d * (k - 1))) for d, k in zip(dilation, kernel)]
    spatial = [data.draw(st.integers(1, 40)) for _ in range(2)]
    assume(all(d * (k - 1) < s + 2 * p for d, k, s, p in zip(dilation, kernel, spatial, padding)))
    seed = data.draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(data.draw(st.integers(1, 3)), channels, *spatial, generator=g).bfloat16()
    x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(channels, 1, *kernel, generator=g).bfloat16()
    b = torch.randn(channels, generator=g).bfloat16() if data.draw(st.booleans()) else None
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=channels)
    out = CF.conv2d(x, w, b, **kw)
    once = CF.conv2d(x.float(), w.float(), None if b is None else b.float(), **kw).bfloat16()
    # An input that is also NCHW-contiguous (one pixel, or one channel) gives torch's NCHW output.
    if not x.is_contiguous():
        assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out.view(torch.int16), once.view(torch.int16)), f"seed {seed}"


@given(data=st.data())
def test_packed_gemm_matches_torch(data):
    """Dense convs and their transposes over our own GEMM (gemm_kernel("packed")), GEMM engine or
    Winograd: output channels and inner sizes around its 16/32-column panels and 256-row blocks,
    groups, any stride, dilation and padding, batch 1 and unbatched."""
    groups = data.draw(st.sampled_from([1, 1, 2, 3]))
    cin = groups * data.draw(st.integers(1, 24))
    cout = groups * data.draw(st.integers(1, 40))
    batch = data.draw(st.sampled_from([None, 1, 2]))
    spatial = [data.draw(st.integers(1, 10)) for _ in range(2)]
    kernel = [data.draw(st.integers(1, 4)) for _ in range(2)]
    stride = tuple(data.draw(st.integers(1, 3)) for _ in range(2))
    dilation = tuple(data.draw(st.integers(1, 2)) for _ in range(2))
    padding = tuple(data.draw(st.integers(0, 2)) for _ in range(2))
    transpose = data.draw(st.booleans())
    layout = data.draw(LAYOUT)
    algorithm = data.draw(st.sampled_from(["gemm", "winograd"]))
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    if transpose:
        assume(all(p < e for p, e in zip(padding, extent)))
    else:
        assume(all(s + 2 * p >= e for s, p, e in zip(spatial, padding, extent)))
    x = data.draw(tensors(((batch,) if batch else ()) + (cin, *spatial), layout))
    shape = (cin, cout // groups, *kernel) if transpose else (cout, cin // groups, *kernel)
    w = data.draw(tensors(shape, layout))
    b = data.draw(tensors((cout,)))
    leaves((x, w, b))
    if transpose:
        ours = lambda x, w, b: CF.conv_transpose2d(x, w, b, stride, padding, 0, groups, dilation)  # noqa: E731
        theirs = lambda x, w, b: F.conv_transpose2d(x, w, b, stride, padding, 0, groups, dilation)  # noqa: E731
    else:
        ours = lambda x, w, b: CF.conv2d(x, w, b, stride, padding, dilation, groups)  # noqa: E731
        theirs = lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation, groups)  # noqa: E731
    with gemm_kernel("packed"), tc.set_conv_algorithm(algorithm):
        compare(ours, theirs, (x, w, b), **TOL)


@given(data=st.data())
def test_many_taps_nchw_via_channels_last_matches_torch(data):
    """NCHW convs with 7 or more taps over 16+ channels on both sides run on channels_last copies
    (the forward from 7 taps, the gradients from 25): kernel, stride, dilation and padding drawn,
    convs and conv_transposes, batch 1 and unbatched."""
    cin, cout = data.draw(st.integers(16, 20)), data.draw(st.integers(16, 20))
    batch = data.draw(st.sampled_from([None, 1, 2]))
    kernel = data.draw(st.sampled_from([(1, 7), (7, 1), (3, 3), (5, 5), (3, 5)]))
    spatial = [data.draw(st.integers(1, 9)) for _ in range(2)]
    stride = tuple(data.draw(st.integers(1, 2)) for _ in range(2))
    dilation = tuple(data.draw(st.integers(1, 2)) for _ in range(2))
    padding = tuple(data.draw(st.integers(0, 3)) for _ in range(2))
    transpose = data.draw(st.booleans())
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    if transpose:
        assume(all(p < e for p, e in zip(padding, extent)))
    else:
        assume(all(s + 2 * p >= e for s, p, e in zip(spatial, padding, extent)))
    x = data.draw(tensors(((batch,) if batch else ()) + (cin, *spatial), "contiguous"))
    shape = (cin, cout, *kernel) if transpose else (cout, cin, *kernel)
    w = data.draw(tensors(shape, "contiguous"))
    b = data.draw(tensors((cout,)))
    leaves((x, w, b))
    if transpose:
        ours = lambda x, w, b: CF.conv_transpose2d(x, w, b, stride, padding, 0, 1, dilation)  # noqa: E731
        theirs = lambda x, w, b: F.conv_transpose2d(x, w, b, stride, padding, 0, 1, dilation)  # noqa: E731
    else:
        ours = lambda x, w, b: CF.conv2d(x, w, b, stride, padding, dilation)  # noqa: E731
        theirs = lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation)  # noqa: E731
    compare(ours, theirs, (x, w, b), **TOL)


@given(data=st.data())
def test_few_pixels_many_output_channels_matches_torch(data):
    """Under 512 output pixels and 256+ output channels per group: the channels_last GEMM blocks
    cut along the output channels (an uneven last part), and the input gradient's sub-weights
    relaid for small maps (a single NCHW sample goes through channels_last); convs and
    conv_transposes, both layouts, with bias."""
    groups = data.draw(st.integers(1, 2))
    cin, cout = groups * data.draw(st.integers(1, 4)), groups * data.draw(st.integers(256, 280))
    batch = data.draw(st.sampled_from([None, 1, 2]))
    spatial = [data.draw(st.integers(1, 6)) for _ in range(2)]
    kernel = [data.draw(st.integers(1, 3)) for _ in range(2)]
    stride = tuple(data.draw(st.integers(1, 2)) for _ in range(2))
    padding = tuple(data.draw(st.integers(0, 1)) for _ in range(2))
    transpose = data.draw(st.booleans())
    algorithm = data.draw(st.sampled_from(["auto", "gemm"]))
    if transpose:
        assume(all(p < k for p, k in zip(padding, kernel)))
    else:
        assume(all(s + 2 * p >= k for s, p, k in zip(spatial, padding, kernel)))
    x = data.draw(tensors(((batch,) if batch else ()) + (cin, *spatial), data.draw(LAYOUT)))
    shape = (cin, cout // groups, *kernel) if transpose else (cout, cin // groups, *kernel)
    w = data.draw(tensors(shape))
    b = data.draw(tensors((cout,)))
    leaves((x, w, b))
    if transpose:
        ours = lambda x, w, b: CF.conv_transpose2d(x, w, b, stride, padding, 0, groups)  # noqa: E731
        theirs = lambda x, w, b: F.conv_transpose2d(x, w, b, stride, padding, 0, groups)  # noqa: E731
    else:
        ours = lambda x, w, b: CF.conv2d(x, w, b, stride, padding, 1, groups)  # noqa: E731
        theirs = lambda x, w, b: F.conv2d(x, w, b, stride, padding, 1, groups)  # noqa: E731
    with tc.set_conv_algorithm(algorithm):
        compare(ours, theirs, (x, w, b), **TOL)


@given(data=st.data())
def test_small_nchw_image_large_weight_matches_torch(data):
    """NCHW convs of at most 256 output pixels over the batch with a weight of 512 KiB or more:
    the weight as it lies is the GEMM's broadcast operand (small_image_gemm_cpu.cpp). 1-3 dims,
    stride, dilation, padding, with and without bias, batch 1-3 and unbatched."""
    dims = data.draw(st.integers(1, 3))
    cin, cout = data.draw(st.integers(64, 72)), data.draw(st.integers(128, 150))
    batch = data.draw(st.sampled_from([None, 1, 2, 3]))
    # at least 8 taps: 64 x 128 x 8 float64 weights are 512 KiB
    low, high = {1: (9, 11), 2: (3, 4), 3: (2, 3)}[dims]
    kernel = [data.draw(st.integers(low, high)) for _ in range(dims)]
    stride = tuple(data.draw(st.integers(1, 2)) for _ in range(dims))
    dilation = tuple(data.draw(st.integers(1, 2)) for _ in range(dims))
    padding = tuple(data.draw(st.integers(0, 2)) for _ in range(dims))
    spatial = [data.draw(st.integers(2, 12 if dims < 3 else 6)) for _ in range(dims)]
    taps = 1
    for k in kernel:
        taps *= k
    assume(cin * cout * taps * 8 >= 512 * 1024)
    outputs = 1
    for n, k, s, d, p in zip(spatial, kernel, stride, dilation, padding):
        span = n + 2 * p - d * (k - 1)
        assume(span >= 1)
        outputs *= (span - 1) // s + 1
    assume((batch or 1) * outputs <= 256)
    x = data.draw(tensors(((batch,) if batch else ()) + (cin, *spatial), "contiguous"))
    w = data.draw(tensors((cout, cin, *kernel)))
    b = data.draw(tensors((cout,))) if data.draw(st.booleans()) else None
    args = (x, w) if b is None else (x, w, b)
    leaves(args)
    fns = {1: (CF.conv1d, F.conv1d), 2: (CF.conv2d, F.conv2d), 3: (CF.conv3d, F.conv3d)}[dims]
    algorithm = data.draw(st.sampled_from(["auto", "gemm"]))
    with tc.set_conv_algorithm(algorithm):
        compare(lambda x, w, b=None: fns[0](x, w, b, stride, padding, dilation),
                lambda x, w, b=None: fns[1](x, w, b, stride, padding, dilation), args, **TOL)


@given(data=st.data())
def test_large_pointwise_nchw_via_channels_last_matches_torch(data):
    """NCHW 1x1 convs on maps of fewer than 256 pixels with a weight over 2 MiB (ResNet-50's last
    stage) run forward and input gradient on channels_last copies (gemm_conv_cpu.cpp
    large_pointwise_nchw): 2-d and 3-d, groups, with and without bias, batch 2-3."""
    dims = data.draw(st.integers(2, 3))
    groups = data.draw(st.sampled_from([1, 2]))
    cin = groups * data.draw(st.integers(520 // groups, 560 // groups))
    cout = groups * data.draw(st.integers(512, 530))
    assume(cin // groups * (cout // groups) * 8 > 2 * 1024 * 1024)
    batch = data.draw(st.integers(2, 3))
    spatial = [data.draw(st.integers(1, 9 if dims == 2 else 4)) for _ in range(dims)]
    x = data.draw(tensors((batch, cin, *spatial), "contiguous"))
    w = data.draw(tensors((cout, cin // groups) + (1,) * dims))
    b = data.draw(tensors((cout,))) if data.draw(st.booleans()) else None
    args = (x, w) if b is None else (x, w, b)
    leaves(args)
    fns = {2: (CF.conv2d, F.conv2d), 3: (CF.conv3d, F.conv3d)}[dims]
    compare(lambda x, w, b=None: fns[0](x, w, b, 1, 0, 1, groups),
            lambda x, w, b=None: fns[1](x, w, b, 1, 0, 1, groups), args, **TOL)


@given(data=st.data())
def test_layout_copy_matches_torch(data):
    """Our NCHW <-> channels_last copy (the staging of every NCHW path above) against torch's,
    over shapes around its 16 x 16 register tiles and 128 x 128 blocks, 4-d and 5-d."""
    from torch_convpool._library import _C

    dims = data.draw(st.sampled_from([4, 5]))
    shape = [data.draw(st.integers(1, 3)), data.draw(st.integers(1, 140))]
    shape += [data.draw(st.integers(1, 40 if dims == 4 else 9)) for _ in range(dims - 2)]
    dtype = data.draw(st.sampled_from([torch.float32, torch.float64, torch.bfloat16]))
    x = torch.randn(shape).to(dtype)
    cl = torch.channels_last if dims == 4 else torch.channels_last_3d
    assert torch.equal(_C._contiguous_as(x, cl), x)
    assert torch.equal(_C._contiguous_as(x.contiguous(memory_format=cl), torch.contiguous_format), x)


def _draw_conv_call(data, transpose, layout, batch, cin, cout, spatial, kernel, stride, padding,
                    dilation, groups):
    """Draws x, w, b for conv{dims}d or conv_transpose{dims}d (padding clipped to what the
    transpose accepts) and returns the op's name, its arguments after (x, w, b), and the leaves;
    draws whose output would be empty or negative are discarded (the error tests cover them)."""
    dims = len(spatial)
    x = data.draw(tensors((batch, cin, *spatial), layout))
    if transpose:
        padding = [min(p, (k - 1) * d) for p, k, d in zip(padding, kernel, dilation)]
        w = data.draw(tensors((cin, cout // groups, *kernel), layout))
        name, args = f"conv_transpose{dims}d", (stride, padding, 0, groups, dilation)
    else:
        w = data.draw(tensors((cout, cin // groups, *kernel), layout))
        name, args = f"conv{dims}d", (stride, padding, dilation, groups)
    b = data.draw(tensors((cout,)))
    leaves((x, w, b))
    try:
        F.__dict__[name](x.detach(), w.detach(), None, *args)
    except RuntimeError:
        assume(False)
    return name, args, (x, w, b)


@given(data=st.data())
def test_live_tap_regions_match_torch(data):
    """Convs whose windows reach far into the padding (ASPP-like dilations), computed by the GEMM
    engine with only the taps inside the image (forced "gemm" takes it at any size): tap by tap
    through our GEMM (tap_gemm_cpu.h, where it computes the products: "packed", or "auto" on an
    AVX-512 AMD CPU), region by region through BLAS (live_taps.h, "blas"): 1-3 dims, stride,
    groups, regions that read no pixel, both layouts, conv and conv_transpose, values and all
    gradients."""
    dims = data.draw(st.integers(1, 3))
    groups = data.draw(st.integers(1, 2))
    cin, cout = (groups * data.draw(st.integers(1, 4)) for _ in range(2))
    spatial = [data.draw(st.integers(2, 12 if dims < 3 else 6)) for _ in range(dims)]
    kernel = [data.draw(st.integers(1, 4)) for _ in range(dims)]
    dilation = [data.draw(st.integers(1, 6)) for _ in range(dims)]
    stride = [data.draw(st.integers(1, 3)) for _ in range(dims)]
    padding = [data.draw(st.integers(0, (k - 1) * d + 2)) for k, d in zip(kernel, dilation)]
    transpose = data.draw(st.booleans())
    layout = data.draw(LAYOUT) if dims > 1 else "contiguous"
    batch = data.draw(st.sampled_from([1, 2]))
    name, args, operands = _draw_conv_call(data, transpose, layout, batch, cin, cout, spatial,
                                           kernel, stride, padding, dilation, groups)
    kernel = data.draw(st.sampled_from(["packed", "blas"]))
    with tc.set_conv_algorithm("gemm"), gemm_kernel(kernel):
        compare(lambda x, w, b: CF.__dict__[name](x, w, b, *args),
                lambda x, w, b: F.__dict__[name](x, w, b, *args), operands, **TOL)


@given(data=st.data())
def test_taps_engine_matches_torch(data):
    """Convs and conv_transposes over 64+ channels per group on each side that the taps engine
    (tap_gemm_cpu.h) computes under our GEMM: strided ones, windows reading padding with a tenth
    of their taps or more, dilation, asymmetric padding, groups, 2-d and 3-d, blocks of pixels
    cut anywhere (batch 1-3), both layouts; values and all gradients."""
    dims = data.draw(st.integers(2, 3))
    groups = data.draw(st.integers(1, 2))
    cin, cout = (groups * data.draw(st.integers(64, 72)) for _ in range(2))
    spatial = [data.draw(st.integers(3, 11 if dims == 2 else 5)) for _ in range(dims)]
    kernel = [data.draw(st.integers(1, 4 if dims == 2 else 3)) for _ in range(dims)]
    dilation = [data.draw(st.integers(1, 3)) for _ in range(dims)]
    stride = [data.draw(st.integers(1, 3)) for _ in range(dims)]
    padding = [data.draw(st.integers(0, (k - 1) * d + 1)) for k, d in zip(kernel, dilation)]
    transpose = data.draw(st.booleans())
    layout = data.draw(LAYOUT)
    batch = data.draw(st.integers(1, 3))
    name, args, operands = _draw_conv_call(data, transpose, layout, batch, cin, cout, spatial,
                                           kernel, stride, padding, dilation, groups)
    with tc.set_conv_algorithm("gemm"), gemm_kernel("packed"):
        compare(lambda x, w, b: CF.__dict__[name](x, w, b, *args),
                lambda x, w, b: F.__dict__[name](x, w, b, *args), operands, **TOL)


@given(data=st.data())
def test_bfloat16_grouped_few_channels_within_bounds(data):
    """bfloat16 grouped convs with 4-16 channels per group (ResNeXt, RegNet): the patch kernel on
    pairs of channels (vdpbf16ps) for the forward and the stride-1 input gradient, the float32
    patch kernel on float32 copies for the weight gradient, the float32 line kernels for strided
    input gradients. 1-3 dims, group counts that leave the last register of groups short, strides
    up to 4, kernels 1-5, padding, dilation, both layouts; every element of the output and both
    gradients within its bound against float64."""
    dims = data.draw(st.integers(1, 3))
    cg = data.draw(st.sampled_from([4, 8, 12, 16, 32]))
    groups = data.draw(st.integers(2, 9))
    kernel = [data.draw(st.integers(1, 5 if dims < 3 else 3)) for _ in range(dims)]
    stride = [data.draw(st.integers(1, 4)) for _ in range(dims)]
    dilation = [data.draw(st.integers(1, 2)) for _ in range(dims)]
    padding = [data.draw(st.integers(0, k // 2)) for k in kernel]
    spatial = [data.draw(st.integers(1, 16 if dims < 3 else 6)) for _ in range(dims)]
    assume(all(d * (k - 1) < s + 2 * p for d, k, s, p in zip(dilation, kernel, spatial, padding)))
    batch = data.draw(st.integers(1, 2))
    seed = data.draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, groups * cg, *spatial, generator=g).bfloat16()
    x = _maybe_channels_last(data, x)
    w = torch.randn(groups * cg, cg, *kernel, generator=g).bfloat16()
    b = torch.randn(groups * cg, generator=g).bfloat16()
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    ours_fn, torch_fn = getattr(CF, f"conv{dims}d"), getattr(F, f"conv{dims}d")
    _assert_within_bounds(seed, ours_fn, torch_fn, x, w, b, **kw)
