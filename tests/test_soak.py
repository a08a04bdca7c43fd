"""Backpressure accounting of sources (drop and block) and soak runs: ≥ 20,000 frames of a real
encoded clip with cuts through one Stream, with resolution and query changes, process RSS flat;
creating and dropping thousands of Pipelines and Streams does not grow memory."""

import gc
import os
import time
import warnings

import numpy as np
import pytest

import arrcoc_rt
from arrcoc_rt.samples import sample_frames

from conftest import write_video

av = pytest.importorskip("av")


def clip_with_cuts(w, h, n=24):
    """RGB frames of three scenes (two hard cuts): the sample scene panning, its mirror image, and a
    darker, upside-down copy."""
    a = sample_frames(w, h, n // 3)
    b = [np.ascontiguousarray(f[:, ::-1]) for f in sample_frames(w, h, n // 3, step=(-6, 2))]
    c = [np.ascontiguousarray((f[::-1] * 0.5).astype(np.uint8)) for f in sample_frames(w, h, n - 2 * (n // 3))]
    return a + b + c


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def slow_consume(src, delay=0.003):
    """A slow consumer: processes every frame it gets through a Stream and sleeps."""
    processed = 0
    with arrcoc_rt.Stream(device="cpu", num_threads=1) as stream:
        for f in src:
            stream.process(f)
            processed += 1
            time.sleep(delay)
    return processed


def test_drop_counts_add_up_exactly(tmp_path):
    path = write_video(tmp_path / "clip.mp4", clip_with_cuts(64, 48, 120), rate=25)
    with arrcoc_rt.open(path, live=True, on_full="drop", queue_size=2) as src:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            processed = slow_consume(src)
        st = src.stats
        assert st.decoded == 120 and st.corrupt_packets == 0
        assert st.delivered == processed and st.dropped > 0, st
        assert st.decoded == processed + st.dropped + st.corrupt_packets  # exactly
        assert st.read == processed + st.dropped + st.corrupt_packets
        assert any("dropped" in str(w.message) for w in caught)


def test_block_drops_nothing_and_every_frame_is_processed(tmp_path):
    path = write_video(tmp_path / "clip.mp4", clip_with_cuts(64, 48, 120), rate=25)
    for live in (False, True):
        with arrcoc_rt.open(path, live=live, on_full="block", queue_size=2) as src:
            processed = slow_consume(src)
            st = src.stats
            assert processed == st.delivered == st.decoded == 120 and st.dropped == 0, st


def test_accounting_with_corrupt_packets_and_early_close(tmp_path):
    path = write_video(tmp_path / "clip.ts", clip_with_cuts(128, 96, 60), rate=25, container_format="mpegts")
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    for pos in rng.integers(len(data) // 4, 3 * len(data) // 4, 40):
        data[pos] ^= 0xFF
    (tmp_path / "bad.ts").write_bytes(bytes(data))
    for on_full, live in (("drop", True), ("block", False), (None, False)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            src = arrcoc_rt.open(tmp_path / "bad.ts", live=live, on_full=on_full, queue_size=2)
            try:
                processed = slow_consume(src, 0.002)
            except arrcoc_rt.SourceError:
                processed = src.stats.delivered
            src.close()
        st = src.stats
        assert st.delivered == processed
        assert st.read == processed + st.dropped + st.corrupt_packets, (on_full, st)
        if on_full != "drop":
            assert st.dropped == 0
    # a consumer that stops early: close() counts the queued frames as dropped, nothing is lost
    src = arrcoc_rt.open(path, on_full="block", queue_size=3)
    it = iter(src)
    got = [next(it) for _ in range(5)]
    time.sleep(0.2)  # the reader fills the queue and waits
    src.close()
    assert src.stats.delivered == len(got) and src.stats.decoded == len(got) + src.stats.dropped, src.stats
    with pytest.raises(ValueError, match="on_full: 'later' is not understood"):
        arrcoc_rt.open(path, on_full="later")
    with pytest.raises(ValueError, match="contradicts drop_oldest"):
        arrcoc_rt.open(path, live=True, drop_oldest=True, on_full="block")
    with pytest.raises(ValueError, match="only for live sources"):
        arrcoc_rt.open(path, on_full="drop")


def decoded_clip(tmp_path, w, h):
    """A real encoded clip with cuts, decoded once: yuv420p av.VideoFrames."""
    path = write_video(tmp_path / f"clip_{w}x{h}.mp4", clip_with_cuts(w, h, 30), rate=25)
    with arrcoc_rt.open(path) as src:
        frames = list(src)
    assert len(frames) == 30
    return frames


def device_bytes(device) -> int | None:
    """Live device memory on the emulated CUDA device (its allocation counter); None on the CPU."""
    return arrcoc_rt.cuda.emulator_counters()["device_bytes"] if device == "cuda" else None


def soak(tmp_path, total, segment, device="cpu"):
    """`total` frames through one Stream; every `segment` frames the size and the query change.
    On the emulated CUDA device the live device memory must be flat too."""
    clips = [decoded_clip(tmp_path, 64, 48), decoded_clip(tmp_path, 48, 32)]
    stream = arrcoc_rt.Stream(device=device, num_threads=1)
    warmup = min(2 * segment, total // 4)
    base = None
    resized = cuts = 0
    t0 = time.perf_counter()
    for i in range(total):
        seg = i // segment
        if i % segment == 0 and i:
            clip = clips[seg % 2]
            h, w = clip[0].height, clip[0].width
            query = (None, "map", "random")[seg % 3]
            if query is None:
                stream.set_query()
            else:
                qm = np.linspace(0, 1, h * w, dtype=np.float32).reshape(h, w)
                stream.set_query(query_map=qm if query == "map" else np.random.default_rng(seg).random((h, w), np.float32))
        clip = clips[seg % 2]
        r = stream.process(clip[i % len(clip)])
        resized += r.resized
        cuts += r.scene_cut
        if i == warmup:
            gc.collect()
            base, base_device = rss_mb(), device_bytes(device)
    elapsed = time.perf_counter() - t0
    gc.collect()
    growth = rss_mb() - base
    device_growth = device_bytes(device) - base_device if device == "cuda" else 0
    stream.close()
    print(f"\nsoak ({device}): {total} frames in {elapsed:.1f} s, {resized} resizes, {cuts} cuts, "
          f"RSS {base:.1f} MB after warm-up, growth {growth:+.2f} MB"
          + (f"; device memory {base_device / 2**20:.1f} MB after warm-up, growth {device_growth} bytes"
             if device == "cuda" else ""))
    assert resized == (total - 1) // segment  # every size change is seen
    assert cuts > 0
    assert growth <= 20, f"RSS grew by {growth:.1f} MB over {total - warmup} frames"
    assert device_growth == 0, f"device memory grew by {device_growth} bytes over {total - warmup} frames"
    return elapsed, growth


@pytest.mark.needs_cuda
@pytest.mark.needs_emulator
def test_soak_on_the_emulated_device_keeps_device_memory_flat(tmp_path):
    """The same soak on the emulated CUDA device, shorter (the emulator runs kernels on one CPU
    thread): 600 frames, size and query changing every 75 (every pair of size and query kind is
    seen); the live device allocations after warm-up equal those at its end, to the byte (one
    allocation a frame would show), and dropping the Stream frees them all."""
    before = device_bytes("cuda")
    soak(tmp_path, 600, 75, device="cuda")
    gc.collect()
    assert device_bytes("cuda") == before
    frame = sample_frames(64, 48, 1)[0]
    for _ in range(100):  # created, run and dropped: nothing of theirs stays on the device
        with arrcoc_rt.Stream(device="cuda", num_threads=1) as s:
            s.process(frame)
        arrcoc_rt.Pipeline(64, 48, device="cuda", num_threads=1).process(frame)
    del s  # a closed Stream keeps its pipeline inspectable until it is dropped
    gc.collect()
    assert device_bytes("cuda") == before


def test_soak_20000_frames_rss_flat(tmp_path):
    soak(tmp_path, 20000, 2500)


@pytest.mark.slow
def test_soak_long(tmp_path, request):
    """About 3 minutes: runs only when asked for (``-m slow`` or ARRCOC_SOAK_LONG=1), so that the
    plain ``pytest`` of CI keeps its time."""
    if "slow" not in (request.config.getoption("markexpr") or "") and not os.environ.get("ARRCOC_SOAK_LONG"):
        pytest.skip("the long soak runs with -m slow or ARRCOC_SOAK_LONG=1")
    soak(tmp_path, 200000, 5000)


def test_creating_and_dropping_pipelines_and_streams_does_not_grow_memory():
    frame = sample_frames(64, 48, 1)[0]

    def churn(n):
        for _ in range(n):
            p = arrcoc_rt.Pipeline(64, 48, device="cpu", num_threads=1)
            p.process(frame)
            del p
            with arrcoc_rt.Stream(device="cpu", num_threads=1) as s:
                s.process(frame)
            del s

    churn(100)  # warm-up: allocator pools, caches
    gc.collect()
    base = rss_mb()
    t0 = time.perf_counter()
    churn(1000)  # 2000 objects
    gc.collect()
    growth = rss_mb() - base
    print(f"\nchurn: 1000 Pipelines + 1000 Streams in {time.perf_counter() - t0:.1f} s, RSS growth {growth:+.2f} MB")
    assert growth <= 10, f"RSS grew by {growth:.1f} MB over 2000 Pipelines/Streams"
