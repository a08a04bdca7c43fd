"""Several streams of one frame size in one process: ``StreamGroup.process_batch(frames)`` takes
frame b of stream b for every b and returns their results together.

Each stream keeps its own Pipeline (motion, carried relevance, hysteresis and scene cuts follow that
stream's frames only), and the B frames go through their stages at the same time: one Python thread
per stream, kept for the group's life, in native code without the GIL. On the CPU the kernels'
parallel loops of all streams share the backend's one worker pool (one thread per core, no team per
stream), so B streams together use the cores without oversubscribing them. On CUDA each stream has
a CUDA stream of its own, so the B frames' kernels are queued independently and may overlap on the
device. Results equal those of B separate Pipelines fed the same frames (tests/test_stream_group.py).
"""

from __future__ import annotations

import concurrent.futures

import numpy as np

from .pipeline import FrameResult, Pipeline
from .query import make_query

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
        num_threads: the CPU kernels' threads per loop (0: all cores; the pool is shared anyway).
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
        self.pipelines = [Pipeline(width, height, device=device, num_threads=num_threads, **pipeline_options)
                          for _ in range(int(streams))]
        self.device = self.pipelines[0].device
        self.width, self.height = self.pipelines[0].width, self.pipelines[0].height
        self._cuda_streams = []
        if self.device == "cuda":
            from . import cuda

            self._cuda_streams = [cuda.Stream(self.pipelines[0].cuda_device) for _ in self.pipelines]
        # the caller's thread runs stream 0; one more thread per further stream
        self._executor = (concurrent.futures.ThreadPoolExecutor(max_workers=len(self.pipelines) - 1,
                                                                thread_name_prefix="arrcoc-stream")
                          if len(self.pipelines) > 1 else None)
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
                width, height = p.texture_builder.check_frame(frames[b], stream=stream)
                kind, value = p._resolve_query(make_query(queries[b]))
                if kind == "map":
                    p._query_map(value, width, height)
            except (ValueError, TypeError) as e:
                _raise_for_stream(b, e, " (no stream has processed this batch)")
        if self._executor is None:
            return [self._run(0, frames[0], queries[0], copy)]
        futures = [self._executor.submit(self._run, b, frames[b], queries[b], copy) for b in range(1, self.streams)]
        results, first_error = [None] * self.streams, None
        try:
            results[0] = self._run(0, frames[0], queries[0], copy)
        except Exception as e:  # reported after every stream has finished its frame
            first_error = (0, e)
        for b, f in enumerate(futures, start=1):
            try:
                results[b] = f.result()
            except Exception as e:
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

    def __enter__(self) -> "StreamGroup":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StreamGroup({self.width}x{self.height}, streams={self.streams}, device={self.device!r})"
