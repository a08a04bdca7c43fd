"""StreamGroup.process_batch (issue 15, section 2): B frames of B streams at once give exactly what B
separate Pipelines give for the same frames, on every backend, with each stream's history its own;
bad input names the stream."""

from __future__ import annotations

import numpy as np
import pytest

import arrcoc_rt
from conftest import devices, host, real_image

W, H, FRAMES, B = 160, 128, 4, 3


def _clips() -> list:
    """Three different pans over real photographs (motion, carried relevance, hysteresis)."""
    clips = []
    for k, name in enumerate(("astronaut", "coffee", "chelsea")):
        img = real_image(name)
        clips.append([np.ascontiguousarray(img[20 + 2 * i:20 + 2 * i + H, 30 + 3 * i * (k + 1):30 + 3 * i * (k + 1) + W])
                      for i in range(FRAMES)])
    return clips


def _fields(r) -> tuple:
    return (host(r.glimpses), host(r.budgets), host(r.positions), host(r.levels), host(r.relevance),
            bool(r.scene_cut), int(r.num_saccades))


OPTIONS = dict(saccades=32, gestalt_x=4, gestalt_y=4)


@pytest.mark.parametrize("device", devices())
def test_process_batch_equals_separate_pipelines(device):
    clips = _clips()
    # stream 1 has a query map (the right half), the others none
    qmap = np.zeros((H, W), np.float32)
    qmap[:, W // 2:] = 1.0
    queries = [None, arrcoc_rt.Query.map(qmap), None]
    separate = [arrcoc_rt.Pipeline(W, H, device=device, **OPTIONS) for _ in range(B)]
    want = [[_fields(separate[b].process(clips[b][i], query=queries[b])) for i in range(FRAMES)] for b in range(B)]
    with arrcoc_rt.StreamGroup(W, H, B, device=device, **OPTIONS) as group:
        assert group.streams == B and group.device == device
        got = [[] for _ in range(B)]
        for i in range(FRAMES):
            results = group.process_batch([clips[b][i] for b in range(B)], queries=queries)
            assert len(results) == B
            for b, r in enumerate(results):
                got[b].append(_fields(r))
    for b in range(B):
        for i in range(FRAMES):
            for x, y in zip(want[b][i], got[b][i]):
                np.testing.assert_array_equal(x, y, err_msg=f"{device} stream {b} frame {i}")
    # the streams differ (a group that gave every stream stream 0's result would fail above too)
    assert not np.array_equal(got[0][-1][0], got[2][-1][0])


class _CountedExport:
    """A DLPack producer that counts its exports (a bare capsule can be consumed only once)."""

    def __init__(self, array):
        self.array, self.exports = array, 0

    def __dlpack__(self, **kw):
        self.exports += 1
        return self.array.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()


def test_each_frame_is_exported_once():
    """process_batch reads every stream's frame before any stream runs (a refused one must not move
    the others on) and hands the streams what it read: a DLPack frame was exported twice."""
    clips = _clips()
    frames = [_CountedExport(clips[b][0]) for b in range(B)]
    with arrcoc_rt.StreamGroup(W, H, B, device="cpu", **OPTIONS) as group:
        got = group.process_batch(frames)
    assert [f.exports for f in frames] == [1] * B
    want = [arrcoc_rt.Pipeline(W, H, device="cpu", **OPTIONS).process(clips[b][0]) for b in range(B)]
    for b in range(B):
        for x, y in zip(_fields(want[b]), _fields(got[b])):
            np.testing.assert_array_equal(x, y)


@pytest.mark.needs_cuda
def test_synchronize_waits_for_every_stream():
    """With copy=False nothing waits for the device; synchronize() waits on each stream's own CUDA
    stream (the emulated device counts the waits; its streams run queued work only then)."""
    clips = _clips()
    with arrcoc_rt.StreamGroup(W, H, B, device="cuda", **OPTIONS) as group, \
            arrcoc_rt.StreamGroup(W, H, B, device="cuda", **OPTIONS) as copied:
        for i in range(2):
            want = [_fields(r) for r in copied.process_batch([clips[b][i] for b in range(B)])]
            if arrcoc_rt.cuda.is_emulated():
                arrcoc_rt.cuda.reset_emulator_counters()
            got = group.process_batch([clips[b][i] for b in range(B)], copy=False)
            if arrcoc_rt.cuda.is_emulated():
                assert arrcoc_rt.cuda.emulator_counters()["stream_syncs"] == 0  # nothing waited yet
            group.synchronize()
            if arrcoc_rt.cuda.is_emulated():
                assert arrcoc_rt.cuda.emulator_counters()["stream_syncs"] == B
            for b in range(B):
                for x, y in zip(want[b], _fields(got[b])):
                    np.testing.assert_array_equal(x, y, err_msg=f"stream {b} frame {i}")
    cpu = arrcoc_rt.StreamGroup(W, H, 2, device="cpu", **OPTIONS)
    cpu.synchronize()  # nothing to wait for
    cpu.close()
    cpu.synchronize()  # nor after close()


def test_reset_forgets_one_stream_only():
    clips = _clips()
    group = arrcoc_rt.StreamGroup(W, H, 2, device="cpu", **OPTIONS)
    for i in range(2):
        group.process_batch([clips[0][i], clips[1][i]])
    group.reset(1)
    r = group.process_batch([clips[0][2], clips[1][2]])
    assert r[0].follows_a_frame and r[0].motion_valid
    assert not r[1].motion_valid  # stream 1 starts afresh
    fresh = arrcoc_rt.Pipeline(W, H, device="cpu", **OPTIONS)
    # stream 1's frame equals a fresh pipeline's first frame in what does not depend on history
    np.testing.assert_array_equal(np.asarray(r[1].glimpses), np.asarray(fresh.process(clips[1][2]).glimpses))
    group.close()


def test_bad_input_names_what_was_wrong():
    clips = _clips()
    with pytest.raises(ValueError, match="streams"):
        arrcoc_rt.StreamGroup(W, H, 0, device="cpu")
    group = arrcoc_rt.StreamGroup(W, H, 3, device="cpu", **OPTIONS)
    with pytest.raises(ValueError, match=r"one frame per stream \(3\); got 2"):
        group.process_batch([clips[0][0], clips[1][0]])
    with pytest.raises(ValueError, match="queries"):
        group.process_batch([c[0] for c in clips], queries=[None])
    too_big = np.zeros((H * 2, W, 3), np.uint8)
    with pytest.raises(ValueError, match="stream 2"):
        group.process_batch([clips[0][0], clips[1][0], too_big])
    with pytest.raises(ValueError, match="stream"):
        group.reset(3)
    group.close()
    with pytest.raises(ValueError, match="closed"):
        group.process_batch([c[0] for c in clips])


@pytest.mark.parametrize("streams", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("cores", [None, 2, 4, 16])
def test_cpu_streams_share_the_cores_out_between_whole_frames(streams, cores, monkeypatch):
    """On the CPU the cores go to whole frames of different streams (was: every stream's loops on
    every core at once, 76-88 % of one stream's frames per second at 640x480): the frames that run
    at once use every core (none idle: 3 streams on 4 cores use all 4) and no more."""
    import os

    if cores is not None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with arrcoc_rt.StreamGroup(64, 48, streams, device="cpu", **OPTIONS) as g:
        threads = g.threads_per_stream
        assert len(threads) == streams and min(threads) >= 1
        assert g.host_threads == min(streams, n)
        at_once = sorted(threads, reverse=True)[:g.host_threads]
        assert sum(at_once) == n
        frames = [np.full((48, 64, 3), 40 * b, np.uint8) for b in range(streams)]
        assert len(g.process_batch(frames)) == streams
    with arrcoc_rt.StreamGroup(64, 48, 2, device="cpu", num_threads=1, **OPTIONS) as g:
        assert g.threads_per_stream == (1, 1) and g.host_threads == min(2, n)
