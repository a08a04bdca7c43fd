"""Frame sources: video files and URLs (RTSP too), webcams and image folders, through PyAV.

    with arrcoc_rt.open("clip.mp4") as src:
        for frame in src:            # av.VideoFrame (video) or H x W x 3 uint8 (image folders)
            ...
        print(src.stats)             # decoded, corrupt packets, drops, ...

* Files decode with frame threading (fast, a few frames of delay); live sources (rtsp/http(s)
  streams, webcams) decode without it, for low latency.
* End of stream flushes the decoder, so no tail frame is lost.
* Corrupt or truncated data: the bad packet is skipped and counted and decoding goes on; after
  ``max_consecutive_errors`` bad packets in a row a ``SourceError`` says so. Never a crash.
* Backpressure: by default the consumer pulls (blocking: nothing is dropped). ``drop_oldest=True``
  (or ``on_full="drop"``; live sources) reads in a background thread into a queue of ``queue_size``
  frames and drops the oldest when the consumer falls behind; every drop is counted in ``stats`` and
  warned about. ``on_full="block"`` reads in the same thread and queue but makes the reader wait while
  the queue is full: nothing is dropped (files and live sources).
* Live sources that fail come back: when the connection of a live source drops (the server closes
  it, a read times out, the network fails), the source reconnects with exponential backoff
  (``reconnect_backoff=(first_s, max_s)``: 0.5, 1, 2, 4, 8 s by default) up to
  ``reconnect_attempts`` times in a row (5 by default; 0 turns it off), then raises a
  ``SourceError``: never a hang. The end of an rtsp/rtmp/srt session counts as a drop (a camera's
  session does not end); a tcp/udp/http(s) stream that ends, ends. ``stats.disconnects``,
  ``stats.reconnects`` and ``stats.gap_s`` (seconds without frames) count them, and the first frame
  after a gap carries a ``SourceGap`` in ``frame.opaque``: ``Stream.process`` resets its temporal
  state there and flags the result (``result.reconnected``, ``result.gap_s``). A frame delivered
  right after drop_oldest dropped some carries one too, with their count (``SourceGap.dropped``,
  ``result.dropped_before``; the state is kept: a drop is a larger step, not a lost connection).
* A file that is still being written (a recorder's MPEG-TS or MKV; not MP4, whose index is written
  last): ``follow=seconds`` waits for new data at its end and ends after ``seconds`` without any.
* Accounting (``stats``): ``decoded`` frames came out of the decoder (inside the range), and each is
  either ``delivered`` to the consumer or ``dropped``: at the end of the stream and after ``close()``
  (which counts the frames still queued as dropped) ``decoded == delivered + dropped`` exactly;
  ``corrupt_packets`` counts the bad packets, which give no frame, so
  ``stats.read == decoded + corrupt_packets == delivered + dropped + corrupt_packets``.
"""

from __future__ import annotations

import collections
import functools
import inspect
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .images import pil_to_rgb8

_CLOSED = object()  # what a container call answers once the source is closed (_in_container)


def _pass_gap(left_out, kept, *, dropped: bool = False) -> None:
    """The gap marker of a frame that is not delivered (sampled out, or ``dropped`` by drop_oldest,
    which counts itself) moves to the next one that may be: the consumer must learn of the gap."""
    a = left_out.opaque if isinstance(left_out.opaque, SourceGap) else None
    b = kept.opaque if isinstance(kept.opaque, SourceGap) else None
    if a is None and b is None and not dropped:
        return
    merged = [g for g in (a, b) if g is not None]
    kept.opaque = SourceGap(max((g.seconds for g in merged), default=0.0), sum(g.attempts for g in merged),
                            sum(g.dropped for g in merged) + int(dropped))

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".ts", ".mpg", ".mpeg", ".flv")
LIVE_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "udp://", "tcp://", "srt://", "http://", "https://")
# Live protocols whose sessions have no natural end (a camera's): an end of stream there is a lost
# connection. A raw tcp:// or udp:// feed, or an http(s) stream, may simply end.
ENDLESS_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "srt://")


