"""The whole front end (Pipeline.process: texture, cascade, scores + fused allocation, glimpses)
at 640x480, 1280x720, 1920x1080 and 3840x2160, with per-stage medians in extra_info; the float64
NumPy reference of the same stages at 640x480 for the ratio; and four streams at 640x480 in one
process (StreamGroup, and what a user would write instead: the four one after another) against one
stream alone, as frames per second in aggregate."""

import numpy as np
import pytest

import arrcoc_rt
from arrcoc_rt import reference as R
from .common import SIZES, needs_real_gpu, record, timed

pytestmark = pytest.mark.filterwarnings("ignore::pytest_benchmark.logger.PytestBenchmarkWarning")


def _stage_medians(timings, rounds: int):
    """Median per stage of the timed rounds: the last ``rounds`` (run() also records pedantic's warm-up)."""
    timed_rounds = timings[-rounds:]
    return {k: round(float(np.median([t[k] for t in timed_rounds])), 3) for k in timed_rounds[0]}


@pytest.mark.parametrize("size", list(SIZES))
def test_pipeline_cpu(benchmark, frames, size):
    benchmark.group = f"pipeline {size}"
    w, h = SIZES[size]
    pipe = arrcoc_rt.Pipeline(w, h, device="cpu")
    f1, f2 = frames[size]
    pipe.process(f1)
    timings, state = [], {"i": 0}

    def run():
        state["i"] += 1
        timings.append(pipe.process(f2 if state["i"] % 2 else f1).timings)

    benchmark.pedantic(run, rounds=20, warmup_rounds=2, iterations=1)
    benchmark.extra_info["stage_median_ms"] = _stage_medians(timings, 20)
    record(benchmark, benchmark.group, "arrcoc-cpu", 0)


@needs_real_gpu
@pytest.mark.parametrize("size", list(SIZES))
def test_pipeline_cuda(benchmark, frames, size):
    torch = pytest.importorskip("torch")
    benchmark.group = f"pipeline {size}"
    w, h = SIZES[size]
    pipe = arrcoc_rt.Pipeline(w, h, device="cuda")
    gpu = [torch.from_numpy(f).cuda() for f in frames[size]]
    for _ in range(10):
        pipe.process(gpu[0])
    timings, state = [], {"i": 0}

    def run():
        state["i"] += 1
        timings.append(pipe.process(gpu[state["i"] % 2]).timings)

    benchmark.pedantic(run, rounds=50, warmup_rounds=5, iterations=1)
    benchmark.extra_info["stage_median_ms"] = _stage_medians(timings, 50)
    record(benchmark, benchmark.group, "arrcoc-cuda", 0)


def test_pipeline_numpy_reference_640(benchmark, frames):
    """What the same stages cost in plain NumPy (the float64 reference), one frame pair."""
    benchmark.group = "pipeline 640x480"
    f1, f2 = frames["640x480"]
    pipe = arrcoc_rt.Pipeline(640, 480, device="cpu")
    weights = pipe.weights
    prev = R.build_texture(f1)

    def run():
        t = R.build_texture(f2, previous=prev)
        planes = {(c, k): t.channel(c, k).astype(np.float32) for c, k in R.CASCADE_PLANES}
        cas = R.cluster_cascade(planes)
        level4 = {c: t.channel(c, 4) for c in (5, 9, 10, 11, 12, 14, 33, 35, 36)}
        a = R.allocate_tokens(level4, t.channel(10, 0), True, cas.candidates, 640, 480, weights)
        rgb = [np.stack([t.channel(c, k) for c in range(3)]) for k in range(5)]
        R.glimpses(rgb, a.positions, a.levels)

    benchmark.pedantic(run, rounds=1, warmup_rounds=0, iterations=1)
    record(benchmark, benchmark.group, "numpy-reference-float64", 0)


@pytest.mark.parametrize("matcher", ["bag", "bag+layout"])
def test_pipeline_exemplar_640(benchmark, frames, matcher):
    """An exemplar query at 640x480 on the CPU: the bag-of-patches match alone (the layout templates
    removed) against bag + layout matching (the default), in the same run: what layout matching adds."""
    benchmark.group = "exemplar 640x480"
    f1, f2 = frames["640x480"]
    pipe = arrcoc_rt.Pipeline(640, 480, device="cpu", encoder="builtin")
    exemplar = np.ascontiguousarray(f1[180:260, 250:330])  # an 80 x 80 crop: templates of 8-px cells
    for i in range(pipe._pca_frames + 2):  # past the encoder's PCA fit (its first frames cost 5x more)
        pipe.process(f2 if i % 2 else f1, query_image=exemplar)
    if matcher == "bag":
        pipe._sem.set_layout([])  # the cached query keeps its vectors; only the layout goes
    timings, state = [], {"i": 0}

    def run():
        state["i"] += 1
        timings.append(pipe.process(f2 if state["i"] % 2 else f1, query_image=exemplar).timings)

    benchmark.pedantic(run, rounds=20, warmup_rounds=2, iterations=1)
    benchmark.extra_info["stage_median_ms"] = _stage_medians(timings, 20)
    record(benchmark, benchmark.group, "arrcoc-bag+layout" if matcher == "bag+layout" else "bag only (layout removed)", 0)


STREAM_FRAMES = 8  # frames per stream per round with 4 streams
STREAMS = 4


@pytest.mark.parametrize("how", ["one stream alone", "4 streams one after another", "arrcoc-StreamGroup-4"])
def test_streams_640(benchmark, how):
    """Frames per second of 4 streams at 640x480 in one process, against one stream alone (issue 15,
    section 2: >= 90 %). Every round is 32 frames (8 of each of 4 streams, or 32 of the one stream),
    so the table's times compare; the summary's median is the time per frame."""
    from arrcoc_rt.samples import sample_frames

    # pytest-benchmark's table times rounds; the ratio summary and extra_info are per frame
    benchmark.group = f"streams 640x480 (table: rounds of {STREAMS * STREAM_FRAMES} frames; summary: per frame)"
    clip = sample_frames(640, 480, STREAM_FRAMES)
    n = 1 if how == "one stream alone" else STREAMS
    rounds_per_stream = STREAM_FRAMES * STREAMS // n
    if how == "arrcoc-StreamGroup-4":
        group = arrcoc_rt.StreamGroup(640, 480, n, device="cpu")
        group.process_batch([clip[0]] * n)

        def run():
            for i in range(STREAM_FRAMES):
                group.process_batch([clip[(i + b) % STREAM_FRAMES] for b in range(n)])
    else:
        pipes = [arrcoc_rt.Pipeline(640, 480, device="cpu") for _ in range(n)]
        for p in pipes:
            p.process(clip[0])

        def run():
            for i in range(rounds_per_stream):
                for b, p in enumerate(pipes):
                    p.process(clip[(i + b) % STREAM_FRAMES])

    benchmark.pedantic(run, rounds=8, warmup_rounds=1, iterations=1)
    if timed(benchmark):
        per_frame = benchmark.stats.stats.median / (STREAMS * STREAM_FRAMES)
        benchmark.extra_info["frames_per_second"] = round(1.0 / per_frame, 1)
        record(benchmark, benchmark.group, how, 0, per_frame)
        benchmark.extra_info["median_ms_per_frame"] = benchmark.extra_info.pop("median_ms")
