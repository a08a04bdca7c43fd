"""Benchmark helpers: shared inputs, bytes-written accounting, and a ratio table at the end.

Run:  pytest benchmarks --benchmark-enable [--benchmark-json out.json]
(GPU rows appear when a CUDA GPU is present, not on the emulated device, whose times mean nothing;
CUDA timings use events, see bench_texture.py.) Without --benchmark-enable (the project's default
options disable timing) each benchmark runs once, as a smoke test, and records nothing.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest

import arrcoc_rt
from arrcoc_rt.samples import sample_frames

SIZES = {"640x480": (640, 480), "1280x720": (1280, 720), "1920x1080": (1920, 1080), "3840x2160": (3840, 2160)}
_RESULTS: dict = collections.defaultdict(dict)

# CUDA rows need a real GPU: the emulated device runs the kernels on the CPU (its times mean nothing)
# and torch, which the CUDA benchmarks use for frames and events, has no CUDA there.
needs_real_gpu = pytest.mark.skipif(not arrcoc_rt.cuda_available() or arrcoc_rt.cuda.is_emulated(),
                                    reason="no CUDA GPU (the emulated device is not timed)")


@pytest.fixture(scope="session")
def frames():
    """Two consecutive frames (moving content) per size, generated once."""
    return {name: sample_frames(w, h, 2) for name, (w, h) in SIZES.items()}


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


def pytest_terminal_summary(terminalreporter):
    if not _RESULTS:
        return
    tr = terminalreporter
    tr.section("arrcoc_rt: median ms and speed-up of arrcoc over each alternative (same run)")
    for group, impls in _RESULTS.items():
        ours = {k: v for k, v in impls.items() if k.startswith("arrcoc")}
        others = {k: v for k, v in impls.items() if not k.startswith("arrcoc")}
        line = ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in impls.items())
        tr.write_line(f"{group}: {line}")
        for o_name, o_t in ours.items():
            for a_name, a_t in others.items():
                tr.write_line(f"    {o_name} is {a_t / o_t:.2f}x faster than {a_name} "
                              f"({(o_t - a_t) * 1e3:+.2f} ms)")
