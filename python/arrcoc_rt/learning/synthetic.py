"""A synthetic task for ``arrcoc-rt train`` (``--data synthetic``) and its tests, in which the answer
depends on one small region: "what colour is the square ?" about the one coloured square in a busy
grey scene (with faint speckles of every colour, under a faint colour cast) that also holds bright colourless squares
(salient, full of edges: what an untrained balancer looks at). The query is a pointer: a soft blob around the square plus noise, as a user's
tap or a detector's heat map would be. Video questions are the last frame of a few frames in which
the square moves."""

from __future__ import annotations

import numpy as np

from ..query import Query
from .examples import Example

COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 210), "yellow": (210, 200, 40)}
QUESTION = "what colour is the square ?"


def _scene(rng, w: int, h: int, target_xy, colour, side: int, distractors, tint: float):
    # Busy grey texture with faint speckles of every answer colour in equal parts, under a cast
    # towards a random answer colour (up to ``tint``): the square alone moves the frame's mean colour
    # by a few levels, the cast by up to ``tint`` * 100, so the mean colour (what coarse, whole-frame
    # tokens see) says nothing about the square's; only a token on the square tells it.
    img = np.clip(rng.uniform(95, 125) + rng.normal(0, 30, size=(h, w, 1)), 0, 255).repeat(3, axis=2)
    speckle = rng.random((h, w)) < 0.08
    which = rng.integers(0, len(COLOURS), size=(h, w))
    palette = np.array(list(COLOURS.values()), np.float64)
    img[speckle] = 0.5 * img[speckle] + 0.5 * palette[which[speckle]]
    if tint > 0:
        cast = palette[int(rng.integers(len(palette)))]
        t = tint * rng.random()
        img = (1 - t) * img + t * cast
    for x, y in distractors:
        img[y:y + side, x:x + side] = rng.uniform(215, 250)
        img[y + side // 3:y + 2 * side // 3, x + side // 3:x + 2 * side // 3] = rng.uniform(20, 50)  # edges inside
    x, y = target_xy
    img[y:y + side, x:x + side] = colour
    return img.astype(np.uint8)


def _free_spot(rng, w, h, side, taken):
    for _ in range(200):
        x, y = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
        if all(abs(x - a) > side + 4 or abs(y - b) > side + 4 for a, b in taken):
            return x, y
    raise RuntimeError("no room for another square")


def colour_task(n: int, *, seed: int = 0, size=(160, 96), side: int = 18, distractors: int = 3,
                video_share: float = 0.25, video_frames: int = 3, tint: float = 0.08,
                pointer_offset: float = 0.0) -> list[Example]:
    """``n`` examples (a ``video_share`` of them video questions), deterministic for ``seed``;
    ``tint``: the strongest colour cast of a frame (0: none); ``pointer_offset``: how far the
    pointer's centre lies from the square's, in square sides, in a random direction (0: on it)."""
    rng = np.random.default_rng(seed)
    w, h = size
    names = list(COLOURS)
    out = []
    for i in range(n):
        name = names[int(rng.integers(len(names)))]
        colour = np.array(COLOURS[name]) + rng.integers(-15, 16, size=3)
        taken = []
        target = _free_spot(rng, w, h, side, taken)
        taken.append(target)
        spots = []
        for _ in range(distractors):
            spots.append(_free_spot(rng, w, h, side, taken))
            taken.append(spots[-1])
        video = rng.random() < video_share
        if video:  # the square moves a few pixels a frame; the question is about the last frame
            step = rng.integers(-4, 5, size=2)
            x = int(np.clip(target[0] + step[0] * (video_frames - 1), 0, w - side))
            y = int(np.clip(target[1] + step[1] * (video_frames - 1), 0, h - side))
            target = (x, y)
        frame = _scene(rng, w, h, target, colour, side, spots, tint)
        yy, xx = np.mgrid[0:h, 0:w]
        cx, cy = target[0] + side / 2, target[1] + side / 2
        if pointer_offset:  # a rough pointer: near the square, not on it
            angle = rng.uniform(0, 2 * np.pi)
            cx, cy = cx + pointer_offset * side * np.cos(angle), cy + pointer_offset * side * np.sin(angle)
        pointer = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (1.5 * side) ** 2)) + rng.uniform(0, 0.5, (h, w))
        out.append(Example(frame, QUESTION, name, Query.map(pointer.astype(np.float32)),
                           [target[0], target[1], target[0] + side, target[1] + side],
                           "video" if video else "image", f"colour-{seed}-{i}"))
    return out
