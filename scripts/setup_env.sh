#!/usr/bin/env bash
# Creates (or updates) a virtual environment with torch and builds torch_convpool into it.
# Idempotent: an existing venv is reused, and ninja rebuilds only what changed.
#   VENV        where the venv lives              (default: .venv)
#   TORCH_SPEC  the torch to install              (default: torch==2.14.1, the CUDA 13.0 build)
#   SRC         the source tree to build from     (default: this checkout)
# With a CUDA build of torch and nvcc present, the CUDA kernels are compiled too (for the local
# GPU's architecture, or for Hopper, 9.0, when no GPU is visible); FORCE_CUDA=0 turns that off.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
SRC=${SRC:-$ROOT}
TORCH_SPEC=${TORCH_SPEC:-torch==2.14.1}
# torchvision (whole-model benchmarks and tests) only where a build matched to the torch exists:
# 0.29.1 beside 2.14.1; PyPI's torchvision does not import beside the 2.13.0 CPU wheel.
if [ -z "${TORCHVISION_SPEC+x}" ]; then
  case "$TORCH_SPEC" in torch==2.14.1|torch) TORCHVISION_SPEC=torchvision==0.29.1 ;; *) TORCHVISION_SPEC= ;; esac
fi

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q --disable-pip-version-check "$TORCH_SPEC" $TORCHVISION_SPEC pytest numpy hypothesis ninja "setuptools>=64" wheel

if [ -z "${FORCE_CUDA:-}" ]; then
  NVCC=$(command -v nvcc || true)
  [ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
  if [ -n "$NVCC" ] && "$PY" -c 'import sys, torch; sys.exit(torch.version.cuda is None)'; then
    export FORCE_CUDA=1
    # The toolkit root holds lib64/libcudart; a bare nvcc on PATH may live elsewhere.
    if [ -z "${CUDA_HOME:-}" ]; then
      if [ -d /usr/local/cuda/lib64 ]; then CUDA_HOME=/usr/local/cuda
      else CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$NVCC")")"); fi
    fi
    export CUDA_HOME
    if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ] && ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
      export TORCH_CUDA_ARCH_LIST=9.0
    fi
  fi
fi
echo "building torch_convpool in $SRC (FORCE_CUDA=${FORCE_CUDA:-0}, CUDA_HOME=${CUDA_HOME:-none}, arch=${TORCH_CUDA_ARCH_LIST:-auto})"
(cd "$SRC" && MAX_JOBS=${MAX_JOBS:-2} "$PY" -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps -e .)
