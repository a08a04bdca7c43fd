"""Held-out measures of trained weights as the pipeline itself uses them (top-S selection, the
kernels' keys and levels of detail): what a run with ``--weights`` gives the frozen model."""

from __future__ import annotations

import numpy as np

from .answer import answer_ids, answer_loss


def _fresh_results(pipeline, examples: list, weights: dict):
    """(example, FrameResult) of each example with ``weights`` in the pipeline, each frame a fresh
    pass (no temporal state)."""
    pipeline.set_weights(weights)
    for e in examples:
        pipeline.reset()
        yield e, pipeline.process(e.frame, query=e.query)


def relevance_share(pipeline, examples: list, weights: dict) -> dict:
    """With ``weights`` in the pipeline: the mean share of the saccade budget inside each example's
    answer box, and per example. Every example needs a box."""
    examples = list(examples)
    if not examples:
        raise ValueError("examples: none to measure")
    unboxed = [i for i, e in enumerate(examples) if e.box is None]
    if unboxed:
        raise ValueError(f"examples: {len(unboxed)} have no answer box (the first: index {unboxed[0]}); "
                         "relevance_share measures the budget inside it")
    shares = []
    for e, r in _fresh_results(pipeline, examples, weights):
        kinds, budgets, pos = np.asarray(r.kinds), np.asarray(r.budgets, np.float64), np.asarray(r.positions)
        s = kinds == 1
        x0, y0, x1, y1 = e.box
        inside = s & (pos[:, 0] >= x0) & (pos[:, 0] < x1) & (pos[:, 1] >= y0) & (pos[:, 1] < y1)
        shares.append(float(budgets[inside].sum() / budgets[s].sum()) if budgets[s].sum() > 0 else 0.0)
    return {"mean": float(np.mean(shares)), "per_example": shares}


def pipeline_answer_loss(pipeline, adapter, examples: list, weights: dict) -> dict:
    """With ``weights`` in the pipeline: the frozen model's answer loss (cross-entropy of each
    example's answer after its question, teacher forcing) given exactly the tokens the pipeline
    keeps for the frame (a fresh pass: no temporal state), as at inference (``adapter.prepare``).
    Returns the mean, the share answered right (greedy tokens equal the answer) and per example."""
    examples = list(examples)
    if not examples:
        raise ValueError("examples: none to measure")
    losses, right = [], []
    for e, r in _fresh_results(pipeline, examples, weights):
        ce, ok = answer_loss(adapter, adapter.prepare(e.frame, r, e.question), answer_ids(adapter, e.answer))
        losses.append(ce)
        right.append(ok)
    return {"mean": float(np.mean(losses)), "accuracy": float(np.mean(right)), "per_example": losses}
