"""Held-out measures of trained weights as the pipeline itself uses them (top-S selection, the
kernels' keys and levels of detail): what a run with ``--weights`` gives the frozen model."""

from __future__ import annotations

import numpy as np

from .answer import answer_ids, answer_loss


def pipeline_answer_loss(pipeline, adapter, examples: list, weights: dict) -> dict:
    """With ``weights`` in the pipeline: the frozen model's answer loss (cross-entropy of each
    example's answer after its question, teacher forcing) given exactly the tokens the pipeline
    keeps for the frame (a fresh pass: no temporal state), as at inference (``adapter.prepare``).
    Returns the mean, the share answered right (greedy tokens equal the answer) and per example."""
    pipeline.set_weights(weights)
    losses, right = [], []
    for e in examples:
        pipeline.reset()
        r = pipeline.process(e.frame, query=e.query)
        ce, ok = answer_loss(adapter, adapter.prepare(e.frame, r, e.question), answer_ids(adapter, e.answer))
        losses.append(ce)
        right.append(ok)
    return {"mean": float(np.mean(losses)), "accuracy": float(np.mean(right)), "per_example": losses}
