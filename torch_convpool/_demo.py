"""``python -m torch_convpool demo``: a small CNN made of our layers learns a toy task."""
from __future__ import annotations

import time

import torch

from . import nn as cnn

__all__ = ["train_demo"]


def _batch(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images with a bright 4x4 square in one of the four quadrants; the label is the
    quadrant."""
    images = torch.randn(n, 1, 16, 16, generator=generator) * 0.3
    labels = torch.randint(0, 4, (n,), generator=generator)
    for i, label in enumerate(labels.tolist()):
        top = (label // 2) * 8 + int(torch.randint(0, 5, (1,), generator=generator))
        left = (label % 2) * 8 + int(torch.randint(0, 5, (1,), generator=generator))
        images[i, 0, top:top + 4, left:left + 4] += 1.5
    return images, labels


def build_model() -> torch.nn.Module:
    return torch.nn.Sequential(
        cnn.Conv2d(1, 8, 3, padding="same"), torch.nn.ReLU(),
        cnn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
        cnn.Conv2d(16, 16, 3, stride=2, padding="same", groups=16),  # strided 'same': beyond torch
        cnn.Conv2d(16, 4, 1),
        torch.nn.Flatten(2), torch.nn.Unflatten(2, (4, 4)),
    )


def train_demo(steps: int = 60, seed: int = 0) -> int:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build_model()
    head = torch.nn.Linear(4 * 4 * 4, 4)
    params = list(model.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-2)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        images, labels = _batch(32, generator)
        logits = head(model(images).flatten(1))
        loss = torch.nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step == 1 or step % 10 == 0:
            print(f"step {step:3d}  loss {loss.item():.3f}")
    images, labels = _batch(256, generator)
    with torch.no_grad():
        accuracy = (head(model(images).flatten(1)).argmax(1) == labels).float().mean().item()
    print(f"held-out accuracy {accuracy:.0%} after {steps} steps "
          f"({time.perf_counter() - start:.1f} s on the CPU)")
    return 0
