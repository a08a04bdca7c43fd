"""``run_many``: many sources at once on a Ray cluster, one ordered stream of FramePacks back.

    from arrcoc_rt.distributed import run_many

    with run_many(["cam1.mp4", "rtsp://10.0.0.7/live", "/dev/video0"], address=None) as run:
        for pack in run:                      # FramePack: source, frame_index, token arrays, ...
            ...
    print(run.summary())                      # per source: frames, restarts, lost, corrupt, latency

Placement: ``StreamWorker`` actors (one Ray actor each) hold the sources, round-robin. On a cluster
with GPUs (and ``device`` not 'cpu') every source gets its own actor with ``num_gpus`` of a GPU
(default: an equal share, at most 1; several actors may share one GPU); otherwise there are
``min(sources, cluster CPUs // num_cpus)`` actors of ``num_cpus`` CPUs each, and an actor holds
several streams when there are more sources than that.

Backpressure: per source at most ``prefetch`` requests of ``batch_frames`` frames are outstanding;
the workers decode and process only what was asked for, and the driver asks again only when the
consumer has taken what came: a source's worker is never more than (prefetch + 1) x batch_frames
frames ahead of the consumer. Nothing is buffered without bound.

Faults (see docs/SCALING.md): actors restart (``max_restarts``); the driver re-opens each of a
restarted actor's sources at the first frame it has not received. ``resume='exact'`` (default)
rebuilds the temporal state by processing again the frames since the last scene cut before that
frame (since the start when an encoder is used), so the output equals an uninterrupted run;
``resume='skip'`` starts the state afresh there (cheaper, like after a cut). A live source
reconnects; the frames it showed meanwhile are estimated from the down time and its frame rate and
reported as lost. No frame is delivered twice. A source that cannot be opened or fails for good is
reported (``status='failed'``, ``error``) and the others go on.
"""

from __future__ import annotations

import collections
import collections.abc
import math
import os
import random
import re
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from .records import FramePack
from .worker import StreamWorker

RESUME_MODES = ("exact", "skip")


def _ray():
    try:
        import ray
    except ImportError:
        raise ImportError("arrcoc_rt.distributed needs Ray: pip install 'arrcoc_rt[ray]'") from None
    return ray


def connect(address: str | None = None, **init_options) -> bool:
    """Connects to the Ray cluster at ``address`` ('auto', 'HOST:PORT', 'ray://HOST:10001'), or
    starts a local one (``None`` or 'local'); does nothing when Ray is already initialized. True
    when this call started or joined it."""
    ray = _ray()
    if ray.is_initialized():
        return False
    init_options.setdefault("include_dashboard", False)
    init_options.setdefault("log_to_driver", True)
    if address in (None, "", "local"):
        ray.init(**init_options)
    else:
        _check_reachable(address)
        ray.init(address=address, **init_options)
    return True


def check_per_worker(num_cpus, num_gpus, worker: str) -> None:
    """ValueError unless ``num_cpus`` is a number > 0 and ``num_gpus`` None or a number >= 0 (what
    one actor or task holds)."""
    if isinstance(num_cpus, bool) or not isinstance(num_cpus, (int, float)) or not num_cpus > 0:
        raise ValueError(f"num_cpus: {num_cpus!r}; expected a number > 0 (CPUs per {worker})")
    if num_gpus is not None and (isinstance(num_gpus, bool) or not isinstance(num_gpus, (int, float))
                                 or not num_gpus >= 0):
        raise ValueError(f"num_gpus: {num_gpus!r}; expected a number >= 0 (GPUs per {worker}) or None")


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """ConnectionError when a 'HOST:PORT' or 'ray://HOST:PORT' address takes no TCP connection
    within ``timeout_s`` (Ray itself retries an unreachable address for many minutes, silently)."""
    import socket

    hostport = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or address == "auto":
        return  # 'auto' and the like: Ray finds the cluster itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ConnectionError(f"Ray cluster {address!r}: cannot connect to {host}:{port} ({e}); is the head node "
                              f"running (ray start --head) and the port open?") from None


class _Latencies:
    """Per-frame latencies: every value up to ``cap``, then a uniform reservoir sample (a camera
    running for days keeps a bounded list)."""

    def __init__(self, cap: int = 50_000):
        self.values: list[float] = []
        self.seen = 0
        self.cap = cap
        self._rng = random.Random(0)

    def add(self, v: float) -> None:
        self.seen += 1
        if len(self.values) < self.cap:
            self.values.append(v)
        else:
            j = self._rng.randrange(self.seen)
            if j < self.cap:
                self.values[j] = v

    def percentiles(self) -> dict | None:
        if not self.values:
            return None
        v = np.asarray(self.values, np.float64)
        return {f"p{q}": round(float(np.percentile(v, q)), 3) for q in (50, 95, 99)}


