"""The ways of choosing the visual tokens a frozen VLM sees, as the experiment compares them.

Token packs (arrcoc_rt's ``Pipeline``; ``FrameResult`` -> ``adapter.prepare``):

* ``base``: the k x k gestalt grid alone (k = 16, the seeds' 256, or the model's grid side when
  that is smaller), no saccades;
* ``random`` / ``saliency`` / ``query`` / ``balanced``: the gestalt grid plus S saccades chosen by the
  pipeline's strategy of that name (``query`` and ``balanced`` with the question as a text query
  when a CLIP/SigLIP encoder is given). In the equal-token study a pack of N tokens is k x k gestalt
  tokens, k = floor(sqrt(N / 2)) (so N = 529 is the seeds' 256 + 273), plus N - k^2 saccades.

The question-set budget (``--budget fast|balanced|accurate``): a ``balanced`` pack of the gestalt
grid plus S saccades whose pipeline's ``total_budget`` is the question's tier's under the preset
(``arrcoc_rt.vlm.tiers.tier_budget``, as ``Stream.ask(budget=preset)`` sets it), so a simple
question's saccades get lower levels of detail than a complex one's (and fewer of them when even
the lowest no longer fit).

Selections on the model's own patch grid (``adapter.vision_features`` -> ``adapter.prepare_features``),
each giving exactly N tokens with their (x, y) positions in grid cells:

* ``all``: every cell, in raster order (no reduction);
* ``uniform``: average pooling of the grid to r x c = N cells (``torch.nn.functional.adaptive_avg_pool2d``;
  r x c is the factorisation of N whose shape is closest to the grid's);
* ``visionzip``: VisionZip's dominant + contextual tokens without attention maps: the
  round(N * 54 / 64) cells with the largest feature norm (VisionZip's 54 of 64), in raster order,
  then the rest merged into N - dominant contextual tokens: targets spaced evenly (in raster order)
  over the remaining cells, every other remaining cell joins its most similar target (cosine), each
  contextual token the mean of its group;
* ``evs``: EVS-style temporal pruning on video questions: the N cells whose features changed most
  (cosine distance) since the previous frame, in raster order at their original positions; on a
  first frame (nothing to compare with) it is ``uniform``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PACK_METHODS = ("base", "random", "saliency", "query", "balanced")
FEATURE_METHODS = ("all", "uniform", "visionzip", "evs")
EQUAL_METHODS = ("all", "uniform", "random", "saliency", "query", "balanced", "visionzip", "evs")
AUGMENT_ARMS = ("random", "saliency", "query", "balanced")
VISIONZIP_DOMINANT = 54 / 64  # VisionZip's split at 64 tokens (54 dominant + 10 contextual)


@dataclass(frozen=True)
class Method:
    """One row of the experiment. ``study``: "augmentation", "equal" or "budget"; ``name``: one of
    PACK_METHODS or FEATURE_METHODS; ``tokens``: N in the equal-token study (None: all the pack
    holds); ``gestalt``: k of the k x k gestalt grid; ``overlap``: saccades may sit on a patch that
    holds a gestalt centre (the pipeline's ``gestalt_overlap``); ``preset``: the budget study's
    preset (one of arrcoc_rt.vlm.tiers.PRESETS)."""

    study: str
    name: str
    tokens: int | None = None
    saccades: int = 0
    gestalt: int = 16
    overlap: bool = True
    preset: str | None = None

    @property
    def is_pack(self) -> bool:
        return self.name in PACK_METHODS

    @property
    def video_only(self) -> bool:
        return self.name == "evs"

    @property
    def key(self) -> str:
        if self.study == "budget":
            return f"budget/{self.preset}/S{self.saccades}/{'overlap' if self.overlap else 'no-overlap'}"
        if self.study == "augmentation":
            if self.name == "base":
                return "augmentation/base"
            return f"augmentation/{self.name}/S{self.saccades}/{'overlap' if self.overlap else 'no-overlap'}"
        return "equal/all" if self.name == "all" else f"equal/{self.name}/N{self.tokens}"


def pack_split(n: int, grid_side: int) -> tuple[int, int]:
    """(k, saccades) of an N-token pack: k = floor(sqrt(N / 2)), at most the model grid's side and
    at least 1; the rest are saccades."""
    k = max(1, min(int(math.isqrt(n // 2)), int(grid_side)))
    return k, max(0, n - k * k)


def build_methods(studies, *, grid: tuple[int, int], saccades=(100, 200, 273, 400), overlaps=(False, True),
                  tokens=(64, 144, 256, 529), equal_methods=EQUAL_METHODS, has_query: bool = True,
                  has_video: bool = True, budgets=("balanced",), budget_saccades: int = 273,
                  budget_overlap: bool = False) -> tuple[list, list]:
    """(methods, notes): the rows to run for ``studies`` ("augmentation", "equal", "budget") on a
    model whose patch grid is ``grid`` (h, w), and why anything asked for was left out. The budget
    study has one row per preset of ``budgets``, each a balanced pack of ``budget_saccades``."""
    h, w = grid
    side, cells = min(h, w), h * w
    methods, notes = [], []
    if "augmentation" in studies:
        k = min(16, side)
        if k < 16:
            notes.append(f"augmentation: the model's patch grid is {h}x{w}, smaller than 16x16: the base is a "
                         f"{k}x{k} gestalt grid ({k * k} tokens)")
        methods.append(Method("augmentation", "base", gestalt=k))
        arms = [a for a in AUGMENT_ARMS if has_query or a != "query"]
        if not has_query:
            notes.append("augmentation: no text encoder (--encoder clip:PATH or siglip:PATH): the 'query' arm is "
                         "left out and 'balanced' runs without the question as a query")
        for s in saccades:
            for ov in overlaps:
                methods += [Method("augmentation", a, saccades=int(s), gestalt=k, overlap=bool(ov)) for a in arms]
    if "budget" in studies:
        from ..vlm.tiers import PRESETS

        bad = [b for b in budgets if b not in PRESETS]
        if bad:
            raise ValueError(f"budget: {bad[0]!r} is not a preset; expected some of {', '.join(PRESETS)}")
        k = min(16, side)
        if not has_query and "augmentation" not in studies:
            notes.append("budget: no text encoder: 'balanced' runs without the question as a query")
        methods += [Method("budget", "balanced", saccades=int(budget_saccades), gestalt=k, overlap=bool(budget_overlap),
                           preset=b) for b in budgets]
    if "equal" in studies:
        names = [m for m in equal_methods if m in EQUAL_METHODS]
        if "query" in names and not has_query:
            names.remove("query")
            notes.append("equal: no text encoder: the 'query' method is left out and 'balanced' runs without a query")
        if "evs" in names and not has_video:
            names.remove("evs")
            notes.append("equal: no video questions: 'evs' is left out")
        if "all" in names:
            methods.append(Method("equal", "all", tokens=cells))
        for n in tokens:
            if n >= cells:
                notes.append(f"equal: N={n} is not below the model's {cells} grid cells: left out ('all' is that point)")
                continue
            for name in names:
                if name == "all":
                    continue
                if name == "uniform":
                    try:
                        grid_shape(int(n), h, w)
                    except ValueError as e:  # found now, not after the other methods' hours of work
                        notes.append(f"equal: uniform at N={n} is left out: {e}")
                        continue
                if name in PACK_METHODS:
                    k, s = pack_split(int(n), side)
                    methods.append(Method("equal", name, tokens=int(n), saccades=s, gestalt=k, overlap=True))
                else:
                    methods.append(Method("equal", name, tokens=int(n)))
    return methods, notes


# ----------------------------------------------------------------------------- selections on the grid


def _torch():
    import torch

    return torch


def _as_grid(features):
    torch = _torch()
    f = features if isinstance(features, torch.Tensor) else torch.as_tensor(np.asarray(features))
    if f.ndim != 3:
        raise ValueError(f"features: expected [C, h, w]; got shape {tuple(f.shape)}")
    return f.float()


def cell_positions(h: int, w: int) -> np.ndarray:
    """[h * w, 2] (x, y) centres of the grid's cells in cell units, raster order."""
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1).astype(np.float64)


