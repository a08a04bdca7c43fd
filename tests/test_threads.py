"""Thread safety as documented (docs/RELIABILITY.md): one Pipeline per thread runs in parallel with
the others and gives exactly the results of a sequential run; concurrent calls on one shared object
are serialized (its mutex), never corrupting it. CI runs these again under ASan + UBSan."""

from __future__ import annotations

import threading

import numpy as np
import arrcoc_rt

W, H, FRAMES = 96, 64, 5


def _clip(seed: int) -> list:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (H, W + FRAMES * 2, 3), dtype=np.uint8)
    return [np.ascontiguousarray(base[:, 2 * i:2 * i + W]) for i in range(FRAMES)]  # a pan: motion, carry


def _in_threads(fn, n: int) -> None:
    """fn(k) for k in range(n), each on its own thread at once; what any of them raised fails the test."""
    errors = []

    def guarded(k):
        try:
            fn(k)
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors


def _run(clip, results, key, errors, barrier=None):
    try:
        pipe = arrcoc_rt.Pipeline(W, H, device="cpu", num_threads=1, gestalt_x=4, gestalt_y=4, saccades=24)
        if barrier is not None:
            barrier.wait()
        results[key] = [(r.glimpses.copy(), r.budgets.copy(), r.positions.copy(), r.relevance.copy())
                        for r in (pipe.process(f) for f in clip)]
    except BaseException as e:  # reported by the main thread
        errors.append(e)


def test_one_pipeline_per_thread_equals_a_sequential_run():
    clips = {k: _clip(k) for k in range(4)}
    sequential, errors = {}, []
    for k, clip in clips.items():
        _run(clip, sequential, k, errors)
    parallel = {}
    barrier = threading.Barrier(len(clips))
    threads = [threading.Thread(target=_run, args=(clip, parallel, k, errors, barrier)) for k, clip in clips.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    for k in clips:
        for a, b in zip(sequential[k], parallel[k]):
            for x, y in zip(a, b):
                np.testing.assert_array_equal(x, y)


def test_concurrent_builds_on_one_builder_are_serialized():
    """Four threads build frames of different sizes on one shared builder at once. Each build is
    whole (the mutex), so the builder stays usable: afterwards a frame gives exactly what a fresh
    builder gives for the same frame after the same previous frame."""
    b = arrcoc_rt.TextureBuilder(W, H, device="cpu", dtype="float32", num_threads=2)
    frames = [np.random.default_rng(k).integers(0, 256, (H - 8 * k, W - 8 * k, 3), dtype=np.uint8) for k in range(4)]

    def worker(k):
        for _ in range(6):
            b.build(frames[k])

    _in_threads(worker, 4)
    f1, f2 = _clip(9)[:2]
    fresh = arrcoc_rt.TextureBuilder(W, H, device="cpu", dtype="float32", num_threads=2)
    for builder in (b, fresh):
        builder.build(f1)
    want = fresh.build(f2).to_numpy(4)
    got = b.build(f2).to_numpy(4)
    for c in want:
        np.testing.assert_array_equal(got[c], want[c], err_msg=str(c))


def test_process_from_several_threads_on_one_pipeline_never_corrupts_it():
    """Not a supported use (a Pipeline's frames are ordered, and a result copied while another
    thread runs may mix two frames), but it must neither crash nor corrupt memory: each native call
    holds the builder's mutex. Afterwards, reset, the pipeline gives exactly a fresh one's results."""
    pipe = arrcoc_rt.Pipeline(W, H, device="cpu", num_threads=1, gestalt_x=4, gestalt_y=4, saccades=24)
    clip, errors = _clip(3), []

    def worker(_):
        for f in clip:
            r = pipe.process(f)
            assert r.glimpses.shape == (16 + 24, 3, 16, 16) and r.relevance.shape == ((H + 15) // 16, (W + 15) // 16)

    _in_threads(worker, 3)
    pipe.reset()
    got, want = {}, {}
    _run(clip, want, 0, errors)
    got[0] = [(r.glimpses.copy(), r.budgets.copy(), r.positions.copy(), r.relevance.copy())
              for r in (pipe.process(f) for f in clip)]
    assert not errors, errors
    for a, b in zip(got[0], want[0]):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def _os_threads() -> int:
    import os
    return len(os.listdir("/proc/self/task"))


def test_streams_share_one_pool_of_workers():
    """Four streams with multi-threaded kernels (num_threads=0: all cores) on four Python threads:
    each gives exactly a sequential run's results, and the process's threads do not grow with the
    streams (the CPU backend's loops run on one shared pool, not a team per calling thread)."""
    w, h = 320, 240
    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, (h, w + 12, 3), dtype=np.uint8)
    clip = [np.ascontiguousarray(base[:, 3 * i:3 * i + w]) for i in range(4)]

    def run(k, out, barrier=None):
        pipe = arrcoc_rt.Pipeline(w, h, device="cpu", num_threads=0)
        if barrier is not None:
            barrier.wait()
        out[k] = [(r.glimpses.copy(), r.budgets.copy(), r.relevance.copy()) for r in (pipe.process(f) for f in clip)]
        if barrier is not None:
            counts.append(_os_threads())  # while the other streams still run
            barrier.wait()

    want = {}
    run(0, want)  # the pool exists from here on
    before = _os_threads()
    counts, got = [], {}
    barrier = threading.Barrier(4)
    _in_threads(lambda k: run(k, got, barrier), 4)
    # the 4 Python threads themselves, and nothing more
    assert max(counts) <= before + 4, (before, counts)
    for k in range(4):
        for a, b in zip(want[0], got[k]):
            for x, y in zip(a, b):
                np.testing.assert_array_equal(x, y)
