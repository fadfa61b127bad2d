"""scikit-learn's bundled handwritten digits (1,797 8x8 images, no download) as tensors."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["Digits", "load_digits"]


class Digits(NamedTuple):
    train_images: Tensor   # (N, 1, size, size), float32, standardised
    train_labels: Tensor   # (N,), int64
    test_images: Tensor
    test_labels: Tensor


def load_digits(size: int = 32, test_fraction: float = 0.2, seed: int = 0) -> Digits:
    """The digits, upsampled from 8x8 to ``size`` x ``size`` (bilinear: a field of a few pixels
    then covers a stroke, and the receptive-field pictures have pixels to show), standardised with
    the training set's mean and deviation, split stratified by label."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    labels = torch.tensor(bunch.target, dtype=torch.int64)
    train_idx, test_idx = train_test_split(torch.arange(len(labels)).numpy(),
                                           test_size=test_fraction, random_state=seed,
                                           stratify=labels.numpy())
    train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    mean, std = images[train_idx].mean(), images[train_idx].std()
    images = (images - mean) / std
    return Digits(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx])