@dataclass
class SourceReport:
    """What happened to one source (``RunMany.reports``; updated while the run goes on)."""

    source: str
    index: int
    status: str = "pending"        # pending | running | complete | failed | stopped
    error: str | None = None
    frames: int = 0                # frames delivered (each exactly once)
    restarts: int = 0              # times its actor restarted while holding it
    replayed_frames: int = 0       # frames processed again after restarts to rebuild the state (not delivered)
    lost_frames: int = 0           # frames the source had that were never delivered (estimated for live ones)
    corrupt_packets: int = 0       # packets the decoder skipped
    dropped: int = 0               # frames dropped by drop-oldest backpressure (live sources)
    latency_ms: dict | None = None  # Stream.process wall time per frame: p50 / p95 / p99
    fps: float | None = None       # frames delivered per second of this source's run time
    seconds: float = 0.0
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class _Source:
    def __init__(self, index: int, spec, actor: int):
        self.index, self.spec, self.actor = index, spec, actor
        # What the actor opens: a path that exists here, made absolute (an actor of a cluster started
        # elsewhere resolves a relative path against its own working directory)
        self.open_as = os.path.abspath(spec) if isinstance(spec, (str, os.PathLike)) and os.path.exists(spec) else spec
        self.key = f"s{index}"
        self.epoch = 0
        self.next_index = 0
        self.pending: collections.deque = collections.deque()
        self.active = True
        self.live = False
        self.cut = None           # (index, pts) of the frame before the latest scene cut received
        self.last_pts = None
        self.last_index = None
        self.last_wall = None     # worker clock of the latest delivered frame (live sources: down time)
        self.down_since = None
        self.steps = collections.deque(maxlen=32)  # recent pts steps (a live source's frame period)
        self.base = (0, 0, 0)     # corrupt, dropped, replayed of earlier incarnations
        self.latencies = _Latencies()
        self.t0 = time.perf_counter()
        self.t1 = None
        self.report = SourceReport(source=str(spec), index=index)


