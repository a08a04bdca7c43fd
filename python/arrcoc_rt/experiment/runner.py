"""Runs the experiment's methods over the questions with one frozen VLM, measuring accuracy,
visual tokens, latency per stage and peak memory per question.

Per method (the outer loop, so one method's pipeline and caches are warm and alone) and question:

* ``select``: choosing the tokens — a pack method's ``Pipeline.process`` on the frame asked about
  (earlier video frames go through it first, untimed: a stream has processed them already); a grid
  method's selection on the vision features; 0 for ``all``.
* ``vision``: turning the frame into the language model's input embeddings: the vision tower, the
  gather or selection's feature reads, the projector and the prompt's embeddings (a pack method's
  ``adapter.prepare``; a grid method's ``vision_features`` + ``prepare_features``). EVS also needs the
  previous frame's features; a stream has them from that frame, so they are computed untimed.
* ``prefill``: from the call of ``generate`` to the first new token's logits (a logits processor
  stamps the time; CUDA is synchronized first), ``decode``: the rest of the generation.
* ``e2e``: wall clock of the whole step (select + vision + generation).

A budget-study method (``--budget PRESET``) first assigns the question its tier (the rules, or a
``TierClassifier`` when given; timed as ``tier_ms`` and counted in ``select`` and ``e2e``), then
allocates with a pipeline whose ``total_budget`` is that tier's (``tiers.tier_budget``), one
pipeline per tier.

With a box on the question: ``in_box``, the share of the visual tokens whose centre lies in the
answer box grown by half a cell of the model's grid on each side (finer than a cell the model
cannot tell where a token is), and ``box_hit``, whether any does.

On CUDA every stamp follows ``torch.cuda.synchronize()``. Peak memory per step: on CUDA
``torch.cuda.max_memory_allocated`` (reset before the step); on the CPU the process's peak resident
set (VmHWM, reset before the step through /proc/self/clear_refs), falling back to tracemalloc's
peak of Python allocations where that is not possible. Both are absolute (weights included); the
increase over the step's start is reported too.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ..vlm.base import timed_generate
from .data import fit_frame
from .methods import Method, select_all, select_evs, select_uniform, select_visionzip
from .vqa import clean_generation, vqa_accuracy

DEFAULT_PROMPT = "{question}\nAnswer the question using a single word or phrase."  # LLaVA-1.5's VQA prompt


@dataclass
class Settings:
    """What every method shares. ``device``: the pipeline's (auto | cpu | cuda[:N]); ``encoder``: a
    text encoder object for the ``query`` and ``balanced`` packs (None: no query); ``cascade``:
    "wide" makes every cluster's patches candidates (top_clusters = num_seeds, patches_per_cluster =
    1024 // num_seeds), so that the pipeline can place hundreds of saccades; "default" keeps the
    pipeline's 10 x 50 (about 140 candidates on a 640 x 480 frame)."""

    prompt: str = DEFAULT_PROMPT
    max_new_tokens: int = 16
    context_frames: int = 1
    warmup: int = 1
    max_side: int | None = 640
    device: str = "auto"
    encoder: object = None
    cascade: str = "wide"
    gestalt_lod: int = 64
    total_budget: int | None = None
    seed: int = 0
    frame_cache_mb: float = 2048.0
    grid: tuple | None = None  # the model's patch grid (h, w): the answer box is grown by half a cell
    tier_classifier: object = None  # budget study: a TierClassifier (None: the rules, question_tier)
    saliency_strategy: str = "saliency"  # the 'saliency' method's pipeline strategy ('sobel': seed 000's)
    pipeline_options: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- clocks and memory


def _is_cuda(device) -> bool:
    return str(device).startswith("cuda")


