"""Loads ``torch_convpool._C`` and turns a build/runtime torch mismatch into a clear message."""
from __future__ import annotations

import importlib
from types import ModuleType

import torch

_REBUILD = (
    "Rebuild torch_convpool against the torch you run: "
    "`pip install --no-build-isolation --force-reinstall --no-deps .` (or `-e .`) from its source."
)


def _same_release(built: str, running: str) -> bool:
    # The C++ ABI changes between torch releases; local tags (+cpu, +cu130) must match too.
    return built == running


def load_compiled_module() -> ModuleType:
    try:
        from . import _build_meta
    except ImportError:
        _build_meta = None
    if _build_meta is not None and not _same_release(_build_meta.TORCH_VERSION, torch.__version__):
        raise ImportError(
            f"torch_convpool was built against torch {_build_meta.TORCH_VERSION} but is running with "
            f"torch {torch.__version__}. {_REBUILD}"
        )
    try:
        return importlib.import_module("torch_convpool._C")
    except ImportError as err:
        if "undefined symbol" in str(err) or "cannot open shared object" in str(err):
            raise ImportError(
                f"torch_convpool's compiled library does not fit torch {torch.__version__}: {err}. "
                f"{_REBUILD}"
            ) from err
        if "No module named" in str(err):
            raise ImportError(
                "torch_convpool's compiled library (torch_convpool._C) is not built. Install with "
                "`pip install --no-build-isolation -e .` from the source tree."
            ) from err
        raise