class RunMany:
    """The iterator ``run_many`` returns: FramePacks in arrival order, each source's in frame
    order; ``reports`` (a SourceReport per source), ``summary()``, ``actors``, ``actor_of(i)``,
    ``close()``. A context manager; closing early stops the actors."""

    RECONNECT_ATTEMPTS = 5  # a live source that is back: attempts to open it again, 0.5 s .. 2.5 s apart
    PLACEMENT_WARNING_S = 30.0  # warn when no actor has answered for this long (their resources are held)

    def __init__(self, sources, *, query=None, address=None, num_actors=None, num_cpus=1.0, num_gpus=None,
                 batch_frames=8, prefetch=2, max_restarts=3, resume="exact", max_frames=None, progress=None,
                 source_options=None, actor_options=None, vlm=None, check_resources=True, **stream_options):
        ray = _ray()
        # one source given alone (a path, a URL, a webcam index): not a sequence of characters
        if sources is None or not isinstance(sources, (str, bytes, os.PathLike, int, collections.abc.Iterable)):
            raise TypeError(f"sources: expected a path, URL or webcam index, or a list of them; got "
                            f"{type(sources).__name__}")
        sources = [sources] if isinstance(sources, (str, bytes, os.PathLike, int)) else list(sources)
        if not sources:
            raise ValueError("sources: expected at least one source")
        if resume not in RESUME_MODES:
            raise ValueError(f"resume: {resume!r}; expected one of {RESUME_MODES}")
        for name, v, lo in (("batch_frames", batch_frames, 1), ("prefetch", prefetch, 1),
                            ("max_restarts", max_restarts, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name}: {v!r}; expected an int >= {lo}")
        if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1):
            raise ValueError(f"max_frames: {max_frames!r}; expected an int >= 1 or None")
        check_per_worker(num_cpus, num_gpus, "actor")
        if num_actors is not None:
            if isinstance(num_actors, bool) or not isinstance(num_actors, int) or num_actors < 1:
                raise ValueError(f"num_actors: {num_actors!r}; expected an int >= 1 or None")
            num_actors = min(num_actors, len(sources))  # an actor without a source would only hold resources
        stream_options = _with_query(query, stream_options)
        if vlm is not None:
            # e.g. 'llava:/models/llava-1.5-7b-hf': loaded in each actor
            stream_options["vlm"] = _absolute_model(vlm) if isinstance(vlm, str) else vlm
        _validate(stream_options)
        from ..sources import check_open_options

        check_open_options(source_options)
        connect(address)
        self._ray = ray
        resources = ray.cluster_resources()
        device = str(stream_options.get("device", "auto"))
        gpus = float(resources.get("GPU", 0))
        if num_gpus is None:
            use = gpus > 0 and device != "cpu"
            actors = num_actors or len(sources)
            num_gpus = math.floor(min(1.0, gpus / actors) * 1e4) / 1e4 if use else 0
        elif num_gpus > 1 and num_gpus != int(num_gpus):
            raise ValueError(f"num_gpus: {num_gpus}; expected a whole number of GPUs or a fraction below 1")
        if num_actors is None:
            cpu_slots = int(resources.get("CPU", 1) // num_cpus)
            num_actors = len(sources) if num_gpus > 0 else max(1, min(len(sources), cpu_slots))
        if num_gpus == 0 and "num_threads" not in stream_options:
            stream_options["num_threads"] = max(1, int(round(num_cpus)))  # one kernel thread per CPU it holds
        self.placement = {"actors": num_actors, "num_cpus": num_cpus, "num_gpus": num_gpus,
                          "streams_per_actor": math.ceil(len(sources) / num_actors)}
        self._stream_options = stream_options
        q = stream_options.get("query")
        # With an encoder the state has more history than the last scene cut (PCA, every-k refresh).
        self._exact_from_start = stream_options.get("encoder") is not None or (q is not None and q.needs_encoder)
        cls = ray.remote(StreamWorker)
        opts = dict(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=max_restarts, max_task_retries=-1)
        opts.update(actor_options or {})
        if check_resources:
            check_feasible(ray, "an actor", opts.get("num_cpus") or 0, opts.get("num_gpus") or 0, opts.get("resources"))
        self.actors = [cls.options(**opts).remote(stream_options, dict(source_options or {}))
                       for _ in range(num_actors)]
        self._dead = [False] * num_actors
        self._sources = [_Source(i, s, i % num_actors) for i, s in enumerate(sources)]
        self.reports = [s.report for s in self._sources]
        self._batch, self._prefetch, self._max_restarts = batch_frames, prefetch, max_restarts
        self._resume, self._max_frames = resume, max_frames
        self._progress = sys.stderr.isatty() if progress is None else bool(progress)
        self._bars = None
        self._gen = self._run()
        self._closed = False

    # -- public -----------------------------------------------------------------------------
    def __iter__(self):
        return self

    def __next__(self) -> FramePack:
        return next(self._gen)

    def actor_of(self, source_index: int):
        """The actor handle holding source ``source_index`` (e.g. for ``ray.kill`` in a test)."""
        return self.actors[self._sources[source_index].actor]

    def summary(self) -> list[dict]:
        self._update_reports()
        return [r.to_dict() for r in self.reports]

    def close(self) -> None:
        """Stops the actors (what was delivered stays delivered); sources not finished are 'stopped'."""
        if self._closed:
            return
        self._closed = True
        self._gen.close()
        for s in self._sources:
            if s.active:
                s.active = False
                s.report.status = "stopped"
                s.t1 = time.perf_counter()
        self._update_reports()
        if not all(r.status in ("complete", "failed") for r in self.reports):
            for a in self.actors:  # stopped early: at once
                try:
                    self._ray.kill(a, no_restart=True)
                except Exception:  # noqa: BLE001 - already gone
                    pass
        # Finished: the handles go, and Ray ends the actors once they are out of scope.
        self.actors = []
        self._close_bars()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the loop ---------------------------------------------------------------------------
    def _open(self, s: _Source, *, resume_at=0, warm_from=0, seek=None) -> None:
        a = self.actors[s.actor]
        s.pending.clear()
        s.pending.append(a.open.remote(s.key, s.epoch, s.open_as, s.index, resume_at=resume_at, warm_from=warm_from,
                                       seek=seek, reconnect=self.RECONNECT_ATTEMPTS if s.live else 0))
        self._top_up(s)

    def _top_up(self, s: _Source) -> None:
        a = self.actors[s.actor]
        while len(s.pending) < self._prefetch:
            s.pending.append(a.next.remote(s.key, s.epoch, self._batch))

    def _run(self):
        ray = self._ray
        for s in self._sources:
            s.report.status = "running"
            self._open(s)
        self._open_bars()
        waiting_since, answered = time.monotonic(), False
        while any(s.active for s in self._sources):
            heads = {s.pending[0]: s for s in self._sources if s.active and s.pending}
            ready, _ = ray.wait(list(heads), num_returns=1, timeout=0.5)
            if not ready:
                self._refresh_bars()
                if not answered and time.monotonic() - waiting_since > self.PLACEMENT_WARNING_S:
                    answered = True  # said once
                    warnings.warn(
                        f"run_many: no actor has answered in {self.PLACEMENT_WARNING_S:.0f} s; each needs "
                        f"{self.placement['num_cpus']} CPU(s) and {self.placement['num_gpus']} GPU(s), and the cluster "
                        f"has {ray.available_resources()} free of {ray.cluster_resources()}: still loading a model, "
                        "or waiting for resources other work holds (another run_many still being read?)",
                        RuntimeWarning, stacklevel=2)
                continue
            answered = True
            s = heads[ready[0]]
            ref = s.pending.popleft()
            try:
                reply = ray.get(ref)
            except ray.exceptions.ActorUnavailableError:  # not reachable for now: open it again
                self._restart(s)
                continue
            except ray.exceptions.RayActorError as e:  # died and will not come back
                self._actor_dead(s.actor, e)
                continue
            except ray.exceptions.RayError as e:  # a bug in the worker: this source fails alone
                self._fail(s, _remote_error_text(e))
                continue
            if reply["epoch"] != s.epoch or not s.active:
                continue  # an earlier incarnation's answer
            state = reply["state"]
            if state == "unknown":
                self._restart(s)  # the actor restarted and lost the stream
                continue
            if reply["meta"] is not None:
                s.report.meta.update(reply["meta"])
                s.live = bool(reply["meta"].get("live"))
            packs = self._accept(s, reply)
            if state == "failed" and s.live and s.next_index > 0 and not reply.get("fatal"):
                self._restart(s)  # a live source that broke off mid-stream: reconnect (counted as a restart)
            elif state == "failed":
                self._fail(s, reply["error"])
            elif state == "done":
                self._finish(s, "complete")
            elif self._max_frames is not None and s.next_index >= self._max_frames:
                self._finish(s, "complete")
                self.actors[s.actor].close.remote(s.key)
            else:
                self._top_up(s)
            self._refresh_bars(s, len(packs))
            for p in packs:
                s.report.frames += 1  # delivered: handed to the consumer (a break stops the count here)
                yield p
        self._update_reports()
        self._close_bars()

    def _accept(self, s: _Source, reply) -> list:
        stats = reply["stats"]
        if stats is not None:
            s.report.corrupt_packets = s.base[0] + stats["corrupt_packets"]
            s.report.dropped = s.base[1] + stats["dropped"]
            s.report.replayed_frames = s.base[2] + stats["replayed"]
        packs = []
        for p in reply["packs"]:
            p.source = str(s.spec)  # as given (the actor opened it by its absolute path)
            if p.frame_index < s.next_index:
                continue  # delivered before (cannot happen with the epochs; never twice in any case)
            if self._max_frames is not None and p.frame_index >= self._max_frames:
                break
            if p.frame_index > s.next_index:
                s.report.lost_frames += p.frame_index - s.next_index
            reconnected = s.down_since is not None
            if reconnected and s.live and s.last_index is not None:
                s.report.lost_frames += self._missed(s, p, reply)
            s.down_since = None
            if not reconnected and p.pts is not None and s.last_pts is not None and p.pts > s.last_pts \
                    and s.last_index == p.frame_index - 1:
                s.steps.append(p.pts - s.last_pts)
            if p.scene_cut and p.frame_index > 0:
                s.cut = (p.frame_index - 1, s.last_pts if s.last_index == p.frame_index - 1 else None)
            s.last_pts, s.last_index = p.pts, p.frame_index
            s.next_index = p.frame_index + 1
            s.latencies.add(p.latency_ms)
            packs.append(p)
        if packs:
            s.last_wall = reply["wall"]
        return packs

    @staticmethod
    def _missed(s: _Source, p: FramePack, reply) -> int:
        """Frames a live source showed while it was not connected: from its clock when that ran on
        across the reconnect (pts later than before), else from the down time and its frame rate."""
        step = float(np.median(s.steps)) if s.steps else None
        if p.pts is not None and s.last_pts is not None and step and p.pts > s.last_pts:
            return max(0, int(round((p.pts - s.last_pts) / step)) - 1)
        rate = s.report.meta.get("fps") or (1.0 / step if step else None)
        if not rate or s.last_wall is None:
            return 0
        return max(0, int(round((reply["first_wall"] - s.last_wall) * rate)) - 1)

    def _restart(self, s: _Source) -> None:
        s.report.restarts += 1
        if s.report.restarts > self._max_restarts:
            self._fail(s, f"its actor restarted {s.report.restarts} times")
            return
        r = s.report
        s.base = (r.corrupt_packets, r.dropped, r.replayed_frames)
        s.down_since = time.time()
        s.epoch += 1
        k = s.next_index
        if self._resume == "skip":
            warm, seek = k, ((k - 1, s.last_pts) if k > 0 and s.last_pts else None)
        elif s.cut is not None and not self._exact_from_start:
            # The state after a scene cut depends only on the frame before it and those after it.
            warm, seek = s.cut[0], (s.cut if s.cut[1] else None)
        else:
            warm, seek = 0, None
        self._open(s, resume_at=k, warm_from=warm, seek=seek)

    def _actor_dead(self, actor: int, error) -> None:
        self._dead[actor] = True
        for s in self._sources:
            if s.actor == actor and s.active:
                self._fail(s, f"its actor died for good: {type(error).__name__}: {str(error).splitlines()[0]}")

    def _fail(self, s: _Source, error: str) -> None:
        total = int(s.report.meta.get("frame_count") or 0)
        if total > s.next_index and not s.live:
            s.report.lost_frames += total - s.next_index
        s.report.error = error
        self._finish(s, "failed")
        if not self._dead[s.actor]:
            self.actors[s.actor].close.remote(s.key)

    def _finish(self, s: _Source, status: str) -> None:
        s.active = False
        s.pending.clear()
        s.report.status = status
        s.t1 = time.perf_counter()
        self._update_reports()

    def _update_reports(self) -> None:
        now = time.perf_counter()
        for s in self._sources:
            r = s.report
            r.seconds = round((s.t1 or now) - s.t0, 3)
            r.fps = round(r.frames / r.seconds, 2) if r.seconds > 0 and r.frames else None
            r.latency_ms = s.latencies.percentiles()

    # -- progress ---------------------------------------------------------------------------
    def _open_bars(self) -> None:
        if not self._progress:
            return
        from tqdm import tqdm

        if len(self._sources) <= 8:
            self._bars = [tqdm(total=None, desc=_short(s.spec), unit="frame", position=i, leave=True,
                               dynamic_ncols=True) for i, s in enumerate(self._sources)]
        else:
            self._bars = [tqdm(total=None, desc=f"{len(self._sources)} sources", unit="frame", dynamic_ncols=True)]

    def _refresh_bars(self, s: _Source | None = None, n: int = 0) -> None:
        if not self._bars:
            return
        if len(self._bars) == 1 and len(self._sources) > 1:
            bar = self._bars[0]
            if n:
                bar.update(n)
            self._update_reports()
            rates = [r.fps or 0 for r in self.reports if r.status == "running"]
            if rates:
                bar.set_postfix_str(f"{len(rates)} running, fps per source min {min(rates):.1f} "
                                    f"median {float(np.median(rates)):.1f}", refresh=False)
            return
        if s is not None:
            bar = self._bars[s.index]
            total = s.report.meta.get("frame_count")
            if total and bar.total is None:
                bar.total = total
            if n:
                bar.update(n)
            if s.report.status in ("failed", "complete"):
                bar.set_postfix_str(s.report.status if s.report.status == "complete" else "FAILED", refresh=True)

    def _close_bars(self) -> None:
        if self._bars:
            for b in self._bars:
                b.close()
            self._bars = None


def _remote_error_text(e) -> str:
    """A remote error in one line: its type and the worker's last line (the exception raised there),
    without the terminal colour codes and the remote traceback Ray puts in the text."""
    lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(e)).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[-1] if lines else ''}"


