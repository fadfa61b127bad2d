"""What the benchmarks say about the CPU they ran on, read once from /proc/cpuinfo."""
from __future__ import annotations

import functools
import platform


@functools.cache
def _field(name: str) -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def model() -> str:
    return _field("model name") or platform.processor() or platform.machine()


def flags() -> set[str]:
    return set((_field("flags") or "").split())


def native_bfloat16() -> bool:
    """Whether the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX-BF16)."""
    return bool({"avx512_bf16", "amx_bf16"} & flags())


def low_precision_flags() -> str:
    """The CPU's bfloat16/float16 matrix and vector extensions (what a bfloat16 GEMM can reach)."""
    if _field("flags") is None:
        return "flags unknown"
    wanted = ("amx_bf16", "amx_fp16", "avx512_bf16", "avx512_fp16")
    return " ".join(w for w in wanted if w in flags()) or "no bf16/fp16 extensions"


def vector_isa() -> str:
    """The widest x86 vector ISA of this CPU (and AMX): our kernels' clones and paths differ by
    it, so BENCHMARKS.md keeps one CPU section per ISA."""
    if _field("flags") is None:
        return platform.machine()
    have = flags()
    if "avx512f" in have:
        # AMX CPUs (Intel's) take other paths: MKL's GEMMs, ATen's and our AMX tiles for bfloat16.
        return "AVX-512 + AMX" if "amx_bf16" in have else "AVX-512"
    return "AVX2" if "avx2" in have else "baseline"
