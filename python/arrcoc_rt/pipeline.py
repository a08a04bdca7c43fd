"""The relevance pipeline from Python: texture -> cluster cascade -> three scores -> fused
balance / temporal blend / allocation -> gathered token pack (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

import math
import threading
import time
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _native
from .cascade import CASCADE_DEFAULTS, ClusterCascade, _check_knob
from .frames import describe_array, device_stream_handle, stream_handle
from .query import Query, make_query
from .runtime import device_string
from .texture import PLANES as TEXTURE_PLANES, Texture, TextureBuilder, release_after_work, to_host
from .weights import default_weights, load_weights, validate

STRATEGIES = ("balanced", "random", "saliency", "query", "sobel")
LODS = (64, 128, 256, 384, 400)

# name: (default, low, high, kind); documented in the Pipeline docstring
ALLOCATOR_DEFAULTS = {
    "gestalt_x": (16, 1, 64, int),
    "gestalt_y": (16, 1, 64, int),
    "saccades": (273, 0, 1024, int),
    "total_budget": (100_000, 1, 10_000_000, int),
    "steepness": (2.0, -20.0, 20.0, float),   # kappa 4.02: seed 004's initial steepness
    "offset": (0.0, -0.3, 0.3, float),        # seed 004's range
    "seed": (0, 0, 2**32 - 1, int),
    "decay": (0.8, 0.0, 1.0, float),
    "motion_boost": (0.8, 0.0, 1.0, float),
    "motion_threshold": (0.2, 0.0, 1.0, float),
    "cut_motion": (0.2, 0.0, 1.0, float),
    "cut_share": (0.25, 0.0, 1.0, float),
    "cut_correlation": (0.5, 0.0, 1.0, float),
    "glimpse_size": (16, 1, 64, int),
    "hysteresis": (0.15, 0.0, 1.0, float),
    "lod_band": (24.0, 0.0, 336.0, float),
    "text_floor": (256, 0, 400, int),       # 0: off; else a level of detail (checked by the core)
    "text_threshold": (0.02, 1e-6, 1.0, float),  # > 0: at 0 every patch would count as text
}


def _check(name, value, spec):
    default, lo, hi, kind = spec
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number; got {type(value).__name__}")
    if kind is int and (not math.isfinite(value) or int(value) != value):  # int(inf): OverflowError
        raise TypeError(f"{name}: expected an int; got {value!r}")
    v = kind(value)
    if not math.isfinite(v) or v < lo or v > hi:
        raise ValueError(f"{name}: {value!r} is out of range; expected {lo}..{hi}" if kind is int
                         else f"{name}: {value!r} is out of range; expected [{lo}, {hi}]")
    return v


def _int_choice(name, value, choices):
    """``value`` as a Python int if it is an integer (Python or NumPy, not bool) in ``choices``;
    None if it is an integer outside them. A NumPy integer must not reach arithmetic (uint8 64 * 4
    overflows) nor pybind11 (a float raised RuntimeError there)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, one of {choices}; got {type(value).__name__} {value!r}")
    return int(value) if int(value) in choices else None


_ARRAY_FIELDS = ("glimpses", "positions", "levels", "budgets", "kinds", "scores", "patches", "relevance", "homunculus",
                 "candidates", "info_score", "salience_score", "query_score", "balanced_score", "previous", "reuse",
                 "reuse_drift", "context_weights")


def _as_torch(result) -> bool:
    """The result's arrays as torch tensors, without a copy: NumPy arrays through torch.from_numpy
    (CPU), device arrays through DLPack (CUDA, copy=False). Returns whether any still shares the
    pipeline's memory (the CPU's read-only views are copied: torch has no read-only tensors)."""
    try:
        import torch
    except ImportError:
        raise ValueError("return_tensors='pt' needs torch (pip install torch)") from None
    shared = False
    for name in _ARRAY_FIELDS:
        v = getattr(result, name)
        if v is not None:
            if isinstance(v, np.ndarray):
                # torch has no read-only tensors: a copy=False view (the pipeline's own memory; the
                # relevance is carried to the next frame) is copied rather than handed out writable
                setattr(result, name, torch.from_numpy(v if v.flags.writeable else v.copy()))
            else:
                setattr(result, name, torch.from_dlpack(v))
                shared = True
    return shared


def _renamed(result, old: str, new: str):
    warnings.warn(f"FrameResult.{old} is renamed {new}; the old name goes in the next release",
                  DeprecationWarning, stacklevel=3)
    return getattr(result, new)