def _short(spec) -> str:
    s = str(spec)
    return s if len(s) <= 28 else "..." + s[-25:]


def _with_query(query, options: dict) -> dict:
    """Stream options with the query as one ``Query`` object; an exemplar picture given as a path
    is read here, so actors on other machines do not need the file."""
    from ..query import Query, make_query

    options = dict(options)
    q = make_query(query, **{k: options.pop(k) for k in ("query_text", "query_image", "query_vector", "query_map")
                             if k in options})
    if q is not None and q.kind == "image" and not hasattr(q.value, "shape"):
        from ..images import read_rgb8

        q = Query.image(read_rgb8(q.value, "query_image"))
    if q is not None:
        options["query"] = q
    # Files the actors would otherwise look for in their own working directory (a cluster started
    # elsewhere) or on their own machine: weights read here; model and PCA paths made absolute.
    if isinstance(options.get("weights"), (str, os.PathLike)):
        from ..weights import load_weights

        options["weights"] = load_weights(options["weights"])
    if isinstance(options.get("pca"), (str, os.PathLike)) and os.path.exists(options["pca"]):
        options["pca"] = os.path.abspath(options["pca"])
    if isinstance(options.get("encoder"), str):
        options["encoder"] = _absolute_model(options["encoder"])
    return options


def _absolute_model(spec: str) -> str:
    """'kind:PATH' with PATH made absolute when it exists here (a model folder for the actors)."""
    kind, sep, path = spec.partition(":")
    return f"{kind}:{os.path.abspath(path)}" if sep and path and os.path.exists(path) else spec


