"""Convolution as a sum over its taps of GEMMs, in plain tensor operations.

Each tap's strided view of the padded input times that tap's weights is one `torch.matmul`;
conv_transpose is the convolution of the stride-zero-stuffed input with the flipped weights.
Nothing here is in place, so every torch function transform differentiates and batches through
it. It serves where our op cannot:
- under `torch.func` transforms (grad, vjp, jacrev, hessian, vmap of them): our op's C++
  autograd cannot run inside them (torch's rule for C++ autograd functions);
- integer inputs (exact, wrapping sums, see _conv_other_dtypes.py).
Slow next to our kernels, as torch's own fallbacks for these cases are.
"""
from __future__ import annotations

import itertools
import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .._library import _C
from .._shapes import conv_output_shape, conv_transpose_output_shape


def transforms_active() -> bool:
    """Whether a torch.func transform (grad, vmap, jacrev, ...) is running eagerly (while
    torch.compile traces, the graph's own autograd differentiates our op)."""
    return (torch._C._functorch.peek_interpreter_stack() is not None
            and not torch.compiler.is_compiling())


def conv(x: Tensor, w: Tensor, stride: Sequence[int], pad: Sequence[int],
         dilation: Sequence[int], groups: int, out_sizes: Sequence[int]) -> Tensor:
    """conv of x [N, C, ...] with w [K, C / groups, ...]; pad as [before..., after...] (a negative
    entry crops)."""
    dims = x.dim() - 2
    n, c, k = x.shape[0], x.shape[1], w.shape[0]
    # F.pad lists the last dimension first.
    xp = F.pad(x, [p for d in reversed(range(dims)) for p in (pad[d], pad[dims + d])])
    taps = math.prod(w.shape[2:])
    pixels = math.prod(out_sizes)
    wt = w.reshape(groups, k // groups, c // groups, taps)
    acc = None
    for t, tap in enumerate(itertools.product(*(range(size) for size in w.shape[2:]))):
        window = tuple(slice(i * d, i * d + s * (o - 1) + 1, s)
                       for i, d, s, o in zip(tap, dilation, stride, out_sizes))
        xt = xp[(slice(None), slice(None)) + window].reshape(n, groups, c // groups, pixels)
        term = torch.matmul(wt[..., t], xt)
        acc = term if acc is None else acc + term
    return acc.reshape([n, k] + list(out_sizes))


def _zero_stuffed(x: Tensor, stride: Sequence[int]) -> Tensor:
    # stride - 1 zeros between neighbours along each spatial dim
    for d, s in enumerate(stride):
        if s == 1:
            continue
        dim = d + 2
        length = x.shape[dim]
        parts = [x] + [torch.zeros_like(x)] * (s - 1)
        x = torch.stack(parts, dim=dim + 1).flatten(dim, dim + 1).narrow(dim, 0,
                                                                        (length - 1) * s + 1)
    return x


def conv_transpose(x: Tensor, w: Tensor, stride: Sequence[int], pad: Sequence[int],
                   dilation: Sequence[int], groups: int, out_sizes: Sequence[int]) -> Tensor:
    """conv_transpose of x [N, C_in, ...] with w [C_in, C_out / groups, ...]: the conv of the
    zero-stuffed x with w flipped and each group's [in, out] swapped, padded by
    dilation * (k - 1) - pad on each side."""
    dims = x.dim() - 2
    c_in, c_out_g, kernel = w.shape[0], w.shape[1], list(w.shape[2:])
    swapped = w.reshape([groups, c_in // groups, c_out_g] + kernel).transpose(1, 2)
    flipped = swapped.reshape([groups * c_out_g, c_in // groups] + kernel).flip(
        list(range(2, dims + 2)))
    reach = [d * (k - 1) for d, k in zip(dilation, kernel)]
    inner = [r - p for r, p in zip(reach + reach, pad)]
    return conv(_zero_stuffed(x, stride), flipped, [1] * dims, inner, dilation, groups,
                out_sizes)


def convolution(transposed: bool, op: str, x: Tensor, w: Tensor, b: Optional[Tensor],
                stride: Sequence[int], pad: Sequence[int], dilation: Sequence[int],
                groups: int) -> Tensor:
    """Our op's call (pad as [before..., after...]), computed tap by tap; checked by the
    kernels' own shape rules."""
    for other, name in ((w, "weight"), (b, "bias")):
        if other is not None and other.dtype != x.dtype:
            raise RuntimeError(f"{op}: input type ({x.dtype}) and {name} type ({other.dtype}) "
                               f"should be the same")
    _C._check_conv_geometry(op, transposed, list(x.shape), list(w.shape), list(stride),
                            list(pad), list(dilation), groups)
    shape = (conv_transpose_output_shape(x.shape, w.shape, stride, pad, dilation, groups)
             if transposed else conv_output_shape(x.shape, w.shape, stride, pad, dilation))
    if math.prod(shape) == 0:
        return x.new_zeros(shape)
    compute = conv_transpose if transposed else conv
    out = compute(x, w, stride, pad, dilation, groups, shape[2:])
    if b is not None:
        out = out + b.reshape([1, -1] + [1] * (out.dim() - 2))
    return out
