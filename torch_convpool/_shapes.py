"""Output-shape rules of every op, in Python, for the fake (meta) kernels.

They mirror ``csrc/common/*_shape.h`` formula for formula and work on SymInts, so
``torch.compile`` and ``torch.export`` trace our ops with dynamic shapes. Tests compare fake
and real shapes over the whole argument grid, so the two cannot drift apart.
"""
from __future__ import annotations

from typing import Sequence

__all__ = ["conv_output_shape", "conv_transpose_output_shape"]


def conv_output_shape(
    input_shape: Sequence[int],
    weight_shape: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
) -> list[int]:
    dims = len(stride)
    spatial = [
        (input_shape[d + 2] + padding[d] + padding[dims + d] - dilation[d] * (weight_shape[d + 2] - 1) - 1)
        // stride[d]
        + 1
        for d in range(dims)
    ]
    return [input_shape[0], weight_shape[0], *spatial]


def conv_transpose_output_shape(
    input_shape: Sequence[int],
    weight_shape: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> list[int]:
    dims = len(stride)
    spatial = [
        (input_shape[d + 2] - 1) * stride[d]
        - padding[d]
        - padding[dims + d]
        + dilation[d] * (weight_shape[d + 2] - 1)
        + 1
        for d in range(dims)
    ]
    return [input_shape[0], weight_shape[1] * groups, *spatial]
