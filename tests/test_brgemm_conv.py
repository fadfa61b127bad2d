"""The bfloat16 implicit-GEMM path (csrc/conv/brgemm_conv_cpu.cpp; ATen's brgemm or our tiles,
amx_tiles.cpp, on AMX, our vdpbf16ps kernel, bf16_brgemm.cpp, on AVX512-BF16) at its edges: odd
channel counts (VNNI pairs the reduction rows), pixel counts that are not a multiple of the
blocks, stride 2, padding, dilation, groups, batch 1, 1-d and 3-d, both layouts; the output and
both gradients against float64 within the bounds of test_bfloat16_conv.py, and against torch's
own bfloat16 convolution. Each case runs under gemm_kernel "auto" (AMX where the CPU has it, else our kernel
where the CPU has AVX512-BF16), "packed" (our kernel even on AMX) and "blas" (the GEMM engine
where there is no AMX); a CPU with neither extension runs the engine throughout."""
import pytest
import torch
from test_bfloat16_conv import CONV, CONV_T, _check, _operands

from torch_convpool.testing import gemm_kernel

KERNELS = ["auto", "packed", "blas"]

# (dims, batch, channels, spatial, out channels, kernel, conv kwargs)
EDGES = {
    "odd channels": (2, 2, 7, (13, 17), 33, 3, dict(padding=1)),
    "one channel, batch 1": (2, 1, 1, (9, 11), 5, 3, dict(padding=1)),
    "three channels 7x7 stride 2 (stem)": (2, 2, 3, (30, 30), 16, 7, dict(stride=2, padding=3)),
    "stride 2 odd image": (2, 2, 16, (21, 19), 24, 3, dict(stride=2, padding=1)),
    "no padding 5x5": (2, 2, 5, (12, 12), 8, 5, {}),
    "dilation 2": (2, 2, 16, (20, 20), 24, 3, dict(padding=2, dilation=2)),
    "dilation (1, 2)": (2, 2, 8, (15, 20), 12, 3, dict(padding=(1, 2), dilation=(1, 2))),
    "groups 2 odd group channels": (2, 2, 10, (12, 12), 6, 3, dict(padding=1, groups=2)),
    "many pixel blocks": (2, 3, 16, (41, 43), 16, 3, dict(padding=1)),
    "over 64 output channels": (2, 2, 24, (10, 10), 200, 3, dict(padding=1)),
    "64 channels in and out": (2, 2, 64, (9, 10), 64, 3, dict(padding=1)),
    "48 output channels, long lines": (2, 1, 6, (3, 70), 48, 3, dict(padding=1)),
    "small 7x7 wide": (2, 4, 96, (7, 7), 80, 3, dict(padding=1)),
    # Our AMX tiles (amx_tiles.cpp): 32-channel blocks, taps x channels <= 768.
    "AMX tiles: one column tile, odd image": (2, 2, 32, (11, 13), 16, 3, dict(padding=1)),
    "AMX tiles: groups, dilation 2": (2, 2, 64, (10, 9), 48, 3,
                                      dict(padding=2, dilation=2, groups=2)),
    "AMX tiles: 7x7 maps, rows past the last pixel": (2, 3, 64, (7, 7), 64, 3, dict(padding=1)),
    "AMX tiles: conv1d": (1, 2, 64, (37,), 32, 3, dict(padding=1)),
    "AMX tiles: conv3d": (3, 1, 32, (4, 5, 6), 40, 3, dict(padding=1)),
    # Beyond 128 channels per group and 768 taps x channels: b read from L2, 5 channel blocks.
    "AMX tiles: 256 channels": (2, 2, 256, (6, 7), 72, 3, dict(padding=1)),
    "AMX tiles: 5x5, 2 groups of 160": (2, 1, 320, (8, 6), 64, 5, dict(padding=2, groups=2)),
    # The weight gradient on our tiles (48-96 channels per group): a group's rows rounded up to
    # 32 read the next group's planes and, after the last, the zero planes.
    "AMX weight-gradient tiles: 2 groups of 48": (2, 2, 96, (11, 9), 40, 3,
                                                  dict(padding=1, groups=2)),
    "AMX weight-gradient tiles: conv3d, 64 channels": (3, 1, 64, (3, 5, 6), 24, 3,
                                                       dict(padding=1)),
    "1x1": (2, 2, 32, (9, 9), 48, 1, {}),
    "1x1 stride 2": (2, 2, 32, (9, 9), 48, 1, dict(stride=2)),
    "1x1 groups 2": (2, 2, 32, (9, 9), 48, 1, dict(groups=2)),
    # channels_last 1x1s as two GEMMs over the batch: halves of the output channels from 128 on.
    "1x1 into 160 channels": (2, 3, 32, (5, 7), 160, 1, {}),
    "padding larger than the kernel reach": (2, 2, 4, (6, 6), 4, 3, dict(padding=3)),
    "conv1d": (1, 2, 9, (50,), 24, 5, dict(padding=2)),
    "conv3d": (3, 2, 8, (6, 7, 8), 16, 3, dict(padding=1)),
    "conv3d stride 2": (3, 1, 5, (7, 8, 9), 6, 3, dict(padding=1, stride=2)),
    # Our AMX tiles on gathered rows (strided, up to 32 channels per group): runs cut across the
    # 32-value steps, several pieces per step, column blocks, blocks across lines and samples.
    "gathered: groups, dilation 2, stride 2": (2, 2, 12, (17, 15), 20, 3,
                                               dict(stride=2, padding=2, dilation=2, groups=2)),
    "gathered: stride (2, 1), 5x5": (2, 3, 24, (19, 23), 40, 5, dict(stride=(2, 1), padding=(2, 0))),
    "gathered: 4x4 stride 4 (patchify stem)": (2, 2, 3, (16, 20), 96, 4, dict(stride=4)),
    "gathered: conv1d stride 2, 80 outputs": (1, 2, 32, (61,), 80, 7, dict(stride=2, padding=3)),
    "gathered: many pixel blocks": (2, 3, 8, (70, 45), 16, 3, dict(stride=2, padding=1)),
    # The strided weight gradient on our tiles (gathered_weight_grad.cpp): lines of output pixels
    # in blocks of 32 (the last one partial), each line split by stride phase.
    "gathered weight gradient: 64 channels, a partial block": (2, 2, 64, (9, 75), 40, 3,
                                                               dict(stride=2, padding=1)),
    "gathered weight gradient: stride 3, dilation 2": (2, 2, 6, (14, 29), 24, 3,
                                                       dict(stride=3, padding=2, dilation=2)),
}


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("case", list(EDGES))
def test_brgemm_edges(case, channels_last, kernel):
    _run_case(case, EDGES[case], channels_last, kernel, transpose=False)


