#!/usr/bin/env bash
# Build, test and benchmark on a GPU machine in one call (e.g. through the device tool):
#   bash scripts/gpu_check.sh            results in $OUT (or ./gpu-check): logs + benchmark JSON
#
# Works offline on the lent GPU image (it has nvcc, torch, cupy, transformers, scikit-build-core,
# pybind11, cmake, ninja, pytest, pytest-benchmark, scikit-image, opencv; no network): the build
# uses no isolation and fetches nothing. PyAV is not on that image: carry its wheel in .whl/
# (see the device tool's README) or the streaming tests skip.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-check}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 ARRCOC_CUDA=ON ARRCOC_EXPECT_CUDA_BUILD=1
export CUDAARCHS="${CUDAARCHS:-90}"   # H100/H200; the release list lives in CMakeLists.txt
nvidia-smi | tee "$out/nvidia-smi.txt"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-build-isolation --no-deps -Cbuild-dir=build/gpu . 2>&1 | tail -3
python3 -c "import arrcoc_rt, json; print(json.dumps(arrcoc_rt.info()))" | tee "$out/info.json"
python3 -m pytest -q -ra -p no:cacheprovider 2>&1 | tee "$out/tests.log"
# The C++ tests on the real device: API, and the CUDA host code (devices, streams, lifetimes).
cmake -S . -B build/gpu-ctest -G Ninja -DARRCOC_CUDA=ON -DARRCOC_BUILD_TESTS=ON -DARRCOC_PYTHON=OFF >/dev/null &&
  cmake --build build/gpu-ctest -j 16 >/dev/null && (cd build/gpu-ctest && ctest --output-on-failure) 2>&1 |
  tee "$out/ctest.log"
python3 -m pytest benchmarks --benchmark-enable -q -p no:cacheprovider --benchmark-json="$out/bench.json" 2>&1 |
  tee "$out/bench.log"
