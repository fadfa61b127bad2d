"""Loads the compiled operators and registers a fake (meta) kernel for each of them.

The fakes let ``torch.compile(fullgraph=True)``, ``torch.export`` and ``torch.library.opcheck``
reason about our ops without running them.
"""
from __future__ import annotations

import torch

from . import _build_check
from ._shapes import conv_output_shape, conv_transpose_output_shape

_C = _build_check.load_compiled_module()

__all__ = ["_C"]


@torch.library.register_fake("convpool::conv")
def _conv_fake(input, weight, bias, stride, padding, dilation, groups):
    torch._check(input.dim() == weight.dim(), lambda: "convpool::conv: input and weight dims differ")
    return input.new_empty(conv_output_shape(input.shape, weight.shape, stride, padding, dilation))


@torch.library.register_fake("convpool::conv_transpose")
def _conv_transpose_fake(input, weight, bias, stride, padding, dilation, groups):
    torch._check(
        input.dim() == weight.dim(), lambda: "convpool::conv_transpose: input and weight dims differ"
    )
    shape = conv_transpose_output_shape(input.shape, weight.shape, stride, padding, dilation, groups)
    return input.new_empty(shape)


@torch.library.register_fake("convpool::conv_weight_grad")
def _conv_weight_grad_fake(grad_output, input, weight_size, stride, padding, dilation, groups):
    return input.new_empty(list(weight_size))