def _run_case(name, case, channels_last, kernel, transpose):
    dims, batch, channels, spatial, out_channels, size, kw = case
    if channels_last and dims != 2:
        pytest.skip("the shared helper makes 2-d channels_last operands only")
    x, w, b = _operands(dims, batch, channels, spatial, out_channels, size, kw.get("groups", 1),
                        channels_last, transpose=transpose)
    if channels_last and not transpose:  # as a channels_last model's weights are: read in place
        w = w.contiguous(memory_format=torch.channels_last)
    with gemm_kernel(kernel):
        _check(name, *(CONV_T if transpose else CONV)[dims], x, w, b, transpose=transpose, **kw)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("padding", [0, 1, 3])
def test_brgemm_conv_transpose_stride_1(padding, channels_last, kernel):
    x, w, b = _operands(2, 2, 7, (9, 11), 10, 4, 1, channels_last, transpose=True)
    if channels_last:  # read transposed and flipped in place
        w = w.contiguous(memory_format=torch.channels_last)
    with gemm_kernel(kernel):
        _check(f"conv_transpose padding {padding}", *CONV_T[2], x, w, b, transpose=True,
               padding=padding)


# Strided conv_transposes, one stride-1 conv per phase (residue of the output position):
# (dims, batch, channels in, spatial, channels out, kernel, kwargs).
STRIDED_TRANSPOSES = {
    "4x4 stride 2 (a decoder's upsampling)": (2, 2, 32, (7, 9), 16, 4, dict(stride=2, padding=1)),
    "7x7 stride 2 into 3 (a stem's input gradient)": (2, 2, 64, (8, 8), 3, 7,
                                                       dict(stride=2, padding=3, output_padding=1)),
    "3x3 stride 2 output padding": (2, 1, 16, (5, 6), 24, 3,
                                    dict(stride=2, padding=1, output_padding=1)),
    "3x3 stride 2, 64 channels: a 1x1 phase on the tiles": (2, 2, 64, (5, 6), 24, 3,
                                                            dict(stride=2, padding=1)),
    "stride 3, kernel 2: phases no tap reaches": (2, 2, 8, (4, 5), 8, 2, dict(stride=3)),
    "stride (2, 1) groups 2": (2, 2, 32, (6, 7), 20, 3, dict(stride=(2, 1), padding=1, groups=2)),
    "stride 2 dilation 2": (2, 2, 16, (6, 6), 8, 3, dict(stride=2, dilation=2, padding=1)),
    "conv_transpose1d stride 4": (1, 2, 32, (9,), 16, 8, dict(stride=4, padding=2)),
    "conv_transpose3d stride 2": (3, 1, 32, (3, 4, 5), 8, 4, dict(stride=2, padding=1)),
}


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("case", list(STRIDED_TRANSPOSES))
def test_brgemm_conv_transpose_strided(case, channels_last, kernel):
    _run_case(case, STRIDED_TRANSPOSES[case], channels_last, kernel, transpose=True)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("channels, stride", [(16, 1), (8, 2)])
def test_brgemm_inf_and_nan_propagate_as_torch(channels, stride, kernel):
    # An inf in the input makes NaN (inf * 0) only where torch's conv makes it: the weight
    # gradient's dropped pixels, and the values a gathered row's loads read past its runs, must
    # not reach the result.
    x, w, b = _operands(2, 2, channels, (10, 12), 16, 3, 1, True)
    x = x.detach().clone()
    x[0, 3, 4, 5] = float("inf")
    x[1, 2, 0, 0] = float("nan")
    xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
    with gemm_kernel(kernel):
        y = CONV[2][0](xs, ws, b, padding=1, stride=stride)
        gy = torch.ones_like(y)
        gx, gw = torch.autograd.grad(y, (xs, ws), gy)
    xt, wt = x.clone().requires_grad_(), w.clone().requires_grad_()
    yt = CONV[2][1](xt, wt, b, padding=1, stride=stride)
    gxt, gwt = torch.autograd.grad(yt, (xt, wt), gy)
    for ours, theirs in ((y, yt), (gx, gxt), (gw, gwt)):
        assert torch.equal(ours.isnan(), theirs.isnan())
        assert torch.equal(ours.isinf(), theirs.isinf())


def test_brgemm_bitwise_deterministic_across_thread_counts():
    x, w, b = _operands(2, 4, 24, (30, 30), 40, 3, 1, True)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
            y = CONV[2][0](xs, ws, b, padding=1)
            results.append((y, *torch.autograd.grad(y, (xs, ws), torch.ones_like(y))))
    finally:
        torch.set_num_threads(threads)
    for a, e in zip(*results):
        assert torch.equal(a, e)
