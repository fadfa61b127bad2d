"""Builds torch_convpool._C: the C++ (and, when CUDA can be built, CUDA) operators.

CUDA is compiled in when torch was built with CUDA and nvcc is found, or when FORCE_CUDA=1;
set FORCE_CUDA=0 to build for CPU only. A CPU-only build needs no CUDA file.
"""
import glob
import os
import shutil

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _want_cuda() -> bool:
    force = os.environ.get("FORCE_CUDA")
    if force is not None:
        return force == "1"
    has_nvcc = CUDA_HOME is not None or shutil.which("nvcc") is not None
    return torch.version.cuda is not None and has_nvcc


def _nvidia_wheel_include() -> list[str]:
    """Headers that the pip nvidia-* wheels carry (cusparse.h, ...) but a partial toolkit lacks."""
    try:
        import nvidia  # noqa: F401  (namespace package of the nvidia-* wheels)
    except ImportError:
        return []
    dirs = []
    for base in nvidia.__path__:
        dirs += glob.glob(os.path.join(base, "cu*", "include"))
        dirs += glob.glob(os.path.join(base, "*", "include"))
    return sorted(set(d for d in dirs if os.path.isdir(d)))


def _write_build_meta(with_cuda: bool) -> None:
    # Read at import time before the compiled module is loaded, so a torch upgrade after the build
    # gives a "rebuild" message instead of an undefined-symbol trace.
    path = os.path.join(ROOT, "torch_convpool", "_build_meta.py")
    with open(path, "w") as f:
        f.write("# Written by setup.py at build time; do not edit.\n")
        f.write(f"TORCH_VERSION = {torch.__version__!r}\n")
        f.write(f"WITH_CUDA = {with_cuda!r}\n")


def _extension():
    with_cuda = _want_cuda()
    sources = sorted(glob.glob("csrc/**/*.cpp", recursive=True))
    # setuptools rebuilds only when a source or a dependency is newer than the library: the
    # headers are listed so that a header-only change rebuilds too (ninja then recompiles the
    # files that include it).
    headers = sorted(glob.glob("csrc/**/*.h", recursive=True)
                     + glob.glob("csrc/**/*.cuh", recursive=True))
    define_macros = [("CONVPOOL_TORCH_VERSION", f'"{torch.__version__}"')]
    cxx_flags = ["-O3", "-fopenmp"] if os.name != "nt" else ["/O2"]
    link_flags = ["-fopenmp"] if os.name != "nt" else []
    if os.environ.get("CONVPOOL_SANITIZE") == "1":
        # AddressSanitizer + UndefinedBehaviorSanitizer (scripts/sanitize.sh, `make sanitize`).
        # vptr is off: it would check torch's own classes, built without RTTI checks in mind.
        sanitize = ["-fsanitize=address,undefined", "-fno-sanitize=vptr",
                    "-fno-omit-frame-pointer", "-g"]
        cxx_flags = ["-O1", "-fopenmp", *sanitize]
        link_flags = [*link_flags, *sanitize]
    _write_build_meta(with_cuda)
    if not with_cuda:
        return CppExtension(
            "torch_convpool._C",
            sources,
            depends=headers,
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=link_flags,
        )
    sources += sorted(glob.glob("csrc/**/*.cu", recursive=True))
    define_macros += [
        ("CONVPOOL_WITH_CUDA", None),
        ("CONVPOOL_CUDA_VERSION", f'"{torch.version.cuda}"'),
    ]
    return CUDAExtension(
        "torch_convpool._C",
        sources,
        depends=headers,
        define_macros=define_macros,
        include_dirs=_nvidia_wheel_include(),
        extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3"]},
        extra_link_args=link_flags,
    )


setup(
    packages=find_packages(include=["torch_convpool", "torch_convpool.*"]),
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
