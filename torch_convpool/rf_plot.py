"""Pictures of a receptive field: the analytic box and the effective field as a heat map, drawn
over an input image (matplotlib, imported only when a picture is made)."""
from __future__ import annotations

import textwrap
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from .effective_rf import FieldBox, analytic_box, effective_receptive_field, last_spatial_layer
from .receptive_field import receptive_field

__all__ = ["plot_receptive_field", "plot_model_receptive_field"]


def plot_model_receptive_field(path: str, model: nn.Module, input_size: Sequence[int],
                               device: str = "cpu", samples: int = 16) -> str:
    r"""Draw the receptive field of the centre unit of ``model``'s last spatial layer that is not
    an adaptive pool (a classifier's output has no spatial dims): the analytic box and the
    effective field over ``samples`` standard-normal inputs, the model in eval mode (restored
    after). Returns the layer's name.

    Raises:
        ValueError: the model has no such layer, or its input is not 2-d.
    """
    input_size = tuple(int(n) for n in input_size)
    if len(input_size) != 3:
        raise ValueError(f"--plot draws 2-d inputs: input_size must be (C, H, W), got {input_size}")
    layer, row = last_spatial_layer(model, input_size)
    if layer is None:
        raise ValueError(f"{type(model).__name__} has no conv or (non-adaptive) pooling layer")
    name = next(n for n, m in model.named_modules() if m is layer)
    report = receptive_field(model, input_size, device=device, verify=False)
    inputs = torch.randn((samples, *input_size), generator=torch.Generator().manual_seed(0))
    inputs = inputs.to(device)
    sizes: list = []
    handle = layer.register_forward_hook(lambda m, args, out: sizes.append(tuple(out.shape[2:])))
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(inputs[:1])
        handle.remove()
        heat = effective_receptive_field(model, inputs, layer)
    finally:
        handle.remove()
        for module, training in modes.items():
            module.training = training
    box = analytic_box(report, sizes[0], row)
    plot_receptive_field(path, None, heat.cpu(), box,
                         title=f"{type(model).__name__}: centre unit of {name} "
                               f"({samples} random inputs of {input_size})",
                         labels=("as the model is",))
    return name


def plot_receptive_field(path: str, image: Optional[Tensor], heat: Tensor, box: FieldBox, *,
                         title: str = "", heat_before: Optional[Tensor] = None,
                         labels: Sequence[str] = ("trained", "at initialisation")) -> None:
    r"""Write a PNG: ``image`` with the effective field ``heat`` as contours and the analytic
    field ``box`` of the centre unit; then ``heat`` (and ``heat_before``, e.g. at
    initialisation) as heat maps with the same box.

    Args:
        path (str): the PNG to write.
        image (Tensor, optional): :math:`(H, W)` or :math:`(C, H, W)` (channels averaged); ``None``
            leaves out the first panel.
        heat (Tensor): :math:`(H, W)`, from
            :func:`~torch_convpool.effective_rf.effective_receptive_field`.
        box (FieldBox): from :func:`~torch_convpool.effective_rf.analytic_box` (2 spatial dims).
        title (str, optional): the figure's title.
        heat_before (Tensor, optional): a second effective field to draw beside ``heat``.
        labels (sequence of str, optional): the names of ``heat`` and ``heat_before``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    if image is not None and image.dim() == 3:
        image = image.float().mean(0)
    if heat.dim() != 2 or len(box.low) != 2 or (image is not None and image.dim() != 2):
        raise ValueError("plot_receptive_field draws 2-d inputs only, got a heat map of shape "
                         f"{tuple(heat.shape)} and a field of {len(box.low)} dims")
    heats = [(heat, labels[0])] + ([(heat_before, labels[1])] if heat_before is not None else [])
    panels = len(heats) + (image is not None)
    fig, axes = plt.subplots(1, panels, figsize=(4.8 * panels, 5.0), squeeze=False)
    axes = list(axes[0])
    height, width = heat.shape
    rf = " x ".join(str(r) for r in box.rf)

    def draw_box(ax) -> None:
        (y0, x0), (y1, x1) = box.low, box.high
        # pixel centres are at integers: the field covers [low - 0.5, high + 0.5]
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False,
                               edgecolor="cyan", linewidth=2, linestyle="--",
                               label=f"analytic field, {rf} px"))
        # a field larger than the input (deep models) is shown whole, the input outlined in it
        ax.set_xlim(min(-0.5, x0 - 1.5), max(width - 0.5, x1 + 1.5))
        ax.set_ylim(max(height - 0.5, y1 + 1.5), min(-0.5, y0 - 1.5))
        if x0 < 0 or y0 < 0 or x1 > width - 1 or y1 > height - 1:
            ax.add_patch(Rectangle((-0.5, -0.5), width, height, fill=False, edgecolor="white",
                                   linewidth=1))
            ax.set_facecolor("0.85")
        ax.set_xticks([])
        ax.set_yticks([])

    if image is not None:
        ax = axes.pop(0)
        ax.imshow(image.detach().cpu().numpy(), cmap="gray")
        ax.contour(heat.detach().cpu().numpy(), levels=[0.25, 0.5, 0.75], cmap="autumn",
                   linewidths=1.5)
        draw_box(ax)
        ax.set_title("an input; effective field at 25/50/75%\nof its peak (contours)",
                     fontsize=10)
        ax.legend(loc="lower center", fontsize=8, framealpha=0.8)
    for ax, (h, label) in zip(axes, heats):
        shown = ax.imshow(h.detach().cpu().numpy(), cmap="inferno", vmin=0, vmax=1)
        draw_box(ax)
        above_half = int((h >= 0.5).sum())
        ax.set_title(f"effective field, {label}: {above_half} px at >= 50%\n"
                     f"of its peak; analytic field (dashed) {rf} px", fontsize=10)
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(textwrap.fill(title, 45 * panels), fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93 if title else 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
