#!/usr/bin/env bash
# Issue #14's device check, ONE script for the H200 machine (benchmarks/README.md gives the exact
# `run` call). It builds gprat with the CUDA backend from the carried tree (no registry there: the
# wheels in .whl/ come from benchmarks/fetch_device_wheels.sh, run here first), runs
# tests/python/test_cuda.py, then the benchmarks of benchmarks/cuda_device.py in priority order,
# each under its own timeout; no new section starts once BUDGET seconds have passed. Everything
# goes under $OUT: summary.txt, build.log, test_cuda.log, bench.log, results.jsonl (one JSON
# record per measurement).
# Usage: bash benchmarks/device_check.sh [quick]   (quick: build, tests and the 32768 cases only)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gprat-device-out}
mkdir -p "$OUT"
BUDGET=${BUDGET:-330}          # seconds of the whole script after which no new section starts
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 GPRAT_SKIP_CPP_TESTS=1
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
log() { echo "[$(elapsed)s] $*" | tee -a "$OUT/summary.txt"; }

log "host: $(uname -srm); $(nproc) cores; $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} || { log "FAILED: installing the carried wheels"; exit 1; }
  log "carried wheels: $(ls .whl | tr '\n' ' ')"
else
  log "no .whl/ carried: using the machine's own pybind11 / scikit-build-core / scipy-openblas32 (if any)"
fi

# Build: GPRAT_CUDA=ON makes a missing cuBLAS/cuSOLVER an error instead of a CPU-only build.
export CMAKE_BUILD_PARALLEL_LEVEL=$(nproc)
if ! timeout 420 $PY -m pip install --no-build-isolation --no-deps -v --config-settings=cmake.define.GPRAT_CUDA=ON . \
      >"$OUT/build.log" 2>&1; then
  log "FAILED: build (tail of build.log follows)"; tail -60 "$OUT/build.log"; exit 1
fi
log "built: $(grep -m1 -o 'CUDA backend ON[^)]*)' "$OUT/build.log")"
$PY -c "import gprat, gprat._cuda as c; print('cuda_available', gprat.cuda_available(), c.device_description(0))" 2>&1 \
  | tee -a "$OUT/summary.txt"

# Correctness first: the device must agree with the CPU engine and the dense reference.
timeout 240 $PY -m pytest tests/python/test_cuda.py -q -rs -p no:cacheprovider >"$OUT/test_cuda.log" 2>&1
log "test_cuda.py: rc=$? $(tail -1 "$OUT/test_cuda.log")"
grep -E "^(FAILED|ERROR)" "$OUT/test_cuda.log" | head -20 | tee -a "$OUT/summary.txt"

bench() {  # bench SECONDS SECTION ARGS...: one section under its own timeout, if the budget allows
  local limit=$1; shift
  if (( $(elapsed) + 20 > BUDGET )); then log "skipped (budget): $*"; return; fi
  timeout "$limit" $PY benchmarks/cuda_device.py "$@" --out "$OUT/results.jsonl" >>"$OUT/bench.log" 2>&1
  log "bench $*: rc=$?"
}

bench 30 env
bench 90 cholesky --n 32768 --tiles 1024 2048 --streams 8 32
bench 60 train --n 32768
bench 90 gpytorch --n 16384 --cap 30
bench 60 predict --n 65536 --m 10000
if [[ "${1:-}" != quick ]]; then
  bench 150 big --n 131072 --cap 150 --repeats 0
  bench 90 cholesky --n 65536 --tiles 2048 --streams 32 --repeats 1
  bench 90 gpytorch --n 32768 --cap 40 --repeats 1
  bench 100 cpu --n 16384 --threads 16 8 4 2 1 --cap 12
fi
log "done; results in \$OUT/results.jsonl ($(wc -l <"$OUT/results.jsonl" 2>/dev/null || echo 0) records)"
