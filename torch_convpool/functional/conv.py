"""Convolution and transposed convolution, with ``torch.nn.functional``'s signatures."""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

from .._args import IntOrTuple, check_batched, conv_padding, ntuple
from .._eager import direct, outside_passthrough_modes
from .._library import _C
from . import _conv_other_dtypes as other_dtypes
from . import _conv_taps as taps
from ._zero_length_outputs import empty_transpose_result

__all__ = [
    "conv1d", "conv2d", "conv3d",
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "conv_transpose_padding",
]

PaddingArg = Union[str, IntOrTuple]


def _check_weight(weight: Tensor, dims: int, op: str) -> None:
    if weight.dim() != dims + 2:
        raise RuntimeError(
            f"{op}: expected a {dims + 2}-d weight ([out_channels, in_channels / groups, "
            f"*kernel_size]), but got weight of size {list(weight.shape)}"
        )


def _under_transforms(transposed: bool, op: str, x: Tensor, weight: Tensor,
                      bias: Optional[Tensor], stride, pad, dilation, groups: int) -> Tensor:
    # torch.func transforms cannot run our op's C++ autograd: the same convolution in tensor
    # operations they can differentiate and batch (_conv_taps.py).
    if not (x.is_floating_point() or x.is_complex()):
        other_dtypes.check_integer(transposed, op, x, dilation)
    return taps.convolution(transposed, op, x, weight, bias, stride, pad, dilation, groups)


@outside_passthrough_modes
def _conv(op: str, dims: int, input: Tensor, weight: Tensor, bias: Optional[Tensor], stride,
          padding, dilation, groups: int) -> Tensor:
    batched = check_batched(input, dims, op)
    _check_weight(weight, dims, op)
    x = input if batched else input.unsqueeze(0)
    stride = ntuple(stride, dims, "stride", op)
    dilation = ntuple(dilation, dims, "dilation", op)
    pad = conv_padding(padding, dims, x.shape[2:], weight.shape[2:], stride, dilation, op)
    if taps.transforms_active():
        out = _under_transforms(False, op, x, weight, bias, stride, pad, dilation, groups)
    elif other_dtypes.handles(x, weight, bias):
        out = other_dtypes.convolution(False, op, x, weight, bias, stride, pad, dilation, groups)
    elif direct(x, weight, bias) and type(groups) is int:
        out = _C._eager_conv(x, weight, bias, stride, pad, dilation, groups)
    else:
        out = torch.ops.convpool.conv.default(x, weight, bias, stride, pad, dilation, groups)
    return out if batched else out.squeeze(0)


def conv_transpose_padding(padding, output_padding, stride, dilation, dims: int, op: str,
                           empty_input: bool = False) -> list:
    """torch's (padding, output_padding) as our op's [before..., after...]: output_padding extends
    the output at the end, i.e. it lowers the after-padding. torch checks output_padding only
    when there is something to compute (an empty batch gets its output shape regardless)."""
    if isinstance(padding, str):
        raise TypeError(f"{op}(): argument 'padding' must be tuple of ints, not str")
    pad = ntuple(padding, dims, "padding", op)
    out_pad = ntuple(output_padding, dims, "output_padding", op)
    for p, s, d in zip(out_pad, stride, dilation):
        if p < 0:
            raise RuntimeError(f"{op}: negative output_padding is not supported, got {out_pad}")
        if p >= s and p >= d and not empty_input:
            raise RuntimeError(
                f"{op}: output padding must be smaller than either stride or dilation, but got "
                f"output_padding={out_pad}, stride={list(stride)}, dilation={list(dilation)}"
            )
    return pad + [p - op_ for p, op_ in zip(pad, out_pad)]


