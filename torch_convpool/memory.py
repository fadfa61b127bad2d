"""The cache that our operators' large CPU outputs come from.

A fresh CPU tensor of tens of megabytes costs more in first-touch page faults than the kernel
that fills it, and a training loop frees and asks for the same sizes every step. So our ops take
outputs of 1 MiB and more from blocks that our earlier outputs left behind, as torch's CUDA
caching allocator does for device memory. Freed blocks stay with the process, up to a limit (by
default 1/8 of the machine's memory, at most 2 GiB; the environment variable
``CONVPOOL_OUTPUT_CACHE_MB`` sets it at start-up), least recently freed given back first.
"""
from typing import NamedTuple

from ._library import _C

__all__ = ["CacheInfo", "cache_info", "empty_cache", "set_cache_limit"]


class CacheInfo(NamedTuple):
    """What the output cache holds and has done."""

    cached_bytes: int  #: held for reuse, in no tensor
    limit_bytes: int  #: the most it may hold (0: nothing is cached)
    hits: int  #: outputs served from the cache
    misses: int  #: outputs that took fresh memory


def cache_info() -> CacheInfo:
    """Returns the output cache's :class:`CacheInfo`."""
    return CacheInfo(*_C._output_cache_info())


def empty_cache() -> None:
    """Returns every cached block to the system (like ``torch.cuda.empty_cache``); tensors in
    use are not touched."""
    _C._release_output_cache()


def set_cache_limit(limit_bytes: int) -> None:
    """Sets the most bytes the cache holds, freeing the least recently cached blocks beyond it;
    ``0`` turns caching off (every output then takes fresh memory)."""
    if limit_bytes < 0:
        raise ValueError(f"set_cache_limit: limit_bytes ({limit_bytes}) must be non-negative")
    _C._set_output_cache_limit(int(limit_bytes))