@dataclass(eq=False)  # compared by identity: field-wise == of arrays has no single truth value
class FrameResult:
    """One processed frame. Token arrays have N = gestalt + saccade slots entries, gestalt first;
    missing saccades are padding (kind -1, level -1, budget 0). The arrays are host copies, safe
    to keep; ``texture`` is a zero-copy view, valid until the next frame. A pickled or deep-copied
    result keeps every array and flag (host copies, also of a ``copy=False`` CUDA result) but not
    ``texture`` or ``gather_features``, which need the live pipeline. For those a result holds its
    pipeline, and with it the pipeline's buffers (tens of MB at 1080p), as a NumPy view holds its
    base: close the pipeline (``Pipeline.close()``, ``Stream.close()``) to free them while results
    are kept (one per clip of a corpus, say), or keep ``copy.deepcopy(result)``, which holds nothing
    else.

    Per token, across frames: ``previous`` (the previous frame's token whose content this one shows,
    followed along the motion vectors), ``reuse`` (the same where its pixels are those of that token:
    a model may keep its cached keys/values) and ``reuse_drift`` (how far the pixels moved along the
    reuse chain, at most a grey level); each indexes the previous frame's result (docs/VLM.md)."""

    frame_index: int
    glimpses: np.ndarray      # [N, 3, P, P] float32 RGB glimpses at each token's mip level
    positions: np.ndarray     # [N, 2] float32 centre (x, y) in pixels
    levels: np.ndarray        # [N] int32 mip level (400/384 -> 0, 256 -> 1, 128 -> 2, 64 -> 3)
    budgets: np.ndarray       # [N] int32 level of detail (64..400)
    kinds: np.ndarray         # [N] int32: 0 gestalt, 1 saccade, -1 padding
    scores: np.ndarray        # [N] float32 selection key of saccades
    patches: np.ndarray       # [N] int32 patch id (row * patch_grid[0] + column)
    relevance: np.ndarray     # [h4, w4] float32 relevance map carried to the next frame
    homunculus: np.ndarray    # [h4, w4] float32 levels of detail per patch
    scene_cut: bool
    num_saccades: int
    candidates: np.ndarray    # [slots] int32 candidate patches from the cascade (-1 padding)
    info_score: np.ndarray      # [slots] per candidate: information (propositional)
    salience_score: np.ndarray  # [slots] salience (perspectival)
    query_score: np.ndarray     # [slots] query relevance (participatory)
    balanced_score: np.ndarray  # [slots] after opponent processing
    previous: np.ndarray | None = None  # [N] int32 token of the previous frame whose content (along
    #                                     the motion vectors) this token shows, -1 if none
    reuse: np.ndarray | None = None     # [N] int32 = previous where the token stayed on its place (same
    #                                     position and level of detail, a frame of the same size) and every
    #                                     patch the glimpse samples changed by at most one grey level along
    #                                     its whole reuse chain: a model may keep that token's cached
    #                                     keys/values (the previous frame's result only: docs/VLM.md)
    reuse_drift: np.ndarray | None = None  # [N] float32 where reuse >= 0: the content change summed along
    #                                     its reuse chain (<= 1/255; the chain starts again past it), else 0
    context_weights: np.ndarray | None = None  # [3] the context network's weights of (information,
    #                                     salience, query) for this frame; 1/3 each when it is off
    follows_a_frame: bool = False       # a previous frame of this pipeline exists (churn is defined)
    frame_size: tuple = (0, 0)  # (width, height) of the frame, pixels
    _view_of: int = field(default=0, repr=False)  # copy=False: the pipeline's frame count it is a view of
    timings: dict = field(default_factory=dict)  # ms per stage (host clock; on CUDA the first two are
    #                                              enqueue times, the last includes the wait for results)
    motion_valid: bool = False
    texture: Texture | None = None
    pts: float | None = None   # presentation time in seconds (pts * time_base), when known
    resized: bool = False      # Stream: the frame size or pixel format changed here (state was reset)
    reconnected: bool = False  # Stream: the live source lost its connection before this frame and came
    #                            back (frames in between were never received; state was reset)
    gap_s: float = 0.0         # Stream: seconds from the last frame before that loss to this frame
    dropped_before: int = 0    # Stream: frames the source dropped (drop_oldest) right before this one
    vlm_output: object = None  # Stream: what the vlm callable returned for this frame
    _pipeline: "Pipeline | None" = field(default=None, repr=False)

    @property
    def saccade_mask(self):
        """kinds == 1: NumPy, or a torch tensor on the result's device (return_tensors='pt')."""
        self._check_view("saccade_mask")
        if isinstance(self.kinds, np.ndarray) or hasattr(self.kinds, "detach"):
            return self.kinds == 1
        return np.asarray(to_host(self.kinds)) == 1  # a DeviceArray (copy=False on CUDA) has no ==

    def _check_view(self, what: str) -> None:
        """A copy=False result is a view of its pipeline's buffers: once a later frame has
        overwritten them, what is derived from it (masks, boxes, churn, overlays, pickles) is refused."""
        if self._view_of and self._pipeline is not None:
            _check_view_fresh(self._pipeline, self._view_of, f"FrameResult.{what}")

    def _host(self, name: str, what: str) -> np.ndarray:
        self._check_view(what)
        return np.asarray(to_host(getattr(self, name)))

    # Names of earlier releases, kept for one release: they warn.
    tokens = property(lambda self: _renamed(self, "tokens", "glimpses"))
    info = property(lambda self: _renamed(self, "info", "info_score"))
    salience = property(lambda self: _renamed(self, "salience", "salience_score"))
    query = property(lambda self: _renamed(self, "query", "query_score"))
    balanced = property(lambda self: _renamed(self, "balanced", "balanced_score"))

    @property
    def churn(self) -> float | None:
        """Share of this frame's saccades that do not follow a saccade of the previous frame along
        the motion vectors (None on a first frame). Derived from ``previous`` when asked for."""
        if not self.follows_a_frame:
            return None
        kinds, previous = self._host("kinds", "churn"), self._host("previous", "churn")
        sac = kinds == 1
        return float(np.mean(previous[sac] < 0)) if sac.any() else 0.0

    @property
    def boxes(self) -> np.ndarray:
        """[N, 4] float32 (x0, y0, x1, y1) in pixels: the region each token's glimpse covers (its
        centre ± glimpse_size · 2^level / 2), clipped to the frame; -1 for padding."""
        pos = self._host("positions", "boxes").astype(np.float32, copy=False)
        levels = self._host("levels", "boxes")
        P = self.glimpses.shape[-1]
        half = (float(P) * np.exp2(np.maximum(levels, 0)) / 2.0).astype(np.float32)
        w, h = self.frame_size
        out = np.stack([pos[:, 0] - half, pos[:, 1] - half, pos[:, 0] + half, pos[:, 1] + half], axis=1)
        out = np.clip(out, 0.0, np.asarray([w, h, w, h], np.float32))
        out[levels < 0] = -1.0
        return out

    def __repr__(self) -> str:
        try:
            self._check_view("__repr__")
        except ValueError:
            return f"FrameResult(frame_index={self.frame_index}, a copy=False view overwritten by a later frame)"
        kinds = np.asarray(to_host(self.kinds))
        times = ", ".join(f"{k} {v:.2f}" for k, v in self.timings.items())
        churn = "n/a" if self.churn is None else f"{self.churn:.3f}"
        return (f"FrameResult(frame_index={self.frame_index}, tokens={len(kinds)} (gestalt "
                f"{int(np.sum(kinds == 0))}, saccades {self.num_saccades}, padding {int(np.sum(kinds < 0))}), "
                f"glimpses={tuple(self.glimpses.shape)}, patch_grid={tuple(self.relevance.shape)}, "
                f"scene_cut={self.scene_cut}, churn={churn}, pts={self.pts}, timings_ms={{{times}}})")

    def gather_features(self, features, out=None, *, stream=None):
        """Running back: [N, C] features of the model's own encoder for each token, the mean of
        ``features`` ([C, h, w] float32 over the whole frame) over the 2^level x 2^level cells around
        the token. CPU: NumPy in and out; NaN or inf features are refused. CUDA: a CUDA tensor in, and
        ``out`` a CUDA float32 [N, C] (both C-contiguous, on the pipeline's device), written on
        ``stream`` and returned; without ``out`` a new DeviceArray (an allocation and a copy each call:
        pass ``out`` in a loop); device features are not scanned (that would be a wait for the host),
        so a NaN there reaches the tokens whose cells hold it."""
        if self._pipeline is None:
            raise ValueError("gather_features: this FrameResult was pickled or copied and holds no pipeline; "
                             "gather on the result Pipeline.process returned, before the next frame (or keep "
                             "arrcoc_rt.vlm.PackSnapshot(result): the pack's arrays, usable at any time)")
        return self._pipeline._gather(self, features, out, stream)

    def __getstate__(self) -> dict:
        # Host values only: the texture and the pipeline are live native objects of this process.
        self._check_view("__getstate__ (pickle, deepcopy)")
        state = {}
        for key, value in self.__dict__.items():
            if key in ("texture", "_pipeline", "_view_of"):
                value = 0 if key == "_view_of" else None
            elif key in ("_scene_cut", "_num_saccades") and isinstance(value, _DeviceScalar):
                value = getattr(self, key[1:])
            elif value is not None and hasattr(value, "__dlpack__") and not isinstance(value, np.ndarray) \
                    and not hasattr(value, "detach"):  # a copy=False DeviceArray (torch tensors pickle as they are)
                value = np.asarray(to_host(value))
            state[key] = value
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


