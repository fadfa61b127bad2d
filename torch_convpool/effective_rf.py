"""The effective receptive field: how much each input pixel actually moves an output unit.

Luo et al., "Understanding the Effective Receptive Field in Deep Convolutional Neural Networks"
(NeurIPS 2016): back-propagate a gradient of 1 from the centre unit of a feature map (all channels)
and average the absolute input gradient over many inputs. The result is roughly Gaussian and much
smaller than the analytic field of :func:`torch_convpool.receptive_field`, which bounds it.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from .receptive_field import ReceptiveFieldReport, receptive_field

__all__ = ["effective_receptive_field", "analytic_box", "last_spatial_layer", "FieldBox"]


def effective_receptive_field(model: nn.Module, inputs: Tensor,
                              layer: Optional[nn.Module] = None) -> Tensor:
    r"""The mean absolute input gradient of the centre unit of ``layer``'s output (or the model's
    output), summed over its channels, over the batch ``inputs``.

    Args:
        model (nn.Module): the model; run once on ``inputs`` (its mode is left as it is).
        inputs (Tensor): a batch :math:`(N, C, *)` of inputs.
        layer (nn.Module, optional): a submodule whose output (with spatial dims) holds the unit;
            ``None`` for the model's own output. Default: ``None``

    Returns:
        Tensor: :math:`(*)`, the input's spatial shape, non-negative, its maximum 1 (all zeros
        when no input pixel reaches the unit).

    Raises:
        ValueError: the chosen output has no spatial dims.
    """
    captured: list[Tensor] = []
    handle = None
    if layer is not None:
        handle = layer.register_forward_hook(lambda m, args, out: captured.append(out))
    try:
        x = inputs.detach().clone().requires_grad_(True)
        out = model(x)
    finally:
        if handle is not None:
            handle.remove()
    target = captured[-1] if layer is not None else out
    if not isinstance(target, Tensor) or target.dim() != x.dim():
        raise ValueError("the effective receptive field needs an output with the input's spatial "
                         f"dims; got {getattr(target, 'shape', type(target).__name__)}")
    centre = (slice(None), slice(None), *(n // 2 for n in target.shape[2:]))
    (grad,) = torch.autograd.grad(target[centre].sum(), x)
    heat = grad.abs().mean(dim=(0, 1))
    peak = heat.max()
    return heat / peak if peak > 0 else heat


class FieldBox(NamedTuple):
    """The analytic field of one unit: per spatial dim, the first and last input pixel it can see
    (unclipped: may reach into the padding)."""

    low: tuple
    high: tuple
    rf: tuple


def analytic_box(report: ReceptiveFieldReport, output_size: tuple, row: int = -1) -> FieldBox:
    """The analytic field of the centre unit of a feature map of ``output_size`` (spatial dims),
    from a :func:`receptive_field` report: its output's field, or one layer's (``row``) when
    the report has layers."""
    if report.layers:
        field = report.layers[row]
        rf, jump, start = field.rf, field.jump, field.start
    else:
        rf, jump, start = report.rf, report.jump, report.start
    centres = [s + (n // 2) * j for s, n, j in zip(start, output_size, jump)]
    low = tuple(c - (r - 1) / 2 for c, r in zip(centres, rf))
    high = tuple(c + (r - 1) / 2 for c, r in zip(centres, rf))
    return FieldBox(low, high, tuple(rf))


def last_spatial_layer(model: nn.Module, input_size: tuple) -> tuple[Optional[nn.Module], int]:
    """The module of the last spatial layer that is not an adaptive pool (the last one whose
    output units still have a bounded field), and its row in ``receptive_field``'s report.
    ``(None, -1)`` when the model has no such layer."""
    report = receptive_field(model, input_size, verify=False)
    modules = dict(model.named_modules())
    for index in range(len(report.layers) - 1, -1, -1):
        row = report.layers[index]
        if not row.approximate and row.name in modules:
            return modules[row.name], index
    return None, -1
