"""Argument normalisation shared by ``functional`` and ``nn``: every user form of a size argument
(int, tuple, 'valid', 'same') becomes the flat lists our ops take."""
from __future__ import annotations

from typing import Sequence, Union

import torch

__all__ = ["ntuple", "same_padding", "conv_padding", "check_batched", "IntOrTuple"]

IntOrTuple = Union[int, Sequence[int]]


def _is_int(value) -> bool:
    return isinstance(value, (int, torch.SymInt)) and not isinstance(value, bool)


def ntuple(value: IntOrTuple, n: int, name: str, op: str) -> list:
    """``value`` as a list of ``n`` ints: an int or a 1-element sequence is repeated."""
    if _is_int(value):
        return [value] * n
    values = list(value)
    for v in values:
        if not _is_int(v):
            raise TypeError(
                f"{op}(): argument '{name}' must be tuple of ints, but found element of type "
                f"{type(v).__name__}"
            )
    if len(values) == 1:
        values = values * n
    if len(values) != n:
        raise RuntimeError(
            f"{op}: expected {name} to be a single integer value or a list of {n} values to match "
            f"the {n}-d spatial dims, but got {name}={value}"
        )
    return values


def same_padding(lengths: Sequence, kernel: Sequence[int], stride: Sequence[int],
                 dilation: Sequence[int]) -> list:
    """TensorFlow's 'same' padding, before-list then after-list.

    Output length ``ceil(L / s)``; total padding ``max((ceil(L/s) - 1) * s + (k - 1) * d + 1 - L, 0)``,
    the smaller half before, the odd element after. With stride 1 it is torch's rule,
    ``(k - 1) * d`` in total, and does not depend on the input length.
    """
    before, after = [], []
    for length, k, s, d in zip(lengths, kernel, stride, dilation):
        if s == 1:
            total = (k - 1) * d
        else:
            out = (length + s - 1) // s
            total = torch.sym_max((out - 1) * s + (k - 1) * d + 1 - length, 0)
        before.append(total // 2)
        after.append(total - total // 2)
    return before + after


def conv_padding(padding, dims: int, lengths: Sequence, kernel: Sequence[int],
                 stride: Sequence[int], dilation: Sequence[int], op: str) -> list:
    """Any conv/pool ``padding`` form as [before..., after...]."""
    if isinstance(padding, str):
        if padding == "valid":
            return [0] * (2 * dims)
        if padding == "same":
            if any(type(s) is int and s <= 0 for s in stride):  # before same_padding divides
                raise RuntimeError(f"{op}: non-positive stride is not supported, but got "
                                   f"stride={list(stride)}")
            return same_padding(lengths, kernel, stride, dilation)
        raise RuntimeError(f"Invalid padding string: {padding!r} (expected 'valid', 'same' or ints)")
    pad = ntuple(padding, dims, "padding", op)
    return pad + pad


def check_batched(input: torch.Tensor, dims: int, op: str) -> bool:
    """True for a batched input, False for an unbatched one; raises for any other rank."""
    if input.dim() == dims + 2:
        return True
    if input.dim() == dims + 1:
        return False
    raise RuntimeError(
        f"Expected {dims + 1}D (unbatched) or {dims + 2}D (batched) input to {op}, but got input "
        f"of size: {list(input.shape)}"
    )
