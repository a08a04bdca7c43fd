"""Several streams of one frame size in one process: ``StreamGroup.process_batch(frames)`` takes
frame b of stream b for every b and returns their results together.

Each stream keeps its own Pipeline (motion, carried relevance, hysteresis and scene cuts follow that
stream's frames only), and the B frames go through their stages at the same time, in native code
without the GIL. On the CPU the cores are split between streams, not between the loops of each
frame: with B >= cores, one thread per core takes whole frames, each run on one thread (no barrier
per loop, and one frame's serial steps overlap another's work); with fewer streams than cores all B
frames run at once and the cores are shared out between them (cores // B threads of the backend's
one shared worker pool each, the remainder one more for the first streams). Nothing is
oversubscribed and no core is left out. (4 streams at 640x480 on 2 cores: every stream's loops on
all cores ran at 76-88 % of one stream's frames per second, whole frames at 100-122 %:
docs/PERFORMANCE.md.) On CUDA each stream has a CUDA stream of
its own and a host thread that queues its frame, so the B frames' kernels may overlap on the
device. Results equal those of B separate Pipelines fed the same frames (tests/test_stream_group.py):
the kernels give the same bits for any thread count.
"""

from __future__ import annotations

import concurrent.futures
import os

import numpy as np

from .frames import stream_handle
from .pipeline import FrameResult, Pipeline
from .query import make_query
from .runtime import device_string, resolve_device

__all__ = ["StreamGroup"]


def _raise_for_stream(b: int, e: Exception, note: str = "") -> None:
    """Raises ``e``; a plain ValueError/TypeError (bad input) again, naming stream ``b`` (a subclass
    may take other arguments, so it is raised as it is)."""
    if type(e) in (ValueError, TypeError):
        raise type(e)(f"stream {b}: {e}{note}") from e
    raise e


