"""Plain-torch references for our ops (torch's built-ins, plus explicit padding where we go
beyond torch)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def ntuple(value, n):
    return [value] * n if isinstance(value, int) else list(value) * (n if len(value) == 1 else 1)


def tf_same_padding(lengths, kernel, stride, dilation):
    """TensorFlow's 'same' padding, written out here (not our _args.same_padding) so the tests
    check ours against an independent statement of the rule: output length ceil(L / s), total
    padding max((out - 1) * s + (k - 1) * d + 1 - L, 0), the smaller half before. Returns
    ([before...], [after...])."""
    before, after = [], []
    for length, k, s, d in zip(lengths, kernel, stride, dilation):
        out = -(-length // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - length, 0)
        before.append(total // 2)
        after.append(total - total // 2)
    return before, after


def torch_pad_list(before, after):
    """[before..., after...] per spatial dim as F.pad's last-dim-first list."""
    return [p for d in reversed(range(len(before))) for p in (before[d], after[d])]


def conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """torch's conv{1,2,3}d; 'same' with a stride is TensorFlow's rule, applied as an explicit pad."""
    dims = weight.dim() - 2
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[dims]
    stride_l = ntuple(stride, dims)
    if padding == "same" and any(s != 1 for s in stride_l):
        before, after = tf_same_padding(input.shape[-dims:], weight.shape[2:], stride_l,
                                        ntuple(dilation, dims))
        input = F.pad(input, torch_pad_list(before, after))
        padding = 0
    return fn(input, weight, bias, stride, padding, dilation, groups)


def conv_transpose(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                   dilation=1):
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[weight.dim() - 2]
    return fn(input, weight, bias, stride, padding, output_padding, groups, dilation)


_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _same_pad(x, dims, kernel, stride, dilation=1):
    k = ntuple(kernel, dims)
    s = ntuple(stride if stride is not None else kernel, dims)
    before, after = tf_same_padding(x.shape[-dims:], k, s, ntuple(dilation, dims))
    return torch_pad_list(before, after), s


def max_pool_same(x, dims, kernel, stride=None, dilation=1):
    """TensorFlow-'same' max pooling: pad with -inf (a padded element never wins)."""
    pad, s = _same_pad(x, dims, kernel, stride, dilation)
    return _MAX[dims](F.pad(x, pad, value=-float("inf")), kernel, s, 0, dilation)


def avg_pool_same(x, dims, kernel, stride=None):
    """TensorFlow-'same' average pooling: padded elements are not counted."""
    pad, s = _same_pad(x, dims, kernel, stride)
    total = _AVG[dims](F.pad(x, pad), kernel, s, 0)
    count = _AVG[dims](F.pad(torch.ones_like(x), pad), kernel, s, 0)
    return total / count


def float32_accumulation_bound(dtype, terms, exact, magnitude):
    """The largest error of a float16/bfloat16 result that sums `terms` products in float32 and
    rounds once to `dtype`, as every op of ours promises: Higham's bound for a float32 sum of n
    terms in any order, gamma_n * sum|term| with gamma_n = n u / (1 - n u) (Accuracy and
    Stability of Numerical Algorithms, 2nd ed., 3.1 and 4.2), plus half a unit in the last place
    of the rounded result (half the smallest subnormal below the normal range). `exact` is the
    float64 result from the same rounded inputs, `magnitude` sum|term| (the op on absolute
    values). A sum kept in `dtype` breaks it from a few terms on."""
    u32 = torch.finfo(torch.float32).eps / 2
    u = torch.finfo(dtype).eps / 2
    gamma = terms * u32 / (1 - terms * u32)
    sum_error = gamma * magnitude
    return u * (exact.abs() + sum_error) + sum_error + u * torch.finfo(dtype).tiny


def rounded_apart(device, dtype):
    """What the CPU's bfloat16 convolutions round before the end (see
    assert_float32_accumulation): the output before its bias and the weight gradient's
    per-block sums. Other dtypes and devices round once."""
    cpu_bfloat16 = device == "cpu" and dtype == torch.bfloat16
    return ("output", "grad of input 1") if cpu_bfloat16 else ()


def assert_float32_accumulation(ours, exact_fn, inputs, terms, rounded_apart=()):
    """ours(*inputs) on float16/bfloat16 `inputs`, and its gradient for every input, against
    exact_fn (torch's op, bilinear or linear in the inputs) in float64 on the same rounded
    values, within float32_accumulation_bound. `terms`: the longest sum in any of them.
    rounded_apart: the results ("output", "grad of input 1", ...) whose partial sums are rounded
    to the dtype before they are added up in float32 (the CPU's bfloat16 GEMMs, whose results
    cannot stay float32: the output before its bias, the weight gradient's per-block sums): a
    second rounding, of at most u * sum|term| in all."""
    dtype = inputs[0].dtype
    ours_in = [t.detach().requires_grad_() for t in inputs]
    exact_in = [t.detach().double().requires_grad_() for t in inputs]
    abs_in = [t.detach().double().abs().requires_grad_() for t in inputs]
    out = ours(*ours_in)
    exact, magnitude = exact_fn(*exact_in), exact_fn(*abs_in)
    g = torch.randn(exact.shape, dtype=torch.float64).to(device=exact.device, dtype=dtype)
    results = [("output", out, exact, magnitude)]
    results += zip([f"grad of input {i}" for i in range(len(inputs))],
                   torch.autograd.grad(out, ours_in, g),
                   torch.autograd.grad(exact, exact_in, g.double()),
                   torch.autograd.grad(magnitude, abs_in, g.double().abs()))
    for name, got, want, size in results:
        assert got.dtype == dtype, name
        error = (got.double() - want).abs()
        bound = float32_accumulation_bound(dtype, terms, want, size)
        if name in rounded_apart:
            bound = bound + torch.finfo(dtype).eps / 2 * size
        worst = (error - bound).argmax()
        assert bool((error <= bound).all()), (
            f"{name}: error {error.flatten()[worst].item():.3g} exceeds the float32-accumulation "
            f"bound {bound.flatten()[worst].item():.3g} at flat index {worst.item()}")
