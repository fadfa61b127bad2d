"""What users who build on torch_convpool test with."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from ._library import _C

__all__ = ["cuda_emulation", "gemm_kernel", "poison_outputs", "vector_width"]


@contextlib.contextmanager
def _process_setting(get: Callable[[], Any], set_: Callable[[Any], None], value: Any) -> Iterator[None]:
    """Sets one of the extension's process-wide settings for the block, then restores it."""
    previous = get()
    set_(value)
    try:
        yield
    finally:
        set_(previous)


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
    with _process_setting(_C._cuda_emulation, _C._set_cuda_emulation, enabled):
        yield


@contextlib.contextmanager
def gemm_kernel(name: str) -> Iterator[None]:
    r"""Selects the GEMM of the CPU convolution engines' float32/float64 products in the block.

    ``"blas"`` multiplies through ``torch.mm`` (MKL), ``"packed"`` through our own
    register-blocked kernel; ``"auto"`` (the default) takes ours for the channels_last engine on
    an AVX-512 CPU that is not Intel's (where MKL runs a generic AVX2 kernel) and MKL elsewhere.
    Tests force each; results agree to float rounding. Process-wide, restored on exit.

    Args:
        name: ``"auto"``, ``"blas"`` or ``"packed"``.

    Examples::

        >>> from torch_convpool.testing import gemm_kernel
        >>> with gemm_kernel("packed"):
        ...     y = torch_convpool.functional.conv2d(x, w, padding=1)
    """
    with _process_setting(_C._gemm_kernel, _C._set_gemm_kernel, name):
        yield


@contextlib.contextmanager
def vector_width(bits: int) -> Iterator[None]:
    r"""Caps the vector registers of the CPU kernels written over generic vectors in the block.

    ``256`` runs them with 32-byte registers and AVX2's register blocking (16 registers) even on
    an AVX-512 CPU, so one machine checks both shapes of each kernel; ``512`` uses AVX-512's where
    the CPU has them (the default). Results agree to float rounding. Process-wide, restored on
    exit.

    Args:
        bits: ``256`` or ``512``.

    Examples::

        >>> from torch_convpool.testing import vector_width
        >>> with vector_width(256):
        ...     y = torch_convpool.functional.conv2d(x, w, padding=1, groups=8)
    """
    if bits not in (256, 512):
        raise ValueError(f"vector_width: bits must be 256 or 512, got {bits}")
    with _process_setting(_C._wide_vectors, _C._set_wide_vectors, bits == 512):
        yield


@contextlib.contextmanager
def poison_outputs(on: bool = True) -> Iterator[None]:
    r"""Makes every CPU output of our ops start as all bits set (NaN, or -1 in integer types).

    Large outputs come from a cache of reused blocks (:mod:`torch_convpool.memory`), so a kernel
    that leaves part of its output unwritten would return what an earlier tensor held; with
    poisoning it returns NaN and fails its test. The test suite runs with it on. Process-wide,
    restored on exit.

    Examples::

        >>> from torch_convpool.testing import poison_outputs
        >>> with poison_outputs():
        ...     y = torch_convpool.functional.max_pool2d(x, 2)
    """
    with _process_setting(_C._poison_outputs, _C._set_poison_outputs, on):
        yield