def grid_shape(n: int, h: int, w: int, *, within: bool = True) -> tuple[int, int]:
    """(r, c) with r * c = n, r <= h, c <= w, whose aspect r / c is closest to h / w (ValueError
    when n has no such factorisation; ``within=False``: any r x c = n, the closest aspect)."""
    best = None
    for r in range(1, n + 1):
        if n % r:
            continue
        c = n // r
        if not within or (r <= h and c <= w):
            d = abs(math.log(r / c) - math.log(h / w))
            if best is None or d < best[0]:
                best = (d, r, c)
    if best is None:
        raise ValueError(f"tokens: {n} cannot be pooled from a {h}x{w} grid (no r x c = {n} with r <= {h}, c <= {w})")
    return best[1], best[2]


def select_all(features):
    """Every cell: ([h*w, C], positions)."""
    f = _as_grid(features)
    c, h, w = f.shape
    return f.reshape(c, h * w).T.contiguous(), cell_positions(h, w)


def select_uniform(features, n: int, *, repeat_cells: bool = False):
    """Average pooling of the [C, h, w] grid to r x c = n cells: ([n, C] in raster order, positions
    = the centres of the pooling windows, in cells). ``repeat_cells``: where no r <= h, c <= w
    makes n (another image size's grid than the one the methods were built for), the closest
    r x c = n anyway, some cells then pooled into more than one token (still exactly n)."""
    torch = _torch()
    f = _as_grid(features)
    c, h, w = f.shape
    r, k = grid_shape(int(n), h, w, within=not repeat_cells)
    pooled = torch.nn.functional.adaptive_avg_pool2d(f[None], (r, k))[0]
    # adaptive pooling's windows: [floor(i * h / r), ceil((i + 1) * h / r))
    ys = [(math.floor(i * h / r) + math.ceil((i + 1) * h / r)) / 2 for i in range(r)]
    xs = [(math.floor(j * w / k) + math.ceil((j + 1) * w / k)) / 2 for j in range(k)]
    pos = np.array([(x, y) for y in ys for x in xs], np.float64)
    return pooled.reshape(c, r * k).T.contiguous(), pos


