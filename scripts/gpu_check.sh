#!/usr/bin/env bash
# Everything docs/gpu.md asks of a lent GPU, as one command: build for sm_90, the CUDA tests, the
# determinism test, compute-sanitizer, the CUDA benchmarks. A lease is short (15 minutes of device
# time, start included), so each step runs under its own limit, cut to what is left of BUDGET_S,
# and a slow step cannot starve the rest. Results go to $OUT (the device tool brings back at most
# 8 files), or ./gpu_out elsewhere.
#
#   bash scripts/gpu_check.sh            # on the GPU machine, from the repository root
set -u
OUT=${OUT:-gpu_out}
BUDGET_S=${BUDGET_S:-560}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD  # the in-place build, for benchmarks/ too
deadline=$(( $(date +%s) + BUDGET_S ))
summary="$OUT/summary.txt"

# step NAME LIMIT_S LOGFILE COMMAND...: runs COMMAND (bash -c) under min(LIMIT_S, time left),
# appending its output to LOGFILE and its exit status and duration to the summary.
step() {
  local name=$1 limit=$2 log=$3
  shift 3
  local left=$(( deadline - $(date +%s) ))
  (( left < limit )) && limit=$left
  if (( limit < 10 )); then
    echo "$name: skipped (no time left)" | tee -a "$summary"
    return
  fi
  echo "=== $name (limit ${limit} s)" | tee -a "$log"
  local start
  start=$(date +%s)
  PYTHONUNBUFFERED=1 timeout "$limit" bash -c "$*" >>"$log" 2>&1
  local rc=$?
  echo "$name: rc=$rc in $(( $(date +%s) - start )) s" | tee -a "$summary"
  tail -n 4 "$log"
}

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  nvcc --version | tail -n 1
  nproc
} >"$summary" 2>&1

step build 330 "$OUT/build.log" \
  "FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=$(nproc) $PY setup.py -q build_ext --inplace"
if ! grep -q "build: rc=0" "$summary"; then
  grep -n -B2 -A8 "error" "$OUT/build.log" | head -n 80 >"$OUT/build_errors.txt"
  exit 1
fi

step check 40 "$OUT/tests.txt" "$PY -m torch_convpool check"
# The cuda parametrizations of every test (xdist: the CPU's cores feed the GPU's launches).
step tests_cuda 180 "$OUT/tests.txt" \
  "$PY -m pytest -q -p no:cacheprovider -n 12 -k cuda -rfE --tb=line --maxfail=300 tests"
step determinism 40 "$OUT/tests.txt" \
  "$PY -m pytest -q -p no:cacheprovider tests/test_cuda_determinism.py"
step benchmarks 110 "$OUT/benchmarks.txt" \
  "$PY benchmarks/run.py --device cuda --repeats 5 --output $OUT/BENCHMARKS.md"
# memcheck (out-of-bounds and misaligned accesses; the kernels use no shared memory, so racecheck
# has nothing to look at). It slows every launch 10-100x: the determinism test first (every
# backward kernel), then the forward tests, as far as the limit allows.
step memcheck 100 "$OUT/sanitizer.txt" \
  "compute-sanitizer --tool memcheck --error-exitcode 1 $PY -m pytest -q -x -p no:cacheprovider \
   -k 'cuda and not gradcheck' tests/test_cuda_determinism.py tests/test_conv.py \
   tests/test_pooling.py tests/test_conv_transpose.py"
# What time is left: the rest of the suite (cpu and emulated) under torch's version there.
step tests_rest 120 "$OUT/tests_rest.txt" \
  "OMP_NUM_THREADS=1 $PY -m pytest -q -p no:cacheprovider -n 16 -k 'not cuda' -rfE --tb=short tests"
cat "$summary"