class Clock:
    """perf_counter stamps, synchronized with CUDA when the model or the pipeline runs there."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        if cuda:
            import torch

            self._sync = torch.cuda.synchronize
        else:
            self._sync = None

    def now(self) -> float:
        if self._sync is not None:
            self._sync()
        return time.perf_counter()


class MemoryMeter:
    """Peak memory of one step: CUDA allocations, or the CPU process's peak RSS (see the module
    docstring); ``kind`` says which."""

    def __init__(self, cuda: bool, device=None):
        self.cuda, self.device = cuda, device
        self._tracemalloc = False
        if cuda:
            self.kind = "cuda_max_memory_allocated"
        elif self._reset_hwm():
            self.kind = "process_peak_rss"
        else:
            import tracemalloc

            tracemalloc.start()
            self._tracemalloc = True
            self.kind = "tracemalloc_peak"

    @staticmethod
    def _status(field_name: str) -> float | None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(field_name + ":"):
                        return float(line.split()[1]) / 1024.0  # kB -> MiB
        except OSError:
            return None
        return None

    @staticmethod
    def _reset_hwm() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return MemoryMeter._status("VmHWM") is not None
        except OSError:
            return False

    def start(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device) / 2**20
        elif self._tracemalloc:
            import tracemalloc

            tracemalloc.reset_peak()
            self._base = tracemalloc.get_traced_memory()[0] / 2**20
        else:
            self._reset_hwm()
            self._base = self._status("VmRSS") or 0.0

    def stop(self) -> tuple[float, float]:
        """(peak MiB, peak - start MiB)."""
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self._tracemalloc:
            import tracemalloc

            peak = tracemalloc.get_traced_memory()[1] / 2**20
        else:
            peak = self._status("VmHWM") or 0.0
        return peak, max(0.0, peak - self._base)

    def close(self) -> None:
        if self._tracemalloc:
            import tracemalloc

            tracemalloc.stop()


# ----------------------------------------------------------------------------- frames


class FrameStore:
    """Each question's frames, shrunk to ``max_side``, held in memory up to ``limit_mb`` (read again
    after that); ``size`` is the largest frame (width, height) for the pipelines."""

    def __init__(self, questions, context: int, max_side: int | None, limit_mb: float, progress=None):
        self.context, self.max_side = context, max_side
        self._cache, self._scale = {}, {}
        self.grids = {}  # the model's patch grid per frame size (MethodRunner._grid_of), shared by the methods
        used, w, h = 0.0, 1, 1
        for i, q in enumerate(questions):
            frames, scale = self._load(q)
            self._scale[q.id] = scale
            for f in frames:
                h, w = max(h, f.shape[0]), max(w, f.shape[1])
            nbytes = sum(f.nbytes for f in frames) / 2**20
            if used + nbytes <= limit_mb:
                self._cache[q.id] = frames
                used += nbytes
            if progress:
                progress(i + 1, len(questions), "reading frames")
        self.size = (w, h)

    def _load(self, q):
        frames = q.load_frames(self.context)
        out, scale = [], 1.0
        for f in frames:
            g, scale = fit_frame(np.ascontiguousarray(f), self.max_side)
            out.append(np.ascontiguousarray(g))
        return out, scale

    def frames(self, q) -> list:
        got = self._cache.get(q.id)
        return got if got is not None else self._load(q)[0]

    def box(self, q) -> list | None:
        return None if q.box is None else [v * self._scale[q.id] for v in q.box]


# ----------------------------------------------------------------------------- one method


def _in_box(points_xy: np.ndarray, box, margin=(0.0, 0.0)):
    """(share of the points inside ``box`` grown by ``margin`` (x, y) pixels on each side, whether
    any is); (None, None) without a box."""
    if box is None or len(points_xy) == 0:
        return None, None
    x, y = points_xy[:, 0], points_xy[:, 1]
    inside = ((x >= box[0] - margin[0]) & (x < box[2] + margin[0]) & (y >= box[1] - margin[1])
              & (y < box[3] + margin[1]))
    return float(np.mean(inside)), bool(inside.any())


class MethodRunner:
    """Runs one Method on questions; ``step(question)`` -> a record dict."""

    def __init__(self, method: Method, adapter, settings: Settings, store: FrameStore, clock: Clock,
                 meter: MemoryMeter):
        self.m, self.adapter, self.s, self.store, self.clock, self.meter = method, adapter, settings, store, clock, meter
        self.pipe = self._pipeline() if method.is_pack and method.study != "budget" else None
        self._tier_pipes = {}  # budget study: one pipeline per tier, at that tier's total budget

    def _tier(self, question: str) -> str:
        from ..vlm.tiers import question_tier

        clf = self.s.tier_classifier
        return (clf.predict(question) if clf is not None else question_tier(question)).name

    def _pipeline_for(self, tier: str):
        if tier not in self._tier_pipes:
            from ..vlm.tiers import tier_budget

            m, s = self.m, self.s
            config = {"gestalt_x": m.gestalt, "gestalt_y": m.gestalt, "gestalt_lod": s.gestalt_lod,
                      "saccades": m.saccades}
            self._tier_pipes[tier] = self._pipeline(tier_budget(tier, config, m.preset))
        return self._tier_pipes[tier]

    def _pipeline(self, total_budget: int | None = None):
        from ..cascade import CASCADE_DEFAULTS
        from ..pipeline import ALLOCATOR_DEFAULTS, Pipeline

        m, s = self.m, self.s
        options = dict(s.pipeline_options)
        if s.cascade == "wide":
            seeds = int(options.get("num_seeds", CASCADE_DEFAULTS["num_seeds"][0]))
            options.setdefault("top_clusters", seeds)
            options.setdefault("patches_per_cluster", max(1, 1024 // seeds))
        gestalt = m.gestalt * m.gestalt
        budget = total_budget or s.total_budget or max(ALLOCATOR_DEFAULTS["total_budget"][0],
                                                       gestalt * s.gestalt_lod + m.saccades * 64)
        query = m.name in ("query", "balanced") and s.encoder is not None
        w, h = self.store.size
        strategy = {"base": "balanced", "saliency": s.saliency_strategy}.get(m.name, m.name)
        return Pipeline(w, h, device=s.device, strategy=strategy,
                        saccades=m.saccades, gestalt_x=m.gestalt, gestalt_y=m.gestalt, gestalt_overlap=m.overlap,
                        gestalt_lod=s.gestalt_lod, total_budget=budget, seed=s.seed,
                        encoder=s.encoder if query else None, **options)

    def _grid_of(self, frame) -> tuple:
        """The model's patch grid for a frame of this size (a model such as Qwen2-VL sizes it by the
        image): the answer box grows by half of one of its cells. Once per frame size."""
        if self.s.grid is None:  # no grid given: the box is not grown
            return (0, 0)
        size = frame.shape[:2]
        if size not in self.store.grids:
            self.store.grids[size] = tuple(int(v) for v in self.adapter.vision_features(frame).shape[-2:])
        return self.store.grids[size]

    def _query(self, q) -> dict:
        if self.m.name in ("query", "balanced") and self.s.encoder is not None:
            return {"query_text": q.question}
        return {}

    def step(self, q) -> dict:
        frames = self.store.frames(q)
        frame = frames[-1]
        prompt = self.s.prompt.format(question=q.question)
        clock, m = self.clock, self.m
        record = {"method": m.key, "study": m.study, "name": m.name, "requested_tokens": m.tokens,
                  "saccades": m.saccades if m.is_pack else None, "gestalt": m.gestalt * m.gestalt if m.is_pack else None,
                  "overlap": m.overlap if m.is_pack and m.name != "base" else None, "question_id": q.id,
                  "dataset": q.dataset, "kind": q.kind, "video": q.is_video}
        tier_ms = 0.0
        if m.study == "budget":
            t = clock.now()
            tier = self._tier(q.question)
            tier_ms = (clock.now() - t) * 1e3
            pipe = self._pipeline_for(tier)
            record.update(preset=m.preset, tier=tier, labelled_tier=q.tier, tier_ms=tier_ms,
                          total_budget=int(pipe.config["total_budget"]))
        else:
            pipe = self.pipe
        if m.is_pack:
            query = self._query(q)
            if m.name == "random" and m.study != "budget":
                # The random strategy hashes (seed, frame index, patch), and a pipeline's frame index runs
                # on across reset(): a fresh pipeline gives each question the same draw whatever was run
                # before it (--warmup, --sample, the other questions).
                self.pipe = pipe = self._pipeline()
            pipe.reset()
            for f in frames[:-1]:
                pipe.process(f, **query)
            self.meter.start()
            t0 = clock.now()
            r = pipe.process(frame, **query)
            t1 = clock.now()
            inputs = self.adapter.prepare(frame, r, prompt, tokens=m.tokens)
            t2 = clock.now()
            select_ms, vision_ms = (t1 - t0) * 1e3 + tier_ms, (t2 - t1) * 1e3
            index = inputs.get("token_index")
            if index is None:
                from ..vlm.base import kept_tokens

                index = kept_tokens(r, m.tokens)
            points = np.asarray(r.positions, np.float64)[np.asarray(index)]
            record["saccades_placed"] = int(np.sum(np.asarray(r.kinds)[np.asarray(index)] == 1))
            # the kept tokens' levels of detail: what total_budget caps (a tier mostly changes these, not the count)
            record["allocated_budget"] = int(np.asarray(r.budgets)[np.asarray(index)].sum())
        else:
            previous = None
            if m.name == "evs" and len(frames) > 1:
                previous = self.adapter.vision_features(frames[-2])  # a stream has it from that frame
            self.meter.start()
            t0 = clock.now()
            grid = self.adapter.vision_features(frame)
            t1 = clock.now()
            if m.name == "all":
                feats, cells = select_all(grid)
            elif m.name == "uniform":
                try:
                    feats, cells = select_uniform(grid, m.tokens)
                except ValueError:  # this question's grid (another image size) cannot make N: cells repeat
                    feats, cells = select_uniform(grid, m.tokens, repeat_cells=True)
                    record["uniform_repeated_cells"] = True
            elif m.name == "visionzip":
                feats, cells = select_visionzip(grid, m.tokens)
            elif m.name == "evs":
                feats, cells = select_evs(grid, previous, m.tokens)
                record["evs_previous_frame"] = previous is not None
            else:
                raise ValueError(f"method {m.name!r} is not a grid selection")
            t2 = clock.now()
            gh, gw = (int(v) for v in grid.shape[-2:])
            inputs = self.adapter.prepare_features(feats, prompt, positions=cells, grid=(gh, gw))
            t3 = clock.now()
            select_ms, vision_ms = (t2 - t1) * 1e3, ((t1 - t0) + (t3 - t2)) * 1e3
            points = cells * np.array([frame.shape[1] / gw, frame.shape[0] / gh])
        text, prefill_ms, decode_ms, new_tokens = timed_generate(self.adapter, inputs, self.s.max_new_tokens,
                                                                 clock.now)
        t_end = clock.now()
        peak, delta = self.meter.stop()
        answer = clean_generation(text)
        box = self.store.box(q)
        gh, gw = (gh, gw) if not m.is_pack else self._grid_of(frame)
        margin = (frame.shape[1] / gw / 2, frame.shape[0] / gh / 2) if gh and gw else (0.0, 0.0)
        in_box, hit = _in_box(points, box, margin)
        record.update(
            prediction=answer, answers=list(q.answers), accuracy=vqa_accuracy(answer, q.answers),
            visual_tokens=int(inputs["num_visual_tokens"]), in_box=in_box, box_hit=hit,
            box_area=None if box is None else float((box[2] - box[0]) * (box[3] - box[1]) / frame[..., 0].size),
            select_ms=select_ms, vision_ms=vision_ms, prefill_ms=prefill_ms, decode_ms=decode_ms,
            e2e_ms=(t_end - t0) * 1e3 + tier_ms, new_tokens=new_tokens, peak_memory_mb=peak, memory_increase_mb=delta)
        return record


def run(adapter, questions, methods, settings: Settings, progress=None) -> tuple[list, dict]:
    """(records, info): one record per (method, question) it applies to (``evs``: video questions
    only), each method warmed up first on ``settings.warmup`` questions (not recorded). ``info``
    holds the memory kind and the frame size the pipelines were made for."""
    store = FrameStore(questions, settings.context_frames, settings.max_side, settings.frame_cache_mb, progress)
    model_device = getattr(adapter, "device", "cpu")
    cuda = _is_cuda(model_device) or _is_cuda(settings.device)
    clock = Clock(cuda)
    meter = MemoryMeter(cuda, model_device if _is_cuda(model_device) else None)
    records = []
    try:
        for i, m in enumerate(methods):
            todo = [q for q in questions if q.is_video] if m.video_only else list(questions)
            if not todo:
                continue
            runner = MethodRunner(m, adapter, settings, store, clock, meter)
            for q in todo[: max(0, settings.warmup)]:
                runner.step(q)
            for j, q in enumerate(todo):
                records.append(runner.step(q))
                if progress:
                    progress(j + 1, len(todo), f"[{i + 1}/{len(methods)}] {m.key}")
            del runner
    finally:
        meter.close()
    return records, {"memory_kind": meter.kind, "pipeline_frame_size": list(store.size), "cuda": cuda}


def terminal_progress(done: int, total: int, label: str) -> None:
    sys.stderr.write(f"\r{label[:60]:60s} {done}/{total}" + ("\n" if done == total else ""))
    sys.stderr.flush()
