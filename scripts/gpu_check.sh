#!/usr/bin/env bash
# Build, test and benchmark on a GPU machine in one call (e.g. through the device tool):
#   bash scripts/gpu_check.sh            results in $OUT (or ./gpu-check) as JSON + logs
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-check}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 ARRCOC_CUDA=ON ARRCOC_EXPECT_CUDA_BUILD=1
export CUDAARCHS="${CUDAARCHS:-90}"   # H100/H200; the release list lives in CMakeLists.txt
nvidia-smi | tee "$out/nvidia-smi.txt"
python3 -m pip install -q ".[test]" 2>&1 | tail -3
python3 -c "import arrcoc_rt, json; print(json.dumps(arrcoc_rt.info()))" | tee "$out/info.json"
python3 -m pytest -q -ra 2>&1 | tee "$out/tests.log"
python3 -m pytest benchmarks --benchmark-enable -q --benchmark-json="$out/bench.json" 2>&1 | tee "$out/bench.log"
