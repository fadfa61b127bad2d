"""Pooling modules: torch.nn's classes with our operators underneath (constructor, attributes and
``extra_repr`` are torch's by construction), plus ``GlobalAvgPool{1,2,3}d``."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .. import functional as ours

__all__ = [
    "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
    "MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d",
    "GlobalAvgPool1d", "GlobalAvgPool2d", "GlobalAvgPool3d",
]


class _MaxPoolMixin:
    def forward(self, input: Tensor):
        return type(self)._pool(input, self.kernel_size, self.stride, self.padding, self.dilation,
                                ceil_mode=self.ceil_mode, return_indices=self.return_indices)


class MaxPool1d(_MaxPoolMixin, torch.nn.MaxPool1d):
    __doc__ = torch.nn.MaxPool1d.__doc__
    _pool = staticmethod(ours.max_pool1d)


class MaxPool2d(_MaxPoolMixin, torch.nn.MaxPool2d):
    __doc__ = torch.nn.MaxPool2d.__doc__
    _pool = staticmethod(ours.max_pool2d)


class MaxPool3d(_MaxPoolMixin, torch.nn.MaxPool3d):
    __doc__ = torch.nn.MaxPool3d.__doc__
    _pool = staticmethod(ours.max_pool3d)


class AvgPool1d(torch.nn.AvgPool1d):
    __doc__ = torch.nn.AvgPool1d.__doc__

    def forward(self, input: Tensor) -> Tensor:
        return ours.avg_pool1d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)


class _AvgPoolMixin:
    def forward(self, input: Tensor) -> Tensor:
        return type(self)._pool(input, self.kernel_size, self.stride, self.padding,
                                self.ceil_mode, self.count_include_pad, self.divisor_override)


class AvgPool2d(_AvgPoolMixin, torch.nn.AvgPool2d):
    __doc__ = torch.nn.AvgPool2d.__doc__
    _pool = staticmethod(ours.avg_pool2d)


class AvgPool3d(_AvgPoolMixin, torch.nn.AvgPool3d):
    __doc__ = torch.nn.AvgPool3d.__doc__
    _pool = staticmethod(ours.avg_pool3d)


class _AdaptiveAvgMixin:
    def forward(self, input: Tensor) -> Tensor:
        return type(self)._pool(input, self.output_size)


class AdaptiveAvgPool1d(_AdaptiveAvgMixin, torch.nn.AdaptiveAvgPool1d):
    __doc__ = torch.nn.AdaptiveAvgPool1d.__doc__
    _pool = staticmethod(ours.adaptive_avg_pool1d)


class AdaptiveAvgPool2d(_AdaptiveAvgMixin, torch.nn.AdaptiveAvgPool2d):
    __doc__ = torch.nn.AdaptiveAvgPool2d.__doc__
    _pool = staticmethod(ours.adaptive_avg_pool2d)


class AdaptiveAvgPool3d(_AdaptiveAvgMixin, torch.nn.AdaptiveAvgPool3d):
    __doc__ = torch.nn.AdaptiveAvgPool3d.__doc__
    _pool = staticmethod(ours.adaptive_avg_pool3d)


class _AdaptiveMaxMixin:
    def forward(self, input: Tensor):
        return type(self)._pool(input, self.output_size, self.return_indices)


class AdaptiveMaxPool1d(_AdaptiveMaxMixin, torch.nn.AdaptiveMaxPool1d):
    __doc__ = torch.nn.AdaptiveMaxPool1d.__doc__
    _pool = staticmethod(ours.adaptive_max_pool1d)


class AdaptiveMaxPool2d(_AdaptiveMaxMixin, torch.nn.AdaptiveMaxPool2d):
    __doc__ = torch.nn.AdaptiveMaxPool2d.__doc__
    _pool = staticmethod(ours.adaptive_max_pool2d)


class AdaptiveMaxPool3d(_AdaptiveMaxMixin, torch.nn.AdaptiveMaxPool3d):
    __doc__ = torch.nn.AdaptiveMaxPool3d.__doc__
    _pool = staticmethod(ours.adaptive_max_pool3d)


class _MaxUnpoolMixin:
    def forward(self, input: Tensor, indices: Tensor,
                output_size: Optional[list[int]] = None) -> Tensor:
        return type(self)._unpool(input, indices, self.kernel_size, self.stride, self.padding,
                                  output_size)


class MaxUnpool1d(_MaxUnpoolMixin, torch.nn.MaxUnpool1d):
    __doc__ = torch.nn.MaxUnpool1d.__doc__
    _unpool = staticmethod(ours.max_unpool1d)


class MaxUnpool2d(_MaxUnpoolMixin, torch.nn.MaxUnpool2d):
    __doc__ = torch.nn.MaxUnpool2d.__doc__
    _unpool = staticmethod(ours.max_unpool2d)


class MaxUnpool3d(_MaxUnpoolMixin, torch.nn.MaxUnpool3d):
    __doc__ = torch.nn.MaxUnpool3d.__doc__
    _unpool = staticmethod(ours.max_unpool3d)


class _GlobalAvgPoolNd(torch.nn.Module):
    _dims: int

    def __init__(self, flatten: bool = False) -> None:
        super().__init__()
        self.flatten = flatten

    def forward(self, input: Tensor) -> Tensor:
        out = ours.__dict__[f"adaptive_avg_pool{self._dims}d"](input, 1)
        # (N, C, 1, ...) -> (N, C); an unbatched (C, 1, ...) -> (C,)
        return out.flatten(start_dim=out.dim() - self._dims - 1) if self.flatten else out

    def extra_repr(self) -> str:
        return f"flatten={self.flatten}"


class GlobalAvgPool1d(_GlobalAvgPoolNd):
    r"""Global average pooling: each feature map of :math:`(N, C, L)` becomes its mean, giving
    :math:`(N, C, 1)`, or :math:`(N, C)` with ``flatten=True`` (the usual last layer before a
    classifier). Unbatched inputs :math:`(C, L)` work too."""
    _dims = 1


class GlobalAvgPool2d(_GlobalAvgPoolNd):
    r"""Global average pooling: each feature map of :math:`(N, C, H, W)` becomes its mean, giving
    :math:`(N, C, 1, 1)`, or :math:`(N, C)` with ``flatten=True``.

    Examples::

        >>> GlobalAvgPool2d(flatten=True)(torch.randn(8, 512, 7, 7)).shape
        torch.Size([8, 512])
    """
    _dims = 2


class GlobalAvgPool3d(_GlobalAvgPoolNd):
    r"""Global average pooling over :math:`(N, C, D, H, W)` to :math:`(N, C, 1, 1, 1)`, or
    :math:`(N, C)` with ``flatten=True``."""
    _dims = 3
