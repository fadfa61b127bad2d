"""Convolutions of complex and integer tensors, which torch's CPU convolutions accept too.

Complex: a convolution is bilinear in (input, weight), so with x = a + ib and w = c + id, Gauss's
trick gives it from three real convolutions of our own op, P = conv(a, c), Q = conv(b, d) and
R = conv(a + b, c + d): real part P - Q, imaginary part R - P - Q (bias: its real part in P, the
sum of its parts in R). Autograd differentiates through the split, as for any real op.

Integer: exact sums that wrap around as torch's do, computed tap by tap: each tap's strided view
of the (padded) input times that tap's weights is one integer GEMM (`torch.matmul`), and
conv_transpose scatters the same products back. Slow, like torch's integer path; integers never
need gradients. Which integer inputs torch's CPU accepts is irregular (every op for int64, only
undilated `conv` for the narrower types); we accept and reject the same.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

_NARROW_INTS = (torch.uint8, torch.int8, torch.int16, torch.int32)
_SCALAR_NAMES = {torch.bool: "Bool", torch.uint8: "Byte", torch.int8: "Char",
                 torch.int16: "Short", torch.int32: "Int", torch.int64: "Long"}


def handles(input: Tensor, weight: Tensor, bias: Optional[Tensor]) -> bool:
    """Whether this module computes the call: a complex or integer input whose weight and bias
    have its dtype (mismatches are left to the op, which names them)."""
    if input.is_floating_point() or input.dtype != weight.dtype:
        return False
    return bias is None or bias.dtype == input.dtype


def _meta(t: Optional[Tensor], dtype: torch.dtype) -> Optional[Tensor]:
    if t is None:
        return None
    return torch.empty_strided(t.shape, t.stride(), dtype=dtype, device="meta")


def convolution(transposed: bool, op: str, input: Tensor, weight: Tensor, bias: Optional[Tensor],
                stride: Sequence[int], pad: Sequence[int], dilation: Sequence[int],
                groups: int) -> Tensor:
    """Our op's call (pad as [before..., after...]) for a complex or integer input."""
    real_op = torch.ops.convpool.conv_transpose.default if transposed else torch.ops.convpool.conv.default

    def call(x: Tensor, w: Tensor, b: Optional[Tensor]) -> Tensor:
        return real_op(x, w, b, stride, pad, dilation, groups)

    if input.is_complex():
        return _complex(call, input, weight, bias)
    # Shapes and arguments are checked, and the result's size and layout found, by the op's
    # own meta kernel: one source of truth with the floating point path.
    like = call(_meta(input, torch.float32), _meta(weight, torch.float32),
                _meta(bias, torch.float32))
    result = torch.empty_strided(like.shape, like.stride(), dtype=input.dtype,
                                 device=input.device)
    if result.numel() == 0:  # torch answers an empty result whatever the dtype
        return result
    _check_integer(transposed, op, input, dilation)
    compute = _integer_conv_transpose if transposed else _integer_conv
    out = compute(input, weight, list(stride), list(pad), list(dilation), groups,
                  list(like.shape[2:]))
    if bias is not None:
        out += bias.reshape([1, -1] + [1] * (out.dim() - 2))
    return result.copy_(out)


def _complex(call: Callable, x: Tensor, w: Tensor, b: Optional[Tensor]) -> Tensor:
    xr, xi = torch.view_as_real(x.resolve_conj()).unbind(-1)
    wr, wi = torch.view_as_real(w.resolve_conj()).unbind(-1)
    br = bi = None
    if b is not None:
        br, bi = torch.view_as_real(b.resolve_conj()).unbind(-1)
    # Autocast leaves complex convolutions in their dtype (torch's too): the real parts must not
    # be cast to bfloat16 / float16 on their way through our op.
    with torch.autocast("cuda" if x.is_cuda else "cpu", enabled=False):
        p = call(xr, wr, br)
        q = call(xi, wi, None)
        r = call(xr + xi, wr + wi, None if b is None else br + bi)
    return torch.complex(p - q, r - p - q)


def _check_integer(transposed: bool, op: str, input: Tensor, dilation: Sequence[int]) -> None:
    name = _SCALAR_NAMES.get(input.dtype, str(input.dtype))
    narrow_ok = input.dtype in _NARROW_INTS and not transposed and all(d == 1 for d in dilation)
    if input.device.type != "cpu" or not (input.dtype == torch.int64 or narrow_ok):
        raise NotImplementedError(
            f'"{op}" not implemented for \'{name}\' on {input.device.type} (torch\'s '
            f"{input.device.type} convolutions do not take it either)"
        )


def _taps(kernel: Sequence[int]):
    return enumerate(itertools.product(*(range(k) for k in kernel)))


def _integer_conv(x: Tensor, w: Tensor, stride: list, pad: list, dilation: list, groups: int,
                  out_sizes: list) -> Tensor:
    dims = x.dim() - 2
    n, c, k = x.shape[0], x.shape[1], w.shape[0]
    # F.pad lists the last dimension first.
    xp = F.pad(x, [p for d in reversed(range(dims)) for p in (pad[d], pad[dims + d])])
    taps = math.prod(w.shape[2:])
    wt = w.reshape(groups, k // groups, c // groups, taps)
    acc = x.new_zeros(n, groups, k // groups, math.prod(out_sizes))
    for t, tap in _taps(w.shape[2:]):
        window = tuple(slice(i * d, i * d + s * (o - 1) + 1, s)
                       for i, d, s, o in zip(tap, dilation, stride, out_sizes))
        xt = xp[(slice(None), slice(None)) + window].reshape(n, groups, c // groups,
                                                             math.prod(out_sizes))
        acc += torch.matmul(wt[..., t], xt)
    return acc.reshape([n, k] + out_sizes)


def _integer_conv_transpose(x: Tensor, w: Tensor, stride: list, pad: list, dilation: list,
                            groups: int, out_sizes: list) -> Tensor:
    n, c_in, in_sizes = x.shape[0], x.shape[1], list(x.shape[2:])
    c_out = w.shape[1] * groups
    # Every product lands in the uncropped output; output_padding can reach past its end.
    full = [(i - 1) * s + d * (k - 1) + 1 for i, s, d, k in zip(in_sizes, stride, dilation,
                                                                  w.shape[2:])]
    span = [max(f, pad[d] + o) for d, (f, o) in enumerate(zip(full, out_sizes))]
    buf = x.new_zeros([n, c_out] + span)
    taps = math.prod(w.shape[2:])
    wt = w.reshape(groups, c_in // groups, c_out // groups, taps).transpose(1, 2)
    xg = x.reshape(n, groups, c_in // groups, math.prod(in_sizes))
    for t, tap in _taps(w.shape[2:]):
        window = tuple(slice(i * d, i * d + s * (m - 1) + 1, s)
                       for i, d, s, m in zip(tap, dilation, stride, in_sizes))
        buf[(slice(None), slice(None)) + window] += torch.matmul(wt[..., t], xg).reshape(
            [n, c_out] + in_sizes)
    crop = tuple(slice(pad[d], pad[d] + o) for d, o in enumerate(out_sizes))
    return buf[(slice(None), slice(None)) + crop]
