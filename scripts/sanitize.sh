#!/usr/bin/env bash
# Builds torch_convpool with -fsanitize=address,undefined (CPU only) into its own venv and source
# copy, then runs the test suite, hypothesis "ci" profile included, under ASan and UBSan. Any
# report fails the run. Arguments go to pytest instead of the default `tests` (e.g. a file).
#   VENV        the sanitizer venv      (default: .venv-sanitize)
#   TORCH_SPEC  the torch to install    (default: torch==2.13.0, the CPU wheel)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv-sanitize}
SRC=$ROOT/build/sanitize-src
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q --disable-pip-version-check "$TORCH_SPEC" pytest numpy hypothesis ninja \
  "setuptools>=64" wheel

# A copy of the tree (tar keeps modification times, so ninja recompiles only what changed) whose
# build/ and .so stay apart from the normal build's.
mkdir -p "$SRC"
(cd "$ROOT" && tar --exclude='./.venv*' --exclude=./build --exclude='*.so' --exclude=./.git \
  -cf - .) | tar -xf - -C "$SRC"
(cd "$SRC" && CONVPOOL_SANITIZE=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-1} \
  "$PY" setup.py -q build_ext --inplace)

# python is not instrumented: the runtimes must be loaded first. Leak checks are off (the
# interpreter's own allocations at exit are reported as leaks).
export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
cd "$SRC"
# CONVPOOL_SANITIZE tells the RSS test to stand aside: ASan's quarantine keeps freed memory.
CONVPOOL_SANITIZE=1 PYTHONPATH="$SRC" "$PY" -m pytest -q -p no:cacheprovider "${@:-tests}"
