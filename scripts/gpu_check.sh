#!/usr/bin/env bash
# Build, time, test and benchmark on a GPU machine in one call (e.g. through the device tool, whose
# commands may run 10 minutes and whose sessions get 15 minutes of device time in all):
#   bash scripts/gpu_check.sh            results in $OUT (or ./gpu-check): logs, timings and benchmark JSON
#
# What a GPU alone can tell comes first, so that a call cut short still brings it back: the build,
# then issue #15's GPU figures (scripts/gpu_timings.py: latency p50/p99 per frame size, graphs and
# kernel by kernel, queued and StreamGroup frames per second), then every CUDA-path test on the real
# device (pytest -m needs_cuda), the C++ tests of the CUDA host code, and the CUDA benchmark rows.
# Each step gets what is left of GPU_CHECK_SECONDS (default 540: a 600 s command with room to
# return); a step that no longer fits is skipped and says so. GPU_CHECK_ALL=1 adds the CPU tests
# and benchmarks (CI runs those anyway). Exit status 1 if any step failed or was skipped ($out/steps.log says which).
#
# Works offline on the lent GPU image (it has nvcc, torch, cupy, transformers, scikit-build-core,
# pybind11, cmake, ninja, pytest, pytest-benchmark, scikit-image, opencv; no network): the build
# uses no isolation and fetches nothing. PyAV is not on that image: carry its wheel in .whl/
# (see the device tool's README) or the streaming tests skip.
set -uo pipefail
out="$(realpath -m "${OUT:-gpu-check}")"   # relative to where it was called from, before the cd
cd "$(dirname "$0")/.."
mkdir -p "$out"
export PYTHONUNBUFFERED=1 ARRCOC_CUDA=ON ARRCOC_EXPECT_CUDA_BUILD=1
export CUDAARCHS="${CUDAARCHS:-90}"   # H100/H200; the release list lives in CMakeLists.txt
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
deadline=$((SECONDS + ${GPU_CHECK_SECONDS:-540}))
: > "$out/steps.log"
failed=0

# step NAME CAP_SECONDS COMMAND...: runs COMMAND under the smaller of CAP and the time left, output
# to $out/NAME.log; a step that cannot get 20 s is skipped.
step() {
  local name=$1 cap=$2 left=$((deadline - SECONDS))
  shift 2
  if (( left < 20 )); then
    echo "=== $name: skipped (${left} s left of GPU_CHECK_SECONDS)" | tee -a "$out/steps.log"
    failed=1
    return
  fi
  local t0=$SECONDS
  # -k: a step stuck past its time (say in a CUDA call) is killed 10 s after the TERM
  timeout -k 10 $(( cap < left ? cap : left )) bash -c "set -o pipefail; $*" > "$out/$name.log" 2>&1
  local rc=$?
  (( rc == 0 )) || failed=1
  echo "=== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$out/steps.log"
  tail -n 15 "$out/$name.log"
}

if ! nvidia-smi > "$out/nvidia-smi.txt" 2>&1; then
  echo "=== nvidia-smi: failed (no GPU or no driver here); the CUDA steps below will fail" | tee -a "$out/steps.log"
  failed=1
fi
cat "$out/nvidia-smi.txt"
if ls .whl/*.whl >/dev/null 2>&1; then
  step wheels 60 "python3 -m pip install --no-index --no-deps --target /tmp/site .whl/*.whl"
  export PYTHONPATH=/tmp/site
fi
# The build, and a check that what Python now imports is it: a real CUDA build (not an older
# install left on a warm machine, nor an emulated or CPU-only one).
step build 300 "python3 -m pip install -q --no-build-isolation --no-deps -Cbuild-dir=build/gpu . &&
  cd /tmp && python3 -c 'import arrcoc_rt, json, sys; i = arrcoc_rt.info(); print(json.dumps(i));
sys.exit(0 if i[\"cuda_built\"] and not i[\"cuda_emulated\"] else \"not a real CUDA build\")' | tee '$out/info.json'"
if [[ -s "$out/info.json" ]] && grep -q '"cuda_built": true' "$out/info.json" && ! grep -q '"cuda_emulated": true' "$out/info.json"; then
  step timings 150 "python3 scripts/gpu_timings.py --json '$out/gpu_timings.json'"
  step tests_cuda 240 "python3 -m pytest -q -ra -p no:cacheprovider -m needs_cuda"
else  # whatever else Python would import is not this tree's CUDA build: its figures would mislead
  echo "=== timings, tests_cuda, bench_cuda: skipped (the build failed or is not a real CUDA build)" | tee -a "$out/steps.log"
  failed=1
  built=0
fi
# The C++ tests on the real device: API, and the CUDA host code (devices, streams, lifetimes).
step ctest 180 "cmake -S . -B build/gpu-ctest -G Ninja -DARRCOC_CUDA=ON -DARRCOC_BUILD_TESTS=ON -DARRCOC_PYTHON=OFF >/dev/null &&
  cmake --build build/gpu-ctest >/dev/null && cd build/gpu-ctest && ctest --output-on-failure"
[[ "${built:-1}" == 1 ]] && step bench_cuda 150 "python3 -m pytest benchmarks -k cuda --benchmark-enable -q -p no:cacheprovider --benchmark-json='$out/bench_cuda.json'"
if [[ "${GPU_CHECK_ALL:-0}" == 1 ]]; then
  step tests_all 600 "python3 -m pytest -q -ra -p no:cacheprovider"
  step bench_all 600 "python3 -m pytest benchmarks --benchmark-enable -q -p no:cacheprovider --benchmark-json='$out/bench.json'"
fi
cat "$out/steps.log"
exit $failed
