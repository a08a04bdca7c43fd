"""Texture stage: arrcoc CPU (and CUDA when present) vs the float64 NumPy reference vs an
OpenCV/NumPy implementation a user would write, at 640x480, 1280x720 and 1920x1080."""

import time

import numpy as np
import pytest

import arrcoc_rt
from arrcoc_rt import reference as R
from .common import SIZES, needs_real_gpu, record, texture_bytes

pytestmark = pytest.mark.filterwarnings("ignore::pytest_benchmark.logger.PytestBenchmarkWarning")


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_texture_arrcoc_cpu(benchmark, frames, size, dtype):
    benchmark.group = f"texture {size}"
    w, h = SIZES[size]
    f1, f2 = frames[size]
    builder = arrcoc_rt.TextureBuilder(w, h, device="cpu", dtype=dtype)
    builder.build(f1)
    state = {"i": 0}

    def run():
        state["i"] += 1
        builder.build(f2 if state["i"] % 2 else f1)  # alternate: motion is always computed

    benchmark.pedantic(run, rounds=30, warmup_rounds=3, iterations=1)
    record(benchmark, benchmark.group, f"arrcoc-cpu-{dtype}", texture_bytes(w, h, dtype))


@pytest.mark.needs_cuda
@needs_real_gpu
@pytest.mark.parametrize("size", list(SIZES))
def test_texture_arrcoc_cuda(benchmark, frames, size):
    """Frames already on the GPU (as from a hardware decoder); timed with CUDA events through
    torch when available, else host wall clock around a synchronize."""
    benchmark.group = f"texture {size}"
    torch = pytest.importorskip("torch")
    w, h = SIZES[size]
    builder = arrcoc_rt.TextureBuilder(w, h, device="cuda", dtype="float16")
    gpu = [torch.from_numpy(f).cuda() for f in frames[size]]
    for _ in range(10):  # warm-up: module loading, first launches
        builder.build(gpu[0])
    builder.synchronize()
    state = {"i": 0}

    def run():
        state["i"] += 1
        builder.build(gpu[state["i"] % 2])
        builder.synchronize()

    benchmark.pedantic(run, rounds=100, warmup_rounds=10, iterations=1)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for i in range(200):
        start.record()
        builder.build(gpu[i % 2])
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    median = float(np.median(times))
    benchmark.extra_info["cuda_event_median_ms"] = round(median * 1e3, 4)
    record(benchmark, benchmark.group, "arrcoc-cuda-float16", texture_bytes(w, h, "float16"), median)


@pytest.mark.parametrize("size", list(SIZES))
def test_texture_opencv_numpy(benchmark, frames, size):
    cv2 = pytest.importorskip("cv2")  # (imported here: without OpenCV only these rows are skipped)
    from .opencv_texture import texture_opencv

    cv2.setNumThreads(2)
    benchmark.group = f"texture {size}"
    w, h = SIZES[size]
    f1, f2 = frames[size]
    _, _, _, lum, small = texture_opencv(f1)
    benchmark.pedantic(lambda: texture_opencv(f2, lum, small), rounds=10, warmup_rounds=1, iterations=1)
    record(benchmark, benchmark.group, "opencv+numpy-float32", texture_bytes(w, h, "float32"))


# not at 4K: the float64 reference takes minutes there, and the ratio is the same at every size
@pytest.mark.parametrize("size", [s for s in SIZES if s != "3840x2160"])
def test_texture_numpy_reference(benchmark, frames, size):
    benchmark.group = f"texture {size}"
    w, h = SIZES[size]
    f1, f2 = frames[size]
    prev = R.build_texture(f1)
    benchmark.pedantic(lambda: R.build_texture(f2, previous=prev), rounds=2, warmup_rounds=0, iterations=1)
    record(benchmark, benchmark.group, "numpy-reference-float64", texture_bytes(w, h, "float32") * 2)
