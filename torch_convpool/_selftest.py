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


def _distinct(dev, *shape):
    # float64 without ties, so max pooling's gradient is well defined
    n = torch.Size(shape).numel()
    return (torch.randperm(n, device=dev).double() / 7).view(shape).requires_grad_()


def _pool_cases() -> Iterator[tuple[str, Callable, Callable, Callable[[str], tuple]]]:
    for dims in (1, 2, 3):
        shape = (2, 3) + (7,) * dims
        for name, extra in ((f"max_pool{dims}d", (3, 2, 1)), (f"avg_pool{dims}d", (3, 2, 1)),
                            (f"adaptive_avg_pool{dims}d", (3,)), (f"adaptive_max_pool{dims}d", (3,))):
            yield name, getattr(F, name), getattr(torch_F, name), (
                lambda dev, shape=shape, extra=extra: (_distinct(dev, *shape), *extra))

        def unpool_args(dev, dims=dims):
            # an even size, so the default unpooled size holds every index
            pooled, idx = getattr(torch_F, f"max_pool{dims}d")(
                _distinct(dev, 2, 3, *(8,) * dims).detach(), 2, return_indices=True)
            return pooled.requires_grad_(), idx, 2

        name = f"max_unpool{dims}d"
        yield name, getattr(F, name), getattr(torch_F, name), unpool_args


def run_selftests(devices: list[str]) -> Iterator[tuple[str, bool]]:
    """Yields (line, ok) per op and device: forward and gradients against torch in float64."""
    for name, ours, theirs, make_args in [*_cases(), *_pool_cases()]:
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
                verdict = "OK  " if ok else "FAIL"
                yield f"  {name:22s} {device:5s} {verdict} max |ours - torch| = {error:.1e}", ok
            except Exception as err:  # a self-test reports, it does not crash
                yield f"  {name:22s} {device:5s} FAIL {type(err).__name__}: {err}", False
