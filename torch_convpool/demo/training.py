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


def train(models: dict[str, nn.Module], data: Digits, epochs: int = 12, batch_size: int = 64,
          lr: float = 3e-3, seed: int = 0) -> dict[str, History]:
    """Train every model in ``models`` in lockstep: each mini-batch goes through one model's step,
    then the next's, so the times compare under the same machine load (a shared machine's load
    changes by the minute). Adam with a one-cycle learning rate, cross-entropy, batches in an
    order drawn from ``seed``. A model's time counts its own training steps only."""
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(seed)
    n = len(data.train_labels)
    steps_per_epoch = (n + batch_size - 1) // batch_size
    optimizers, schedules = {}, {}
    for name, model in models.items():
        optimizers[name] = torch.optim.Adam(model.parameters(), lr=lr)
        schedules[name] = torch.optim.lr_scheduler.OneCycleLR(
            optimizers[name], max_lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch)
    histories = {name: History() for name in models}
    bar = tqdm(total=epochs * steps_per_epoch, desc="training", unit="batch")
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        totals = dict.fromkeys(models, 0.0)
        for model in models.values():
            model.train()
        for first in range(0, n, batch_size):
            batch = order[first:first + batch_size]
            images, labels = data.train_images[batch], data.train_labels[batch]
            for name, model in models.items():
                start = time.perf_counter()
                loss = nn.functional.cross_entropy(model(images), labels)
                optimizers[name].zero_grad()
                loss.backward()
                optimizers[name].step()
                schedules[name].step()
                histories[name].seconds += time.perf_counter() - start
                totals[name] += loss.item() * len(batch)
            bar.update(1)
        for name, model in models.items():
            test_loss, test_acc = accuracy(model, data.test_images, data.test_labels)
            histories[name].train_loss.append(totals[name] / n)
            histories[name].test_loss.append(test_loss)
            histories[name].test_accuracy.append(test_acc)
        bar.set_postfix({f"{name} held out": f"{h.test_accuracy[-1]:.1%}"
                         for name, h in histories.items()})
    bar.close()
    return histories
