"""Which algorithm computes the CPU's dense convolutions, and how to force one.

``"auto"`` (the default) picks per shape: Winograd F(4x4, 3x3) for 3x3 stride-1 convolutions with
enough channels and tiles, any dilation (in 3-d, any kernel along depth over 3x3 in height and
width; larger kernels such as 5x5 as 3x3 blocks of taps), the blocked implicit-GEMM engine for
everything else (both in the tensors' own memory format).
``"gemm"`` and ``"winograd"`` force one (``"winograd"`` where it applies, the GEMM engine
elsewhere); ``"im2col"`` runs the whole-sample im2col -> GEMM -> col2im pipeline the CUDA kernels
use, so CPU tests can check it. Depthwise convolutions always take their own direct kernels.
"""
from __future__ import annotations

from ._library import _C

__all__ = ["set_conv_algorithm", "get_conv_algorithm", "CONV_ALGORITHMS"]

CONV_ALGORITHMS = ("auto", "gemm", "winograd", "im2col")


def get_conv_algorithm() -> str:
    """The algorithm currently forced for the CPU's dense convolutions (``"auto"``: none)."""
    return _C._conv_algorithm()


class set_conv_algorithm:
    """Forces the algorithm of the CPU's dense convolutions, process-wide.

    Called plainly it sets the algorithm until the next call; used as a context manager it
    restores the previous one on exit.

    Args:
        name: one of ``"auto"``, ``"gemm"``, ``"winograd"``, ``"im2col"``.

    Examples::

        >>> torch_convpool.set_conv_algorithm("gemm")          # from now on
        >>> with torch_convpool.set_conv_algorithm("winograd"):  # inside the block only
        ...     y = torch_convpool.functional.conv2d(x, w, padding=1)
    """

    def __init__(self, name: str) -> None:
        if name not in CONV_ALGORITHMS:
            raise ValueError(
                f"set_conv_algorithm: unknown algorithm {name!r}; expected one of {CONV_ALGORITHMS}")
        self._previous = get_conv_algorithm()
        _C._set_conv_algorithm(name)

    def __enter__(self) -> set_conv_algorithm:
        return self

    def __exit__(self, *exc_info) -> None:
        _C._set_conv_algorithm(self._previous)
