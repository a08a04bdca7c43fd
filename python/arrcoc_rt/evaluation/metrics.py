"""Measures of where the saccades went, as pure functions of maps on the 16-pixel patch grid.

Conventions:

* A frame of ``frame_w x frame_h`` pixels has a patch grid of ``h4 x w4 = ceil(frame_h / 16) x
  ceil(frame_w / 16)``; patch ``(row, col)`` covers pixels ``[16 col, 16 col + 16) x [16 row,
  16 row + 16)`` clipped to the frame, so the last column / row of patches is partial when the frame
  size is not a multiple of 16.
* A box is ``[x0, y0, x1, y1]`` in pixel edges, ``x1``/``y1`` exclusive, as in the slice
  ``image[y0:y1, x0:x1]``; coordinates may be fractional. Wherever a box is taken, a list of boxes
  is accepted too and means the union of them (e.g. every cup in the picture).
* A quantity that is undefined for the input (a share of a map that holds no budget, a cosine with
  an all-zero map) is ``nan``, never an exception: evaluations over many items keep going and
  count such cases.
"""

from __future__ import annotations

import math

import numpy as np

PATCH = 16


def grid_shape(frame_w: int, frame_h: int) -> tuple[int, int]:
    """``(h4, w4)``: the patch grid of a frame."""
    _check_frame(frame_w, frame_h)
    return -(-int(frame_h) // PATCH), -(-int(frame_w) // PATCH)


def saccade_budget_map(result) -> np.ndarray:
    """The level of detail the saccades of one frame spend on each patch: a float64 ``[h4, w4]`` map
    (gestalt tokens and padding are left out; several saccades on one patch add up).

    ``result`` is an ``arrcoc_rt.FrameResult`` or anything with ``kinds``, ``patches``, ``budgets``
    and ``relevance`` (which gives the grid shape)."""
    kinds = np.asarray(result.kinds)
    patches = np.asarray(result.patches)
    budgets = np.asarray(result.budgets, np.float64)
    shape = np.asarray(result.relevance).shape
    out = np.zeros(shape[0] * shape[1])
    saccade = kinds == 1
    if np.any(patches[saccade] < 0) or np.any(patches[saccade] >= out.size):
        raise ValueError(f"result: saccade patch ids outside the {shape[0]} x {shape[1]} patch grid")
    np.add.at(out, patches[saccade], budgets[saccade])
    return out.reshape(shape)


def patch_areas(frame_w: int, frame_h: int) -> np.ndarray:
    """``[h4, w4]`` pixel area of each patch inside the frame (256, less on a partial edge)."""
    h4, w4 = grid_shape(frame_w, frame_h)
    widths = np.minimum(PATCH, frame_w - PATCH * np.arange(w4))
    heights = np.minimum(PATCH, frame_h - PATCH * np.arange(h4))
    return np.outer(heights, widths).astype(np.float64)


def box_coverage(boxes, frame_w: int, frame_h: int) -> np.ndarray:
    """``[h4, w4]`` share (0..1) of each patch's in-frame area that lies inside the box, or inside
    the union of a list of boxes. Exact for fractional coordinates and overlapping boxes."""
    boxes = _as_boxes(boxes, frame_w, frame_h)
    h4, w4 = grid_shape(frame_w, frame_h)
    # Cut the frame along every box and patch edge: each elementary cell is wholly inside or
    # outside the union, and wholly inside one patch.
    xs = np.unique(np.concatenate([boxes[:, [0, 2]].ravel(), np.minimum(PATCH * np.arange(w4 + 1), frame_w)]))
    ys = np.unique(np.concatenate([boxes[:, [1, 3]].ravel(), np.minimum(PATCH * np.arange(h4 + 1), frame_h)]))
    cx, cy = (xs[:-1] + xs[1:]) / 2, (ys[:-1] + ys[1:]) / 2
    inside = np.zeros((len(cy), len(cx)), bool)
    for x0, y0, x1, y1 in boxes:
        inside |= ((cy > y0) & (cy < y1))[:, None] & ((cx > x0) & (cx < x1))[None, :]
    cell_area = np.outer(np.diff(ys), np.diff(xs)) * inside
    rows = np.minimum((cy // PATCH).astype(int), h4 - 1)
    cols = np.minimum((cx // PATCH).astype(int), w4 - 1)
    covered = np.zeros((h4, w4))
    np.add.at(covered, (rows[:, None], cols[None, :]), cell_area)
    return np.clip(covered / patch_areas(frame_w, frame_h), 0.0, 1.0)


def box_share(budget_map, boxes, frame_w: int, frame_h: int) -> float:
    """Share (0..1) of the map's total inside the box (or the union of boxes): each patch counts
    with the fraction of its area inside. ``nan`` when the map holds nothing."""
    m = _as_map(budget_map, frame_w, frame_h)
    total = float(m.sum())
    if total <= 0:
        return math.nan
    return float((m * box_coverage(boxes, frame_w, frame_h)).sum() / total)


def box_area_share(boxes, frame_w: int, frame_h: int) -> float:
    """Share (0..1) of the frame's pixels inside the box (or the union of boxes): what an allocation
    that spreads its budget evenly over the pixels gives the box."""
    cov = box_coverage(boxes, frame_w, frame_h)
    return float((cov * patch_areas(frame_w, frame_h)).sum() / (float(frame_w) * float(frame_h)))


def lift(share: float, area_share: float) -> float:
    """How many times more budget the box got than its area would get: ``share / area_share``
    (1 = no preference, above 1 = looked at more). ``nan`` when either is undefined or the area is 0."""
    if share is None or area_share is None or not math.isfinite(share) or not math.isfinite(area_share) \
            or area_share <= 0:
        return math.nan
    return float(share) / float(area_share)


def top_region_iou(relevance, boxes, frame_w: int, frame_h: int, quantile: float | None = None) -> float:
    """IoU (by pixel area) between the box (or the union of boxes) and the most relevant patches.

    With ``quantile=None`` the region is as large as the box: patches are taken in order of
    relevance (highest first; ties by patch index) until their area reaches the box's area; the
    patch that crosses it is taken when that brings the area closer to the box's (at least one
    patch is taken). With a number
    ``q`` in [0, 1) the region is every patch whose relevance is at least the ``q``-quantile of
    the map. An IoU above 0.5 means the relevance map finds the box."""
    r = _as_map(relevance, frame_w, frame_h).ravel()
    areas = patch_areas(frame_w, frame_h).ravel()
    cov = box_coverage(boxes, frame_w, frame_h).ravel()
    box_area = float((cov * areas).sum())
    if quantile is None:
        order = np.lexsort((np.arange(r.size), -r))
        cumulative = np.cumsum(areas[order])
        k = int(np.searchsorted(cumulative, box_area))  # the first k patches are below the box's area
        k = min(k, r.size - 1)
        before = cumulative[k - 1] if k > 0 else 0.0
        take = max(1, k + 1 if abs(cumulative[k] - box_area) <= abs(box_area - before) else k)
        selected = np.zeros(r.size, bool)
        selected[order[:take]] = True
    else:
        if not 0.0 <= float(quantile) < 1.0:
            raise ValueError(f"quantile: {quantile!r} is out of range; expected [0, 1)")
        selected = r >= np.quantile(r, float(quantile))
    region_area = float(areas[selected].sum())
    intersection = float((cov * areas)[selected].sum())
    union = box_area + region_area - intersection
    return intersection / union if union > 0 else math.nan


def cosine(map_a, map_b) -> float:
    """Cosine similarity of two maps of one shape (``nan`` when either is all zero)."""
    a = np.asarray(map_a, np.float64).ravel()
    b = np.asarray(map_b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"maps of different shapes: {np.shape(map_a)} and {np.shape(map_b)}")
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return math.nan
    return float(np.clip(a @ b / (na * nb), -1.0, 1.0))


def distinctiveness(map_a, map_b) -> float:
    """``1 - cosine`` of two allocations of one image (e.g. saccade budget maps for two queries):
    0 when the queries change nothing, up to 1 when they look at disjoint patches. Above 0.3 the
    queries make a real difference. ``nan`` when either map is all zero."""
    c = cosine(map_a, map_b)
    return 1.0 - c if math.isfinite(c) else math.nan


def temporal_coherence(maps, skip=()) -> dict:
    """Cosine of each pair of consecutive maps of a video (e.g. saccade budget maps).

    ``skip``: frame indices k whose pair (k - 1, k) is left out, e.g. the true scene cuts, where
    a new allocation is expected. Returns ``cosines`` (one per frame: ``None`` for frame 0, skipped
    pairs and undefined cosines), and ``median``, ``min`` and ``pairs`` over the others (``nan`` when
    there are none)."""
    maps = [np.asarray(m, np.float64) for m in maps]
    skip = {int(k) for k in skip}
    cosines: list = [None]
    for k in range(1, len(maps)):
        c = cosine(maps[k - 1], maps[k]) if k not in skip else math.nan
        cosines.append(c if math.isfinite(c) else None)
    values = [c for c in cosines if c is not None]
    return {"cosines": cosines, "median": float(np.median(values)) if values else math.nan,
            "min": float(np.min(values)) if values else math.nan, "pairs": len(values)}


def churn_stats(results_or_values, skip=()) -> dict:
    """Statistics of ``FrameResult.churn`` (the share of a frame's saccades on content that no
    saccade of the previous frame showed) over a video: ``median``, ``mean``, ``max`` and ``frames``.

    Takes FrameResults or the churn values themselves; ``None`` (a first frame) and the frames in
    ``skip`` (e.g. true scene cuts, where everything is new) are left out."""
    skip = {int(k) for k in skip}
    values = []
    for k, v in enumerate(results_or_values):
        v = getattr(v, "churn", v)
        if v is not None and k not in skip:
            values.append(float(v))
    if not values:
        return {"median": math.nan, "mean": math.nan, "max": math.nan, "frames": 0}
    return {"median": float(np.median(values)), "mean": float(np.mean(values)), "max": float(np.max(values)),
            "frames": len(values)}


def cut_scores(detected_frames, true_frames, tolerance: int = 0) -> dict:
    """Scene-cut detection against the truth. A detection matches a true cut at most ``tolerance``
    frames away; each true cut and each detection is matched at most once (the most matches
    possible). Returns ``precision`` (matched / detected; 1.0 with no detections), ``recall``
    (matched / true; 1.0 with no true cuts), ``missed`` (true cuts not found), ``false`` (detections
    that match no true cut) and ``matched`` (pairs [true, detected])."""
    if isinstance(tolerance, bool) or int(tolerance) != tolerance or tolerance < 0:
        raise ValueError(f"tolerance: {tolerance!r} must be an int >= 0")
    detected = sorted(int(d) for d in set(detected_frames))
    true = sorted(int(t) for t in set(true_frames))
    matched, missed, false = [], [], []
    i = j = 0
    # Both lists sorted and every match window equally wide: pairing greedily from the left is a
    # maximum matching.
    while i < len(true) and j < len(detected):
        t, d = true[i], detected[j]
        if abs(d - t) <= tolerance:
            matched.append([t, d])
            i += 1
            j += 1
        elif d < t:
            false.append(d)
            j += 1
        else:
            missed.append(t)
            i += 1
    missed += true[i:]
    false += detected[j:]
    return {"precision": len(matched) / len(detected) if detected else 1.0,
            "recall": len(matched) / len(true) if true else 1.0,
            "missed": missed, "false": false, "matched": matched}


# ----------------------------------------------------------------------------- checks


def _check_frame(frame_w, frame_h) -> None:
    for name, v in (("frame_w", frame_w), ("frame_h", frame_h)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: {v!r} must be a positive int (pixels)")


def _as_map(m, frame_w, frame_h) -> np.ndarray:
    a = np.asarray(m, np.float64)
    if a.shape != grid_shape(frame_w, frame_h):
        raise ValueError(f"map of shape {a.shape} does not fit the {grid_shape(frame_w, frame_h)} patch grid of a "
                         f"{frame_w}x{frame_h} frame")
    if not np.all(np.isfinite(a)):
        raise ValueError("map contains NaN or inf")
    return a


def _as_boxes(boxes, frame_w, frame_h) -> np.ndarray:
    """``[n, 4]`` boxes clipped to the frame, with clear errors for malformed or empty ones."""
    _check_frame(frame_w, frame_h)
    try:
        b = np.asarray(boxes, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"boxes: {boxes!r} is not [x0, y0, x1, y1] or a list of such boxes") from None
    if b.ndim == 1:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4 or len(b) == 0:
        raise ValueError(f"boxes: expected [x0, y0, x1, y1] or a non-empty list of such boxes; got shape {b.shape}")
    if not np.all(np.isfinite(b)):
        raise ValueError("boxes: coordinates must be finite numbers")
    if np.any(b[:, 2] <= b[:, 0]) or np.any(b[:, 3] <= b[:, 1]):
        raise ValueError(f"boxes: {b.tolist()} has an empty box; expected x1 > x0 and y1 > y0")
    clipped = np.column_stack([np.clip(b[:, 0], 0, frame_w), np.clip(b[:, 1], 0, frame_h),
                               np.clip(b[:, 2], 0, frame_w), np.clip(b[:, 3], 0, frame_h)])
    if np.any(clipped[:, 2] <= clipped[:, 0]) or np.any(clipped[:, 3] <= clipped[:, 1]):
        raise ValueError(f"boxes: {b.tolist()} has a box outside the {frame_w}x{frame_h} frame")
    return clipped
