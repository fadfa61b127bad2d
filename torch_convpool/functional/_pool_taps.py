"""Pooling in plain tensor operations, for torch.func transforms (grad, vjp, jacrev, vmap of
them), inside which our ops' C++ autograd cannot run (see _conv_taps.py for the convolutions).

Regular windows are the strided views of the padded input, one per tap, reduced together (a
maximum keeps the first of equal values in window order, as our kernels and torch's do);
adaptive windows are sliced output cell by output cell. Shapes and arguments are checked by the
kernels' own rules. Slow next to our kernels; correct and differentiable to any order.
"""
from __future__ import annotations

import itertools
import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .._library import _C
from .._shapes import pool_output_shape


def _meta(x: Tensor) -> Tensor:
    return torch.empty(x.shape, dtype=x.dtype, device="meta")


def _lowest(dtype: torch.dtype):
    if dtype.is_floating_point:
        return -math.inf
    return torch.iinfo(dtype).min


def _taps(x: Tensor, kernel, stride, pad, dilation, out_sizes, fill):
    """Per tap (window order): its strided view [N, C, *out] of x padded with `fill`, and the
    tap's offsets."""
    dims = len(kernel)
    after = [max(0, (o - 1) * s + d * (k - 1) + 1 - p - n)
             for o, s, d, k, p, n in zip(out_sizes, stride, dilation, kernel, pad, x.shape[2:])]
    xp = F.pad(x, [v for d in reversed(range(dims)) for v in (pad[d], after[d])], value=fill)
    for tap in itertools.product(*(range(k) for k in kernel)):
        window = tuple(slice(i * d, i * d + s * (o - 1) + 1, s)
                       for i, d, s, o in zip(tap, dilation, stride, out_sizes))
        yield xp[(slice(None), slice(None)) + window], tap


def _flat_positions(tap, stride, pad, dilation, out_sizes, in_sizes, device) -> Tensor:
    # each output's input position for this tap, flattened over the spatial dims
    flat = torch.zeros(out_sizes, dtype=torch.long, device=device)
    for d, (i, s, p, dl) in enumerate(zip(tap, stride, pad, dilation)):
        shape = [1] * len(out_sizes)
        shape[d] = out_sizes[d]
        coord = torch.arange(out_sizes[d], device=device) * s + i * dl - p
        flat = flat * in_sizes[d] + coord.reshape(shape)
    return flat


def max_pool(op: str, x: Tensor, kernel, stride, pad, dilation, ceil_mode: bool,
             return_indices: bool):
    _C._check_pool_geometry(op, _meta(x), list(kernel), list(stride), list(pad), list(dilation),
                            ceil_mode, "integral")
    shape = pool_output_shape(x.shape, kernel, stride, pad, dilation, ceil_mode)
    out_sizes = shape[2:]
    views, positions = [], []
    for view, tap in _taps(x, kernel, stride, pad, dilation, out_sizes, _lowest(x.dtype)):
        views.append(view)
        if return_indices:
            positions.append(_flat_positions(tap, stride, pad, dilation, out_sizes,
                                             x.shape[2:], x.device))
    values, which = torch.stack(views, -1).max(-1)
    if not return_indices:
        return values
    table = torch.stack(positions, -1).expand(*which.shape[:2], *positions[0].shape, -1)
    return values, table.gather(-1, which.unsqueeze(-1)).squeeze(-1)


def avg_pool(op: str, x: Tensor, kernel, stride, pad, ceil_mode: bool, count_include_pad: bool,
             divisor_override: Optional[int]) -> Tensor:
    dims = len(kernel)
    ones = [1] * dims
    _C._check_pool_geometry(op, _meta(x), list(kernel), list(stride), list(pad), ones, ceil_mode,
                            "int64")
    shape = pool_output_shape(x.shape, kernel, stride, pad, ones, ceil_mode)
    out_sizes = shape[2:]
    total = sum(view for view, _ in _taps(x, kernel, stride, pad, ones, out_sizes, 0))
    if divisor_override is not None:
        divisor = torch.tensor(divisor_override, device=x.device)
    else:
        # how many of a window's elements count: those inside the input, or inside the input and
        # its padding (never the ceil_mode overhang past the padding)
        lengths = list(x.shape[2:])
        mask = torch.ones([1, 1] + lengths, device=x.device)
        if count_include_pad:
            mask = F.pad(mask, [v for d in reversed(range(dims)) for v in (pad[d], pad[dims + d])],
                         value=1.0)
            zero_pad = [0] * (2 * dims)
        else:
            zero_pad = list(pad)
        divisor = sum(view for view, _ in _taps(mask, kernel, stride, zero_pad, ones, out_sizes,
                                                0))[0, 0]
    if x.is_floating_point():
        return total / divisor.to(x.dtype)
    return torch.div(total, divisor.to(x.dtype), rounding_mode="trunc")


def _cells(in_sizes: Sequence[int], out_sizes: Sequence[int]):
    # adaptive windows: cell i of a dim spans [floor(i * n / o), ceil((i + 1) * n / o))
    spans = [[(i * n // o, -((-(i + 1) * n) // o)) for i in range(o)]
             for n, o in zip(in_sizes, out_sizes)]
    return itertools.product(*spans)


def adaptive_pool(op: str, x: Tensor, out_sizes: Sequence[int], maximum: bool,
                  return_indices: bool = False):
    _C._check_adaptive_pool_geometry(op, _meta(x), list(out_sizes))
    dims = len(out_sizes)
    n, c, in_sizes = x.shape[0], x.shape[1], list(x.shape[2:])
    values, indices = [], []
    for cell in _cells(in_sizes, out_sizes):
        window = x[(slice(None), slice(None)) + tuple(slice(a, b) for a, b in cell)]
        if not maximum:
            values.append(window.mean(tuple(range(2, 2 + dims))))
            continue
        best, which = window.reshape(n, c, -1).max(-1)
        values.append(best)
        if return_indices:
            extent = [b - a for a, b in cell]
            flat = torch.zeros_like(which)
            for d in range(dims):
                inner = math.prod(extent[d + 1:])
                coord = which // inner % extent[d] + cell[d][0]
                flat = flat * in_sizes[d] + coord
            indices.append(flat)
    out = torch.stack(values, -1).reshape([n, c] + list(out_sizes))
    if not return_indices:
        return out
    return out, torch.stack(indices, -1).reshape([n, c] + list(out_sizes))


def max_unpool(x: Tensor, indices: Tensor, out_sizes: Sequence[int]) -> Tensor:
    n, c = x.shape[0], x.shape[1]
    flat = x.new_zeros(n, c, math.prod(out_sizes))
    return flat.scatter(2, indices.reshape(n, c, -1), x.reshape(n, c, -1)).reshape(
        [n, c] + list(out_sizes))
