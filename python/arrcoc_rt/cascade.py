"""Stage 2 from Python: the cluster-first cascade (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _native
from .runtime import device_string, resolve_device
from .texture import Texture, _positive_int
from .frames import device_stream_handle, stream_handle

# name: (default, low, high, kind) — documented ranges, checked here with clear messages
CASCADE_DEFAULTS = {
    "num_seeds": (48, 1, 256, int),
    "iterations": (3, 1, 20, int),
    "compactness": (0.1, 0.0, 10.0, float),  # (0, 10]
    "top_clusters": (10, 1, 256, int),
    "patches_per_cluster": (50, 1, 4096, int),
    "motion_weight": (1.0, 0.0, 100.0, float),
    "query_weight": (1.0, 0.0, 100.0, float),
    "contrast_weight": (1.0, 0.0, 100.0, float),
}


def _check_knob(name, value):
    default, lo, hi, kind = CASCADE_DEFAULTS[name]
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number; got {type(value).__name__}")
    if kind is int and (not math.isfinite(value) or int(value) != value):  # int(inf): OverflowError
        raise TypeError(f"{name}: expected an int; got {value!r}")
    v = kind(value)
    bad = not math.isfinite(v) or v < lo or v > hi or (name == "compactness" and v <= 0)
    if bad:
        rng = "(0, 10]" if name == "compactness" else f"{lo}..{hi}" if kind is int else f"[{lo}, {hi}]"
        raise ValueError(f"{name}: {value!r} is out of range; expected {rng}")
    return v


@dataclass
class CascadeResult:
    """Host copies of one cascade run."""

    labels: np.ndarray          # [h2, w2] int32 cluster id per level-2 texel (4x4 pixels)
    cluster_scores: np.ndarray  # [num_clusters] float32, -1 for empty clusters
    cluster_contrast: np.ndarray  # [num_clusters] float32 contrast in [0, 1]: colour or texture rarity
    patch_contrast: np.ndarray  # [h4, w4] float32 contrast of each patch's cluster
    kept_clusters: np.ndarray   # [top_clusters] int32, best first, -1 padding
    candidates: np.ndarray      # [top_clusters, patches_per_cluster] int32 patch ids, -1 padding
    grid: tuple                 # seed grid (gx, gy)
    patch_grid: tuple           # (w4, h4): patch id = row * w4 + column

    def candidate_patches(self) -> np.ndarray:
        """All candidate patch ids, best cluster first (padding removed)."""
        c = self.candidates.ravel()
        return c[c >= 0]


class ClusterCascade:
    """Clusters a texture at level 2 (SLIC-like), writes channel 13, keeps the best clusters
    and takes their best patches as candidates. Created once for a maximum frame size.

    Knobs (defaults, ranges): num_seeds 48 (1..256), iterations 3 (1..20), compactness 0.1
    ((0, 10]: colour distance worth one seed spacing), top_clusters 10 (1..256),
    patches_per_cluster 50 (1..4096), motion_weight 1.0, query_weight 1.0 and contrast_weight 1.0
    ([0, 100]; contrast = how rare a cluster's colour or its texture is in the frame, see cascade_math.h).
    """

    def __init__(self, width: int, height: int, *, device: str = "auto", num_threads: int = 0, **knobs):
        unknown = set(knobs) - set(CASCADE_DEFAULTS)
        if unknown:
            raise TypeError(f"unknown cascade option(s) {sorted(unknown)}; expected {sorted(CASCADE_DEFAULTS)}")
        cfg = {k: _check_knob(k, knobs.get(k, d[0])) for k, d in CASCADE_DEFAULTS.items()}
        self.max_width = _positive_int(width, "width")
        self.max_height = _positive_int(height, "height")
        self.device, self.cuda_device = resolve_device(device)
        self.config = cfg
        self._native = _native.ClusterCascade(dict(cfg, max_width=self.max_width, max_height=self.max_height,
                                                   device=self.device, cuda_device=self.cuda_device,
                                                   num_threads=int(num_threads)))

    def close(self) -> None:
        """Frees this cascade's memory now, as when it is collected (CUDA's free waits for the device)."""
        self._native = None

    def run(self, texture: Texture, *, stream=None) -> CascadeResult:
        """Runs on ``texture`` (the newest one of its builder, on the same device)."""
        if not isinstance(texture, Texture):
            raise TypeError(f"texture: expected an arrcoc_rt.Texture; got {type(texture).__name__}")
        texture._check_fresh()
        here = device_string(self.device, self.cuda_device)
        there = device_string(texture.device, texture._builder.cuda_device)
        if there != here:
            raise ValueError(f"texture: it is on {there!r} but this cascade runs on {here!r}")
        if texture.width > self.max_width or texture.height > self.max_height:
            raise ValueError(f"texture: size {texture.width}x{texture.height} exceeds this cascade's maximum "
                             f"{self.max_width}x{self.max_height}")
        handle = (device_stream_handle(stream, self.cuda_device, "ClusterCascade") if self.device == "cuda"
                  else stream_handle(stream))
        if self._native is None:
            raise ValueError("this ClusterCascade is closed; create a new one")
        r = self._native.run(texture._builder._native, handle)
        texture._builder._native.record_use(handle)  # channel 13 is written there
        (w2, h2), (w4, h4), n = r["level2"], r["patch_grid"], r["num_clusters"]
        k, p = self.config["top_clusters"], self.config["patches_per_cluster"]
        fetch = self._native.fetch
        return CascadeResult(
            labels=fetch(r["labels"], w2 * h2, "int32").reshape(h2, w2),
            cluster_scores=fetch(r["cluster_scores"], n, "float32"),
            cluster_contrast=fetch(r["cluster_contrast"], n, "float32"),
            patch_contrast=fetch(r["patch_contrast"], w4 * h4, "float32").reshape(h4, w4),
            kept_clusters=fetch(r["kept_clusters"], k, "int32"),
            candidates=fetch(r["candidate_patch"], k * p, "int32").reshape(k, p),
            grid=tuple(r["grid"]),
            patch_grid=(w4, h4),
        )
