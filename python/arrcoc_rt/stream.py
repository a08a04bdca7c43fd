"""``Stream``: frames in, token packs out, frame after frame, for hours.

    with arrcoc_rt.Stream(query_image="mug.png", device="auto") as stream:
        for frame in arrcoc_rt.open("clip.mp4"):
            result = stream.process(frame)      # FrameResult with frame_index, pts, tokens, ...

Accepted frames: ``av.VideoFrame`` (yuv420p and nv12 go to our own conversion kernel straight from
the decoder's planes, rgb24/bgr24 likewise; other formats are converted by PyAV first), NumPy
H x W x 3/4 or H x W uint8, and torch/CuPy tensors (zero-copy; GPU frames stay on the GPU).

Thread safety: one Stream per thread is safe, and Streams in different threads run in parallel
(kernels release the GIL). One Stream must not be used from two threads at once: its frames are
ordered (motion, temporal blending) and its results are views of its own buffers.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from dataclasses import dataclass

import numpy as np

from .encoders import make_encoder
from .frames import frame_spec
from .images import read_rgb8
from .pipeline import FrameResult, Pipeline
from .query import Query, make_query
from .runtime import device_string, resolve_device
from .sources import SourceGap
from .vlm.base import timed_generate

_ZERO_COPY_FORMATS = ("yuv420p", "nv12", "rgb24", "bgr24")


def _plane_array(plane, rows: int, row_bytes: int) -> np.ndarray:
    """A row-padded (rows, row_bytes) uint8 view of a PyAV plane, zero-copy."""
    return np.ndarray((rows, row_bytes), np.uint8, buffer=plane, strides=(plane.line_size, 1))


def frame_from_av(frame):
    """(frame, pixel_format, pts_seconds) for Pipeline.process from an av.VideoFrame."""
    fmt = frame.format.name
    if fmt not in _ZERO_COPY_FORMATS:
        frame = frame.reformat(format="rgb24")  # one conversion by PyAV (e.g. yuvj420p, yuv444p)
        fmt = "rgb24"
    w, h = frame.width, frame.height
    pts = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base is not None else None
    if fmt in ("rgb24", "bgr24"):
        p = frame.planes[0]
        return np.ndarray((h, w, 3), np.uint8, buffer=p, strides=(p.line_size, 3, 1)), fmt, pts
    ch, cw = (h + 1) // 2, (w + 1) // 2
    y = _plane_array(frame.planes[0], h, w)
    if fmt == "nv12":
        return (y, _plane_array(frame.planes[1], ch, 2 * cw)), fmt, pts
    return (y, _plane_array(frame.planes[1], ch, cw), _plane_array(frame.planes[2], ch, cw)), fmt, pts


@dataclass
class Answer:
    """A frozen VLM's answer: the text, the (latest) frame it saw and how long each part took (ms).
    ``frame_indices``: every frame it saw, oldest first (``ask(frames=k)``); ``visual_tokens``: all
    of them together."""

    text: str
    frame_index: int
    pts: float | None
    visual_tokens: int
    latency_ms: dict
    frame_indices: tuple = ()
    uncertainty: float | None = None  # normalized entropy of the answer's tokens (0 certain .. 1 uniform)
    passes: tuple = ()                # ask(passes=n): every pass (arrcoc_rt.vlm.multipass.PassRecord)
    tier: str | None = None           # ask(budget=...): the question's tier (arrcoc_rt.vlm.tiers)
    total_budget: int | None = None   # ask(budget=...): the total budget the frame was re-allocated at


def _rgb_frame(frame) -> np.ndarray:
    a = np.asarray(frame.cpu() if hasattr(frame, "cpu") else frame)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[2] not in (3, 4):
        a = a.transpose(1, 2, 0)  # [3, H, W]
    if a.ndim != 3 or a.shape[2] < 3 or a.dtype != np.uint8:
        raise ValueError(f"ask: the latest frame is not RGB uint8 pixels ({a.dtype} {a.shape}); pass frames as "
                         "H x W x 3 arrays or av.VideoFrames")
    return np.ascontiguousarray(a[..., :3])


def _answer(adapter, rgb, result, question: str, max_new_tokens: int) -> Answer:
    return _answer_frames(adapter, [rgb], [result], question, max_new_tokens)


def _answer_frames(adapter, rgbs, results, question: str, max_new_tokens: int) -> Answer:
    t0 = time.perf_counter()
    if len(rgbs) == 1:
        inputs = adapter.prepare(rgbs[0], results[0], question)  # vision tower, gather, projector, prompt
    else:
        inputs = adapter.prepare_frames(rgbs, results, question)  # the same over k frames, oldest first
    t1 = time.perf_counter()
    text, prefill_ms, decode_ms, _ = timed_generate(adapter, inputs, max_new_tokens)  # prefill + decode
    t2 = time.perf_counter()
    last = results[-1]
    latency = {"vision_and_prepare": (t1 - t0) * 1e3, "prefill": prefill_ms, "decode": decode_ms,
               "generate": (t2 - t1) * 1e3, "total": (t2 - t0) * 1e3}
    return Answer(text, last.frame_index, last.pts, inputs["num_visual_tokens"], latency,
                  tuple(r.frame_index for r in results))


class _PassStart:
    """What a multi-pass ask needs of the latest result, copied for a worker thread: its token pack
    and its relevance map."""

    def __init__(self, result):
        from .vlm.base import PackSnapshot

        self._snapshot = PackSnapshot(result)
        self.relevance = np.array(result.relevance)
        self.frame_index, self.pts = result.frame_index, result.pts

    def __getattr__(self, name):
        return getattr(self._snapshot, name)


def _answer_passes(adapter, rgb, result, question: str, passes: int, max_new_tokens: int, pipeline_for,
                   tier=None, frame=(None, None), query=None) -> Answer:
    """The multi-pass answer (passes >= 1). ``result`` None: the first pass's allocation is made
    here by a fresh ``pipeline_for(width, height)`` with the Stream's ``query`` (a question's own
    budget, ``ask(budget=...)``); ``frame``: the stream's (frame_index, pts) of ``rgb`` then."""
    from .vlm.multipass import answer_with_passes

    t0 = time.perf_counter()
    h, w = rgb.shape[:2]
    pipeline = None

    def make_pipeline():
        nonlocal pipeline
        pipeline = pipeline or pipeline_for(w, h)
        return pipeline

    budgeted = result is None
    if budgeted:
        result = make_pipeline().process(rgb, query=query)
    best, records = answer_with_passes(adapter, rgb, result, question, passes=passes, max_new_tokens=max_new_tokens,
                                       make_pipeline=make_pipeline)
    latency = {"passes": [r.latency_ms for r in records], "total": (time.perf_counter() - t0) * 1e3}
    total = pipeline.config["total_budget"] if budgeted else None
    index, pts = frame if budgeted else (result.frame_index, result.pts)
    return Answer(best.text, index, pts, best.visual_tokens, latency, (index,), best.uncertainty,
                  tuple(records) if passes > 1 else (), tier, total)


