"""Convolution modules: torch.nn's classes with our operators underneath.

Each class subclasses its ``torch.nn`` namesake, so constructor arguments, parameter names and
shapes, initialisation, ``extra_repr`` and ``state_dict`` are torch's by construction (and
``isinstance(m, torch.nn.Conv2d)`` stays true for code that inspects models); only the
computation is ours. Beyond torch: ``padding='same'`` with ``stride > 1``.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor
from torch.nn import functional as torch_F

from .. import functional as ours
from .._args import ntuple, same_padding

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]


class _ConvMixin:
    _dims: int
    _conv: Callable[..., Tensor]

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None) -> None:
        # torch refuses 'same' with a stride; we accept it (TensorFlow's rule), so the base class
        # is built with stride 1 and the real stride is set after.
        strided_same = padding == "same" and any(
            s != 1 for s in ntuple(stride, self._dims, "stride", type(self).__name__)
        )
        super().__init__(in_channels, out_channels, kernel_size, 1 if strided_same else stride,
                         padding, dilation, groups, bias, padding_mode, device=device, dtype=dtype)
        if strided_same:
            self.stride = tuple(ntuple(stride, self._dims, "stride", type(self).__name__))

    def _mode_padding(self, input: Tensor) -> list[int]:
        """Padding for F.pad (last dim first) in a non-zeros padding_mode."""
        if self.padding == "same" and any(s != 1 for s in self.stride):
            pad = same_padding(input.shape[-self._dims:], self.kernel_size, self.stride, self.dilation)
            before, after = pad[: self._dims], pad[self._dims:]
            return [p for d in reversed(range(self._dims)) for p in (before[d], after[d])]
        return list(self._reversed_padding_repeated_twice)

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        if self.padding_mode != "zeros":
            padded = torch_F.pad(input, self._mode_padding(input), mode=self.padding_mode)
            return type(self)._conv(padded, weight, bias, self.stride, 0, self.dilation, self.groups)
        return type(self)._conv(input, weight, bias, self.stride, self.padding, self.dilation,
                                self.groups)


class Conv1d(_ConvMixin, torch.nn.Conv1d):
    __doc__ = torch.nn.Conv1d.__doc__
    _dims = 1
    _conv = staticmethod(ours.conv1d)


class Conv2d(_ConvMixin, torch.nn.Conv2d):
    __doc__ = torch.nn.Conv2d.__doc__
    _dims = 2
    _conv = staticmethod(ours.conv2d)


class Conv3d(_ConvMixin, torch.nn.Conv3d):
    __doc__ = torch.nn.Conv3d.__doc__
    _dims = 3
    _conv = staticmethod(ours.conv3d)


class _ConvTransposeMixin:
    _dims: int
    _conv_transpose: Callable[..., Tensor]

    def forward(self, input: Tensor, output_size: Optional[list[int]] = None) -> Tensor:
        if self.padding_mode != "zeros":
            raise ValueError(
                f"Only `zeros` padding mode is supported for {type(self).__name__}"
            )
        # torch's own rule for picking output_padding from output_size (and its errors).
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size, self._dims,
            self.dilation,
        )
        return type(self)._conv_transpose(input, self.weight, self.bias, self.stride, self.padding,
                                          output_padding, self.groups, self.dilation)


class ConvTranspose1d(_ConvTransposeMixin, torch.nn.ConvTranspose1d):
    __doc__ = torch.nn.ConvTranspose1d.__doc__
    _dims = 1
    _conv_transpose = staticmethod(ours.conv_transpose1d)


class ConvTranspose2d(_ConvTransposeMixin, torch.nn.ConvTranspose2d):
    __doc__ = torch.nn.ConvTranspose2d.__doc__
    _dims = 2
    _conv_transpose = staticmethod(ours.conv_transpose2d)


class ConvTranspose3d(_ConvTransposeMixin, torch.nn.ConvTranspose3d):
    __doc__ = torch.nn.ConvTranspose3d.__doc__
    _dims = 3
    _conv_transpose = staticmethod(ours.conv_transpose3d)