class SourceError(RuntimeError):
    """A source cannot be opened or has failed for good (too many consecutive errors)."""


@dataclass
class SourceStats:
    decoded: int = 0              # frames out of the decoder (inside the range)
    corrupt_packets: int = 0      # packets skipped because they failed to demux or decode (no frame)
    dropped: int = 0              # decoded frames dropped by drop-oldest backpressure (or queued at close)
    delivered: int = 0            # decoded frames handed to the consumer
    disconnects: int = 0          # live connection losses (server gone, read timeout, network error)
    reconnects: int = 0           # of those, the ones that came back (a frame arrived again)
    gap_s: float = 0.0            # seconds without frames around the losses that came back
    errors: list = field(default_factory=list)  # the last few error messages

    @property
    def read(self) -> int:
        """Everything the source met: decoded frames and corrupt packets. At the end of the stream
        ``read == delivered + dropped + corrupt_packets`` exactly."""
        return self.decoded + self.corrupt_packets

    def note(self, msg: str) -> None:
        self.errors = (self.errors + [msg])[-5:]


@dataclass(frozen=True)
class SourceGap:
    """Put in ``frame.opaque`` of the first frame delivered after frames the consumer never got:
    a live source lost its connection and came back (``attempts`` > 0: the frames between were never
    received; ``seconds`` from the last frame before the loss to this one), and/or drop_oldest
    dropped ``dropped`` decoded frames just before this one (the consumer fell behind)."""

    seconds: float
    attempts: int  # reconnection attempts it took (0: no connection was lost)
    dropped: int = 0  # frames drop_oldest dropped right before this one

    @property
    def reconnected(self) -> bool:
        return self.attempts > 0


def _av():
    try:
        import av
    except ImportError:
        raise SourceError("video sources need PyAV (a dependency of arrcoc_rt): pip install av") from None
    return av


