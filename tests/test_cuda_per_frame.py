"""What a frame costs the CUDA host code, read from the emulated device's counters
(csrc/cuda_emu/include/cuda_emu_counters.h): after warm-up, no cudaMalloc/cudaFree and no host
synchronization per frame unless the caller asks for a host result, and then exactly one; and the
device memory of one 1920x1080 stream. A GPU cannot count these for us, so the emulator does."""

from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pytest

import arrcoc_rt
from arrcoc_rt import cuda
from conftest import real_image

pytestmark = [pytest.mark.needs_cuda, pytest.mark.needs_emulator]

W, H = 320, 240
FRAMES = 4  # counted after warm-up
NOTHING = ("malloc_calls", "free_calls", "malloc_host_calls", "free_host_calls", "host_syncs", "queries")


def frame(i: int, w: int = W, h: int = H) -> np.ndarray:
    """A real photograph panning 3 px per frame (motion, no cut)."""
    img = real_image("astronaut")
    img = np.tile(img, (1 + h // img.shape[0], 1 + (w + 3 * 64) // img.shape[1], 1))
    return np.ascontiguousarray(img[:h, 3 * i:3 * i + w])


def counted(step, frames: int = FRAMES) -> dict:
    """The counters over `frames` calls of step(i), from zero."""
    cuda.reset_emulator_counters()
    for i in range(frames):
        step(i)
    return cuda.emulator_counters()


def costs(c: dict, names=NOTHING) -> dict:
    return {k: c[k] for k in names}


def exemplar() -> np.ndarray:
    return np.ascontiguousarray(frame(0)[60:140, 100:220])


# (pipeline options, per-frame process options); the query arrays are made once, as a caller would.
QUERY_MAP = np.linspace(0.0, 1.0, H * W, dtype=np.float32).reshape(H, W)
CASES = {
    "no query": ({}, {}),
    "query map": ({}, {"query_map": QUERY_MAP}),
    "exemplar": ({"encoder": "builtin"}, {"query_image": exemplar()}),
}


@pytest.mark.parametrize("on_stream", [True, False], ids=["own stream", "legacy stream"])
@pytest.mark.parametrize("case", list(CASES))
def test_nothing_is_allocated_freed_or_waited_for_per_frame(case, on_stream):
    """copy=False keeps the result on the device: no host result, so no wait; the buffers were
    all allocated when the pipeline was created (or in warm-up)."""
    config, kw = CASES[case]
    pipe = arrcoc_rt.Pipeline(W, H, device="cuda", **config)
    stream = cuda.Stream(0) if on_stream else None
    # Warm-up: the first frames, and the PCA fit over the first pca_frames encoded frames (it reads
    # their features on the host).
    warm = 2 + (pipe._pca_frames if pipe.encoder is not None else 0)
    for i in range(warm):
        pipe.process(frame(i), stream=stream, copy=False, **kw)
    results = []
    c = counted(lambda i: results.append(pipe.process(frame(warm + i), stream=stream, copy=False, **kw)))
    assert costs(c) == dict.fromkeys(NOTHING, 0), c
    assert c["launches"] > 0  # the frames were queued, and run when their results are read:
    r = results[-1]
    assert r.num_saccades == int(np.sum(arrcoc_rt.to_host(r.kinds) == 1)) > 0


def test_few_atomics_per_frame():
    """Kernels add their terms within a block before they touch global memory: one atomic per
    block (the scene cut's counts and sums) or per run of one cluster's texels (the cascade's
    sums), not one per pixel or texel. On a GPU, atomics on one address serialize: the scene cut's
    moving-pixel count alone sent one per moving pixel into one counter. 640x480, a pan (every
    pixel moves): 547,755 atomics per frame before, 112,300 now (0.37 per pixel; most are the
    cascade's runs). Asserted: fewer than one per two pixels."""
    w, h = 640, 480
    pipe = arrcoc_rt.Pipeline(w, h, device="cuda")
    for i in range(2):
        pipe.process(frame(i, w, h), copy=False)
    pipe.synchronize()
    cuda.reset_emulator_counters()
    for i in range(2, 2 + FRAMES):
        pipe.process(frame(i, w, h), copy=False)
    pipe.synchronize()
    per_frame = cuda.emulator_counters()["atomics"] / FRAMES
    assert 0 < per_frame < w * h / 2, per_frame


def test_gathering_features_on_the_device_waits_for_nothing():
    """Running back with device features and a device output: queued on the stream, no wait."""
    pipe = arrcoc_rt.Pipeline(W, H, device="cuda")
    stream = cuda.Stream(0)
    r = pipe.process(frame(0), stream=stream, copy=False)
    n = r.kinds.shape[0]
    features = cuda.to_device(np.random.default_rng(0).random((8, H // 16, W // 16), dtype=np.float32))
    out = cuda.to_device(np.zeros((n, 8), np.float32))

    def step(i):
        r = pipe.process(frame(1 + i), stream=stream, copy=False)
        r.gather_features(features, out, stream=stream)

    c = counted(step)
    no_wait = tuple(n for n in NOTHING if n != "queries")
    assert costs(c, no_wait) == dict.fromkeys(no_wait, 0), c
    # While a gather's features are held (until the device has run it), each frame asks once,
    # without waiting, whether the last run is done (Pipeline._release_finished_gathers).
    assert c["queries"] <= FRAMES, c
    stream.synchronize()
    assert np.all(np.isfinite(out.numpy()))


def test_a_host_result_costs_one_wait_per_frame():
    """copy=True (NumPy arrays): the whole token pack comes back in copies queued on the frame's
    stream into page-locked memory, then one event wait; the page-locked memory is allocated at the
    first such frame and reused."""
    pipe = arrcoc_rt.Pipeline(W, H, device="cuda")
    stream = cuda.Stream(0)
    for i in range(2):
        pipe.process(frame(i), stream=stream)
    c = counted(lambda i: pipe.process(frame(2 + i), stream=stream))
    assert costs(c) == dict(dict.fromkeys(NOTHING, 0), host_syncs=FRAMES), c
    assert c["event_syncs"] == FRAMES and c["blocking_copies"] == 0


def test_a_stream_returns_host_results_for_one_wait_per_frame():
    """arrcoc_rt.Stream returns NumPy results: one wait per frame, nothing allocated."""
    with arrcoc_rt.Stream(device="cuda", query_image=exemplar()) as s:
        for i in range(10):  # past the PCA fit's 8 frames
            s.process(frame(i))
        c = counted(lambda i: s.process(frame(10 + i)))
    assert costs(c) == dict(dict.fromkeys(NOTHING, 0), host_syncs=FRAMES), c


def test_reading_a_device_result_is_one_wait_each():
    """A copy=False result's flags and arrays stay on the device until read; each read is one
    blocking copy (ordered after the frame on the stream, no separate wait). A flag read after the
    next frame has overwritten it raises instead of answering for the wrong frame."""
    pipe = arrcoc_rt.Pipeline(W, H, device="cuda")
    stream = cuda.Stream(0)
    pipe.process(frame(0), stream=stream, copy=False)
    r = pipe.process(frame(1), stream=stream, copy=False)
    reads = [lambda: r.scene_cut, lambda: r.num_saccades, lambda: arrcoc_rt.to_host(r.kinds)]
    c = counted(lambda i: reads[i](), frames=3)
    assert costs(c) == dict(dict.fromkeys(NOTHING, 0), host_syncs=3), c
    assert c["blocking_copies"] == 3
    c = counted(lambda i: (r.scene_cut, r.num_saccades), frames=2)  # read once, then kept
    assert c["host_syncs"] == 0
    assert r.num_saccades == int(np.sum(arrcoc_rt.to_host(r.kinds) == 1))
    late = pipe.process(frame(2), stream=stream, copy=False)
    pipe.process(frame(3), stream=stream, copy=False)
    with pytest.raises(ValueError, match="overwritten by a later frame"):
        late.scene_cut


def test_the_wait_for_a_host_result_releases_the_gil():
    """The one wait of a host result lets other Python threads run (the emulator does the frame's
    work inside that wait, so a wait that held the GIL would stop the ticker for most of it)."""
    pipe = arrcoc_rt.Pipeline(640, 480, device="cuda")
    big = [frame(i, 640, 480) for i in range(3)]
    pipe.process(big[0])
    ticks, stop = [0], threading.Event()

    def ticker():
        while not stop.is_set():
            ticks[0] += 1
            time.sleep(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        time.sleep(0.05)
        start, t0 = ticks[0], time.perf_counter()
        for f in big[1:]:
            pipe.process(f)
        elapsed, during = time.perf_counter() - t0, ticks[0] - start
    finally:
        stop.set()
        t.join()
    # ~0.9 ticks per ms measured with the GIL released, ~0.005 with the wait holding it.
    assert during >= 0.05 * elapsed * 1000, (during, elapsed)


def test_device_memory_of_one_1080p_stream():
    """Everything one 1920x1080 stream holds on the device (texture and its mips, the texture
    stage's scratch and frame staging, the cascade, the allocation and the glimpse pack, the
    built-in encoder with an exemplar query) peaks at <= 250 MB; and nothing more is allocated
    once the first frames have run."""
    gc.collect()
    cuda.reset_emulator_counters()
    base = cuda.emulator_counters()["device_bytes"]
    frames = [frame(i, 1920, 1080) for i in range(3)]
    with arrcoc_rt.Stream(device="cuda", query_image=exemplar()) as s:
        for f in frames[:2]:
            s.process(f)
        after_warm_up = cuda.emulator_counters()
        s.process(frames[2])
        c = cuda.emulator_counters()
    peak = c["peak_device_bytes"] - base
    print(f"device memory of a 1920x1080 stream: {peak / 1e6:.1f} MB peak")
    assert peak <= 250e6, f"{peak / 1e6:.1f} MB"
    assert c["malloc_calls"] == after_warm_up["malloc_calls"]
    assert peak > 100e6  # the texture alone is ~85 MB: the count sees the allocations

