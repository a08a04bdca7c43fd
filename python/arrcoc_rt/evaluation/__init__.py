"""Evaluation: does arrcoc_rt look where the answer is, and does it hold its gaze?

* ``metrics``: pure functions on patch-grid maps (share of the saccade budget in a box, lift,
  top-relevance IoU, distinctiveness, temporal coherence, churn, cut precision/recall).
* ``dataset``: the JSONL item format (image or video frame, query, boxes) and the built-in
  synthetic set made from real photographs (``synthetic``).
* ``runner``: ``evaluate_images``, ``evaluate_video`` and ``write_report``.
* ``cli``: the ``arrcoc-rt eval`` command.
"""

from .dataset import DatasetError, Item, builtin_items, builtin_video, load_jsonl
from .metrics import (box_area_share, box_coverage, box_share, churn_stats, cosine, cut_scores, distinctiveness,
                      lift, saccade_budget_map, temporal_coherence, top_region_iou)
from .runner import evaluate_images, evaluate_video, format_table, write_report

__all__ = [
    "DatasetError",
    "Item",
    "box_area_share",
    "box_coverage",
    "box_share",
    "builtin_items",
    "builtin_video",
    "churn_stats",
    "cosine",
    "cut_scores",
    "distinctiveness",
    "evaluate_images",
    "evaluate_video",
    "format_table",
    "lift",
    "load_jsonl",
    "saccade_budget_map",
    "temporal_coherence",
    "top_region_iou",
    "write_report",
]