class VideoSource:
    """Decoded frames of a file, URL or device (see the module docstring)."""

    def __init__(self, url: str, *, live: bool | None = None, format: str | None = None, options=None,
                 timeout=(10.0, 10.0), max_consecutive_errors: int = 10, drop_oldest: bool = False,
                 queue_size: int = 4, start: float | None = None, end: float | None = None,
                 fps: float | None = None, stride: int = 1, on_full: str | None = None,
                 reconnect_attempts: int = 5, reconnect_backoff=(0.5, 8.0), follow: float | None = None):
        av = _av()
        first_s, max_s = _check_source_values(start=start, end=end, fps=fps, stride=stride, on_full=on_full,
                                              drop_oldest=drop_oldest, max_consecutive_errors=max_consecutive_errors,
                                              queue_size=queue_size, reconnect_attempts=reconnect_attempts,
                                              reconnect_backoff=reconnect_backoff, follow=follow)
        self._range = (start, end, fps, stride)
        self.url = str(url)
        self.live = live if live is not None else (self.url.startswith(LIVE_PREFIXES) or format is not None)
        drop_oldest = drop_oldest or on_full == "drop"
        if drop_oldest and not self.live:
            raise ValueError("drop_oldest: only for live sources; a file is read as fast as it is consumed")
        self._reconnect = (reconnect_attempts if self.live else 0, first_s, max_s)
        opts = dict(options or {})
        if follow is not None:
            if self.live:
                raise ValueError("follow: only for files that are still being written, not for live sources")
            opts.update(follow="1", rw_timeout=str(int(follow * 1e6)))  # FFmpeg's file protocol waits for data
            open_s, read_s = timeout if isinstance(timeout, (tuple, list)) else (timeout, timeout)
            if read_s is not None:  # PyAV's read timeout must not end the wait first
                timeout = (open_s, max(float(read_s), follow + 1.0))
        self._follow = follow is not None
        if self.url.startswith(("rtsp://", "rtsps://")):
            opts.setdefault("rtsp_transport", "tcp")
        self.stats = SourceStats()
        self._max_errors = max_consecutive_errors
        self._open_args = (format, opts, timeout)
        self._closing = threading.Event()
        # Held around every call into the container (_in_container): close() from another thread
        # never frees the demuxer under a call (it crashed); it leaves the closing to the thread in
        # that call, which may be blocked in a read for a while (follow, live timeouts).
        self._io = threading.Lock()
        self._container_closed = False
        self.container, self.stream = self._open()
        self._metadata = self._read_metadata()  # what close() must not take away
        if not self.live:
            self.stream.thread_type = "AUTO"  # frame threading for files; the flush returns every frame
        self.frame_count = int(self.stream.frames or 0)  # from the container; 0 when unknown
        if start and not self.live:
            # Seek to the keyframe at or before `start` instead of decoding from the beginning.
            tb = self.stream.time_base
            try:
                self.container.seek(int(start / tb) if tb else int(start * 1e6), stream=self.stream if tb else None,
                                    backward=True, any_frame=False)
            except av.error.FFmpegError:
                pass  # not seekable: the frames before `start` are decoded and skipped
        self._drop_oldest = drop_oldest
        self._block = on_full == "block"
        self._queue: collections.deque = collections.deque()
        self._queue_size = queue_size
        self._cond = threading.Condition()
        self._done = False
        self._failure: Exception | None = None
        self._thread = None
        self._closed = False
        self._started = False  # an iteration began: a source is read once

    def _open(self):
        av = _av()
        format, opts, timeout = self._open_args
        try:
            container = av.open(self.url, format=format, options=opts, timeout=timeout)
        except (av.error.FFmpegError, OSError) as e:
            # FFmpeg's reason without its negative errno ("[Errno 1094995529] ... : 'path'")
            raise SourceError(f"cannot open {self.url!r}: {getattr(e, 'strerror', None) or e}") from None
        if not container.streams.video:
            container.close()
            raise SourceError(f"{self.url!r} has no video stream")
        return container, container.streams.video[0]

    def _reopen(self, cause: str) -> int:
        """After a lost connection: reopen with exponential backoff. Returns the attempts it took, or
        None when the source was closed meanwhile; SourceError after ``reconnect_attempts`` failures
        in a row."""
        attempts, first_s, max_s = self._reconnect
        self.stats.disconnects += 1
        self.stats.note(f"connection lost: {cause}")
        try:
            self._in_container(self._close_container)
        except Exception:  # noqa: BLE001 - the old connection is gone either way
            pass
        waited, last = 0.0, cause
        for attempt in range(1, attempts + 1):
            delay = min(first_s * 2 ** (attempt - 1), max_s)
            if self._closing.wait(delay):
                return None  # closed by the user meanwhile: no failure to report
            waited += delay
            try:
                if self._in_container(self._open_again) is _CLOSED:
                    return None
                return attempt
            except SourceError as e:
                last = str(e)
                self.stats.note(f"reconnection attempt {attempt}: {e}")
        raise SourceError(f"{self.url!r}: connection lost ({cause}) and {attempts} reconnection attempt(s) over "
                          f"{waited:.1f} s failed; last: {last}")

    def _open_again(self) -> None:
        self.container, self.stream = self._open()
        self._container_closed = False
        self._metadata = self._read_metadata()

    def _in_container(self, call):
        """call() under the container lock; _CLOSED (and no call) once the source is closed. A
        close() that came meanwhile from another thread is carried out here, when the call returns."""
        with self._io:
            if self._closed:
                self._close_container()
                return _CLOSED
            try:
                return call()
            finally:
                if self._closed:
                    self._close_container()

    def _close_container(self) -> None:  # with self._io held
        if not self._container_closed:
            self._container_closed = True
            self.container.close()

    def _flush(self) -> list:
        """The decoder's last frames when a stream stops without its final flush packet."""
        try:
            frames = self._in_container(lambda: list(self.stream.codec_context.decode(None)))
        except (_av().error.FFmpegError, ValueError):
            return []
        return [] if frames is _CLOSED else frames

    def _decode(self):
        """Decoded frames, skipping (and counting) bad packets; flushes at the end. A live source
        whose connection drops is reopened (``_reopen``); its first frame after the gap is marked."""
        av = _av()
        consecutive = 0
        endless = self.url.startswith(ENDLESS_PREFIXES)
        last_frame_at, gap = None, None
        demux = self.container.demux(self.stream)
        while True:
            lost = bad = None
            try:
                packet = self._in_container(lambda: next(demux))
                if packet is _CLOSED:  # closed, from this thread or another: the iteration ends
                    return
            except (StopIteration, av.error.EOFError):
                if self._closed:  # closed while the read was in progress: the iteration ends
                    return
                if not (endless and self._reconnect[0]) or self._closing.is_set():
                    break
                lost = "the stream ended"
            except (av.error.ExitError, OSError) as e:  # read timeout, connection reset
                if self._closed:  # the read failed because (or after) the user closed the source
                    return
                if self._follow:  # the recorder stopped writing for `follow` seconds: the end
                    yield from self._flush()
                    break
                if not self.live:
                    bad = e  # a file's read error: counted like bad data
                elif not self._reconnect[0] or self._closing.is_set():
                    raise SourceError(f"{self.url!r}: connection lost: {e}") from None
                else:
                    lost = str(e)
            except (av.error.InvalidDataError, av.error.FFmpegError) as e:  # broken container data
                bad = e
            except IndexError as e:
                # PyAV's demux met a packet of a stream index it does not know (damaged data read as
                # a new stream, e.g. in MPEG-TS): bad data. Its generator ended with the error; a new
                # one reads on from the same position.
                if self._closed:
                    return
                bad = e
                demux = self.container.demux(self.stream)
            if lost is not None:
                gap_start = last_frame_at if last_frame_at is not None else time.monotonic()
                attempts = self._reopen(lost)
                if attempts is None:  # closed while it waited to reconnect: the iteration ends
                    return
                gap = (gap_start, attempts)
                demux = self.container.demux(self.stream)
                consecutive = 0
                continue
            if bad is not None:
                consecutive += 1
                self.stats.corrupt_packets += 1
                self.stats.note(str(bad))
                if consecutive >= self._max_errors:
                    raise SourceError(f"{self.url!r}: {consecutive} consecutive unreadable packets; last: {bad}") from None
                continue
            try:
                frames = self._in_container(packet.decode)  # the final empty packet flushes the decoder
                if frames is _CLOSED:
                    return
            except (av.error.InvalidDataError, av.error.FFmpegError) as e:
                consecutive += 1
                self.stats.corrupt_packets += 1
                self.stats.note(str(e))
                if consecutive >= self._max_errors:
                    raise SourceError(f"{self.url!r}: {consecutive} consecutive undecodable packets; last: {e}") from None
                continue
            if frames:
                consecutive = 0
            for f in frames:
                now = time.monotonic()
                if gap is not None:
                    seconds = now - gap[0]
                    self.stats.reconnects += 1
                    self.stats.gap_s += seconds
                    f.opaque = SourceGap(seconds, gap[1])
                    gap = None
                last_frame_at = now
                yield f

    def _reader(self):
        try:
            for f in self._sampled(self._decode()):
                with self._cond:
                    while self._block and not self._closed and len(self._queue) >= self._queue_size:
                        self._cond.wait(0.5)
                    if self._closed:
                        return
                    self.stats.decoded += 1
                    if len(self._queue) >= self._queue_size:
                        oldest = self._queue.popleft()
                        self.stats.dropped += 1
                        _pass_gap(oldest, self._queue[0] if self._queue else f, dropped=True)  # the next to report
                    self._queue.append(f)
                    self._cond.notify_all()
        except Exception as e:  # handed to the consumer
            self._failure = e
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _sampled(self, frames):
        """The frames inside [start, end), at most `fps` per second, every `stride`-th of those."""
        start, end, fps, stride = self._range
        if start is None and end is None and fps is None and stride == 1:
            yield from frames
            return
        rate = float(self.stream.average_rate) if self.stream.average_rate else None
        next_t, kept, first = None, 0, 0
        skipped_gap = None  # a reconnection marker on a frame left out, for the next frame kept
        for i, f in enumerate(frames):
            if isinstance(f.opaque, SourceGap):
                next_t, first = None, i  # a reconnected stream's clock (and frame count) starts again
            t = f.time if f.time is not None else ((i - first) / rate if rate else None)
            keep = not (t is not None and start is not None and t < start - 1e-9)
            if keep and t is not None and end is not None and t >= end - 1e-9:
                return
            if keep and fps is not None and t is not None:
                if next_t is not None and t < next_t - 1e-9:
                    keep = False
                else:
                    next_t = (t if next_t is None else next_t) + 1.0 / fps
            if keep:
                kept += 1
                keep = (kept - 1) % stride == 0
            if not keep:
                if isinstance(f.opaque, SourceGap):
                    if skipped_gap is not None:  # two gaps left out: both reach the next frame kept
                        _pass_gap(skipped_gap, f)
                    skipped_gap = f
                continue
            if skipped_gap is not None:
                _pass_gap(skipped_gap, f)
                skipped_gap = None
            yield f

    def __iter__(self):
        _begin_reading(self, self.url)
        if not self._drop_oldest and not self._block:
            for f in self._sampled(self._decode()):
                self.stats.decoded += 1
                self.stats.delivered += 1
                yield f
            return
        self._thread = threading.Thread(target=self._reader, name="arrcoc-source", daemon=True)
        self._thread.start()
        try:
            yield from self._consume()
        finally:  # the loop ended, broke off or was abandoned: the reader stops (it holds this source)
            self._stop_reader()

    def _stop_reader(self) -> None:
        """The reader thread ends at its next step; the thread in a container call closes the
        container when that call returns (_in_container)."""
        self._closing.set()
        with self._cond:
            if not self._closed:
                self._closed = True
                self.stats.dropped += len(self._queue)  # decoded, never delivered
                self._queue.clear()
            self._cond.notify_all()

    def _consume(self):
        warned = 0
        while True:
            with self._cond:
                while not self._queue and not self._done:
                    self._cond.wait(0.5)
                if self._queue:
                    f = self._queue.popleft()
                    self.stats.delivered += 1
                    self._cond.notify_all()  # room for a blocked reader
                elif self._failure is not None:
                    raise self._failure
                else:
                    return
            if self.stats.dropped > warned:
                warnings.warn(f"{self.url!r}: dropped {self.stats.dropped - warned} frame(s) (drop_oldest: the "
                              "consumer is slower than the source)", RuntimeWarning, stacklevel=3)
                warned = self.stats.dropped
            yield f

    @property
    def metadata(self) -> dict:
        """What the container says: codec, size, pixel format, frame rate, duration, frames (as
        read when the source was opened, or reopened; still there after close())."""
        return dict(self._metadata, frames=self.frame_count or None)

    def _read_metadata(self) -> dict:
        st = self.stream
        rate = float(st.average_rate) if st.average_rate else None
        duration = float(st.duration * st.time_base) if st.duration and st.time_base else (
            self.container.duration / 1e6 if self.container.duration else None)
        return {"url": self.url, "codec": st.codec_context.name, "width": st.codec_context.width,
                "height": st.codec_context.height, "pixel_format": st.codec_context.format.name
                if st.codec_context.format else None, "fps": rate, "duration_s": duration,
                "live": self.live}

    def __repr__(self) -> str:
        m = self.metadata
        fps = f"{m['fps']:.3g} fps" if m["fps"] else "fps unknown"
        dur = f", {m['duration_s']:.2f} s" if m["duration_s"] else ""
        frames = f", {m['frames']} frames" if m["frames"] else ""
        return (f"VideoSource({m['url']!r}, {m['codec']} {m['width']}x{m['height']} {m['pixel_format']}, "
                f"{fps}{dur}{frames}{', live' if self.live else ''})")

    def close(self) -> None:
        self._stop_reader()  # (also ends a reconnection's backoff wait at once)
        if self._thread is not None:  # a reader blocked in a read (a hung camera) is not waited for long
            self._thread.join(timeout=1.0)
        # A thread inside a container call (blocked in a read, or this thread itself from a signal
        # handler) closes the container when its call returns (_in_container): close() does not
        # wait for it. The short wait covers a call that was just returning as _closed was set.
        if self._io.acquire(timeout=0.05):
            try:
                self._close_container()
            finally:
                self._io.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _check_count(name: str, value) -> None:
    """A count option: an int >= 1 (a str compared with an int, or 2.5 queue slots, is a mistake)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: {value!r} must be an int >= 1")


def _begin_reading(source, name: str) -> None:
    """A source is read once, and not after close(): ValueError otherwise (both kinds of source)."""
    if source._closed:
        raise ValueError(f"{name!r}: this source is closed; open it again to read it")
    if source._started:
        raise ValueError(f"{name!r}: this source is already being read (or was read to its end); a source is read "
                         "once: keep one iterator, or open it again to read it again")
    source._started = True


class ImageFolderSource:
    """Images of a folder in name order, as H x W x 3 uint8 RGB arrays; files that do not decode are
    skipped and counted (SourceError after ``max_consecutive_errors`` in a row). An image that
    decodes to pixels of no known range (32-bit float) is a ValueError: its data needs converting,
    and a black frame in its place would be silent garbage. Read once, like a video source."""

    def __init__(self, folder, *, max_consecutive_errors: int = 10):
        _check_count("max_consecutive_errors", max_consecutive_errors)
        self.folder = Path(folder)
        self.files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"{str(self.folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self.frame_count = len(self.files)
        self.live = False
        self.stats = SourceStats()
        self._max_errors = max_consecutive_errors
        self._closed = False
        self._started = False  # read once, as a video source

    def __iter__(self):
        _begin_reading(self, str(self.folder))
        return self._images()

    def _images(self):
        from PIL import Image, UnidentifiedImageError

        consecutive = 0
        for p in self.files:
            if self._closed:  # closed from the loop or another thread: the iteration ends
                return
            try:
                with Image.open(p) as im:
                    a = pil_to_rgb8(im, f"image {str(p)!r}")  # ValueError for pixels of unknown range
            except (UnidentifiedImageError, OSError) as e:
                consecutive += 1
                self.stats.corrupt_packets += 1
                self.stats.note(f"{p.name}: {e}")
                if consecutive >= self._max_errors:
                    raise SourceError(f"{str(self.folder)!r}: {consecutive} unreadable images in a row") from None
                continue
            consecutive = 0
            self.stats.decoded += 1
            self.stats.delivered += 1
            yield a

    @property
    def metadata(self) -> dict:
        return {"folder": str(self.folder), "frames": self.frame_count, "live": False}

    def __repr__(self) -> str:
        return f"ImageFolderSource({str(self.folder)!r}, {self.frame_count} images)"

    def close(self) -> None:
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@functools.lru_cache(maxsize=1)
def _open_keywords() -> frozenset:
    """The keywords ``open`` takes: its own and VideoSource's."""
    return frozenset({name for name, p in inspect.signature(VideoSource.__init__).parameters.items()
                      if p.kind == p.KEYWORD_ONLY} | {"webcam_size", "webcam_rate", "webcam_format"})


