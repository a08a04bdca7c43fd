"""Looking again (seed 002): ask the frozen model, and while its answer is uncertain, re-allocate the
tokens towards regions not yet looked at and ask again.

    answer = stream.ask("what colour is the mug?", passes=4)
    answer.text, answer.uncertainty, [(p.uncertainty, p.visual_tokens) for p in answer.passes]

Uncertainty is the normalized entropy of the answer's tokens (the mean over the new tokens of
entropy / log(vocabulary)). Pass 1 is the stream's own allocation. A later pass blends the frame's
relevance with a random field over the patches that no earlier pass looked at closely (a saccade of
more than 250 tokens, seed 002), with the seed's exploration weight for the previous pass's
uncertainty; the blend becomes the query map of a fresh pipeline run on the same frame. It stops when
the uncertainty falls below 0.15, when a pass would see exactly what an earlier one saw, or after
``passes``. Departures from the seed, and why: the seed always makes two passes (it stops only from
pass 2 on), but a confident first answer needs no second look; it blends only when the weight is
above 0.2, which would repeat an identical pass with a deterministic model, so every later pass
blends; it returns the last answer, and this returns the most certain one (all passes are kept).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

UNCERTAINTY_THRESHOLD = 0.15  # seed 002: converged below this
EXPLORED_BUDGET = 250         # seed 002: a patch given more tokens than this has been looked at


@dataclass
class PassRecord:
    """One pass of a multi-pass answer: its text, uncertainty (0..1), the exploration weight that
    shaped its allocation, its visual tokens (count) and its token pack (positions, levels, kinds)."""

    text: str
    uncertainty: float
    exploration: float
    visual_tokens: int
    pack: object
    latency_ms: float


def exploration_weight(pass_index: int, uncertainty: float) -> float:
    """Seed 002's tempering schedule: 0.1 for the first pass; then from the previous pass's
    uncertainty, 0.5 above 0.7, 0.3 above 0.4, else 0.05."""
    if pass_index == 0:
        return 0.1
    if uncertainty > 0.7:
        return 0.5
    if uncertainty > 0.4:
        return 0.3
    return 0.05


def explored_patches(packs, grid_shape) -> np.ndarray:
    """[h4, w4] bool: patches that some pass gave a saccade of more than EXPLORED_BUDGET tokens."""
    explored = np.zeros(grid_shape, bool)
    for pack in packs:
        kinds, budgets, patches = (np.asarray(pack.kinds), np.asarray(pack.budgets), np.asarray(pack.patches))
        hit = patches[(kinds == 1) & (budgets > EXPLORED_BUDGET)]
        explored.reshape(-1)[hit] = True
    return explored


def exploration_map(relevance, explored, weight: float, rng: np.random.Generator) -> np.ndarray:
    """(1 - weight) * relevance + weight * random over the unexplored patches, each part summing to
    1 (seed 002's blend_with_exploration), scaled to a maximum of 1 for use as a query map."""
    r = np.clip(np.asarray(relevance, np.float64), 0, None)
    r = r / r.sum() if r.sum() > 0 else np.full(r.shape, 1.0 / r.size)
    u = (~explored) * rng.random(r.shape)
    u = u / u.sum() if u.sum() > 0 else np.full(r.shape, 1.0 / r.size)
    m = (1.0 - weight) * r + weight * u
    return (m / m.max()).astype(np.float32)


def _pack_key(pack) -> tuple:
    kinds = np.asarray(pack.kinds)
    keep = kinds >= 0
    return tuple(zip(np.asarray(pack.patches)[keep].tolist(), np.asarray(pack.levels)[keep].tolist(),
                     kinds[keep].tolist()))


def answer_with_passes(adapter, rgb, result, question: str, *, passes: int, max_new_tokens: int,
                       make_pipeline, threshold: float = UNCERTAINTY_THRESHOLD, seed: int = 0):
    """(the most certain PassRecord, every PassRecord) for ``question`` about ``rgb`` (H x W x 3 uint8), starting
    from ``result`` (the stream's allocation of it). ``make_pipeline()`` gives a Pipeline of the
    stream's configuration for the frame's size, for the later passes."""
    from .base import PackSnapshot, timed_generate

    rng = np.random.default_rng(seed)
    records, packs, seen = [], [], set()
    # Pass 1 is the stream's own allocation: the seed's first-pass weight (0.1) is below the 0.2 it
    # blends from, so the seed does not blend there either.
    pipeline, current, weight = None, result, 0.0
    for k in range(passes):
        snapshot = PackSnapshot(current)
        t0 = time.perf_counter()
        inputs = adapter.prepare(rgb, current, question)
        entropies: list = []
        text, *_ = timed_generate(adapter, inputs, max_new_tokens, entropies=entropies)
        u = float(np.mean(entropies)) if entropies else 1.0
        records.append(PassRecord(text, u, weight, int(inputs["num_visual_tokens"]), snapshot,
                                  (time.perf_counter() - t0) * 1e3))
        packs.append(snapshot)
        seen.add(_pack_key(snapshot))
        if u < threshold or k == passes - 1:
            break
        weight = exploration_weight(k + 1, u)
        qmap = exploration_map(result.relevance, explored_patches(packs, result.relevance.shape), weight, rng)
        if pipeline is None:
            pipeline = make_pipeline()
        pipeline.reset()  # a fresh look: no held saccades or carried relevance from the last pass
        current = pipeline.process(rgb, query_map=qmap)
        if _pack_key(current) in seen:
            break  # this pass would see exactly what an earlier one saw: nothing new to learn
    best = min(range(len(records)), key=lambda i: (records[i].uncertainty, -i))  # ties: the later pass
    return records[best], records
