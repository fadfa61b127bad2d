"""One-line self-tests of every op against torch's built-in (``python -m torch_convpool check``)."""
from __future__ import annotations

from typing import Callable, Iterator

import torch
import torch.nn.functional as torch_F

from . import functional as F

__all__ = ["run_selftests"]


def _cases() -> Iterator[tuple[str, Callable, Callable, Callable[[str], tuple]]]:
    for dims in (1, 2, 3):
        size = (7,) * dims
        name = f"conv{dims}d"
        yield name, getattr(F, name), getattr(torch_F, name), lambda dev, size=size, dims=dims: (
            torch.randn(2, 4, *size, device=dev, dtype=torch.float64, requires_grad=True),
            torch.randn(6, 2, *(3,) * dims, device=dev, dtype=torch.float64, requires_grad=True),
            None, 2, 1, 1, 2)
        name = f"conv_transpose{dims}d"
        yield name, getattr(F, name), getattr(torch_F, name), lambda dev, size=size, dims=dims: (
            torch.randn(2, 4, *size, device=dev, dtype=torch.float64, requires_grad=True),
            torch.randn(4, 3, *(3,) * dims, device=dev, dtype=torch.float64, requires_grad=True),
            None, 2, 1, 1, 2)


def run_selftests(devices: list[str]) -> Iterator[tuple[str, bool]]:
    """Yields (line, ok) per op and device: forward and gradients against torch in float64."""
    for name, ours, theirs, make_args in _cases():
        for device in devices:
            try:
                args = make_args(device)
                out, expected = ours(*args), theirs(*args)
                tensors = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
                grads = torch.autograd.grad(out.sum(), tensors)
                expected_grads = torch.autograd.grad(expected.sum(), tensors)
                error = max([(out - expected).abs().max().item()] +
                            [(g - e).abs().max().item() for g, e in zip(grads, expected_grads)])
                ok = error < 1e-9
                yield f"  {name:22s} {device:5s} {'OK  ' if ok else 'FAIL'} max |ours - torch| = {error:.1e}", ok
            except Exception as err:  # a self-test reports, it does not crash
                yield f"  {name:22s} {device:5s} FAIL {type(err).__name__}: {err}", False
