"""Training examples: a frame, a question, its answer, an optional query and the answer's box, with
what the frozen parts give once (the pipeline's candidates and three scores, the gestalt tokens, the
frozen model's feature grid), so a training step only runs the balancer and the language model."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import reference as R
from ..texture import to_host


@dataclass
class Example:
    """One question. ``kind``: "image" or "video" (the curriculum's stages); ``query``: an
    arrcoc_rt.Query or None (with a CLIP/SigLIP encoder the question itself is the query)."""

    frame: np.ndarray
    question: str
    answer: str
    query: object = None
    box: list | None = None
    kind: str = "image"
    id: str = ""


@dataclass
class Prepared:
    """What the frozen parts give for one example."""

    example: Example
    candidates: np.ndarray          # [n] patch ids
    scores: tuple                   # (info, salience, query) [n] float64 each
    px: np.ndarray                  # [n] patch column
    py: np.ndarray                  # [n] patch row
    gestalt_positions: np.ndarray   # [G, 2]
    gestalt_level: int
    grid: np.ndarray                # [C, g, g] the model's vision features
    size: tuple                     # (width, height)
    w4: int
    context: np.ndarray = None      # [40] the context network's inputs (reference.context_inputs)
    answer_ids: list = field(default_factory=list)


def prepare(example: Example, pipeline, adapter) -> Prepared:
    """Run the frozen parts once: a fresh pipeline pass (no temporal state) and the vision tower."""
    pipeline.reset()
    r = pipeline.process(example.frame, query=example.query)
    slots = np.asarray(r.candidates)
    valid = slots >= 0
    cand = slots[valid].astype(np.int64)
    info, sal, query = (np.asarray(a, np.float64)[valid] for a in (r.info_score, r.salience_score, r.query_score))
    w4 = r.relevance.shape[1]
    py, px = np.divmod(cand, w4)
    kinds = np.asarray(r.kinds)
    g = kinds == 0
    grid = adapter.vision_features(example.frame).detach().cpu().float().numpy()
    level4 = {c: to_host(r.texture.channel(c, 4)).astype(np.float64) for c in R.GESTALT_CHANNELS}
    context = R.context_inputs(level4, pipeline._embedding_set, example.query is not None, info, sal, query)
    return Prepared(example, cand, (info, sal, query), px.astype(np.float64), py.astype(np.float64),
                    np.asarray(r.positions, np.float64)[g], int(np.asarray(r.levels)[g][0]), grid,
                    tuple(r.frame_size), w4, context)


def pack_features(p: Prepared, key: np.ndarray, order: np.ndarray, config: dict) -> tuple[np.ndarray, np.ndarray,
                                                                                             np.ndarray, np.ndarray]:
    """(features [G + k, C], saccade levels of detail [k], saccade patches [k], token positions
    [G + k, 2] in frame pixels) of the gestalt tokens
    and the saccades ``order`` (best first) as the allocator packs them: each saccade's level of
    detail from its key (saccade_budget, scaled into the room the gestalt grid leaves, quantized), the
    lowest-ranked dropped while over the total budget; features gathered from the model's grid."""
    width, height = p.size
    G = len(p.gestalt_positions)
    budget = R.saccade_budget(np.asarray(key, np.float64)[order], config["steepness"], config["offset"])
    room = config["total_budget"] - G * config["gestalt_lod"]
    if budget.sum() > room:
        budget = np.maximum(64.0, budget * (room / budget.sum()))
    lod = R.quantize_lod(budget)
    keep = len(order)
    while keep and lod[:keep].sum() > room:
        keep -= 1
    order, lod = np.asarray(order)[:keep], lod[:keep]
    cand = p.candidates[order]
    cx, cy = R.patch_centre(cand, p.w4, width, height)
    positions = np.concatenate([p.gestalt_positions, np.stack([cx, cy], 1).reshape(-1, 2)])
    levels = np.concatenate([np.full(G, p.gestalt_level), [R.LOD_LEVEL[int(v)] for v in lod]]).astype(np.int64)
    feats = R.gather_features(p.grid, positions, levels, width, height)
    return feats, lod, cand, positions