def _check_query_now(query, encoder) -> None:
    """What the first frame would refuse about a query, refused when it is given: an exemplar file
    that cannot be read, a text query without a text encoder."""
    if query is None:
        return
    if query.kind == "image" and isinstance(query.value, (str, Path)):
        read_rgb8(query.value, "exemplar image (query_image)")
    if query.kind == "text":
        has_text = (isinstance(encoder, str) and encoder.split(":", 1)[0] in ("clip", "siglip")) or (
            encoder is not None and not isinstance(encoder, str) and hasattr(encoder, "encode_text"))
        if not has_text:
            raise TypeError("query_text: text queries need a text encoder; give encoder='clip:PATH' or "
                            "'siglip:PATH' (or use query_image= or query_map=)")


def _copy_frame(frame):
    """A private copy of a frame for the ask window: an av.VideoFrame is kept as it is (it owns its
    decoded pixels; the decoder hands out a new one per frame), an array or tensor is copied."""
    if type(frame).__module__.startswith("av.") and hasattr(frame, "planes"):
        return frame
    if hasattr(frame, "clone"):  # torch: stays on its device
        return frame.detach().clone()
    if hasattr(frame, "copy"):
        return frame.copy()
    return np.array(frame)


def _to_rgb(frame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24") if hasattr(frame, "planes") else _rgb_frame(frame)


class Stream:
    """A Pipeline that follows a stream: created at the first frame's size, rebuilt (state reset,
    ``result.resized`` set) when the size grows beyond it, reset when the size or pixel format
    changes.

    Args (all keyword-only):
        query_image, query_text, query_vector, query_map, or query (an arrcoc_rt.Query): at most one
            (see Pipeline.process); an image or vector query brings the built-in encoder unless
            ``encoder`` names another.
        device: 'auto' | 'cpu' | 'cuda' | 'cuda:N'.
        total_budget: the levels of detail of all tokens together (default 100000; as Pipeline's).
            ``budget=`` of earlier releases still works, with a DeprecationWarning.
        encoder: 'builtin' (weight-free, the default when the query needs one), 'clip:PATH' /
            'siglip:PATH' (local folders; also text queries), or an Encoder object.
        vlm: a frozen VLM to ask questions with ``ask()`` (an ``arrcoc_rt.vlm`` adapter, e.g.
            ``make_adapter('llava:PATH', tokens=144)`` to cap the visual tokens, or 'llava:PATH' /
            'llava_next:PATH' / 'qwen2_vl:PATH' / 'qwen2_5_vl:PATH' for every kept token), or a
            callable(FrameResult) -> anything called per frame (its return value is ``result.vlm_output``).
        ask_frames: the longest window ``ask(frames=k)`` may use (default 1: nothing is kept per
            frame). Above 1 the Stream keeps copies of the last ``ask_frames`` frames and their token
            packs (kinds, positions, levels; a few KB): an av.VideoFrame by reference (it owns its
            decoded pixels), an array copied (H x W x 3 bytes for RGB uint8), a torch tensor cloned
            on its device, so memory is bounded by ``ask_frames`` frames. A frame of another size or
            pixel format empties the window.
        **pipeline_config: any Pipeline option (strategy, saccades, decay, weights, dtype, ...).
    """

    def __init__(self, *, query: Query | None = None, query_text: str | None = None, query_image=None,
                 query_vector=None, query_map=None, device: str = "auto", encoder=None, vlm=None,
                 ask_frames: int = 1, tier_classifier=None, **pipeline_config):
        if "budget" in pipeline_config:  # one name for the total everywhere: total_budget
            import warnings

            warnings.warn("Stream(budget=) is renamed total_budget=", DeprecationWarning, stacklevel=2)
            pipeline_config.setdefault("total_budget", pipeline_config.pop("budget"))
        query = make_query(query, query_text=query_text, query_image=query_image, query_vector=query_vector,
                           query_map=query_map)
        # Resolved once, here: 'cuda' and 'auto' mean this thread's current device, and the pipeline
        # is built later, maybe by another thread (a larger frame, ask()'s passes), which must not
        # put it on another GPU. A device this build or machine lacks is refused now.
        device = device_string(*resolve_device(device))
        self.adapter = None
        if isinstance(vlm, str):
            from .vlm import make_adapter

            vlm = make_adapter(vlm, device=device)  # the pipeline's device
        if vlm is not None and type(vlm).__module__.startswith("arrcoc_rt.vlm"):
            self.adapter, vlm = vlm, None  # answers questions on demand (ask), not a per-frame hook
        if vlm is not None and not callable(vlm):
            raise TypeError(f"vlm: expected an arrcoc_rt.vlm adapter, 'llava:PATH' or a callable taking a "
                            f"FrameResult; got {type(vlm).__name__}")
        if isinstance(ask_frames, bool) or not isinstance(ask_frames, (int, np.integer)) or ask_frames < 1:
            raise ValueError(f"ask_frames: {ask_frames!r} is not a positive int")
        self.ask_frames = int(ask_frames)
        if tier_classifier is not None and not hasattr(tier_classifier, "predict"):
            from .vlm.tiers import TierClassifier

            tier_classifier = TierClassifier.load(tier_classifier)  # a path (arrcoc-rt train --tiers)
        self.tier_classifier = tier_classifier  # ask(budget=preset): the tier from it, else from the rules
        self._last = None  # (frame, result) of the latest frame, for ask()
        # (frame copy, PackSnapshot) of the last ask_frames frames, for ask(frames=k > 1)
        self._window = deque(maxlen=self.ask_frames) if self.ask_frames > 1 else None
        self._worker = None
        if encoder is None and query is not None and query.kind in ("image", "vector"):
            encoder = "builtin"  # exemplar images and vectors need features; the weight-free default
        _check_query_now(query, encoder)
        pipeline_config["encoder"] = encoder
        self.device = device
        self.vlm = vlm
        self._config = pipeline_config
        self._pipeline: Pipeline | None = None
        self._query = query
        self._last_geometry = None
        self._closed = False
        self.frames = 0
        Pipeline(16, 16, device="cpu", **dict(pipeline_config, encoder=None))  # validate the options now
        make_encoder(encoder, "cpu")

    @property
    def pipeline(self) -> Pipeline | None:
        return self._pipeline

    def set_query(self, query: Query | None = None, *, query_text: str | None = None, query_image=None,
                  query_vector=None, query_map=None) -> None:
        """Change the query from the next frame on (nothing given: no query). An exemplar or a vector
        on a Stream without an encoder adds the built-in one; its pipeline then starts afresh at the
        next frame (motion and carried relevance are forgotten)."""
        q = make_query(query, query_text=query_text, query_image=query_image, query_vector=query_vector,
                       query_map=query_map)
        encoder = self._config.get("encoder")
        if encoder is None and q is not None and q.kind in ("image", "vector"):
            encoder = "builtin"
        _check_query_now(q, encoder)
        if encoder is not self._config.get("encoder"):
            self._config["encoder"] = encoder
            self._pipeline = None  # made again, with the encoder, at the next frame's size
        self._query = q

    def reset(self) -> None:
        """Forget motion history and carried relevance (the next frame starts fresh)."""
        if self._pipeline is not None and not self._closed:
            self._pipeline.reset()

    def process(self, frame, *, pixel_format: str | None = None, layout: str | None = None,
                return_tensors: str = "np") -> FrameResult:
        """One frame -> FrameResult, in stream order (motion and temporal state follow the frames).

        ``frame``: an ``av.VideoFrame`` (yuv420p / nv12 / rgb24 / bgr24 planes go to the kernels
        without a copy; other formats are converted once), an H x W x 3 uint8 RGB array or a tensor
        (``pixel_format='bgr24'`` for OpenCV's BGR, or any format ``Pipeline.process`` takes).
        The pipeline is created at the first frame's size, grown for larger frames, and reset when
        the size or pixel format changes (``result.resized``). ``result.frame_index`` counts the
        frames of this Stream from 0; ``result.pts`` is the frame's time in seconds, when known.
        """
        if self._closed:
            raise ValueError("this Stream is closed; create a new one")
        pts = None
        gap = None
        original = frame  # an av.VideoFrame stays one for ask() (its planes are not RGB)
        if type(frame).__module__.startswith("av.") and hasattr(frame, "planes"):
            if pixel_format is not None:
                raise ValueError(f"pixel_format: {pixel_format!r} given for an av.VideoFrame, which says its own "
                                 f"({frame.format.name}); give it for arrays and tensors only")
            gap = frame.opaque if isinstance(frame.opaque, SourceGap) else None
            frame, pixel_format, pts = frame_from_av(frame)
        if isinstance(frame, tuple):
            h, w = frame[0].shape[:2]
        else:
            shape = getattr(frame, "shape", None)
            if shape is None or len(shape) < 2:
                raise TypeError(f"frame: expected an av.VideoFrame, an array or a tensor; got {type(frame).__name__}")
            chw = len(shape) == 3 and (layout == "CHW" or (layout is None and shape[0] == 3 and shape[2] not in (3, 4)))
            h, w = (int(shape[1]), int(shape[2])) if chw else (int(shape[0]), int(shape[1]))
        geometry = (w, h, pixel_format)
        resized = self._last_geometry is not None and geometry != self._last_geometry
        p = self._pipeline
        lost = gap is not None and gap.reconnected  # (a gap of dropped frames only keeps the state)
        if p is None or w > p.width or h > p.height or resized or lost:
            frame_spec(frame, pixel_format, "frame", 0, layout)  # a refused frame must not rebuild or reset it
        if p is None or w > p.width or h > p.height:
            self._pipeline = Pipeline(max(w, p.width if p else 0), max(h, p.height if p else 0), device=self.device,
                                      **self._config)
        elif resized or lost:
            self._pipeline.reset()  # motion and carried relevance do not reach across a gap
        result = self._pipeline.process(frame, query=self._query, pixel_format=pixel_format, layout=layout,
                                        return_tensors=return_tensors)
        self._last_geometry = geometry  # (after the frame was taken: a refused one changes nothing)
        result.pts = pts
        result.resized = resized
        if lost:
            result.reconnected, result.gap_s = True, gap.seconds
        if gap is not None:
            result.dropped_before = gap.dropped
        result.frame_index = self.frames
        self.frames += 1
        if self.vlm is not None:
            result.vlm_output = self.vlm(result)
        if self.adapter is not None:
            self._last = (original, result)
            if self._window is not None:
                if resized:
                    self._window.clear()  # one window, one frame size
                from .vlm.base import PackSnapshot

                self._window.append((_copy_frame(original), PackSnapshot(result)))
        return result

    def process_many(self, frames, *, pixel_format: str | None = None, layout: str | None = None,
                     return_tensors: str = "np") -> list:
        """Frames in order -> a list of FrameResults: an [N, H, W, 3] array or tensor, [N, 3, H, W]
        (torchcodec's batches; or ``layout='CHW'``), or any iterable of frames."""
        shape = getattr(frames, "shape", None)
        if shape is not None and len(shape) != 4:
            raise ValueError(f"frames: a batch is [N, H, W, 3] or [N, 3, H, W]; got shape {tuple(shape)}")
        return [self.process(f, pixel_format=pixel_format, layout=layout, return_tensors=return_tensors)
                for f in frames]

    def ask(self, question: str, *, frames: int = 1, max_new_tokens: int = 32, asynchronous: bool = False,
            passes: int = 1, budget: str | int | None = None):
        """The frozen VLM's answer about the latest frame, fed only its allocated tokens: an Answer
        (text, the frame it saw, latencies in ms). ``frames=k`` (at most the Stream's ``ask_frames``)
        answers over the last k frames, oldest first, each fed its own allocation (k x the per-frame
        tokens; fewer frames while fewer have been processed since the start or the last size change;
        ``Answer.frame_indices`` says which). ``asynchronous=True`` returns a Future at once and
        answers on a worker thread from copies of the frames and their token packs, while ``process``
        keeps up with the camera. The question becomes the query when none is set and the encoder
        understands text (CLIP/SigLIP).

        ``passes=n`` (n up to 4 is the seed's design) looks again while the answer is uncertain: each
        later pass re-allocates the latest frame's tokens towards regions no pass has looked at, and
        it stops early once the uncertainty is below 0.15 (arrcoc_rt.vlm.multipass). The Answer is
        the most certain pass's, with ``uncertainty`` and every pass in ``passes``.

        ``budget`` lets the question set the budget: a preset ("fast", "balanced", "accurate") picks
        the total budget of the question's tier (simple / medium / complex, by rules:
        arrcoc_rt.vlm.tiers), an int is a total budget; the latest frame is re-allocated at it by a
        fresh pipeline of this Stream's configuration (``Answer.tier``, ``Answer.total_budget``)."""
        if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
            raise ValueError(f"frames: {frames!r} is not a positive int")
        if isinstance(passes, bool) or not isinstance(passes, (int, np.integer)) or passes < 1:
            raise ValueError(f"passes: {passes!r} is not a positive int")
        if passes > 1 and frames > 1:
            raise ValueError("ask: passes > 1 looks again at the latest frame; it does not combine with frames > 1")
        tier = None
        if budget is not None:
            from .vlm.tiers import PRESETS, question_tier, tier_budget

            if frames > 1:
                raise ValueError("ask: budget re-allocates the latest frame; it does not combine with frames > 1")
            if isinstance(budget, str):
                if budget not in PRESETS:
                    raise ValueError(f"budget: {budget!r} is not a preset; expected one of {tuple(PRESETS)} or an int")
                tier = (self.tier_classifier.predict(question) if self.tier_classifier is not None
                        else question_tier(question)).name
                total = tier_budget(tier, self._config, budget)
            elif isinstance(budget, (int, np.integer)) and not isinstance(budget, bool):
                total = int(budget)
            else:
                raise TypeError(f"budget: expected a preset name {tuple(PRESETS)} or an int; got {budget!r}")
        if frames > self.ask_frames:
            raise ValueError(f"ask: frames={frames} is more than this Stream keeps (ask_frames={self.ask_frames}); "
                             f"create it with ask_frames={frames}")
        if self.adapter is None:
            hook = " (its vlm= is a callable: called with each frame's result, it answers no questions)" \
                if getattr(self, "vlm", None) is not None else ""
            raise ValueError(f"ask: this Stream has no VLM adapter{hook}; create it with vlm='llava:PATH' or an "
                             "arrcoc_rt.vlm adapter")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens: {max_new_tokens!r} is not a positive int")
        if not isinstance(asynchronous, (bool, np.bool_)):
            raise TypeError(f"asynchronous: expected True or False; got {asynchronous!r}")
        if not isinstance(question, str):
            raise TypeError(f"question: expected a non-empty str; got {type(question).__name__}")
        if not question.strip():
            raise ValueError(f"question: {question!r} is empty; expected a question")
        if self._last is None:
            raise ValueError("ask: no frame processed yet; call process(frame) first")
        if self._closed and asynchronous:  # (its worker thread was shut down with the Stream)
            raise ValueError("ask: this Stream is closed; ask about its last frame with asynchronous=False")
        enc = self._pipeline.encoder if self._pipeline is not None else None
        if self._query is None and enc is not None and type(enc).__name__ == "HFEncoder":
            self.set_query(query_text=question)  # from the next frame on
        frame, result = self._last
        if frames == 1:
            rgbs = [_to_rgb(frame)]
            results = [result]
        else:
            window = list(self._window)[-frames:]
            rgbs = [_to_rgb(f) for f, _ in window]
            results = [snap for _, snap in window]
            results[-1] = result  # the latest frame's live result (its gather may run on the GPU)
        if passes > 1 or budget is not None:
            pipeline_for = self._pass_pipeline if budget is None else (
                lambda w, h: self._pass_pipeline(w, h, total_budget=total))
            start = None if budget is not None else (_PassStart(result) if asynchronous else result)
            args = (self.adapter, np.array(rgbs[0]) if asynchronous else rgbs[0], start, question, passes,
                    max_new_tokens, pipeline_for, tier, (result.frame_index, result.pts), self._query)
            return self._submit(_answer_passes, *args) if asynchronous else _answer_passes(*args)
        if not asynchronous:
            return _answer_frames(self.adapter, rgbs, results, question, max_new_tokens)
        from .vlm.base import PackSnapshot

        if frames == 1:
            rgbs, results = [np.array(rgbs[0])], [PackSnapshot(result)]
        else:  # the window's frames are private copies already, its packs snapshots
            results[-1] = window[-1][1]
        return self._submit(_answer_frames, self.adapter, rgbs, results, question, max_new_tokens)

    def _submit(self, fn, *args):
        """Run fn(*args) on the Stream's one VLM worker thread: a Future."""
        if self._worker is None:
            from concurrent.futures import ThreadPoolExecutor

            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arrcoc-vlm")
        return self._worker.submit(fn, *args)

    def _pass_pipeline(self, width: int, height: int, **overrides) -> Pipeline:
        """A Pipeline of this Stream's configuration (with ``overrides``) for multi-pass and budgeted
        asks (never the stream's own: its temporal state must follow the frames)."""
        return Pipeline(width, height, device=self.device, **(self._config | overrides))

    def close(self) -> None:
        """No more frames: the pipeline's memory is freed (``pipeline.config`` stays inspectable;
        results keep their arrays, not their texture views)."""
        self._closed = True
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None
        if self._pipeline is not None:
            if self._last is not None:  # ask() still answers about the last frame, from a copy of its pack
                self._last = (self._last[0], _PassStart(self._last[1]))
            self._pipeline.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (f"Stream(device={self.device!r}, frames={self.frames}, {state}, "
                f"pipeline={self._pipeline!r})")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
