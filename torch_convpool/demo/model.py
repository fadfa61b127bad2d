"""One CNN architecture, built from torch_convpool's layers or from torch.nn's.

conv -> dilated conv -> max pool -> depthwise-separable conv -> average pool ->
depthwise-separable conv -> global average pool -> linear. Both builds have the same parameter
names, so one's ``state_dict`` loads into the other: the two start from the same weights.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import nn as ours

__all__ = ["DigitsCNN", "build_model"]


class _TorchSeparable(nn.Module):
    """torch.nn has no depthwise-separable conv: a depthwise conv, then a 1x1 (the parameter names
    of :class:`torch_convpool.nn.DepthwiseSeparableConv2d`)."""

    def __init__(self, cin: int, cout: int, kernel_size: int, padding: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, kernel_size, padding=padding, groups=cin)
        self.pointwise = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class DigitsCNN(nn.Module):
    """``features`` (the spatial layers, whose last output the receptive-field pictures use), then
    ``pool`` (global average) and ``classifier``."""

    def __init__(self, layers: str = "ours", num_classes: int = 10) -> None:
        super().__init__()
        L = ours if layers == "ours" else nn
        if layers not in ("ours", "torch"):
            raise ValueError(f"layers must be 'ours' or 'torch', got {layers!r}")
        separable = ours.DepthwiseSeparableConv2d if layers == "ours" else _TorchSeparable

        def block(conv: nn.Module, channels: int) -> list[nn.Module]:
            return [conv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(L.Conv2d(1, 16, 3, padding=1), 16),                  # 32x32, field 3
            *block(L.Conv2d(16, 16, 3, padding=2, dilation=2), 16),     # dilated: field 7
            L.MaxPool2d(2),                                             # 16x16
            *block(separable(16, 32, 3, padding=1), 32),
            L.AvgPool2d(2),                                             # 8x8
            *block(separable(32, 64, 3, padding=1), 64),
        )
        self.pool = ours.GlobalAvgPool2d(flatten=True) if layers == "ours" else nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)))


def build_model(layers: str, seed: int = 0) -> DigitsCNN:
    """The CNN from ``layers`` ('ours' or 'torch'), initialised by torch.nn's rules from ``seed``
    (the same weights for both)."""
    torch.manual_seed(seed)
    reference = DigitsCNN("torch")
    if layers == "torch":
        return reference
    model = DigitsCNN("ours")
    model.load_state_dict(reference.state_dict())
    return model