class _DeviceScalar:
    """A flag of a ``copy=False`` CUDA result, left on the device until it is read: asking for it
    is asking for a host result (one wait), so a frame whose flags nobody reads waits for nothing."""

    __slots__ = ("array", "pipeline", "frame")

    def __init__(self, array, pipeline, frame: int):
        self.array, self.pipeline, self.frame = array, pipeline, frame

    def read(self, name: str):
        _check_view_fresh(self.pipeline, self.frame, f"FrameResult.{name}")
        return to_host(self.array)[0]


def _check_view_fresh(pipeline, frame: int, what: str) -> None:
    """ValueError once ``pipeline`` has processed a frame after its ``frame``-th (a copy=False view
    of that frame's buffers then shows the later one)."""
    if pipeline._frames != frame:
        raise ValueError(f"{what}: this copy=False result is a view of frame {frame - 1}, overwritten by a later "
                         f"frame; read it before the next process() or use copy=True")


def _host_scalar(name: str, kind):
    slot = "_" + name

    def get(self):
        v = self.__dict__[slot]
        if isinstance(v, _DeviceScalar):
            v = self.__dict__[slot] = kind(v.read(name))
        return v

    def set(self, v):
        self.__dict__[slot] = v

    return property(get, set)


# Set after @dataclass: its __init__ assigns through these properties.
FrameResult.scene_cut = _host_scalar("scene_cut", bool)
FrameResult.num_saccades = _host_scalar("num_saccades", int)


