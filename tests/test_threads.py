"""Thread safety as documented (docs/RELIABILITY.md): one Pipeline per thread runs in parallel with
the others and gives exactly the results of a sequential run; concurrent calls on one shared object
are serialized (its mutex; a Pipeline's frames whole, its lock), never corrupting it. CI runs these
again under ASan + UBSan."""

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
    """Frames in the threads' order (each whole: the next test), never a crash or corrupted memory:
    each native call also holds the builder's mutex. Afterwards, reset, the pipeline gives exactly a
    fresh one's results."""
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


class _Logged:
    """A stand-in for an operator that logs (thread, stage) before each call of `method`."""

    def __init__(self, inner, method: str, stage: str, log: list):
        self._inner, self._method, self._stage, self._log = inner, method, stage, log

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if name != self._method:
            return attr

        def logged(*args, **kw):
            self._log.append((threading.get_ident(), self._stage))
            return attr(*args, **kw)
        return logged


def test_frames_from_two_threads_on_one_pipeline_run_whole():
    """Pipeline.process holds the pipeline's lock for a whole frame: two threads' frames run one
    after the other, never stage by stage interleaved (one thread's cascade and allocation ran on
    the other's texture). The stages' calls, logged, come in whole frames: build, cascade, allocate
    of one thread, then the next frame's."""
    pipe = arrcoc_rt.Pipeline(W, H, device="cpu", num_threads=1, gestalt_x=4, gestalt_y=4, saccades=24)
    log = []
    pipe.texture_builder = _Logged(pipe.texture_builder, "build", "build", log)
    pipe.cascade._native = _Logged(pipe.cascade._native, "run", "cascade", log)
    pipe._allocator = _Logged(pipe._allocator, "run", "allocate", log)
    frames = _clip(11)

    def worker(k):
        for i in range(12):
            pipe.process(frames[(i + k) % len(frames)])

    _in_threads(worker, 2)
    assert len(log) == 2 * 12 * 3
    for f in range(0, len(log), 3):
        (t0, s0), (t1, s1), (t2, s2) = log[f:f + 3]
        assert (s0, s1, s2) == ("build", "cascade", "allocate") and t0 == t1 == t2, f"frame {f // 3}: {log[f:f + 3]}"


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
