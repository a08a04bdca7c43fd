"""What the benchmark suites share: frame sizes, bytes-written accounting and the medians behind
the ratio table (conftest.py prints it). A module of the benchmarks package, not conftest.py:
tests/ has a conftest.py of its own, and `pytest tests benchmarks` must import both suites."""

from __future__ import annotations

import collections

import pytest

import arrcoc_rt

SIZES = {"640x480": (640, 480), "1280x720": (1280, 720), "1920x1080": (1920, 1080), "3840x2160": (3840, 2160)}
_RESULTS: dict = collections.defaultdict(dict)

# CUDA rows need a real GPU: the emulated device runs the kernels on the CPU (its times mean nothing)
# and torch, which the CUDA benchmarks use for frames and events, has no CUDA there.
needs_real_gpu = pytest.mark.skipif(not arrcoc_rt.cuda_available() or arrcoc_rt.cuda.is_emulated(),
                                    reason="no CUDA GPU (the emulated device is not timed)")


def texture_bytes(width: int, height: int, dtype: str) -> int:
    """Bytes the texture stage writes for one frame (every stored plane of every level)."""
    size = 2 if dtype == "float16" else 4
    sizes = arrcoc_rt.reference.level_sizes(width, height)
    return size * sum(len(arrcoc_rt.Texture.channels_at(k)) * w * h for k, (w, h) in enumerate(sizes))


def timed(benchmark) -> bool:
    """False when timing is disabled (the default options; --benchmark-enable turns it on): the
    benchmark ran once as a smoke test and has no statistics."""
    return not benchmark.disabled and benchmark.stats is not None


def record(benchmark, group: str, impl: str, nbytes: int, median_s: float | None = None) -> None:
    """Put ms (and GB/s, where the stage's bytes are counted) in extra_info and remember the median
    for the ratio table. Nothing when timing is disabled."""
    if not timed(benchmark):
        return
    if median_s is None:
        median_s = benchmark.stats.stats.median
    benchmark.extra_info["median_ms"] = round(median_s * 1e3, 4)
    if nbytes:
        benchmark.extra_info["bytes_written"] = nbytes
        benchmark.extra_info["GB_per_s"] = round(nbytes / median_s / 1e9, 3)
    _RESULTS[group][impl] = median_s
