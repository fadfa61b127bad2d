"""bfloat16 convolutions computed in bfloat16 (a bfloat16 GEMM accumulating in float32, no upcast)
against float64 and against torch's own bfloat16 convolutions: outputs, input and weight
gradients, over every path of the CPU's GEMM engine (NCHW, channels_last, strided, grouped,
1x1, small images, conv_transpose by phases, many-block weight gradients).

Tolerances follow from the arithmetic. The inputs are bfloat16, so every product is exact in
float32; the L-term sums are float32 (each addition off by at most eps32 / 2 of the running sum)
and the result is rounded to bfloat16 (eps16 / 2 of it). The output may be rounded twice (the
bias is added after the GEMM's rounding) and a weight gradient's GEMM calls hand back bfloat16
partial sums (see accumulate_gemm in gemm_conv_cpu.cpp): each element is within
    (eps16 + L * eps32) * sum_i |a_i b_i|
of the exact sum, with eps16 = finfo(bfloat16).eps = 2^-7 and eps32 = finfo(float32).eps, and
sum_i |a_i b_i| the same convolution of the absolute values.
"""
import pytest
import torch
import torch.nn.functional as F

import torch_convpool.functional as CF

CONV = {1: (CF.conv1d, F.conv1d), 2: (CF.conv2d, F.conv2d), 3: (CF.conv3d, F.conv3d)}
CONV_T = {1: (CF.conv_transpose1d, F.conv_transpose1d), 2: (CF.conv_transpose2d, F.conv_transpose2d),
          3: (CF.conv_transpose3d, F.conv_transpose3d)}
EPS16 = torch.finfo(torch.bfloat16).eps
EPS32 = torch.finfo(torch.float32).eps

# (dims, batch, channels, spatial, out channels, kernel, conv kwargs, channels_last)
CASES = {
    "3x3 NCHW": (2, 2, 16, (20, 20), 24, 3, dict(padding=1), False),
    "3x3 channels_last": (2, 2, 16, (20, 20), 24, 3, dict(padding=1), True),
    "3x3 stride 2": (2, 2, 16, (21, 19), 24, 3, dict(stride=2, padding=1), False),
    "3x3 dilation 2 groups 2": (2, 2, 16, (20, 20), 24, 3, dict(padding=2, dilation=2, groups=2), True),
    "1x1": (2, 2, 32, (16, 16), 48, 1, {}, False),
    "1x1 channels_last": (2, 2, 32, (16, 16), 48, 1, {}, True),
    "small image (7x7)": (2, 4, 32, (7, 7), 32, 3, dict(padding=1), False),
    "conv1d": (1, 2, 16, (50,), 24, 5, dict(padding=2), False),
    "conv3d": (3, 2, 8, (6, 7, 8), 16, 3, dict(padding=1), False),
    # many pixel blocks: the weight gradient sums dozens of GEMM calls (NCHW), and in
    # channels_last its whole-batch column matrix passes 16 MiB (blocks there too)
    "many blocks": (2, 16, 8, (32, 32), 16, 3, dict(padding=1), False),
    "many blocks channels_last": (2, 32, 32, (32, 32), 16, 3, dict(padding=1), True),
    # a reduction over 2048 channels, which oneDNN split between threads where it planned for two
    "1x1 over 2048 channels channels_last": (2, 4, 2048, (7, 7), 64, 1, {}, True),
}


