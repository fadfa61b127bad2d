"""Our own GEMM (torch_convpool.testing.gemm_kernel("packed")) under every CPU engine that
multiplies through it, against torch: forward and all three gradients, both layouts, and shapes
that reach the GEMM's blocking edges (rows not a multiple of the register block, columns not a
multiple of a panel, more than one block of 256 inner rows or of 256 columns)."""

import pytest
import test_conv_algorithms as algorithm_tests
import torch
import torch.nn.functional as F
from test_conv_algorithms import CONV_CASES, TRANSPOSE_CASES, _compare, _conv_args
from torch.testing import assert_close

import torch_convpool as tc
import torch_convpool.functional as CF
from torch_convpool.testing import gemm_kernel


@pytest.fixture(params=["gemm", "winograd"])
def packed(request):
    with gemm_kernel("packed"), tc.set_conv_algorithm(request.param):
        yield request.param


BLOCKING_CASES = [
    # shape, out channels, kernel, stride, padding, dilation, groups
    ((2, 40, 9, 11), 300, (3, 3), 1, 1, 1, 1),   # inner 360: two blocks; 300 columns: two
    ((3, 7, 5, 13), 17, (1, 1), 1, 0, 1, 1),     # 17 columns: one panel and one of a column
    ((1, 64, 17, 3), 5, (3, 3), 2, 1, 1, 1),     # 5 columns, 18 rows of pixels
    ((2, 30, 6, 6), 520, (1, 1), 1, 0, 1, 2),    # groups, 260 columns each
    ((2, 128, 7, 7), 136, (3, 3), 1, 1, 1, 1),   # Winograd's batched variant: per-point GEMMs
    # A last panel of exactly one vector: 48 float32 columns (AVX-512), 24 float64 ones.
    ((2, 12, 5, 7), 48, (1, 1), 1, 0, 1, 1),
    ((2, 9, 4, 6), 24, (3, 3), 1, 1, 1, 1),
    # The conv by taps (tap_gemm_cpu.h): dilation 6 on 12x11 maps, 396 pixels in two blocks,
    # 300 outputs (and an input gradient of 260) in two column slices of its indirect GEMMs,
    # weight gradient slices of 260 channels.
    ((3, 260, 12, 11), 300, (3, 3), 1, 6, 6, 1),
]


# The algorithm tests' own bodies, run under the packed fixture (their `algorithm` argument only
# names the fixture that set the algorithm).
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("case", CONV_CASES + BLOCKING_CASES,
                         ids=lambda c: "x".join(map(str, c[0])) + f"-{c[1]}")
def test_conv_matches_torch(packed, case, channels_last):
    algorithm_tests.test_conv_matches_torch(packed, case, channels_last)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=lambda c: "x".join(map(str, c[0])))
def test_conv_transpose_matches_torch(packed, case, channels_last):
    algorithm_tests.test_conv_transpose_matches_torch(packed, case, channels_last)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("case", BLOCKING_CASES[:3] + BLOCKING_CASES[-2:],
                         ids=lambda c: "x".join(map(str, c[0])))
def test_float32(case, channels_last):
    """float32 through the GEMM engine (Winograd's float32 error is larger, and tested apart)."""
    shape, out_channels, kernel, stride, padding, dilation, groups = case
    x, w, b = _conv_args(shape, out_channels, kernel, groups, channels_last, torch.float32)
    with gemm_kernel("packed"), tc.set_conv_algorithm("gemm"):
        _compare(lambda x, w, b: CF.conv2d(x, w, b, stride, padding, dilation, groups),
                 lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation, groups), (x, w, b),
                 rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_gradcheck(packed, channels_last):
    # 18 output channels: a whole panel and a partial one at every vector width.
    x, w, b = _conv_args((1, 3, 5, 6), 18, (3, 3), 1, channels_last)
    fn = lambda x, w, b: CF.conv2d(x, w, b, 1, 1)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b))


