"""``StreamWorker``: the body of the Ray actor that owns sources and their Streams.

One worker holds any number of streams, each a (source, Stream) pair under a key chosen by the
driver. The driver pulls frames (``next(key, epoch, n)``): nothing is decoded or processed ahead of
what was asked for, so a slow consumer slows the workers instead of filling memory.

Every call carries the driver's ``epoch`` for the key. A restarted actor (Ray re-runs ``__init__``)
holds no streams: it answers ``state="unknown"``, and the driver opens the source again with a
higher epoch, telling it where to resume (``resume_at``: the first frame the driver has not
received) and from where to rebuild the temporal state (``warm_from``: frames from there up to
``resume_at`` are processed again and not delivered). Calls of an older epoch (retried by Ray after
the restart) touch nothing.

This module does not import Ray: ``live.py`` wraps the class with ``ray.remote``.
"""

from __future__ import annotations

import os
import time
import uuid

from ..sources import LIVE_PREFIXES as _LIVE
from .records import FramePack

RANGE_OPTIONS = ("start", "end", "fps")


def _has_range(source_options: dict) -> bool:
    return any(source_options.get(k) is not None for k in RANGE_OPTIONS) or source_options.get("stride", 1) != 1


class _Open:
    """One open stream of a worker."""

    def __init__(self, epoch, source, source_index, src, stream, index, resume_at, warm_from):
        self.epoch, self.source, self.source_index = epoch, source, source_index
        self.src, self.stream = src, stream
        self.frames = iter(src)
        self.index = index            # index of the next frame the source yields
        self.resume_at = resume_at    # first frame to deliver
        self.warm_from = warm_from    # first frame to process (warm-up until resume_at)
        self.replayed = 0             # frames processed again to rebuild the state, not delivered
        self.base = None              # source stats when the first frame was delivered
        self.seek_check = None        # (index, pts) the seek promised for the first decoded frame

    def stats(self) -> dict:
        st = self.src.stats
        b = self.base or (0, 0)
        return {"corrupt_packets": st.corrupt_packets - b[0], "dropped": st.dropped - b[1],
                "decoded": st.decoded, "replayed": self.replayed}


