"""Benchmark helpers: shared inputs, bytes-written accounting, and a ratio table at the end.

Run:  pytest benchmarks --benchmark-enable [--benchmark-json out.json]
(GPU rows appear when a CUDA GPU is present, not on the emulated device, whose times mean nothing;
CUDA timings use events, see bench_texture.py.) Without --benchmark-enable (the project's default
options disable timing) each benchmark runs once, as a smoke test, and records nothing.
"""

from __future__ import annotations

import pytest

from arrcoc_rt.samples import sample_frames

from .common import _RESULTS, SIZES


class _FramesBySize(dict):
    """Two consecutive frames (moving content) of a size, made when a benchmark first asks for it
    (a -k selection of 640x480 rows does not wait for 4K frames)."""

    def __missing__(self, name):
        w, h = SIZES[name]
        self[name] = frames = sample_frames(w, h, 2)
        return frames


@pytest.fixture(scope="session")
def frames():
    return _FramesBySize()


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
