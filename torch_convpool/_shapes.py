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
    # torch answers a conv of no input channels with no output channels (its empty-input path).
    return [input_shape[0], 0 if input_shape[1] == 0 else weight_shape[0], *spatial]


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


def pool_output_length(length, kernel: int, stride: int, pad_before, pad_after, dilation: int,
                       ceil_mode: bool):
    """torch's pooling rule: with ceil_mode the last window must start inside the input or its
    before-padding."""
    span = dilation * (kernel - 1) + 1
    out = (length + pad_before + pad_after - span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= length + pad_before:
        out = out - 1
    return out


def pool_output_shape(input_shape: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                      padding: Sequence[int], dilation: Sequence[int], ceil_mode: bool) -> list:
    dims = len(kernel)
    spatial = [
        pool_output_length(input_shape[2 + d], kernel[d], stride[d], padding[d], padding[dims + d],
                           dilation[d], ceil_mode)
        for d in range(dims)
    ]
    return [input_shape[0], input_shape[1], *spatial]


__all__ += ["pool_output_length", "pool_output_shape"]
