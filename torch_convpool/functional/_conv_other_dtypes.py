"""Convolutions of complex and integer tensors, which torch's CPU convolutions accept too.

Complex: a convolution is bilinear in (input, weight), so with x = a + ib and w = c + id, Gauss's
trick gives it from three real convolutions of our own op, P = conv(a, c), Q = conv(b, d) and
R = conv(a + b, c + d): real part P - Q, imaginary part R - P - Q (bias: its real part in P, the
sum of its parts in R). Autograd differentiates through the split, as for any real op.

Integer: exact sums that wrap around as torch's do, computed tap by tap through integer GEMMs
(_conv_taps.py). Slow, like torch's integer path; integers never need gradients. Which integer
inputs torch's CPU accepts is irregular (every op for int64, only undilated `conv` for the
narrower types); we accept and reject the same.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from . import _conv_taps as taps

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
    check_integer(transposed, op, input, dilation)
    return result.copy_(taps.convolution(transposed, op, input, weight, bias, stride, pad,
                                         dilation, groups))


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


def check_integer(transposed: bool, op: str, input: Tensor, dilation: Sequence[int]) -> None:
    name = _SCALAR_NAMES.get(input.dtype, str(input.dtype))
    narrow_ok = input.dtype in _NARROW_INTS and not transposed and all(d == 1 for d in dilation)
    if input.device.type != "cpu" or not (input.dtype == torch.int64 or narrow_ok):
        raise NotImplementedError(
            f'"{op}" not implemented for \'{name}\' on {input.device.type} (torch\'s '
            f"{input.device.type} convolutions do not take it either)"
        )
