"""What users who build on torch_convpool test with."""
from __future__ import annotations

import contextlib
from typing import Iterator

from ._library import _C

__all__ = ["cuda_emulation"]


@contextlib.contextmanager
def cuda_emulation(enabled: bool = True) -> Iterator[None]:
    r"""Computes CPU tensors with the CUDA kernels while the block runs.

    Every op then runs the bodies of our CUDA kernels on the CPU, over the same index space, in a
    grid-stride loop with a deliberately small grid (several passes over any tensor of more than
    96 elements), and computes float16/bfloat16 as the GPU does: the inputs as they are, sums in
    float32, one rounding at the end. A machine without a GPU so checks the GPU's index math and
    its reduced-precision arithmetic. Slower than the CPU's own kernels; for tests only. The
    setting is process-wide (autograd's backward may run on another thread) and is restored on
    exit.

    Args:
        enabled: ``False`` switches emulation off inside the block.

    Examples::

        >>> from torch_convpool.testing import cuda_emulation
        >>> with cuda_emulation():
        ...     y = torch_convpool.functional.conv2d(x.half(), w.half(), padding=1)
    """
    previous = _C._cuda_emulation()
    _C._set_cuda_emulation(enabled)
    try:
        yield
    finally:
        _C._set_cuda_emulation(previous)