def check_feasible(ray, what: str, num_cpus: float, num_gpus: float, resources: dict | None = None) -> None:
    """Raises ValueError when no node of the cluster has the CPUs, GPUs and custom resources one
    actor or task asks for: Ray would wait for such a node forever (an autoscaling cluster: start
    the nodes first, or ask for less)."""
    need = {"CPU": float(num_cpus or 0), "GPU": float(num_gpus or 0), **{k: float(v) for k, v in (resources or {}).items()}}
    need = {k: v for k, v in need.items() if v > 0}
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not need or any(all(n.get(k, 0) >= v for k, v in need.items()) for n in nodes):
        return
    largest = ", ".join(f"{k} {max((n.get(k, 0) for n in nodes), default=0):g}" for k in need)
    asked = ", ".join(f"{k} {v:g}" for k, v in need.items())
    raise ValueError(f"{what} asks for {asked}, which no node of this cluster has (the most any node has: {largest}); "
                     f"Ray would wait for it forever: ask for less, or add a node that has it")


def _validate(options: dict) -> None:
    """Checks the Stream options in the driver, once, with Stream's own messages (a named encoder
    such as 'clip:PATH' is loaded only in the actors)."""
    from ..stream import Stream

    enc = options.get("encoder")
    probe = dict(options, vlm=None, encoder=enc if enc in (None, "builtin") else None)
    Stream(**probe).close()