class StreamWorker:
    """Owns sources and Streams (see the module docstring). ``stream_options`` go to every
    ``arrcoc_rt.Stream`` (query, device, encoder, vlm, pipeline options); ``source_options`` to
    every ``arrcoc_rt.open``."""

    def __init__(self, stream_options: dict | None = None, source_options: dict | None = None):
        self.incarnation = uuid.uuid4().hex[:12]
        self.stream_options = dict(stream_options or {})
        self.source_options = dict(source_options or {})
        self._open: dict[str, _Open] = {}

    def ping(self) -> dict:
        """This incarnation, its process and, per open stream, the index of the next frame it will read."""
        return {"incarnation": self.incarnation, "pid": os.getpid(),
                "streams": {k: st.index for k, st in self._open.items()}}

    def _reply(self, key, epoch, state, *, packs=(), error=None, st: _Open | None = None, meta=None,
               first_wall=None, fatal: bool = False) -> dict:
        now = time.time()
        return {"key": key, "epoch": epoch, "state": state, "packs": list(packs), "error": error, "fatal": fatal,
                "stats": st.stats() if st is not None else None, "meta": meta, "incarnation": self.incarnation,
                "wall": now, "first_wall": first_wall if first_wall is not None else now}

    def open(self, key: str, epoch: int, source, source_index: int, *, resume_at: int = 0, warm_from: int = 0,
             seek: tuple | None = None, reconnect: int = 0) -> dict:
        """Opens ``source`` under ``key`` (replacing an older epoch's). ``seek=(index, pts)``: a
        frame the driver has seen, from which a file may be read instead of from its start.
        ``reconnect``: further attempts, 0.5 s, 1 s, 1.5 s ... apart, when opening fails (a live
        source coming back: a camera joined mid-stream may not be readable at once)."""
        from ..sources import SourceError, open as open_source
        from ..stream import Stream

        old = self._open.pop(key, None)
        if old is not None:
            old.src.close()
        options = dict(self.source_options)
        index = 0
        check = None
        path_like = not (isinstance(source, int) or str(source).startswith(("/dev/video",) + _LIVE))
        if seek is not None and seek[1] and seek[0] <= warm_from and path_like and not _has_range(options) \
                and not os.path.isdir(str(source)):
            options["start"] = float(seek[1])   # arrcoc_rt.open seeks to the keyframe before, drops frames before
            index, check = int(seek[0]), (int(seek[0]), float(seek[1]))
        try:
            for attempt in range(reconnect + 1):
                try:
                    src = open_source(source, **options)
                    break
                except SourceError:
                    if attempt == reconnect:
                        raise
                    time.sleep(0.5 * (attempt + 1))
            if getattr(src, "live", False):
                index = resume_at  # a live source reconnects: its frames go on from here
                warm_from = resume_at
            stream = Stream(**self.stream_options)
        except Exception as e:  # noqa: BLE001 - reported to the driver: this source fails alone
            return self._reply(key, epoch, "failed", error=f"{type(e).__name__}: {e}")
        st = _Open(epoch, source, source_index, src, stream, index, resume_at, warm_from)
        st.seek_check = check
        self._open[key] = st
        meta = dict(src.metadata) if hasattr(src, "metadata") else {}
        meta["frame_count"] = int(getattr(src, "frame_count", 0) or 0)
        meta["pid"] = os.getpid()
        return self._reply(key, epoch, "ok", st=st, meta=meta)

    def _reopen_without_seek(self, key: str, st: _Open) -> None:
        from ..sources import open as open_source

        st.src.close()
        st.src = open_source(st.source, **self.source_options)
        st.frames, st.index, st.seek_check = iter(st.src), 0, None

    def next(self, key: str, epoch: int, n: int) -> dict:
        """Up to ``n`` FramePacks of ``key``'s next frames; ``state`` 'ok', 'done' (the source
        ended; the packs are its last), 'failed' (with ``error``) or 'unknown' (not open here:
        the actor restarted, or the epoch is old)."""
        st = self._open.get(key)
        if st is None or st.epoch != epoch:
            return self._reply(key, epoch, "unknown")
        packs = []
        first_wall = None
        try:
            while len(packs) < n:
                try:
                    frame = next(st.frames)
                except StopIteration:
                    self.close(key)
                    return self._reply(key, epoch, "done", packs=packs, st=st, first_wall=first_wall)
                if st.seek_check is not None:
                    # The seek must land on the promised frame; if the pts differ, read from the start.
                    pts = getattr(frame, "time", None)
                    if pts is None or abs(float(pts) - st.seek_check[1]) > 1e-6:
                        self._reopen_without_seek(key, st)
                        continue
                    st.seek_check = None
                i = st.index
                st.index += 1
                if i < st.warm_from:
                    continue  # decoded only
                t0 = time.perf_counter()
                try:
                    result = st.stream.process(frame)
                except Exception as e:  # noqa: BLE001 - processing, not the source: no reconnection helps
                    self.close(key)
                    return self._reply(key, epoch, "failed", packs=packs, error=f"{type(e).__name__}: {e}", st=st,
                                       first_wall=first_wall, fatal=True)
                ms = (time.perf_counter() - t0) * 1e3
                if i < st.resume_at:
                    st.replayed += 1  # rebuilds motion / carried relevance / held saccades; delivered before
                    continue
                if st.base is None:
                    s = st.src.stats
                    st.base = (s.corrupt_packets, s.dropped)
                if not packs:
                    first_wall = time.time()
                packs.append(FramePack.from_result(result, source=str(st.source), source_index=st.source_index,
                                                   frame_index=i, latency_ms=ms))
        except Exception as e:  # noqa: BLE001 - this source fails alone; the frames gathered are still delivered
            self.close(key)
            return self._reply(key, epoch, "failed", packs=packs, error=f"{type(e).__name__}: {e}", st=st,
                               first_wall=first_wall)
        return self._reply(key, epoch, "ok", packs=packs, st=st, first_wall=first_wall)

    def close(self, key: str) -> None:
        st = self._open.pop(key, None)
        if st is not None:
            st.src.close()
            st.stream.close()