class Pipeline:
    """Where should a frozen VLM look? One object per stream, created for a maximum frame size.

    ``process(frame, query=None)`` runs, per frame: the 40-channel texture, the cluster cascade,
    the three scores, the fused balance / temporal blend / allocation, and the glimpse gather.

    Config (defaults; ranges): patch 16 (only 16: one patch = one level-4 texel); cascade:
    num_seeds 48 (1..256), iterations 3 (1..20), compactness 0.1 ((0, 10]), top_clusters 10
    (1..256), patches_per_cluster 50 (1..4096; top_clusters * patches_per_cluster <= 1024),
    motion_weight 1.0, query_weight 1.0 and contrast_weight 1.0 ([0, 100]); allocation: gestalt_x = gestalt_y = 16
    (1..64), gestalt_lod 64, saccades 273 (0..1024), total_budget 100000 (>= gestalt tokens * gestalt_lod, at most 10^7),
    steepness 2 ([-20, 20]; kappa = 4 sigmoid(steepness) + 0.5 = 4.02), offset 0 ([-0.3, 0.3]), strategy 'balanced' | 'random' | 'saliency' |
    'query' | 'sobel' (seed 000's saliency baseline: the patch's mean Sobel edge magnitude), seed 0, decay 0.8, motion_boost 0.8, motion_threshold 0.2, cut_motion 0.2, cut_share
    0.25, cut_correlation 0.5 (all [0, 1]; a scene cut is > cut_share of the pixels with motion >
    cut_motion and a level-4 luminance correlation with the previous frame, moved by the mean motion
    vector, below cut_correlation: a flash is no cut), gestalt_overlap True, glimpse_size 16 (1..64);
    hysteresis 0.15 ([0, 1]: content that held a saccade keeps it unless a newcomer's key is higher by
    this margin), lod_band 24 ([0, 336]: a held saccade keeps its level of detail while its budget stays
    within this of the level's interval); text_floor 256 (0: off, else a level of detail) and text_threshold 0.02
    ((0, 1]): the text guardrail -- a patch whose level-4 high_pass * (1 - entropy)^2 reaches the
    threshold (sharp edges between few grey levels: ink on a sign) joins the candidates and its saccade
    gets at least text_floor (not with strategy 'random'); weights: None (the untrained
    default), a path (.npz / .json) or a dict (see arrcoc_rt.weights); texture_planes 'pipeline'
    (level 0 of the texture holds only red, green, blue and motion, what the stages read: the CPU
    skips the other 11 level-0 planes' stores) or 'all' (every channel at level 0 too, for viewing
    them in ``FrameResult.texture``; the tokens are the same).
    """

    def __init__(self, width: int, height: int, *, device: str = "auto", dtype: str = "float16", weights=None,
                 num_threads: int = 0, patch: int = 16, strategy: str = "balanced", gestalt_lod: int = 64,
                 gestalt_overlap: bool = True, encoder=None, encoder_every: int = 1, pca_frames: int = 8,
                 pca=None, texture_planes: str = "pipeline", **config):
        if _int_choice("patch", patch, (16,)) is None:
            raise ValueError(f"patch: {patch!r} is not supported; expected 16 (one patch is one level-4 texel)")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
        lod = _int_choice("gestalt_lod", gestalt_lod, LODS)
        if lod is None:
            raise ValueError(f"gestalt_lod: {gestalt_lod!r} is not a level of detail; expected one of {LODS}")
        gestalt_lod = lod
        if not isinstance(gestalt_overlap, bool):
            raise TypeError(f"gestalt_overlap: expected a bool; got {type(gestalt_overlap).__name__}")
        unknown = set(config) - set(CASCADE_DEFAULTS) - set(ALLOCATOR_DEFAULTS)
        if unknown:
            raise TypeError(f"unknown option(s) {sorted(unknown)}; expected {sorted(set(CASCADE_DEFAULTS) | set(ALLOCATOR_DEFAULTS))}")
        cascade_cfg = {k: _check_knob(k, config[k]) for k in CASCADE_DEFAULTS if k in config}
        alloc_cfg = {k: _check(k, config.get(k, spec[0]), spec) for k, spec in ALLOCATOR_DEFAULTS.items()}
        gestalt = alloc_cfg["gestalt_x"] * alloc_cfg["gestalt_y"]
        if alloc_cfg["total_budget"] < gestalt * gestalt_lod:
            raise ValueError(f"total_budget: {alloc_cfg['total_budget']} cannot hold the {gestalt} gestalt tokens of "
                             f"{gestalt_lod} ({gestalt * gestalt_lod}); raise it or shrink the gestalt grid")
        if texture_planes not in TEXTURE_PLANES:
            raise ValueError(f"texture_planes: {texture_planes!r} is not supported; expected one of "
                             f"{', '.join(map(repr, TEXTURE_PLANES))}")
        self.texture_builder = TextureBuilder(width, height, device=device, dtype=dtype, num_threads=num_threads,
                                              planes=texture_planes)
        self.texture_builder._owner = "Pipeline"
        self.device = self.texture_builder.device
        self.cuda_device = self.texture_builder.cuda_device
        where = device_string(self.device, self.cuda_device)  # every stage on the builder's device
        self.width, self.height = self.texture_builder.max_width, self.texture_builder.max_height
        self.cascade = ClusterCascade(width, height, device=where, num_threads=num_threads, **cascade_cfg)
        slots = self.cascade.config["top_clusters"] * self.cascade.config["patches_per_cluster"]
        if slots > 1024:
            raise ValueError(f"top_clusters * patches_per_cluster = {slots} candidates; expected at most 1024")
        self.config = dict(self.cascade.config, **alloc_cfg, strategy=strategy, gestalt_lod=gestalt_lod,
                           gestalt_overlap=gestalt_overlap, patch=16)
        self._allocator = _native.TokenAllocator(dict(
            # the cascade's candidates plus held saccades (hysteresis), within the fused step's 1024
            alloc_cfg, max_width=self.width, max_height=self.height,
            max_candidates=min(1024, slots + alloc_cfg["saccades"]), gestalt_lod=gestalt_lod,
            strategy=STRATEGIES.index(strategy), gestalt_overlap=gestalt_overlap, device=self.device,
            cuda_device=self.texture_builder.cuda_device, num_threads=int(num_threads)))
        self._closed = False
        self.set_weights(weights)
        self._embedding_key, self._embedding, self._embedding_set = None, None, None
        self._frames = 0
        self._history = False  # a previous frame exists (for churn)
        self._gathers = []  # (runs so far, keepalives) of gathers that may still be queued
        self._frame_lock = threading.RLock()  # process(): one frame's stages at a time
        self._finalizer = weakref.finalize(self, release_after_work, self._allocator.synchronize, self._gathers)
        # semantics: encoder features every `encoder_every` frames (carried along the motion vectors
        # in between), PCA-16 fitted over the first `pca_frames` encoded frames (or loaded)
        from .encoders import PCA16, BuiltinEncoder, make_encoder

        if isinstance(encoder_every, bool) or not isinstance(encoder_every, int) or not 1 <= encoder_every <= 1000:
            raise ValueError(f"encoder_every: {encoder_every!r} is out of range; expected an int 1..1000")
        if isinstance(pca_frames, bool) or not isinstance(pca_frames, int) or not 0 <= pca_frames <= 10000:
            raise ValueError(f"pca_frames: {pca_frames!r} is out of range; expected an int 0..10000")
        self.encoder = make_encoder(encoder, where)
        self.encoder_every = encoder_every
        self._builtin = isinstance(self.encoder, BuiltinEncoder)
        self._sem = (_native.SemanticEncoder(self.width, self.height, self.device, self.texture_builder.cuda_device,
                                             int(num_threads), int(self.encoder.dims))
                     if self.encoder is not None else None)
        self._features = None  # external (e.g. CLIP) features on the patch grid, host
        if pca is not None and self.encoder is None:
            raise ValueError("pca: a projection needs an encoder (encoder='builtin')")
        self.pca = PCA16.load(pca) if isinstance(pca, (str, Path)) else (pca if pca is not None else
                                                                          (PCA16(self.encoder.dims) if self.encoder else None))
        self._pca_frames = 0 if isinstance(pca, (str, Path)) or pca is not None else pca_frames
        if self.pca is not None and self.encoder is not None and int(self.pca.dims) != int(self.encoder.dims):
            # the semantic kernels read mean[dims] and components[16, dims] of the encoder's dims
            raise ValueError(f"pca: a projection of {self.pca.dims}-dim features; the {self.encoder.name} encoder's "
                             f"features have {self.encoder.dims} dimensions")
        self._since_encode = 0
        self._query_key = None
        self._query_value = (None, None)  # (kind, value): ('map' | 'vector', array)
        self._query_held = None  # the cached query's value, held so its id stays its own
        self._query_contents = None  # a copy of a cached vector's or exemplar's values (see _resolve_query)

    def __repr__(self) -> str:
        c = self.config
        return (f"Pipeline({self.width}x{self.height}, device={device_string(self.device, self.cuda_device)!r}, "
                f"dtype={self.texture_builder.dtype!r}, strategy={c['strategy']!r}, gestalt={c['gestalt_x']}x"
                f"{c['gestalt_y']}, saccades={c['saccades']}, total_budget={c['total_budget']}, "
                f"encoder={type(self.encoder).__name__ if self.encoder is not None else None})")

    # ------------------------------------------------------------------ configuration
    def set_weights(self, weights=None) -> None:
        """Balancer parameters: None (untrained default), a .npz/.json path, or a dict."""
        if weights is None:
            w = default_weights()
        elif isinstance(weights, (str, Path)):
            w = load_weights(weights)
        else:
            w = validate(weights)
        self._check_open()
        self._allocator.set_weights(w)
        self.weights = w

    def synchronize(self) -> None:
        """Wait until the device has finished this pipeline's last frame and gathers (CUDA; nothing
        to wait for on the CPU); the memory of the frames and features they read is then let go."""
        if self._closed:
            return
        self._allocator.synchronize()
        self.texture_builder.synchronize()
        self._gathers.clear()

    def close(self) -> None:
        """Frees the pipeline's memory now, host and device (a result holds its pipeline, so without
        close() that memory lives as long as any result), after its queued work. Its results keep
        their arrays; their texture views and gather_features are refused, as is process(). (The
        views of copy=False results keep what they view until they go.) A context manager closes it
        too."""
        with self._frame_lock:
            if self._closed:
                return
            self.synchronize()
            self._closed = True
            self._finalizer()  # (holds the native allocator until it has run)
            self.texture_builder.close()
            self.cascade.close()
            self._allocator = self._sem = None

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("this Pipeline is closed; create a new one")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _release_finished_gathers(self) -> None:
        """Let go of the inputs of the gathers that are done: those made before the last run, once
        the device says that run has finished (a non-blocking event query, made only while gathers
        are held; each run waits for the gathers before it)."""
        if self._gathers and self.texture_builder._native.query():
            last_run = self._frames - 1
            self._gathers[:] = [g for g in self._gathers if g[0] > last_run]

    def reset(self) -> None:
        """Forget all temporal state (motion history, carried relevance, held saccades)."""
        self._check_open()
        self.texture_builder.reset()
        self._allocator.reset()
        self._since_encode = 0
        self._history = False

    def _resolve_query(self, q: Query | None):
        """('map', array) | ('vector', [C]) | (None, None), cached while the same query is given."""
        if q is None:
            if self._query_key is not None and self._sem is not None:
                self._sem.set_layout([])  # the next exemplar query sets its own
            self._query_key, self._query_value, self._query_held = None, (None, None), None
            self._query_contents = None
            return None, None
        # The same text or path, or the same array object (held below, so its id is not reused) with
        # the same values: a vector or exemplar changed in place is a new query. (A map is read anew
        # every frame anyway.)
        key = (q.kind, q.value if isinstance(q.value, (str, Path)) else id(q.value))
        if key == self._query_key and (self._query_contents is None
                                       or np.array_equal(np.asarray(q.value), self._query_contents)):
            return self._query_value
        kind, value = None, None
        layout = []
        if q.kind == "image":
            enc = self._need_encoder("an exemplar image")
            kind, value = "vector", enc.encode_exemplar(q.value)
            if hasattr(enc, "exemplar_layout"):
                layout = enc.exemplar_layout(q.value)
        elif q.kind == "text":
            if self.encoder is None or not hasattr(self.encoder, "encode_text"):
                raise TypeError("query_text: text queries need a text encoder; create the pipeline with "
                                "encoder='clip:PATH' or 'siglip:PATH' (or pass query_map= or query_image=)")
            kind, value = "vector", np.asarray(self.encoder.encode_text(q.value), np.float32)
        else:
            a = np.asarray(q.value)
            if q.kind == "vector":
                enc = self._need_encoder("a query vector")
                if a.dtype.kind not in "fiu":
                    raise TypeError(f"query: vector dtype {a.dtype} is not numeric")
                a = a[None, :]
                if a.shape[1] != enc.dims:
                    raise ValueError(f"query: vector of length {a.shape[1]}; the {enc.name} encoder's features have "
                                     f"{enc.dims} dimensions")
                with np.errstate(over="ignore"):  # float64 values beyond float32 become inf: refused
                    a = a.astype(np.float32)
                if not np.all(np.isfinite(a)):
                    raise ValueError("query: the vector contains NaN or inf (as float32)")
                kind, value = "vector", a  # any length: the similarity kernel rescales where |q|^2 would overflow
            else:
                kind, value = "map", q.value
        if self._sem is not None:
            self._sem.set_layout(layout)
        self._query_key, self._query_value, self._query_held = key, (kind, value), q.value
        self._query_contents = (np.array(q.value, copy=True)
                                if q.kind in ("vector", "image") and not isinstance(q.value, (str, Path)) else None)
        return kind, value

    def _external_features(self, tex, carry: bool) -> np.ndarray:
        """An external encoder's features on the patch grid: encoded from the frame's colour
        (channels 0-2, so any input format or device works), resampled bilinearly from the model's
        grid; on carry frames the previous ones moved along the motion vectors."""
        from .reference import sample_bilinear, warp_relevance
        from .texture import to_host

        w4, h4 = tex.level_sizes[4]
        if carry and self._features is not None and self._features.shape[1:] == (h4, w4):
            mvx = to_host(tex.channel(35, 4)).astype(np.float64)
            mvy = to_host(tex.channel(36, 4)).astype(np.float64)
            self._features = np.stack([warp_relevance(c, mvx, mvy) for c in self._features]).astype(np.float32)
            return self._features
        rgb = np.stack([to_host(tex.channel(c, 0)).astype(np.float32) for c in range(3)], axis=-1)
        f = np.asarray(self.encoder.encode_image(np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)), np.float64)
        g_h, g_w = f.shape[1:]
        xs = (np.arange(w4) + 0.5) * 16.0 / tex.width * g_w - 0.5
        ys = (np.arange(h4) + 0.5) * 16.0 / tex.height * g_h - 0.5
        self._features = np.stack([sample_bilinear(c, xs, ys) for c in f]).astype(np.float32)
        return self._features

    def _need_encoder(self, what: str):
        if self.encoder is None:
            raise TypeError(f"query: {what} needs a semantic encoder; create the pipeline with encoder='builtin' "
                            "(or pass a similarity map)")
        return self.encoder

    # ------------------------------------------------------------------ per frame
    def _query_map(self, query, width: int, height: int):
        """A similarity map for channel 33 on the patch grid of a width x height frame, from a
        [h4, w4] or [H, W] array."""
        if query is None:
            return None
        q = np.asarray(query)
        if q.dtype.kind not in "fiu":
            raise TypeError(f"query: dtype {q.dtype} is not numeric; expected a float similarity map")
        q = q.astype(np.float32)
        from .reference import level_sizes

        w4, h4 = level_sizes(width, height)[4]  # the patch grid, partial patches included
        if q.ndim != 2:
            raise ValueError(f"query: expected a 2-D similarity map; got shape {q.shape}")
        if not np.all(np.isfinite(q)):
            raise ValueError("query: the similarity map contains NaN or inf")
        if q.size and np.abs(q).max() > 1e4:  # the texture's own check would name set_patch_channel
            raise ValueError(f"query: the similarity map's value {float(np.abs(q).max()):g} is out of range; expected "
                             "at most 10000 in magnitude (a similarity, typically 0..1)")
        if q.shape == (h4, w4):
            return np.ascontiguousarray(q)
        if q.shape == (height, width):  # the mean over each 16x16 patch of the pixels it holds (fewer at the edges)
            pad = np.zeros((16 * h4, 16 * w4), np.float64)
            pad[:height, :width] = q
            rows = np.minimum(16, height - 16 * np.arange(h4))  # pixels each patch holds, down and across
            cols = np.minimum(16, width - 16 * np.arange(w4))
            sums = pad.reshape(h4, 16, w4, 16).sum(axis=(1, 3))
            return np.ascontiguousarray(sums / np.outer(rows, cols), np.float32)
        raise ValueError(f"query: similarity map of shape {q.shape} fits neither the frame ({height}, "
                         f"{width}) nor its patch grid ({h4}, {w4})")

    def _query_embedding(self, vectors):
        """The context network's query embedding: the mean query vector projected like texture
        channels 17..32 (components . (v - mean)), or None without a query vector or a PCA yet.
        Cached per query object, so the allocator is told only when it changes."""
        if vectors is None or self._sem is None or self.pca.components is None:
            return None
        key = (vectors, self.pca.components, self.pca.mean)  # the objects themselves: kept alive, compared by identity
        if self._embedding_key is None or any(a is not b for a, b in zip(key, self._embedding_key)):
            v = np.asarray(vectors, np.float64).reshape(-1, self.pca.components.shape[1])
            # Only directions count in the similarity (cosine): so here too, at any length (a vector
            # of 1e-30s has one; divided by its largest magnitude first, its norm neither under- nor overflows).
            v = v / np.maximum(np.abs(v).max(axis=1, keepdims=True), np.finfo(np.float64).tiny)
            v = (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).mean(axis=0)
            self._embedding = (self.pca.components.astype(np.float64) @ (v - self.pca.mean)).astype(np.float32)
            self._embedding_key = key
        return self._embedding

    def process(self, frame, query: Query | None = None, *, query_text: str | None = None, query_image=None,
                query_vector=None, query_map=None, pixel_format: str | None = None, layout: str | None = None,
                stream=None, copy: bool = True, return_tensors: str = "np") -> FrameResult:
        """One frame -> FrameResult. At most one query (none: neutral): ``query_image`` (an exemplar:
        a path or H x W x 3 uint8; needs an encoder), ``query_text`` (a CLIP/SigLIP encoder),
        ``query_vector`` (in the encoder's space), ``query_map`` (similarity over the frame [H, W] or
        its patch grid), or ``query=arrcoc_rt.Query...``. Nothing is guessed from a file suffix.
        ``copy=False``: the token arrays are zero-copy views (read-only NumPy on the CPU, DLPack
        ``DeviceArray`` on CUDA, e.g. ``torch.from_dlpack``), valid until the next ``process``; on CUDA
        nothing then waits for the device (``scene_cut`` and ``num_saccades`` are read when first used).
        With copies, CUDA waits once per frame. ``stream`` (CUDA): the frame's work is queued there
        (None: the legacy default stream); a CPU pipeline checks the handle and runs on the host, so
        the same call works on either backend."""
        with self._frame_lock:  # a frame at a time: two threads' stages must not interleave
            self._check_open()
            return self._process(frame, query, query_text=query_text, query_image=query_image,
                                 query_vector=query_vector, query_map=query_map, pixel_format=pixel_format,
                                 layout=layout, stream=stream, copy=copy, return_tensors=return_tensors)

    def _process(self, frame, query, *, query_text, query_image, query_vector, query_map, pixel_format, layout,
                 stream, copy, return_tensors) -> FrameResult:
        t = {}
        self._release_finished_gathers()
        kind, qvalue = self._resolve_query(make_query(query, query_text=query_text, query_image=query_image,
                                                      query_vector=query_vector, query_map=query_map))
        t0 = time.perf_counter()
        if return_tensors not in ("np", "pt"):
            raise ValueError(f"return_tensors: {return_tensors!r} is not supported; expected 'np' or 'pt'")
        # The frame and a query map are checked before anything is built: a refused frame or map
        # must not move the pipeline on (the texture's motion history, the frame count).
        spec = self.texture_builder._checked_spec(frame, pixel_format, layout, stream, stream_handle(stream))
        qmap = self._query_map(qvalue, spec.width, spec.height) if kind == "map" else None
        tex = self.texture_builder.build(spec, stream=stream)
        t_texture = time.perf_counter()
        if self._sem is not None:
            carry = tex.motion_valid and 0 < self._since_encode < self.encoder_every
            if self._builtin:
                self._sem.encode(self.texture_builder._native, carry, stream_handle(stream))
                features = self._sem.features() if (self._pca_frames > 0 and not carry) else None
            else:
                features = self._external_features(tex, carry)
                self._sem.set_features(self.texture_builder._native, features, stream_handle(stream))
            self._since_encode = 1 if not carry else self._since_encode + 1
            if self._since_encode >= self.encoder_every:
                self._since_encode = 0
            if self._pca_frames > 0 and not carry:
                self.pca.partial_fit(features)
                self._pca_frames -= 1
            self._sem.write(self.texture_builder._native, qvalue if kind == "vector" else None,
                            self.pca.mean, self.pca.components, stream_handle(stream))
        elif kind == "vector":
            raise TypeError("query: a query vector needs an encoder")
        if qmap is not None:
            self.texture_builder._native.set_patch_channel(33, qmap)
        has_query = qmap is not None or kind == "vector"
        embedding = self._query_embedding(qvalue if kind == "vector" else None)
        if embedding is not self._embedding_set:
            self._allocator.set_query_embedding(embedding)
            self._embedding_set = embedding
        t1 = time.perf_counter()
        self.cascade._native.run(self.texture_builder._native, stream_handle(stream))
        t2 = time.perf_counter()
        r = self._allocator.run(self.texture_builder._native, self.cascade._native, has_query,
                                stream_handle(stream), bool(copy))
        # The texture is in use until the allocator is done with it: the next frame's build (on any
        # stream), exports and synchronize() wait for that.
        self.texture_builder._native.record_use(stream_handle(stream))
        if copy:  # the host waited for this run, which was ordered after every earlier gather
            self._gathers.clear()
        t3 = time.perf_counter()
        t.update(texture=(t_texture - t0) * 1e3, encoder=(t1 - t_texture) * 1e3, cascade=(t2 - t1) * 1e3,
                 allocate_and_gather=(t3 - t2) * 1e3, total=(t3 - t0) * 1e3)
        self._frames += 1
        if isinstance(r["scene_cut"], np.ndarray):
            scene_cut, num_saccades = bool(r["scene_cut"][0]), int(r["num_saccades"][0])
        else:  # copy=False on CUDA: no wait for the device unless they are read
            scene_cut = _DeviceScalar(r["scene_cut"], self, self._frames)
            num_saccades = _DeviceScalar(r["num_saccades"], self, self._frames)
        result = FrameResult(
            frame_index=tex.frame_index, glimpses=r["glimpses"], positions=r["positions"], levels=r["levels"],
            budgets=r["budgets"], kinds=r["kinds"], scores=r["scores"], patches=r["patches"],
            relevance=r["relevance"], homunculus=r["homunculus"], scene_cut=scene_cut,
            num_saccades=num_saccades, candidates=r["candidates"], info_score=r["info"],
            salience_score=r["salience"], query_score=r["query"], balanced_score=r["balanced"], timings=t,
            previous=r["previous"], reuse=r["reuse"], reuse_drift=r["reuse_drift"], context_weights=r["context_weights"], follows_a_frame=self._history, frame_size=(tex.width, tex.height),
            motion_valid=tex.motion_valid, texture=tex, _pipeline=self, _view_of=0 if copy else self._frames)
        self._history = True
        if return_tensors == "pt" and not _as_torch(result):
            result._view_of = 0  # its tensors are copies: no later frame overwrites them
        return result

    def _gather(self, result: FrameResult, features, out, stream=None):
        with self._frame_lock:  # not while another thread's close() frees what it reads
            return self._gather_open(result, features, out, stream)

    def _gather_open(self, result: FrameResult, features, out, stream=None):
        def describe_host(a):
            return (f"{a.dtype} {a.shape}" + ("" if a.flags.c_contiguous else ", not C-contiguous")
                    + ("" if a.flags.writeable else ", read-only")) if isinstance(a, np.ndarray) else type(a).__name__

        self._check_open()
        if result.texture is not None:
            result.texture._check_fresh()
        n = int(result.kinds.shape[0])  # a NumPy array, a DeviceArray (copy=False) or a tensor
        if self.device == "cpu":
            f = np.asarray(features)
            if f.dtype != np.float32:
                raise TypeError(f"features: dtype {f.dtype} is not supported; expected float32")
            if f.ndim != 3:
                raise ValueError(f"features: expected shape [C, h, w]; got {f.shape}")
            f = np.ascontiguousarray(f)
            if not np.all(np.isfinite(f)):
                raise ValueError("features: contains NaN or inf")
            if out is None:
                res = np.empty((n, f.shape[0]), np.float32)
            else:  # the caller's array, written in place (it was ignored: a new array came back)
                res = out
                if not isinstance(res, np.ndarray) or res.dtype != np.float32 or res.shape != (n, f.shape[0]) \
                        or not res.flags.c_contiguous or not res.flags.writeable:
                    raise ValueError(f"out: expected a writable C-contiguous float32 NumPy array of shape "
                                     f"[{n}, {f.shape[0]}]; got {describe_host(res)}")
            self._allocator.gather(f.__array_interface__["data"][0], f.shape[0], f.shape[1], f.shape[2],
                                   res.__array_interface__["data"][0], 0)
            return res
        handle = device_stream_handle(stream, self.cuda_device, "Pipeline")
        d = describe_array(features, "features", handle, dtype="float32")
        if d.device != 1:
            raise ValueError(f"features: this pipeline runs on cuda:{self.cuda_device}; pass the features as a CUDA "
                             "tensor (float32 [C, h, w] on that device), e.g. arrcoc_rt.cuda.to_device(array)")
        if out is None:  # a new device array (a copy of zeros, complete now); out= reuses the caller's memory
            from .cuda import to_device

            out = to_device(np.zeros((n, d.shape[0] if len(d.shape) == 3 else 0), np.float32), self.cuda_device,
                            stream=stream)
        o = describe_array(out, "out", handle, dtype="float32")
        if o.read_only:  # e.g. a copy=False result of this pipeline (its own token buffers)
            raise ValueError("out: the array is read-only (its producer says so); pass a writable float32 CUDA "
                             "tensor, e.g. torch.empty((N, C), device='cuda')")
        for name, a in (("features", d), ("out", o)):
            if a.device != 1:
                raise ValueError(f"{name}: this pipeline runs on cuda:{self.cuda_device}; pass a CUDA tensor")
            if a.device_id != self.cuda_device:
                raise ValueError(f"{name}: it is on cuda:{a.device_id} but this pipeline runs on cuda:{self.cuda_device}")
        if len(d.shape) != 3 or tuple(o.shape) != (n, d.shape[0]):
            raise ValueError(f"features/out: expected [C, h, w] and [{n}, C]; got {d.shape} and {o.shape}")
        for name, a in (("features", d), ("out", o)):
            packed = [4 * int(np.prod(a.shape[i + 1:], dtype=np.int64)) for i in range(len(a.shape))]
            if any(s != p for s, p, k in zip(a.strides, packed, a.shape) if k > 1):
                raise ValueError(f"{name}: strides {a.strides} (bytes) are not C-contiguous {tuple(packed)}; "
                                 "pass a contiguous tensor (tensor.contiguous())")
        self._allocator.gather(d.ptr, d.shape[0], d.shape[1], d.shape[2], o.ptr, handle)
        self._gathers.append((self._frames, d.keepalive, o.keepalive))  # alive until the gather has run
        return out
