"""What :func:`torch_convpool.convert` replaced in a model and what it could not."""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["ConversionReport", "KeptLayer"]


class KeptLayer(NamedTuple):
    """A convolution or pooling layer that stayed as it was."""

    path: str        # its name in ``model.named_modules()`` ("" for the model itself)
    type_name: str   # its class
    reason: str


@dataclass
class ConversionReport:
    """A summary of a conversion; ``print(report)`` shows it.

    Attributes:
        replaced: torch layer classes swapped for ours, with how many of each.
        kept: the convolution and pooling layers left as they were, and why.
        functional: whether convert() was asked to reroute torch's functional convolution and
            pooling calls to ours (:func:`torch_convpool.enabled`).
        rerouting: whether the model's ``forward`` runs under that rerouting: where
            ``functional`` and the model's code names one of those functions.
        rerouted: functional calls sent to ours so far, per torch function (counted in eager runs
            of the converted model, and in the run on ``example_inputs`` when given).
        left_to_torch: functional calls that stayed with torch so far, per (function, reason).
    """

    replaced: collections.Counter = field(default_factory=collections.Counter)
    kept: list[KeptLayer] = field(default_factory=list)
    functional: bool = True
    rerouting: bool = True
    rerouted: collections.Counter = field(default_factory=collections.Counter)
    left_to_torch: collections.Counter = field(default_factory=collections.Counter)

    def __str__(self) -> str:
        total = sum(self.replaced.values())
        out = [f"torch_convpool.convert: {total} layer(s) replaced, {len(self.kept)} kept"]
        for name, count in sorted(self.replaced.items()):
            out.append(f"  replaced  {count:4d} x {name}")
        for layer in self.kept:
            out.append(f"  kept      {layer.path or '(model)'} ({layer.type_name}): {layer.reason}")
        if not self.functional:
            out.append("functional calls in forward: not rerouted (functional=False)")
            return "\n".join(out)
        if not self.rerouting:
            out.append("functional calls in forward: none in the model's code (its forward runs "
                       "as it is; torch_convpool.enabled() reroutes calls made by other means)")
            return "\n".join(out)
        out.append("functional calls in forward: rerouted to torch_convpool "
                   "(counted in eager runs so far)")
        for name, count in sorted(self.rerouted.items()):
            out.append(f"  rerouted  {count:4d} x {name}")
        for (name, reason), count in sorted(self.left_to_torch.items()):
            out.append(f"  torch's   {count:4d} x {name}: {reason}")
        if not self.rerouted and not self.left_to_torch:
            out.append("  (none seen yet: run the model, or pass example_inputs to convert)")
        return "\n".join(out)