class StreamGroup:
    """B streams of width x height frames processed together.

    Args:
        width, height: the largest frame size (as Pipeline's).
        streams: how many streams, 1..64.
        device: 'auto' | 'cpu' | 'cuda' | 'cuda:N' (every stream on the same device).
        num_threads: the CPU kernels' threads per stream (0: the cores shared out between the streams;
            see the module docstring).
        **pipeline_options: any other Pipeline option, the same for every stream.

    ``process_batch(frames, queries=None)`` -> list of B FrameResults. ``queries``: None, or a list
    of B entries (None or anything Pipeline.process takes as ``query=``). ``reset(b)`` forgets the
    history of stream b (all streams when b is None). ``synchronize()`` waits for every stream's
    last frame on the device. Use it as a context manager, or ``close()``.
    """

    def __init__(self, width: int, height: int, streams: int, *, device: str = "auto", num_threads: int = 0,
                 **pipeline_options):
        if isinstance(streams, bool) or not isinstance(streams, (int, np.integer)) or not 1 <= streams <= 64:
            raise ValueError(f"streams: expected an int 1..64; got {streams!r}")
        streams = int(streams)
        on_cpu = resolve_device(device)[0] == "cpu"
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = [num_threads] * streams
        if on_cpu and isinstance(num_threads, (int, np.integer)) and not isinstance(num_threads, bool) \
                and num_threads == 0:  # cores // B each, the first cores % B streams one more; 1 when B > cores
            threads = [max(1, cores // streams + (b < cores % streams)) for b in range(streams)]
        self.pipelines = [Pipeline(width, height, device=device, num_threads=threads[b], **pipeline_options)
                          for b in range(streams)]
        self.device = self.pipelines[0].device  # 'cpu' or 'cuda', as Pipeline's
        self.cuda_device = self.pipelines[0].cuda_device
        self.width, self.height = self.pipelines[0].width, self.pipelines[0].height
        self._cuda_streams = []
        if self.device == "cuda":
            from . import cuda

            self._cuda_streams = [cuda.Stream(self.pipelines[0].cuda_device) for _ in self.pipelines]
        # Host threads that run the streams' frames: on the CPU as many as the streams' threads fill
        # the cores (each takes whole frames); on CUDA one per stream (each queues its stream's work).
        # (On the CPU every stream has >= 1 thread: Pipeline refused anything but an int 0..1024 above.)
        workers = min(streams, max(1, cores // min(threads))) if on_cpu else streams
        self._executor = (concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="arrcoc-stream")
                          if workers > 1 else None)
        self.host_threads = workers  # frames run at once
        # CPU kernel threads of each stream's frames (0: all cores; CUDA: none)
        self.threads_per_stream = tuple(int(t) for t in threads) if on_cpu else (0,) * streams
        self._closed = False

    @property
    def streams(self) -> int:
        return len(self.pipelines)

    def _run(self, b: int, frame, query, copy: bool) -> FrameResult:
        stream = self._cuda_streams[b] if self._cuda_streams else None
        return self.pipelines[b].process(frame, query=query, stream=stream, copy=copy)

    def process_batch(self, frames, queries=None, *, copy: bool = True) -> list:
        """Frame b of ``frames`` through stream b, for every b at once -> [FrameResult] * B.
        ``copy`` as in Pipeline.process (False: zero-copy views valid until the stream's next frame)."""
        if self._closed:
            raise ValueError("process_batch: this StreamGroup is closed")
        frames = list(frames)  # a list, or an array [B, H, W, C]
        if len(frames) != self.streams:
            raise ValueError(f"frames: expected one frame per stream ({self.streams}); got {len(frames)}")
        if queries is None:
            queries = [None] * self.streams
        elif isinstance(queries, (str, bytes)) or len(queries) != self.streams:
            raise ValueError(f"queries: expected None or a list of {self.streams} (one per stream, None for none)")
        # Every frame and query checked before any stream runs: a refused one must not leave the
        # others a frame ahead (their motion, hysteresis and carried relevance would move on).
        for b, p in enumerate(self.pipelines):
            try:
                stream = self._cuda_streams[b] if self._cuda_streams else None
                # read once: the stream runs this FrameSpec (a DLPack frame is exported once)
                frames[b] = p.texture_builder._checked_spec(frames[b], None, None, stream, stream_handle(stream))
                kind, value = p._resolve_query(make_query(queries[b]))
                if kind == "map":
                    p._query_map(value, frames[b].width, frames[b].height)
            except (ValueError, TypeError) as e:
                _raise_for_stream(b, e, " (no stream has processed this batch)")
        results, first_error = [None] * self.streams, None
        if self._executor is None:  # one stream, or one core: the frames one after another here
            for b in range(self.streams):
                try:
                    results[b] = self._run(b, frames[b], queries[b], copy)
                except Exception as e:  # reported after every stream has had its frame
                    first_error = first_error or (b, e)
        else:
            futures = [self._executor.submit(self._run, b, frames[b], queries[b], copy) for b in range(self.streams)]
            for b, f in enumerate(futures):
                try:
                    results[b] = f.result()
                except Exception as e:  # reported after every stream has finished its frame
                    first_error = first_error or (b, e)
        if first_error is not None:
            _raise_for_stream(*first_error)
        return results

    def reset(self, stream: int | None = None) -> None:
        """Forget motion history and carried relevance of one stream (all when None)."""
        if stream is None:
            for p in self.pipelines:
                p.reset()
            return
        if isinstance(stream, bool) or not isinstance(stream, (int, np.integer)) or not 0 <= stream < self.streams:
            raise ValueError(f"stream: expected an int 0..{self.streams - 1}; got {stream!r}")
        self.pipelines[int(stream)].reset()

    def synchronize(self) -> None:
        """Wait until every stream's last frame is done on the device: after it the host may read the
        zero-copy results of ``process_batch(copy=False)`` (or time them). Nothing to wait for on the CPU."""
        for s in self._cuda_streams:
            s.synchronize()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        for s in self._cuda_streams:  # work queued with copy=False finishes first
            s.synchronize()
            s.close()
        self._cuda_streams = []
        for p in self.pipelines:  # their memory, now (results hold their pipelines)
            p.close()

    def __enter__(self) -> "StreamGroup":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        where = device_string(self.device, self.cuda_device)
        return (f"StreamGroup({self.width}x{self.height}, streams={self.streams}, device={where!r}, "
                f"host_threads={self.host_threads}, threads_per_stream={self.threads_per_stream})")