def select_visionzip(features, n: int, dominant_share: float = VISIONZIP_DOMINANT):
    """VisionZip-style, attention-free (see the module docstring): ([n, C], positions)."""
    torch = _torch()
    f = _as_grid(features)
    c, h, w = f.shape
    n = int(n)
    if not 1 <= n <= h * w:
        raise ValueError(f"tokens: {n} is not in 1..{h * w}")
    tokens = f.reshape(c, h * w).T  # [h*w, C]
    pos = cell_positions(h, w)
    dominant = min(n, max(1, round(n * dominant_share)))
    contextual = n - dominant
    norms = tokens.norm(dim=1).cpu().numpy()
    order = np.lexsort((np.arange(h * w), -norms))  # largest norm first, ties by index
    dom = np.sort(order[:dominant])
    out_f, out_p = [tokens[torch.as_tensor(dom, device=tokens.device)]], [pos[dom]]
    if contextual > 0:
        rest = np.sort(order[dominant:])
        step = max(1, len(rest) // contextual)
        t_idx = np.arange(0, len(rest), step)[:contextual]
        targets = rest[t_idx]
        others = np.setdiff1d(rest, targets)
        tt = torch.as_tensor(targets, device=tokens.device)
        merged = tokens[tt].clone()
        counts = np.ones(len(targets))
        mpos = pos[targets].copy()
        if len(others):
            ot = torch.as_tensor(others, device=tokens.device)
            a = torch.nn.functional.normalize(tokens[ot], dim=1)
            b = torch.nn.functional.normalize(tokens[tt], dim=1)
            assign = (a @ b.T).argmax(dim=1)
            merged.index_add_(0, assign, tokens[ot])
            assign_np = assign.cpu().numpy()
            np.add.at(counts, assign_np, 1)
            np.add.at(mpos, assign_np, pos[others])
        merged = merged / torch.as_tensor(counts, dtype=merged.dtype, device=merged.device)[:, None]
        out_f.append(merged)
        out_p.append(mpos / counts[:, None])
    return torch.cat(out_f).contiguous(), np.concatenate(out_p)


def feature_change(features, previous) -> np.ndarray:
    """[h, w] cosine distance between each cell's features now and on the previous frame."""
    torch = _torch()
    a, b = _as_grid(features), _as_grid(previous).to(_as_grid(features).device)
    if a.shape != b.shape:
        raise ValueError(f"previous features: shape {tuple(b.shape)} differs from {tuple(a.shape)}")
    return (1.0 - torch.nn.functional.cosine_similarity(a, b, dim=0)).cpu().numpy()


def select_evs(features, previous, n: int):
    """EVS-style temporal pruning (see the module docstring): the n most changed cells in raster
    order with their own positions; ``uniform`` when ``previous`` is None."""
    if previous is None:
        return select_uniform(features, n)
    torch = _torch()
    f = _as_grid(features)
    c, h, w = f.shape
    if not 1 <= int(n) <= h * w:
        raise ValueError(f"tokens: {n} is not in 1..{h * w}")
    change = feature_change(f, previous).ravel()
    keep = np.sort(np.lexsort((np.arange(h * w), -change))[: int(n)])  # most change first, ties by index
    tokens = f.reshape(c, h * w).T
    return tokens[torch.as_tensor(keep, device=f.device)].contiguous(), cell_positions(h, w)[keep]