def _operands(dims, batch, channels, spatial, out_channels, kernel, groups, channels_last,
              transpose=False):
    x = torch.randn(batch, channels, *spatial).bfloat16()
    w_shape = ((channels, out_channels // groups) if transpose
               else (out_channels, channels // groups)) + (kernel,) * dims
    w = torch.randn(w_shape).bfloat16()
    b = torch.randn(out_channels).bfloat16()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, w, b


def _value_and_grads(fn, x, w, b, grad_out=None, **kw):
    x, w, b = (t.detach().requires_grad_() for t in (x, w, b))
    out = fn(x, w, b, **kw)
    grad_out = torch.randn_like(out, dtype=torch.float32).to(out.dtype) if grad_out is None else grad_out
    return (out, *torch.autograd.grad(out, (x, w), grad_out)), grad_out


def _exact_and_bounds(fn, x, w, b, grad_out, length, **kw):
    """float64 values of the same bfloat16 operands, and each element's error bound."""
    x, w, b, go = (t.detach().double().requires_grad_() for t in (x, w, b, grad_out))
    out = fn(x, w, b, **kw)
    exact = (out, *torch.autograd.grad(out, (x, w), go))
    ax, aw, ab, ago = (t.detach().abs().requires_grad_() for t in (x, w, b, go))
    magnitude_out = fn(ax, aw, ab, **kw)
    magnitudes = (magnitude_out, *torch.autograd.grad(magnitude_out, (ax, aw), ago))
    return exact, [(EPS16 + n * EPS32) * m for n, m in zip(length, magnitudes)]


def _reduction_lengths(x, w, out, transpose):
    """Terms per output element, per input-gradient element, per weight-gradient element."""
    taps = w[0, 0].numel()
    per_output = (w.shape[0] if transpose else w.shape[1]) * taps
    per_input = (w.shape[1] if transpose else w.shape[0]) * taps
    per_weight = x.shape[0] * (x[0, 0].numel() if transpose else out[0, 0].numel())
    return per_output, per_input, per_weight


def _check(name, ours_fn, torch_fn, x, w, b, transpose=False, **kw):
    ours, grad_out = _value_and_grads(ours_fn, x, w, b, **kw)
    theirs, _ = _value_and_grads(torch_fn, x, w, b, grad_out, **kw)
    length = _reduction_lengths(x, w, ours[0], transpose)
    exact, bounds = _exact_and_bounds(torch_fn, x, w, b, grad_out, length, **kw)
    for what, o, t, e, bound in zip(("output", "input grad", "weight grad"), ours, theirs, exact,
                                    bounds):
        assert o.dtype == torch.bfloat16 and o.shape == t.shape
        error = (o.double() - e).abs()
        worst = (error / bound.clamp_min(1e-30)).max().item()
        assert worst <= 1, f"{name}, {what}: error {worst:.2f}x the bound"
        # Not worse than torch's bfloat16 convolution beyond the bias's second rounding and
        # the weight gradient's per-block roundings (rms over all elements).
        ours_rms = error.square().mean().sqrt().item()
        torch_rms = (t.double() - e).square().mean().sqrt().item()
        assert ours_rms <= 2 * torch_rms + 1e-6, f"{name}, {what}: rms {ours_rms} vs torch {torch_rms}"
    assert ours[0].is_contiguous(memory_format=torch.channels_last) == theirs[0].is_contiguous(
        memory_format=torch.channels_last)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("algorithm", ["auto", "gemm"])
def test_conv_bfloat16_against_float64_and_torch(case, algorithm):
    import torch_convpool

    dims, batch, channels, spatial, out_channels, kernel, kw, cl = CASES[case]
    x, w, b = _operands(dims, batch, channels, spatial, out_channels, kernel, kw.get("groups", 1), cl)
    with torch_convpool.set_conv_algorithm(algorithm):
        _check(case, *CONV[dims], x, w, b, **kw)


@pytest.mark.parametrize("stride,padding,output_padding", [(1, 1, 0), (2, 1, 1), (3, 2, 0)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_conv_transpose_bfloat16_against_float64_and_torch(stride, padding, output_padding,
                                                           channels_last):
    x, w, b = _operands(2, 2, 16, (9, 11), 24, 4, 1, channels_last, transpose=True)
    _check(f"conv_transpose stride {stride}", *CONV_T[2], x, w, b, transpose=True, stride=stride,
           padding=padding, output_padding=output_padding)


def _native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX-BF16)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def test_bfloat16_is_upcast_only_without_native_bfloat16():
    """Where the CPU multiplies bfloat16 natively, the dense path multiplies it as it is: no
    float32 copy of any operand. Elsewhere (bfloat16 GEMMs emulated, 30x slower than float32)
    the conv and its gradients are computed on float32 copies."""
    x, w, b = _operands(2, 2, 16, (20, 20), 24, 3, 1, False)
    x.requires_grad_()
    w.requires_grad_()
    with torch.profiler.profile() as prof:
        CF.conv2d(x, w, b, padding=1).float().sum().backward()
    casts = [e for e in prof.events() if e.name == "aten::_to_copy"]
    # the test's own .float() (and its backward) are two casts
    if _native_bfloat16():
        assert len(casts) <= 2, [e.name for e in casts]
    else:
        assert len(casts) > 2, [e.name for e in casts]


@pytest.mark.parametrize("op", ["conv", "conv_transpose"])
def test_non_finite_bfloat16_matches_torch(op):
    """inf and NaN reach the output as in torch's float32 convolution of the same values (the
    phase gather stands aside for them). torch's own bfloat16 conv_transpose (oneDNN) is not the
    reference here: it turns an inf weight into NaN over the whole output channel (161 NaN
    against 36 in float32 for this case)."""
    x = torch.randn(1, 4, 6, 6).bfloat16()
    w = torch.randn(4, 4, 3, 3).bfloat16()
    w[0, 0, 1, 1] = float("inf")
    x[0, 1, 2, 2] = float("nan")
    ours, theirs = (CF.conv2d, F.conv2d) if op == "conv" else (CF.conv_transpose2d, F.conv_transpose2d)
    a, e = ours(x, w, stride=2), theirs(x.float(), w.float(), stride=2)
    assert a.dtype == torch.bfloat16
    assert torch.equal(a.isnan(), e.isnan()) and torch.equal(a.isinf(), e.isinf())


@pytest.mark.parametrize("case", ["3x3 channels_last", "many blocks", "many blocks channels_last",
                                  "1x1 over 2048 channels channels_last"])
def test_bfloat16_bitwise_deterministic_across_thread_counts(case):
    """Every bfloat16 GEMM runs single-threaded on a fixed block or column slice, and partial sums
    are added in a fixed order: 1 and 2 threads give the same bits."""
    dims, batch, channels, spatial, out_channels, kernel, kw, cl = CASES[case]
    x, w, b = _operands(dims, batch, channels, spatial, out_channels, kernel, 1, cl)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            torch.manual_seed(1)
            results.append(_value_and_grads(CONV[dims][0], x, w, b, **kw)[0])
    finally:
        torch.set_num_threads(threads)
    for a, e in zip(*results):
        assert torch.equal(a, e)
