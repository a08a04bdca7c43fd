"""What one browser tab of ``arrcoc-rt serve`` holds, without any web code: its Stream (rebuilt when a
setting changes), its query, the overlay layers, the recent frames' timings and allocation, and
what its VLM answered. The Gradio page (``app.py``) only calls these methods."""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from ..encoders import MIN_EXEMPLAR_SIDE
from ..pipeline import ALLOCATOR_DEFAULTS, STRATEGIES
from ..query import Query
from ..stream import Stream
from ..texture import MAX_DIMENSION
from ..visualize import OVERLAY_LAYERS, overlay
from .charts import STAGES, percentiles, stats_chart

HISTORY = 300          # frames kept for the chart and the percentiles
CHART_EVERY_S = 0.5    # the chart is redrawn at most this often while frames flow
MIN_BOX = MIN_EXEMPLAR_SIDE  # smallest exemplar box side, pixels
BUDGET_RANGE = (16 * 16 * 64, 200_000)  # the default 16 x 16 gestalt at 64 needs 16384
SACCADE_RANGE = (0, 512)


@dataclass
class ServeConfig:
    """Options of the whole server (every tab shares them)."""

    source: str | int | None = None   # a server-side source: file, URL, webcam ("/dev/video0" or index)
    device: str = "auto"
    encoder: object = "builtin"       # "builtin" or a loaded CLIP/SigLIP encoder (arrcoc_rt.encoders)
    encoder_name: str = "builtin"
    vlm: object = None                # an arrcoc_rt.vlm adapter, or None
    vlm_name: str | None = None
    max_width: int = 1280             # wider frames are scaled down before processing (0: never)
    lock: threading.Lock = field(default_factory=threading.Lock)  # one model: one answer at a time

    @property
    def text_queries(self) -> bool:
        return hasattr(self.encoder, "encode_text")


@dataclass
class Settings:
    strategy: str = "balanced"
    saccades: int = ALLOCATOR_DEFAULTS["saccades"][0]
    total_budget: int = ALLOCATOR_DEFAULTS["total_budget"][0]
    decay: float = ALLOCATOR_DEFAULTS["decay"][0]


