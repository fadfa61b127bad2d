#!/usr/bin/env bash
# Creates (or updates) a virtual environment with torch and builds torch_convpool into it.
# Idempotent and quick when nothing changed (about 2 s): pip runs only when the requirement list
# differs from the one last installed into the venv, and the build runs only when a source, a
# header or setup.py is newer than the compiled library (then ninja, in the persistent build/
# folder, recompiles the changed files only).
#   VENV        where the venv lives              (default: .venv)
#   TORCH_SPEC  the torch to install              (default: torch==2.14.1, the CUDA 13.0 build)
#   SRC         the source tree to build from     (default: this checkout)
# With a CUDA build of torch and nvcc present, the CUDA kernels are compiled too (for the local
# GPU's architecture, or for Hopper, 9.0, when no GPU is visible); FORCE_CUDA=0 turns that off.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
SRC=$(cd "${SRC:-$ROOT}" && pwd)
TORCH_SPEC=${TORCH_SPEC:-torch==2.14.1}
# torchvision (whole-model benchmarks and tests) only where a build matched to the torch exists:
# 0.29.1 beside 2.14.1; PyPI's torchvision does not import beside the 2.13.0 CPU wheel.
if [ -z "${TORCHVISION_SPEC+x}" ]; then
  case "$TORCH_SPEC" in torch==2.14.1|torch) TORCHVISION_SPEC=torchvision==0.29.1 ;; *) TORCHVISION_SPEC= ;; esac
fi
# Tests (pytest, numpy, hypothesis), the build (ninja, setuptools, wheel) and the demo
# (scikit-learn's bundled digits, tqdm, matplotlib), and the style check (ruff, clang-format:
# tests/test_build.py); pyproject.toml's extras say the same.
REQUIREMENTS="$TORCH_SPEC $TORCHVISION_SPEC pytest numpy hypothesis ninja setuptools>=64 wheel scikit-learn tqdm matplotlib ruff clang-format"

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"

# pip spends 10-20 s resolving even when everything is installed: skip it while the list
# installed last (the stamp) is the list wanted now. Delete the stamp to force a pip run.
DEPS_STAMP="$VENV/.convpool-requirements"
if [ "$(cat "$DEPS_STAMP" 2>/dev/null)" != "$REQUIREMENTS" ]; then
  # shellcheck disable=SC2086  # the list is word-split on purpose
  "$PY" -m pip install -q --disable-pip-version-check $REQUIREMENTS
  echo "$REQUIREMENTS" > "$DEPS_STAMP"
fi

if [ -z "${FORCE_CUDA:-}" ]; then
  NVCC=$(command -v nvcc || true)
  [ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
  # One interpreter start (torch's import takes a second or two): "<torch has CUDA> <GPU visible>".
  TORCH_CUDA=0 GPU_VISIBLE=0
  read -r TORCH_CUDA GPU_VISIBLE < <("$PY" -c 'import torch; print(int(torch.version.cuda is not None), int(torch.cuda.is_available()))') || true
  if [ -n "$NVCC" ] && [ "$TORCH_CUDA" = 1 ]; then
    export FORCE_CUDA=1
    # The toolkit root holds lib64/libcudart; a bare nvcc on PATH may live elsewhere.
    if [ -z "${CUDA_HOME:-}" ]; then
      if [ -d /usr/local/cuda/lib64 ]; then CUDA_HOME=/usr/local/cuda
      else CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$NVCC")")"); fi
    fi
    export CUDA_HOME
    if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ] && [ "$GPU_VISIBLE" = 0 ]; then
      export TORCH_CUDA_ARCH_LIST=9.0
    fi
  fi
fi

# An in-place build in SRC's persistent build/ folder, not `pip install -e` (which builds in a
# fresh temporary folder, so every run recompiled everything). The venv finds the package through
# a .pth file naming SRC, as an editable install would.
BUILD_KEY="$TORCH_SPEC|${FORCE_CUDA:-auto}|${CUDA_HOME:-}|${TORCH_CUDA_ARCH_LIST:-}|${CONVPOOL_SANITIZE:-0}"
BUILD_STAMP="$SRC/build/.convpool-build-key"
LIBRARY=$(ls "$SRC"/torch_convpool/_C*.so 2>/dev/null | head -n 1 || true)
if [ -z "$LIBRARY" ] || [ "$(cat "$BUILD_STAMP" 2>/dev/null)" != "$BUILD_KEY" ] \
   || [ -n "$(find "$SRC/csrc" "$SRC/setup.py" -newer "$LIBRARY" -print -quit)" ]; then
  echo "building torch_convpool in $SRC (FORCE_CUDA=${FORCE_CUDA:-auto}, CUDA_HOME=${CUDA_HOME:-none}, arch=${TORCH_CUDA_ARCH_LIST:-auto})"
  FORCE=
  # Another torch or another CUDA choice than the last build: setuptools would see the sources
  # older than the library and skip, so force it (ninja still reuses what it can).
  [ "$(cat "$BUILD_STAMP" 2>/dev/null)" != "$BUILD_KEY" ] && FORCE=--force
  (cd "$SRC" && MAX_JOBS=${MAX_JOBS:-2} "$PY" setup.py -q build_ext --inplace $FORCE)
  mkdir -p "$SRC/build"
  echo "$BUILD_KEY" > "$BUILD_STAMP"
else
  echo "torch_convpool in $SRC is up to date"
fi

SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# A venv made by the earlier `pip install -e` set-up: drop that install, the .pth replaces it.
if ls "$SITE"/__editable__*torch_convpool* >/dev/null 2>&1; then
  "$PY" -m pip uninstall -q -y torch_convpool
fi
echo "$SRC" > "$SITE/torch_convpool_src.pth"
