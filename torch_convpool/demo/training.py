"""Training and evaluation of the demo CNN, with a tqdm progress bar."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .data import Digits

__all__ = ["History", "train", "accuracy"]


@dataclass
class History:
    """Per epoch: mean training loss, held-out loss and accuracy; and the training time (s)."""

    train_loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor) -> tuple[float, float]:
    """(loss, accuracy) of ``model`` in eval mode; its mode is restored."""
    was_training = model.training
    model.eval()
    logits = model(images)
    model.train(was_training)
    loss = nn.functional.cross_entropy(logits, labels).item()
    return loss, (logits.argmax(1) == labels).float().mean().item()


def train(model: nn.Module, data: Digits, epochs: int = 12, batch_size: int = 64,
          lr: float = 3e-3, seed: int = 0, desc: str = "") -> History:
    """Adam with a one-cycle learning rate, cross-entropy, mini-batches in an order drawn from
    ``seed`` (the same order for every model). The time counts training steps only."""
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(seed)
    n = len(data.train_labels)
    steps_per_epoch = (n + batch_size - 1) // batch_size
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, epochs=epochs,
                                                   steps_per_epoch=steps_per_epoch)
    history = History()
    bar = tqdm(total=epochs * steps_per_epoch, desc=desc, unit="step", leave=True)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, generator=generator)
        start, total = time.perf_counter(), 0.0
        for first in range(0, n, batch_size):
            batch = order[first:first + batch_size]
            loss = nn.functional.cross_entropy(model(data.train_images[batch]),
                                               data.train_labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
            bar.update(1)
        history.seconds += time.perf_counter() - start
        test_loss, test_acc = accuracy(model, data.test_images, data.test_labels)
        history.train_loss.append(total / n)
        history.test_loss.append(test_loss)
        history.test_accuracy.append(test_acc)
        bar.set_postfix(loss=f"{total / n:.3f}", held_out=f"{test_acc:.1%}")
    bar.close()
    return history