def check_open_options(options) -> None:
    """Raises TypeError naming any keyword ``open`` does not take, and ValueError for a value no
    source would take (checked before a source opens: a batch of files or a cluster's actors would
    otherwise fail each on its own, and a batch would first discard its finished output as made
    with other options)."""
    known = _open_keywords()
    unknown = sorted(set(options or {}) - known)
    if unknown:
        raise TypeError(f"source options: unknown {', '.join(map(repr, unknown))}; expected some of {', '.join(sorted(known))}")
    checked = inspect.signature(_check_source_values).parameters
    _check_source_values(**{k: v for k, v in (options or {}).items() if k in checked})


def _check_source_values(*, start=None, end=None, fps=None, stride=1, on_full=None, drop_oldest=False,
                         max_consecutive_errors=10, queue_size=4, reconnect_attempts=5,
                         reconnect_backoff=(0.5, 8.0), follow=None) -> tuple[float, float]:
    """ValueError for a source option's value that no source takes (whatever it turns out to be);
    returns reconnect_backoff as (first_s, max_s)."""
    for name, v in (("start", start), ("end", end)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0):
            raise ValueError(f"{name}: {v!r} must be a number >= 0 (seconds)")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps):
        raise ValueError(f"fps: {fps!r}; expected a number > 0 (frames per second, e.g. 1 or 2 for a VLM)"
                         + (": 0 would sample no frame" if fps == 0 else ""))
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end: {end} must be after start {start}")
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride: {stride!r} must be an int >= 1 (every stride-th frame)")
    if on_full not in (None, "drop", "block"):
        raise ValueError(f"on_full: {on_full!r} is not understood; expected 'drop' or 'block'")
    if drop_oldest and on_full == "block":
        raise ValueError("on_full: 'block' contradicts drop_oldest=True; give one of them")
    _check_count("max_consecutive_errors", max_consecutive_errors)
    _check_count("queue_size", queue_size)
    if isinstance(reconnect_attempts, bool) or not isinstance(reconnect_attempts, int) or reconnect_attempts < 0:
        raise ValueError(f"reconnect_attempts: {reconnect_attempts!r} must be an int >= 0 (0: never reconnect)")
    try:
        first_s, max_s = (float(v) for v in reconnect_backoff)
    except (TypeError, ValueError):
        raise ValueError(f"reconnect_backoff: {reconnect_backoff!r} must be (first_s, max_s), "
                         "e.g. (0.5, 8.0)") from None
    if not 0 <= first_s <= max_s:
        raise ValueError(f"reconnect_backoff: {reconnect_backoff!r} must have 0 <= first_s <= max_s")
    if follow is not None and (isinstance(follow, bool) or not isinstance(follow, (int, float)) or not follow > 0):
        raise ValueError(f"follow: {follow!r} must be seconds > 0 (a growing file ends after that long without new data)")
    return first_s, max_s


