"""The demo's training-curve picture (matplotlib, imported when drawn)."""
from __future__ import annotations

from .training import History

__all__ = ["plot_training_curves"]


def plot_training_curves(path: str, histories: dict[str, History]) -> None:
    """Write a PNG: training and held-out loss (log scale) and held-out accuracy per epoch, one
    colour per model, the training time in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for colour, (name, h) in zip(colours, histories.items()):
        epochs = range(1, len(h.train_loss) + 1)
        loss_ax.plot(epochs, h.train_loss, color=colour, label=f"{name}: training")
        loss_ax.plot(epochs, h.test_loss, color=colour, linestyle="--", label=f"{name}: held out")
        acc_ax.plot(epochs, [100 * a for a in h.test_accuracy], color=colour, marker="o",
                    markersize=3,
                    label=f"{name}: {100 * h.test_accuracy[-1]:.1f}% ({h.seconds:.1f} s training)")
    loss_ax.set_yscale("log")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("cross-entropy")
    loss_ax.set_title("loss")
    loss_ax.legend()
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("held-out accuracy (%)")
    acc_ax.set_ylim(80, 100)
    acc_ax.set_title("held-out accuracy")
    acc_ax.grid(alpha=0.3)
    acc_ax.legend(loc="lower right")
    fig.suptitle("scikit-learn digits (8x8 upsampled to 32x32): the same CNN, two implementations")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
