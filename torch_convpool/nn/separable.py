"""Depthwise-separable convolutions: a per-channel (depthwise) convolution, then a 1x1 (pointwise)
convolution that mixes channels, as in MobileNet and Xception."""
from __future__ import annotations

import math
from typing import Sequence, Union

import torch
from torch import Tensor

from .conv import Conv1d, Conv2d, Conv3d

__all__ = ["DepthwiseSeparableConv1d", "DepthwiseSeparableConv2d", "DepthwiseSeparableConv3d"]

_SizeArg = Union[int, Sequence[int]]


class _DepthwiseSeparableConvNd(torch.nn.Module):
    _dims: int
    _conv: type

    def __init__(self, in_channels: int, out_channels: int, kernel_size: _SizeArg,
                 stride: _SizeArg = 1, padding: Union[str, _SizeArg] = 0, dilation: _SizeArg = 1,
                 bias: bool = True, depth_multiplier: int = 1, padding_mode: str = "zeros",
                 device=None, dtype=None) -> None:
        super().__init__()
        if not isinstance(depth_multiplier, int) or isinstance(depth_multiplier, bool) \
                or depth_multiplier <= 0:
            raise ValueError(
                f"depth_multiplier must be a positive integer, got {depth_multiplier!r}")
        if not isinstance(in_channels, int) or in_channels <= 0:
            # Conv would report this as a groups error, which hides the real mistake.
            raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.depth_multiplier = depth_multiplier
        hidden = in_channels * depth_multiplier
        factory = dict(device=device, dtype=dtype)
        # groups=in_channels: each input channel gets its own depth_multiplier filters; all the
        # spatial arguments (and padding_mode) belong here, the 1x1 stage has no spatial extent.
        self.depthwise = type(self)._conv(in_channels, hidden, kernel_size, stride, padding,
                                          dilation, groups=in_channels, bias=bias,
                                          padding_mode=padding_mode, **factory)
        self.pointwise = type(self)._conv(hidden, out_channels, 1, bias=bias, **factory)

    # The spatial configuration lives in the depthwise child; these mirror it so the module reads
    # like a conv (and stays right if someone edits the child).
    @property
    def kernel_size(self) -> tuple:
        return self.depthwise.kernel_size

    @property
    def stride(self) -> tuple:
        return self.depthwise.stride

    @property
    def padding(self) -> Union[str, tuple]:
        return self.depthwise.padding

    @property
    def dilation(self) -> tuple:
        return self.depthwise.dilation

    @property
    def padding_mode(self) -> str:
        return self.depthwise.padding_mode

    def weight_counts(self) -> tuple[int, int]:
        """(this module's weights, a dense convolution's weights) for the same channels and kernel,
        biases left out: ``C_in*k^d*m + C_in*m*C_out`` against ``C_in*C_out*k^d``."""
        taps = math.prod(self.kernel_size)
        hidden = self.in_channels * self.depth_multiplier
        separable = self.in_channels * taps * self.depth_multiplier + hidden * self.out_channels
        dense = self.in_channels * self.out_channels * taps
        return separable, dense

    def forward(self, input: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(input))

    def extra_repr(self) -> str:
        separable, dense = self.weight_counts()
        padding = repr(self.padding) if isinstance(self.padding, str) else self.padding
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, padding={padding}")
        if any(d != 1 for d in self.dilation):
            s += f", dilation={self.dilation}"
        if self.depthwise.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return (s + f", depth_multiplier={self.depth_multiplier}, weights={separable}, "
                f"dense_weights={dense}, saving={dense / separable:.2f}x")


_DOC = r"""Depthwise-separable {d}-d convolution: a depthwise ``Conv{d}d`` (``groups=in_channels``),
    then a pointwise 1x1 ``Conv{d}d`` that mixes the channels.

    The depthwise stage gives every input channel ``depth_multiplier`` filters of its own (output
    ``in_channels * depth_multiplier`` channels) and takes all the spatial arguments; the pointwise
    stage maps ``in_channels * depth_multiplier`` channels to ``out_channels``. Both are
    :class:`torch_convpool.nn.Conv{d}d`, so ``padding='same'`` also works with ``stride > 1``
    (TensorFlow's rule).

    A dense convolution with the same channels and kernel has ``C_in * C_out * k^{d}`` weights
    (``k^{d}`` the product of the kernel sizes); this module has
    ``C_in * k^{d} * m + C_in * m * C_out`` (``m`` the depth multiplier), biases left out both
    times: about ``1/C_out + 1/k^{d}`` of the dense count when ``m = 1``. ``weight_counts()``
    returns both numbers and the repr shows them with the saving.

    Args:
        in_channels (int): channels in the input.
        out_channels (int): channels produced.
        kernel_size (int or tuple): size of the depthwise kernel.
        stride (int or tuple, optional): stride of the depthwise convolution. Default: 1
        padding (int, tuple or str, optional): padding of the depthwise convolution: ints, or
            ``'valid'`` or ``'same'`` (any stride). Default: 0
        dilation (int or tuple, optional): spacing between depthwise kernel elements. Default: 1
        bias (bool, optional): if ``True``, both stages get a learnable bias. Default: ``True``
        depth_multiplier (int, optional): depthwise filters per input channel. Default: 1
        padding_mode (str, optional): ``'zeros'``, ``'reflect'``, ``'replicate'`` or
            ``'circular'``, for the depthwise stage. Default: ``'zeros'``
        device, dtype: factory arguments for the parameters.

    Attributes:
        depthwise (Conv{d}d): the ``groups=in_channels`` convolution,
            ``in_channels -> in_channels * depth_multiplier``.
        pointwise (Conv{d}d): the 1x1 convolution,
            ``in_channels * depth_multiplier -> out_channels``.

    Shape:
        - Input: :math:`(N, C_{{in}}, {shape})` or :math:`(C_{{in}}, {shape})`
        - Output: :math:`(N, C_{{out}}, {out_shape})` or :math:`(C_{{out}}, {out_shape})`, the
          spatial sizes those of the depthwise convolution (:class:`torch.nn.Conv{d}d`'s formula).

    Examples::

        >>> m = DepthwiseSeparableConv{d}d(32, 64, 3, padding=1)
        >>> m.weight_counts()  # (32*{taps} + 32*64, 32*64*{taps})
        {counts}
        >>> m(torch.randn(8, 32, {example})).shape
        torch.Size([8, 64, {example}])
    """


def _document(cls: type, dims: int) -> type:
    letters = ["L", "H, W", "D, H, W"][dims - 1]
    taps = 3 ** dims
    example = ", ".join(["10"] * dims)
    cls.__doc__ = _DOC.format(
        d=dims, shape=", ".join(f"{c}_{{in}}" for c in letters.split(", ")),
        out_shape=", ".join(f"{c}_{{out}}" for c in letters.split(", ")),
        taps=taps, counts=f"({32 * taps + 32 * 64}, {32 * 64 * taps})", example=example,
    )
    return cls


class DepthwiseSeparableConv1d(_DepthwiseSeparableConvNd):
    _dims = 1
    _conv = Conv1d


class DepthwiseSeparableConv2d(_DepthwiseSeparableConvNd):
    _dims = 2
    _conv = Conv2d


class DepthwiseSeparableConv3d(_DepthwiseSeparableConvNd):
    _dims = 3
    _conv = Conv3d


for _cls in (DepthwiseSeparableConv1d, DepthwiseSeparableConv2d, DepthwiseSeparableConv3d):
    _document(_cls, _cls._dims)
del _cls