def open(source, *, webcam_size=None, webcam_rate=None, webcam_format="mjpeg", **kwargs):
    """A frame source for ``source``: a video file, a URL (rtsp:// with TCP transport and timeouts),
    a webcam ("/dev/video0" or an int index, v4l2), or a folder of images. Keyword arguments go to
    VideoSource (live, options, timeout, max_consecutive_errors, drop_oldest, queue_size, on_full
    ("drop": drop_oldest; "block": a reader thread that waits while the queue is full), and the
    range: ``start`` / ``end`` in seconds (a file seeks to ``start``), ``fps`` to sample at most that
    many frames per second (VLM pipelines often take 1-2), ``stride`` to keep every stride-th), live
    sources' ``reconnect_attempts`` / ``reconnect_backoff``, and ``follow`` for a growing file (see the
    module docstring)."""
    check_open_options(kwargs)
    if isinstance(source, int) or (isinstance(source, str) and source.startswith("/dev/video")):
        device = f"/dev/video{source}" if isinstance(source, int) else source
        options = dict(kwargs.pop("options", None) or {})
        if webcam_size:
            options["video_size"] = f"{webcam_size[0]}x{webcam_size[1]}"
        if webcam_rate:
            options["framerate"] = str(webcam_rate)
        if webcam_format:
            options["input_format"] = webcam_format
        return VideoSource(device, format="v4l2", options=options, live=True, **kwargs)
    p = Path(str(source))
    if p.is_dir():
        ranged = [k for k in ("start", "end", "fps") if kwargs.get(k) is not None] + (
            ["stride"] if kwargs.get("stride", 1) != 1 else [])
        if ranged:
            raise ValueError(f"{', '.join(ranged)}: an image folder has no timeline; slice the files instead")
        live_only = sorted(k for k, v in kwargs.items() if k != "max_consecutive_errors" and v not in (None, False)
                           and not (k == "stride" and v == 1))
        if live_only:
            raise ValueError(f"{', '.join(live_only)}: an image folder is read on demand, one file per frame (no "
                             "queue, reader thread, timeout or reconnection); only max_consecutive_errors applies")
        return ImageFolderSource(p, **{k: v for k, v in kwargs.items() if k == "max_consecutive_errors"})
    if not str(source).startswith(LIVE_PREFIXES) and not p.exists():
        raise SourceError(f"{str(source)!r} does not exist (expected a video file, a URL, a webcam or an image folder)")
    return VideoSource(str(source), **kwargs)