def run_many(sources, query=None, address=None, **options) -> RunMany:
    """Runs one Stream per source on a Ray cluster and returns an iterator of ``FramePack``s (see
    the module docstring), each tagged with its source and frame index.

    Args:
        sources: files, URLs (rtsp://...), webcams ('/dev/video0' or an int), image folders.
        query: an ``arrcoc_rt.Query`` for every stream (or ``query_image=`` etc. as keywords).
        address: a Ray cluster ('auto', 'HOST:PORT', 'ray://HOST:10001'); ``None`` starts a local
            one (or uses the one this process already joined).
        num_actors: how many actors (default: one per source on GPUs, else as many as the CPUs hold).
        num_cpus: CPUs per actor (default 1; the kernels use that many threads).
        num_gpus: GPUs per actor, whole or a fraction below 1 (default: an equal share when the
            cluster has GPUs and ``device`` is not 'cpu', else 0).
        batch_frames: frames per request (default 8); prefetch: requests outstanding per source
            (default 2). Together they bound what is in flight.
        max_restarts: actor restarts per source before it is reported failed (default 3).
        resume: 'exact' (default) or 'skip' (see the module docstring).
        max_frames: stop each source after this many frames.
        progress: a tqdm bar per source (frames/s); default: when stderr is a terminal.
        source_options: keywords for ``arrcoc_rt.open`` (start, end, fps, stride, drop_oldest, ...).
        actor_options: more Ray actor options (e.g. ``{"resources": {"camera_room_1": 1}}`` to place
            the actors on the nodes near the cameras, or ``{"scheduling_strategy": "SPREAD"}``).
        vlm: a VLM adapter spec ('llava:PATH', ...) loaded by each actor's Streams.
        check_resources: refuse at once a request no node of the cluster has now (default); False on
            an autoscaling cluster that adds such nodes on demand.
        **stream_options: anything ``arrcoc_rt.Stream`` takes (device, query_image, strategy, ...).
    """
    return RunMany(sources, query=query, address=address, **options)