@outside_passthrough_modes
def _conv_transpose(op: str, dims: int, input: Tensor, weight: Tensor, bias: Optional[Tensor],
                    stride, padding, output_padding, groups: int, dilation) -> Tensor:
    batched = check_batched(input, dims, op)
    _check_weight(weight, dims, op)
    x = input if batched else input.unsqueeze(0)
    stride = ntuple(stride, dims, "stride", op)
    dilation = ntuple(dilation, dims, "dilation", op)
    pad = conv_transpose_padding(padding, output_padding, stride, dilation, dims, op,
                                 empty_input=x.numel() == 0)
    empty = empty_transpose_result(x, weight, bias, stride, pad, dilation, groups)
    if empty is not None:
        out = empty
    elif taps.transforms_active():
        out = _under_transforms(True, op, x, weight, bias, stride, pad, dilation, groups)
    elif other_dtypes.handles(x, weight, bias):
        out = other_dtypes.convolution(True, op, x, weight, bias, stride, pad, dilation, groups)
    elif direct(x, weight, bias) and type(groups) is int:
        out = _C._eager_conv_transpose(x, weight, bias, stride, pad, dilation, groups)
    else:
        out = torch.ops.convpool.conv_transpose.default(x, weight, bias, stride, pad, dilation,
                                                        groups)
    return out if batched else out.squeeze(0)


def conv1d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride: IntOrTuple = 1,
           padding: PaddingArg = 0, dilation: IntOrTuple = 1, groups: int = 1) -> Tensor:
    r"""1-d convolution over an input of shape :math:`(N, C_{in}, L)` or :math:`(C_{in}, L)`.

    Same arguments and result as :func:`torch.nn.functional.conv1d`; ``padding='same'`` also
    works with ``stride > 1`` (TensorFlow's rule: output length ``ceil(L / stride)``).
    """
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride: IntOrTuple = 1,
           padding: PaddingArg = 0, dilation: IntOrTuple = 1, groups: int = 1) -> Tensor:
    r"""2-d convolution over an input of shape :math:`(N, C_{in}, H, W)` or :math:`(C_{in}, H, W)`.

    Same arguments and result as :func:`torch.nn.functional.conv2d`; ``padding='same'`` also
    works with ``stride > 1`` (TensorFlow's rule: output size ``ceil(H / stride)``).

    Examples::

        >>> x = torch.randn(2, 3, 32, 32)
        >>> w = torch.randn(8, 3, 3, 3)
        >>> conv2d(x, w, padding="same", stride=2).shape
        torch.Size([2, 8, 16, 16])
    """
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


def conv3d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride: IntOrTuple = 1,
           padding: PaddingArg = 0, dilation: IntOrTuple = 1, groups: int = 1) -> Tensor:
    r"""3-d convolution over an input of shape :math:`(N, C_{in}, D, H, W)` or
    :math:`(C_{in}, D, H, W)`. Same arguments and result as :func:`torch.nn.functional.conv3d`;
    ``padding='same'`` also works with ``stride > 1``."""
    return _conv("conv3d", 3, input, weight, bias, stride, padding, dilation, groups)


def conv_transpose1d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                     stride: IntOrTuple = 1, padding: IntOrTuple = 0,
                     output_padding: IntOrTuple = 0, groups: int = 1,
                     dilation: IntOrTuple = 1) -> Tensor:
    r"""1-d transposed convolution ("deconvolution"); same arguments and result as
    :func:`torch.nn.functional.conv_transpose1d`. Weight: :math:`(C_{in}, C_{out} / groups, k)`."""
    return _conv_transpose("conv_transpose1d", 1, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                     stride: IntOrTuple = 1, padding: IntOrTuple = 0,
                     output_padding: IntOrTuple = 0, groups: int = 1,
                     dilation: IntOrTuple = 1) -> Tensor:
    r"""2-d transposed convolution; same arguments and result as
    :func:`torch.nn.functional.conv_transpose2d`.

    Examples::

        >>> x = torch.randn(1, 8, 16, 16)
        >>> w = torch.randn(8, 4, 4, 4)
        >>> conv_transpose2d(x, w, stride=2, padding=1).shape
        torch.Size([1, 4, 32, 32])
    """
    return _conv_transpose("conv_transpose2d", 2, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)


def conv_transpose3d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                     stride: IntOrTuple = 1, padding: IntOrTuple = 0,
                     output_padding: IntOrTuple = 0, groups: int = 1,
                     dilation: IntOrTuple = 1) -> Tensor:
    r"""3-d transposed convolution; same arguments and result as
    :func:`torch.nn.functional.conv_transpose3d`."""
    return _conv_transpose("conv_transpose3d", 3, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)
