"""The live page's chart (Pillow only): latency per stage (p50 / p95 bars), the latency of each
frame over time, and the allocation over time (saccades, churn, scene cuts)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ..visualize import _font

# The pipeline's stages (FrameResult.timings), the overlay drawing, and the whole step.
STAGES = ("texture", "encoder", "cascade", "allocate_and_gather", "overlay", "wall")
LABELS = {"allocate_and_gather": "allocate+gather", "wall": "whole frame"}
COLOURS = {"texture": (90, 160, 255), "encoder": (170, 120, 255), "cascade": (60, 200, 160),
           "allocate_and_gather": (255, 200, 60), "overlay": (200, 200, 200), "wall": (255, 110, 90)}
BACKGROUND, GRID, TEXT, MUTED = (22, 24, 30), (55, 58, 68), (235, 235, 235), (160, 162, 172)
SACCADE_COLOUR, CHURN_COLOUR, CUT_COLOUR = (80, 200, 255), (255, 160, 40), (255, 60, 60)


def percentiles(history: list) -> dict:
    """{stage: (p50, p95)} in ms over the frames of ``history`` (records of Session.step)."""
    out = {}
    for k in STAGES:
        v = [h["ms"][k] for h in history if k in h["ms"]]
        if v:
            out[k] = (float(np.percentile(v, 50)), float(np.percentile(v, 95)))
    return out


def _nice(v: float) -> float:
    """A round axis maximum >= v."""
    if v <= 0:
        return 1.0
    e = 10 ** np.floor(np.log10(v))
    return float(next(m * e for m in (1, 2, 2.5, 5, 10) if m * e >= v))


def stats_chart(history: list, *, saccade_slots: int = 273, width: int = 1100, height: int = 250) -> np.ndarray:
    """Three panels as an RGB array: p50 (bar) and p95 (whisker) per stage; each frame's latency
    over the last frames; saccades per frame (left scale) and churn (0..1) with scene cuts."""
    fs = 13
    font, small = _font(fs), _font(11)
    img = Image.new("RGB", (width, height), BACKGROUND)
    d = ImageDraw.Draw(img)
    pw = (width - 40) // 3
    top, bottom = 28, height - 30
    ph = bottom - top

    # 1. p50 / p95 per stage
    x0 = 10
    d.text((x0, 6), f"latency per stage, last {len(history)} frames (ms)", fill=TEXT, font=font)
    pct = percentiles(history)
    if pct:
        vmax = _nice(max(p95 for _, p95 in pct.values()))
        label_w, row = 108, ph / max(len(pct), 1)
        bar_w = pw - label_w - 70
        for i, (k, (p50, p95)) in enumerate(pct.items()):
            y = top + i * row
            d.text((x0, y + row / 2 - 7), LABELS.get(k, k), fill=MUTED, font=small)
            bx = x0 + label_w
            d.rectangle((bx, y + 3, bx + bar_w * p50 / vmax, y + row - 3), fill=COLOURS[k])
            xw = bx + bar_w * p95 / vmax
            d.line((bx + bar_w * p50 / vmax, y + row / 2, xw, y + row / 2), fill=COLOURS[k], width=1)
            d.line((xw, y + 4, xw, y + row - 4), fill=COLOURS[k], width=2)
            d.text((bx + bar_w + 6, y + row / 2 - 7), f"{p50:.1f}/{p95:.1f}", fill=TEXT, font=small)
        d.text((x0 + label_w, bottom + 4), f"bar p50, tick p95; axis 0..{vmax:g} ms", fill=MUTED, font=small)
    else:
        d.text((x0, top + 10), "no frames yet", fill=MUTED, font=font)

    def timeline(px0, title, series, vmax, legend, right=None):
        d.text((px0, 6), title, fill=TEXT, font=font)
        ax0, ax1 = px0 + 34, px0 + pw - (34 if right else 6)
        for f in (0.0, 0.5, 1.0):
            y = bottom - ph * f
            d.line((ax0, y, ax1, y), fill=GRID)
            d.text((px0, y - 7), f"{vmax * f:.{0 if vmax >= 10 else 1}f}", fill=MUTED, font=small)
            if right:
                d.text((ax1 + 4, y - 7), f"{f:.1f}", fill=MUTED, font=small)
        n = len(history)
        if n == 0:
            return
        xs = np.linspace(ax0, ax1, n) if n > 1 else np.array([ax1])
        for i, h in enumerate(history):
            if h["scene_cut"]:
                d.line((xs[i], top, xs[i], bottom), fill=CUT_COLOUR, width=1)
        for values, colour, scale in series:
            pts = [(float(xs[i]), bottom - ph * min(1.0, v / scale)) for i, v in enumerate(values) if v is not None]
            if len(pts) > 1:
                d.line(pts, fill=colour, width=2)
            elif pts:
                d.ellipse((pts[0][0] - 2, pts[0][1] - 2, pts[0][0] + 2, pts[0][1] + 2), fill=colour)
        x = ax0
        for label, colour in legend:
            d.line((x, bottom + 11, x + 10, bottom + 11), fill=colour, width=3)
            d.text((x + 13, bottom + 4), label, fill=MUTED, font=small)
            x += 20 + d.textlength(label, font=small)
        first, last = history[0]["frame"], history[-1]["frame"]
        label = f"frames {first}..{last}"
        d.text((ax1 - d.textlength(label, font=small), bottom + 4), label, fill=MUTED, font=small)

    # 2. latency of each frame
    x1 = 10 + pw + 10
    if history:
        totals = [h["ms"].get("wall", 0.0) for h in history]
        vmax = _nice(max(totals))
        timeline(x1, "latency per frame (ms)",
                 [([h["ms"].get("texture") for h in history], COLOURS["texture"], vmax),
                  ([h["ms"].get("total") for h in history], COLOURS["cascade"], vmax),
                  (totals, COLOURS["wall"], vmax)], vmax,
                 [("texture", COLOURS["texture"]), ("pipeline", COLOURS["cascade"]), ("whole frame", COLOURS["wall"])])
    else:
        timeline(x1, "latency per frame (ms)", [], 1.0, [])

    # 3. allocation
    x2 = x1 + pw + 10
    cap = max(1, saccade_slots)
    timeline(x2, "allocation: saccades, churn, cuts",
             [([h["saccades"] for h in history], SACCADE_COLOUR, cap),
              ([h["churn"] for h in history], CHURN_COLOUR, 1.0)], cap,
             [("saccades", SACCADE_COLOUR), ("churn (right)", CHURN_COLOUR), ("cut", CUT_COLOUR)], right=True)
    return np.asarray(img)
