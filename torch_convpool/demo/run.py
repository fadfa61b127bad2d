"""The demo from end to end: data, both models, training, the numbers, the pictures."""
from __future__ import annotations

import os

import torch

from ..effective_rf import analytic_box, effective_receptive_field
from ..receptive_field import receptive_field
from ..rf_plot import plot_receptive_field
from .data import load_digits
from .figures import plot_training_curves
from .model import build_model
from .training import train

__all__ = ["run_demo"]


def run_demo(epochs: int = 12, out_dir: str = "demo_output", seed: int = 0) -> int:
    """Train the CNN made of our layers and the same CNN of torch.nn layers on the digits, print
    their held-out accuracies and training times, and write ``training_curves.png`` and
    ``receptive_field.png`` into ``out_dir``. Returns 0 (a process exit code)."""
    data = load_digits(seed=seed)
    print(f"scikit-learn digits: {len(data.train_labels)} training and {len(data.test_labels)} "
          f"held-out images, 8x8 upsampled to {tuple(data.train_images.shape[2:])}")
    untrained = build_model("ours", seed)
    models = {"torch_convpool": build_model("ours", seed), "torch.nn": build_model("torch", seed)}
    histories = train(models, data, epochs=epochs, seed=seed)
    for name, h in histories.items():
        print(f"{name:>14s}: held-out accuracy {h.test_accuracy[-1]:.1%} after {epochs} epochs, "
              f"{h.seconds:.1f} s of training ({torch.get_num_threads()} threads)")

    os.makedirs(out_dir, exist_ok=True)
    curves = os.path.join(out_dir, "training_curves.png")
    plot_training_curves(curves, histories)

    ours = models["torch_convpool"].eval()
    features = ours.features
    size = tuple(data.train_images.shape[1:])
    report = receptive_field(features, size)
    feature_size = tuple(features(data.test_images[:1]).shape[2:])
    box = analytic_box(report, feature_size)
    sample = data.test_images[:256]
    heat = effective_receptive_field(features, sample)
    heat_before = effective_receptive_field(untrained.eval().features, sample)
    rf_path = os.path.join(out_dir, "receptive_field.png")
    plot_receptive_field(rf_path, data.test_images[0, 0], heat, box, heat_before=heat_before,
                         title="centre unit of the last conv layer (torch_convpool model): "
                               "analytic field and effective field (Luo et al. 2016)")
    print(f"receptive field of the last conv layer: {report.rf[0]}x{report.rf[1]} px "
          f"(jump {report.jump[0]}), gradient check: "
          f"{'consistent' if report.verified else report.message}")
    print(f"wrote {curves} and {rf_path}")
    return 0