def test_kernels_agree_and_setting_restores():
    """blas and packed give the same convolution to float rounding; the setting is restored on
    exit and a bad name is rejected with the names that are accepted."""
    from torch_convpool._library import _C
    x = torch.randn(2, 24, 10, 9).to(memory_format=torch.channels_last)
    w = torch.randn(33, 24, 3, 3)
    before = _C._gemm_kernel()
    results = []
    for name in ("blas", "packed", "auto"):
        with gemm_kernel(name), tc.set_conv_algorithm("gemm"):
            assert _C._gemm_kernel() == name
            results.append(CF.conv2d(x, w, padding=1, stride=2))
    assert _C._gemm_kernel() == before
    for r in results[1:]:
        assert_close(r, results[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="'auto', 'blas', 'packed'"):
        _C._set_gemm_kernel("fast")


# Float32 sums over a long inner dimension (C512 3x3: 4608 products per output) are made of
# blocks summed from zero and then added, as BLAS does: one chain over all of them (the register
# block reloading its partial sums) was 10x less accurate than torch. NCHW at batch 1 is the
# small-image GEMM (the weight as the broadcast operand), channels_last the packed engine.
@pytest.mark.parametrize("kernel", ["packed", "blas"])
@pytest.mark.parametrize("shape, out_channels", [((1, 512, 7, 7), 512), ((2, 512, 6, 5), 64)],
                         ids=["small-image", "engine"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_float32_long_sums_as_accurate_as_torch(kernel, shape, out_channels, channels_last):
    torch.manual_seed(0)
    x = torch.randn(*shape)
    w = torch.randn(out_channels, shape[1], 3, 3) / (9 * shape[1]) ** 0.5
    if channels_last:
        x, w = x.to(memory_format=torch.channels_last), w.to(memory_format=torch.channels_last)
    reference = F.conv2d(x.double(), w.double(), padding=1)
    with gemm_kernel(kernel), tc.set_conv_algorithm("gemm"):
        ours = CF.conv2d(x, w, padding=1)
    torch_error = (F.conv2d(x, w, padding=1).double() - reference).abs().max()
    assert (ours.double() - reference).abs().max() <= 3 * torch_error


# NCHW forwards whose weight (one group's) is over 2 MiB take the pixels as the GEMM's rows in
# blocks over the whole batch (conv_nchw_pixel_rows): 1x1 convs, and small maps of at most 9 taps.
# Blocks straddle samples (batch 5 of 7x7 maps: 245 pixels in two blocks), bias, groups, odd
# maps, float64 with every gradient.
PIXEL_ROWS_CASES = [
    # shape, out channels, kernel, stride, padding, groups
    ((5, 1024, 7, 7), 640, 1, 1, 0, 1),      # 1x1, 2.5 MiB
    ((2, 1024, 5, 9), 520, 1, 1, 0, 1),      # an odd map, 90 pixels in two blocks
    ((1, 1024, 7, 7), 640, 1, 1, 0, 1),      # batch 1: too few pixels, MKL (or ours) as before
    ((3, 1024, 19, 21), 520, 1, 2, 0, 1),    # 1x1 stride 2 to 10x11 maps
    ((8, 2048, 3, 3), 1280, 1, 1, 0, 2),     # two groups of 2.5 MiB
    ((5, 256, 15, 15), 320, 3, 2, 1, 1),     # 3x3 stride 2 to 8x8 maps, 2.8 MiB
    ((3, 288, 11, 9), 256, 3, 1, 1, 1),      # 3x3 stride 1 (the GEMM engine forced)
]
# (With at most 256 pixels in the whole batch the small-image GEMM takes the strided ones.)


@pytest.mark.parametrize("kernel", ["packed", "auto"])
@pytest.mark.parametrize("case", PIXEL_ROWS_CASES, ids=lambda c: "x".join(map(str, c[0])))
def test_nchw_pixel_rows_float32(kernel, case):
    shape, out_channels, size, stride, padding, groups = case
    x, w, b = _conv_args(shape, out_channels, (size, size), groups, False, torch.float32)
    with gemm_kernel(kernel), tc.set_conv_algorithm("gemm"), torch.no_grad():
        ours = CF.conv2d(x, w, b, stride, padding, 1, groups)
    expected = F.conv2d(x, w, b, stride, padding, 1, groups)
    assert ours.is_contiguous()
    assert_close(ours, expected, rtol=1e-4, atol=1e-3)  # sums of up to 2304 products


def test_nchw_pixel_rows_float64_gradients():
    # 1x1 C640 -> 512 in float64: 2.5 MiB; 7x7 maps at batch 3 straddle the blocks.
    x, w, b = _conv_args((3, 640, 7, 7), 512, (1, 1), 1, False, torch.float64)
    with gemm_kernel("packed"), tc.set_conv_algorithm("gemm"):
        _compare(lambda x, w, b: CF.conv2d(x, w, b), lambda x, w, b: F.conv2d(x, w, b), (x, w, b),
                 rtol=1e-10, atol=1e-10)


# 1x1 stride-1 conv_transposes (a 1x1 conv's input gradient) with such weights: the weight as it
# lies is the pixel-rows GEMM's operand (pointwise_transpose_by_pixel_rows).
@pytest.mark.parametrize("kernel", ["packed", "auto"])
@pytest.mark.parametrize("shape, out_channels, groups", [
    ((5, 1024, 7, 7), 640, 1), ((2, 1280, 5, 9), 1024, 2), ((8, 2048, 3, 3), 320, 1)],
    ids=["batch5", "groups2", "3x3map"])
def test_nchw_pixel_rows_conv_transpose(kernel, shape, out_channels, groups):
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(shape[1], out_channels // groups, 1, 1, dtype=torch.float64,
                    requires_grad=True)
    b = torch.randn(out_channels, dtype=torch.float64, requires_grad=True)
    with gemm_kernel(kernel), tc.set_conv_algorithm("gemm"):
        _compare(lambda x, w, b: CF.conv_transpose2d(x, w, b, groups=groups),
                 lambda x, w, b: F.conv_transpose2d(x, w, b, groups=groups), (x, w, b),
                 rtol=1e-10, atol=1e-10)


# channels_last forwards and weight gradients with weights over 2 MiB: our GEMM under "auto" too
# where blocks of pixels keep both cores busy (conv_cl, weight_grad_cl), MKL with the output
# channels split where they do not (a 5x5 map at batch 2).
@pytest.mark.parametrize("shape, stride", [((3, 128, 16, 16), 1), ((2, 128, 5, 5), 2)],
                         ids=["blocks", "channel-split"])
def test_channels_last_large_weights(shape, stride):
    x, w, b = _conv_args(shape, 256, (3, 3), 1, True)  # float64: 2.25 MiB of weights
    with tc.set_conv_algorithm("gemm"):
        _compare(lambda x, w, b: CF.conv2d(x, w, b, stride, 1),
                 lambda x, w, b: F.conv2d(x, w, b, stride, 1), (x, w, b))