class Session:
    """One viewer: frames in (``step``), overlay, chart and numbers out."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.lock = threading.RLock()
        self.settings = Settings()
        self.layers = set(OVERLAY_LAYERS)
        self.query: Query | None = None
        self.query_label = "none"
        self.query_box = None        # (x0, y0, x1, y1) of an exemplar drawn on the frame
        self.anchor = None           # the first corner clicked
        self.drawing = False         # a box is being drawn: the frame shown holds still meanwhile
        self.query_frame = 0         # frames processed when the current query took effect
        self.stream: Stream | None = None
        self._stream_key = None
        self._query_changed = False
        self.history = collections.deque(maxlen=HISTORY)
        self.frames = 0              # frames processed by this session
        self.source = None           # what is playing: 'upload', 'image', 'webcam', 'server'
        self.playing = 0             # id of the current playback; a newer one stops an older one
        self.webcam_held = False     # Stop pressed while the webcam streamed: its frames wait (app.py)
        self.webcam_seen = 0.0       # time.monotonic() of the webcam's last frame
        self.last_rgb = None
        self.still = None            # the frame a box is drawn on
        self.last_result = None
        self.last_overlay = None
        self.message = ""
        self._chart_at = 0.0
        self._chart_frames = -1
        self.answers = collections.deque(maxlen=20)  # (question, Answer, overlay of the frame it saw)

    # ------------------------------------------------------------------ the stream
    def _ensure_stream(self) -> None:
        s = self.settings
        encoder = (self.config.encoder if self.query is not None and self.query.kind in ("image", "text")
                   else None)  # the encoder runs only while a query needs it
        key = (s.strategy, s.saccades, s.total_budget, s.decay, encoder is not None)
        if key != self._stream_key or self.stream is None:
            old = self.stream
            self.stream = Stream(device=self.config.device, encoder=encoder, query=self.query, vlm=self.config.vlm,
                                 strategy=s.strategy, saccades=s.saccades, total_budget=s.total_budget, decay=s.decay)
            if old is not None:  # the page's frames keep their numbers (answers say which frame they saw)
                self.stream.frames = old.frames
                old.close()
            self._stream_key = key
        elif self._query_changed:
            self.stream.set_query(self.query)
        self._query_changed = False

    def update_settings(self, strategy=None, saccades=None, total_budget=None, decay=None) -> str:
        """New allocation settings from the next frame on (the stream restarts: no motion history)."""
        with self.lock:
            new = Settings(strategy if strategy is not None else self.settings.strategy,
                           int(saccades) if saccades is not None else self.settings.saccades,
                           int(total_budget) if total_budget is not None else self.settings.total_budget,
                           float(decay) if decay is not None else self.settings.decay)
            if new.strategy not in STRATEGIES:
                raise ValueError(f"strategy: {new.strategy!r} is not one of {', '.join(STRATEGIES)}")
            Stream(device="cpu", strategy=new.strategy, saccades=new.saccades, total_budget=new.total_budget,
                   decay=new.decay)  # validates, with the library's own messages
            self.settings = new
            self._refresh_still()
            return f"query: {self.query_label}"

    def set_layers(self, layers) -> None:
        unknown = set(layers) - set(OVERLAY_LAYERS)
        if unknown:
            raise ValueError(f"layers: {sorted(unknown)} unknown; expected some of {OVERLAY_LAYERS}")
        with self.lock:
            self.layers = set(layers)
            if self.last_result is not None:
                self.last_overlay = self._draw(self.last_rgb, self.last_result)

    # ------------------------------------------------------------------ queries
    def _set_query(self, query: Query | None, label: str, box=None) -> str:
        with self.lock:
            self.query, self.query_label, self.query_box = query, label, box
            self.anchor, self.drawing = None, False
            self._query_changed = True
            self.query_frame = self.frames
            self.message = f"query: {label}"
            self._refresh_still()
            return self.message

    def clear_query(self) -> str:
        return self._set_query(None, "none")

    def set_exemplar(self, image) -> str:
        """An uploaded exemplar picture (H x W x 3 uint8) is the query."""
        a = np.asarray(image)
        if a.ndim != 3 or a.shape[2] < 3 or min(a.shape[:2]) < MIN_BOX:
            raise ValueError(f"exemplar: expected an RGB picture at least {MIN_BOX} px on a side; got {a.shape}")
        return self._set_query(Query.image(np.ascontiguousarray(a[..., :3], np.uint8)),
                               f"exemplar image ({a.shape[1]}x{a.shape[0]})")

    def set_text(self, text: str) -> str:
        if not self.config.text_queries:
            raise ValueError("text queries need a CLIP or SigLIP encoder: start with --encoder clip:PATH or siglip:PATH")
        if not isinstance(text, str) or not text.strip():
            return self.clear_query()
        return self._set_query(Query.text(text.strip()), f"text {text.strip()!r}")

    def begin_box(self) -> str:
        """Hold the frame shown still (the overlay goes on) until two corners are clicked on it."""
        with self.lock:
            if self.last_rgb is None:
                return "no frame yet: upload a video or an image, or start the webcam"
            self.drawing, self.anchor, self.still = True, None, self.last_rgb
            self.message = "the frame holds still: click two opposite corners of the object"
            return self.message

    def click(self, x: float, y: float) -> str:
        """A click on the frame: the first sets a corner (and holds the frame shown still), the
        second the opposite corner; the box between them, cut from the frame shown, becomes the
        exemplar query."""
        with self.lock:
            if self.last_rgb is None:
                return "no frame yet: upload a video or an image, or start the webcam"
            if self.anchor is None and not self.drawing:
                self.still = self.last_rgb  # the frame the user sees and draws on
            h, w = self.still.shape[:2]
            x, y = float(np.clip(x, 0, w)), float(np.clip(y, 0, h))
            if self.anchor is None:
                self.anchor, self.drawing = (x, y), True
                self.message = f"corner at ({x:.0f}, {y:.0f}): click the opposite corner"
                return self.message
            (ax, ay), self.anchor = self.anchor, None
            x0, x1 = sorted((int(round(ax)), int(round(x))))
            y0, y1 = sorted((int(round(ay)), int(round(y))))
            if x1 - x0 < MIN_BOX or y1 - y0 < MIN_BOX:
                self.message = f"box {x1 - x0}x{y1 - y0} px is too small (at least {MIN_BOX} px a side): click two corners again"
                return self.message
            crop = np.ascontiguousarray(self.still[y0:y1, x0:x1])
            return self._set_query(Query.image(crop), f"exemplar box ({x0}, {y0})-({x1}, {y1})", (x0, y0, x1, y1))

    # ------------------------------------------------------------------ frames
    def start(self, source: str) -> int:
        """A new playback (upload, server source, webcam); older ones stop at their next frame."""
        with self.lock:
            self.playing += 1
            self.source = source
            return self.playing

    def stop(self) -> None:
        with self.lock:
            self.playing += 1

    def fit(self, rgb: np.ndarray) -> np.ndarray:
        a = np.asarray(rgb)
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=2)
        a = np.ascontiguousarray(a[..., :3], np.uint8)
        # narrower than max_width, and no side beyond what a pipeline takes; the aspect ratio kept
        h, w = a.shape[:2]
        mw = self.config.max_width
        scale = min(1.0, mw / w if mw else 1.0, MAX_DIMENSION / w, MAX_DIMENSION / h)
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            a = np.asarray(Image.fromarray(a).resize(size, Image.BILINEAR))
        return a

    @property
    def scale(self) -> int:
        """The frame and its overlay are shown this many times larger (2 below 400 px wide: small
        frames stay readable); clicks on the picture are divided by it."""
        return 2 if self.last_rgb is not None and self.last_rgb.shape[1] < 400 else 1

    def _draw(self, rgb, result) -> np.ndarray:
        flags = {name: name in self.layers for name in OVERLAY_LAYERS}
        return overlay(rgb, result, scale=2 if rgb.shape[1] < 400 else 1, **flags)

    def step(self, frame, *, still: bool = False) -> np.ndarray:
        """One frame (H x W x 3 uint8): processed and drawn; returns the overlay. ``still``: a single
        picture, processed afresh (no motion history)."""
        with self.lock:
            rgb = self.fit(frame)
            if self.last_rgb is not None and rgb.shape != self.last_rgb.shape:
                self.query_box = self.anchor = None  # a box drawn on frames of another size (the query stays)
                self.drawing = False
            self._ensure_stream()
            if still:
                self.stream.reset()
            t0 = time.perf_counter()
            r = self.stream.process(rgb)
            t1 = time.perf_counter()
            ov = self._draw(rgb, r)
            t2 = time.perf_counter()
            self.history.append({
                "frame": self.frames, "saccades": r.num_saccades, "churn": r.churn, "scene_cut": r.scene_cut,
                "ms": dict(r.timings, overlay=(t2 - t1) * 1e3, wall=(t2 - t0) * 1e3)})
            self.frames += 1
            self.last_rgb, self.last_result, self.last_overlay = rgb, r, ov
            return ov

    def _refresh_still(self) -> str:
        """A still picture is drawn again at once after a change (a video shows it at its next frame)."""
        if self.source == "image" and self.last_rgb is not None:
            self.step(self.last_rgb, still=True)
        return self.message

    def original(self) -> np.ndarray | None:
        """The latest frame as shown (``scale`` times larger) with the exemplar box, or the first
        corner clicked, drawn on it."""
        with self.lock:
            rgb = self.still if self.drawing else self.last_rgb
            if rgb is None:
                return None
            k = self.scale
            if self.query_box is None and self.anchor is None and k == 1:
                return rgb
            pil = Image.fromarray(rgb)
            if k > 1:
                pil = pil.resize((pil.width * k, pil.height * k), Image.BILINEAR)
            d = ImageDraw.Draw(pil)
            if self.query_box is not None:
                x0, y0, x1, y1 = (v * k for v in self.query_box)
                d.rectangle((x0 - 1, y0 - 1, x1, y1), outline=(0, 0, 0))
                d.rectangle((x0, y0, x1 - 1, y1 - 1), outline=(0, 255, 255), width=2)
            if self.anchor is not None:
                x, y = (v * k for v in self.anchor)
                d.line((x - 8, y, x + 8, y), fill=(0, 255, 255), width=2)
                d.line((x, y - 8, x, y + 8), fill=(0, 255, 255), width=2)
            return np.asarray(pil)

    # ------------------------------------------------------------------ numbers and the chart
    def saccade_budget_in(self, box) -> float:
        """Share of the latest frame's saccade budget centred inside ``box`` (x0, y0, x1, y1)."""
        with self.lock:
            r = self.last_result
            if r is None:
                return 0.0
            sac = np.asarray(r.kinds) == 1
            p, b = np.asarray(r.positions)[sac], np.asarray(r.budgets)[sac].astype(np.float64)
            x0, y0, x1, y1 = box
            inside = (p[:, 0] >= x0) & (p[:, 0] < x1) & (p[:, 1] >= y0) & (p[:, 1] < y1)
            return float(b[inside].sum() / b.sum()) if b.sum() > 0 else 0.0

    def stats(self) -> str:
        """The numbers under the chart, as Markdown."""
        with self.lock:
            if not self.history:
                return "No frames yet: upload a video or an image, start your webcam" + (
                    ", or play the server's source." if self.config.source is not None else ".")
            hist = list(self.history)
            last = hist[-1]
            lines = [f"**{self.frames} frames** ({self.source}) · last frame: {last['saccades']} saccades"
                     + (f", churn {last['churn']:.2f}" if last["churn"] is not None else "")
                     + (" · **scene cut**" if last["scene_cut"] else ""),
                     f"query: {self.query_label} · strategy {self.settings.strategy} · {self.settings.saccades} "
                     f"saccades · total budget {self.settings.total_budget} · decay {self.settings.decay:g}",
                     "latency over the last {} frames, ms (p50 / p95): ".format(len(hist)) + " · ".join(
                         f"{k} {p50:.1f} / {p95:.1f}" for k, (p50, p95) in percentiles(hist).items())]
            return "  \n".join(lines)

    def chart(self, force: bool = False) -> np.ndarray | None:
        """The chart, redrawn when new frames came and at most every CHART_EVERY_S (None: not due)."""
        with self.lock:
            now = time.monotonic()
            if not force and (self.frames == self._chart_frames or now - self._chart_at < CHART_EVERY_S):
                return None
            self._chart_at, self._chart_frames = now, self.frames
            hist = list(self.history)
            cap = self.settings.saccades
        return stats_chart(hist, saccade_slots=cap)

    # ------------------------------------------------------------------ answers
    def ask(self, question: str, max_new_tokens: int = 32):
        """The VLM's answer about the latest frame: (markdown, overlay of the frame it saw)."""
        if self.config.vlm is None:
            raise ValueError("no VLM: start the page with --vlm llava:PATH (or qwen2_vl:PATH, qwen2_5_vl:PATH)")
        if not isinstance(question, str) or not question.strip():
            raise ValueError("ask a question first")
        with self.lock:
            if self.stream is None or self.last_result is None:
                raise ValueError("no frame yet: upload a video or an image, or start the webcam")
            future = self.stream.ask(question.strip(), max_new_tokens=max_new_tokens, asynchronous=True)
            seen = self.last_overlay
        with self.config.lock:
            a = future.result()
        self.answers.append((question, a, seen))
        lat = a.latency_ms
        text = (f"**{a.text.strip() or '(empty answer)'}**  \nframe {a.frame_index} · {a.visual_tokens} visual tokens · "
                f"{lat['total']:.0f} ms (vision and prompt {lat['vision_and_prepare']:.0f} ms, generation "
                f"{lat['generate']:.0f} ms)")
        return text, seen


__all__ = ["BUDGET_RANGE", "SACCADE_RANGE", "STAGES", "ServeConfig", "Session", "Settings"]
