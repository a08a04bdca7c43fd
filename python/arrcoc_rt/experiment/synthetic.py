"""The built-in question set: rendered scenes (NumPy + PIL drawing, nothing downloaded) where the
answer depends on a small region, with the answer and its box known by construction.

Image questions, ``count`` of each kind (deterministic for a given index and size):

* ``colour``: "What color is the small triangle?" — one small shape of its kind (about 22 px at
  640 x 480) among shapes of the other kinds;
* ``count``: "How many blue circles are there?" — 1 to 5 small circles of that colour among circles
  of other colours and squares of the same colour;
* ``shape``: "What shape is the purple object?" — the only object of that colour;
* ``text``: "What number is written on the white card?" / "What letter ...?" — a digit or capital
  letter drawn with PIL's default font (FreeType, about 22 px) on a small white card.

Video questions (``max(1, count // 2)``): six frames of a still scene in which a small square (or a
white card with a digit) moves; the question is about the last frame ("What color is the moving
square?", "What number is on the moving card?"), whose box is the moving object's.

Each question carries its labelled tier (``Question.tier``), by what the question asks, as in
``arrcoc_rt/vlm/tier_questions.jsonl``: one property of one object (colour, shape) is simple; a count
or text to read is complex. (The rules have no "what shape" rule and put those in medium.)

The backgrounds are busy on purpose: smoothed colour noise under large, soft, low-contrast blobs,
so that the small target is not simply the most salient thing in the frame.
"""

from __future__ import annotations

import numpy as np

from .data import Question

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 225), "yellow": (235, 210, 40),
           "purple": (140, 60, 190), "orange": (240, 135, 30)}
SHAPES = ("circle", "square", "triangle")
VIDEO_FRAMES = 6
TIER_OF_KIND = {"colour": "simple", "shape": "simple", "count": "complex", "text": "complex"}


def _background(rng, w: int, h: int) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFilter

    base = rng.uniform(70, 150, size=3)
    noise = rng.normal(0, 28, size=(max(2, h // 8), max(2, w // 8), 3))
    im = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    d = ImageDraw.Draw(im)
    for _ in range(5):  # large, soft, muted blobs
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(0.1, 0.3) * w, rng.uniform(0.1, 0.3) * h
        c = tuple(int(v) for v in np.clip(base + rng.normal(0, 22, size=3), 0, 255))
        d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=c)
    return np.asarray(im.filter(ImageFilter.GaussianBlur(radius=max(1.0, min(w, h) / 160))))


def _shape(draw, kind: str, box, colour) -> None:
    x0, y0, x1, y1 = box
    if kind == "circle":
        draw.ellipse([x0, y0, x1 - 1, y1 - 1], fill=colour)
    elif kind == "square":
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=colour)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)], fill=colour)


class _Placer:
    """Boxes of a given size at random places, apart from the ones placed before."""

    def __init__(self, rng, w: int, h: int):
        self.rng, self.w, self.h, self.boxes = rng, w, h, []

    def place(self, bw: int, bh: int, gap: int = 4):
        for _ in range(500):
            x = int(self.rng.integers(gap, max(gap + 1, self.w - bw - gap)))
            y = int(self.rng.integers(gap, max(gap + 1, self.h - bh - gap)))
            b = (x, y, x + bw, y + bh)
            if all(b[2] + gap <= o[0] or o[2] + gap <= b[0] or b[3] + gap <= o[1] or o[3] + gap <= b[1]
                   for o in self.boxes):
                self.boxes.append(b)
                return b
        raise RuntimeError("synthetic scene: no room left for another object; use a larger frame")


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _card(draw, box, char: str, font) -> None:
    x0, y0, x1, y1 = box
    draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=(250, 250, 250))
    l, t, r, b = draw.textbbox((0, 0), char, font=font)
    draw.text(((x0 + x1 - (r - l)) / 2 - l, (y0 + y1 - (b - t)) / 2 - t), char, fill=(10, 10, 10), font=font)


def _card_size(char: str, font, pad: int) -> tuple[int, int]:
    from PIL import Image, ImageDraw

    l, t, r, b = ImageDraw.Draw(Image.new("RGB", (4, 4))).textbbox((0, 0), char, font=font)
    side = max(r - l, b - t) + 2 * pad
    return side, side


def _union(boxes) -> list:
    b = np.asarray(boxes, np.float64)
    return [float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())]


def _distractors(draw, placer, rng, n: int, size: int, kinds=SHAPES, colours=tuple(COLOURS)) -> None:
    for _ in range(n):
        _shape(draw, str(rng.choice(kinds)), placer.place(size, size), COLOURS[str(rng.choice(colours))])


def image_question(kind: str, index: int, width: int = 640, height: int = 480) -> Question:
    """One built-in image question (see the module docstring)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng([{"colour": 1, "count": 2, "shape": 3, "text": 4}[kind], index, width, height])
    s = min(width, height) / 480.0
    small = max(6, round(22 * s))
    im = Image.fromarray(_background(rng, width, height))
    draw = ImageDraw.Draw(im)
    placer = _Placer(rng, width, height)
    if kind == "colour":
        shape, colour = str(rng.choice(SHAPES)), str(rng.choice(list(COLOURS)))
        box = placer.place(small, small)
        _shape(draw, shape, box, COLOURS[colour])
        _distractors(draw, placer, rng, 5, small, kinds=tuple(k for k in SHAPES if k != shape))
        text, answer, boxes = f"What color is the small {shape}?", colour, [box]
    elif kind == "count":
        colour = str(rng.choice(list(COLOURS)))
        n = int(rng.integers(1, 6))
        boxes = [placer.place(small, small) for _ in range(n)]
        for b in boxes:
            _shape(draw, "circle", b, COLOURS[colour])
        others = tuple(c for c in COLOURS if c != colour)
        _distractors(draw, placer, rng, 3, small, kinds=("circle",), colours=others)
        _distractors(draw, placer, rng, 2, small, kinds=("square",), colours=(colour,))
        text, answer = f"How many {colour} circles are there?", str(n)
    elif kind == "shape":
        shape, colour = str(rng.choice(SHAPES)), str(rng.choice(list(COLOURS)))
        box = placer.place(small, small)
        _shape(draw, shape, box, COLOURS[colour])
        _distractors(draw, placer, rng, 5, small, colours=tuple(c for c in COLOURS if c != colour))
        text, answer, boxes = f"What shape is the {colour} object?", shape, [box]
    elif kind == "text":
        digit = bool(index % 2 == 0)
        char = str(rng.integers(0, 10)) if digit else chr(int(rng.integers(ord("A"), ord("Z") + 1)))
        font = _font(max(8, round(22 * s)))
        box = placer.place(*_card_size(char, font, max(2, round(5 * s))))
        _card(draw, box, char, font)
        _distractors(draw, placer, rng, 5, small)
        text = f"What {'number' if digit else 'letter'} is written on the white card?"
        answer, boxes = char.lower(), [box]
    else:
        raise ValueError(f"kind: {kind!r} is not one of colour, count, shape, text")
    frame = np.ascontiguousarray(np.asarray(im))
    return Question(id=f"synthetic-{kind}-{index}", question=text, answers=[answer], source={"synthetic": f"{kind}-{index}"},
                    box=_union(boxes), dataset="synthetic", kind=kind, where=f"built-in {kind} {index}", frames_=[frame],
                    tier=TIER_OF_KIND[kind])


def video_question(index: int, width: int = 640, height: int = 480, frames: int = VIDEO_FRAMES) -> Question:
    """One built-in video question: a small square (even ``index``) or a white card with a digit
    (odd) moving over a still scene; asked about the last frame."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng([5, index, width, height])
    s = min(width, height) / 480.0
    small = max(6, round(22 * s))
    still = Image.fromarray(_background(rng, width, height))
    draw = ImageDraw.Draw(still)
    placer = _Placer(rng, width, height)
    _distractors(draw, placer, rng, 6, small)
    card = index % 2 == 1
    colour = str(rng.choice(list(COLOURS)))
    char = str(rng.integers(0, 10))
    font = _font(max(8, round(22 * s)))
    bw, bh = _card_size(char, font, max(2, round(5 * s))) if card else (small, small)
    start = np.array([rng.uniform(0.1, 0.4) * width, rng.uniform(0.15, 0.85) * height])
    end = np.array([rng.uniform(0.6, 0.85) * width, rng.uniform(0.15, 0.85) * height])
    out, box = [], None
    for t in range(frames):
        im = still.copy()
        d = ImageDraw.Draw(im)
        cx, cy = start + (end - start) * t / max(1, frames - 1)
        x0 = int(np.clip(round(cx - bw / 2), 0, width - bw))
        y0 = int(np.clip(round(cy - bh / 2), 0, height - bh))
        box = (x0, y0, x0 + bw, y0 + bh)
        if card:
            _card(d, box, char, font)
        else:
            _shape(d, "square", box, COLOURS[colour])
        out.append(np.ascontiguousarray(np.asarray(im)))
    text = "What number is on the moving card?" if card else "What color is the moving square?"
    return Question(id=f"synthetic-video-{index}", question=text, answers=[char if card else colour],
                    source={"synthetic": f"video-{index}"}, box=[float(v) for v in box], dataset="synthetic",
                    kind="video", where=f"built-in video {index}", frames_=out, tier="complex" if card else "simple")


def synthetic_questions(count: int = 6, width: int = 640, height: int = 480) -> list[Question]:
    """``count`` questions of each image kind and ``max(1, count // 2)`` video questions."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"synthetic count: {count!r} is not a positive int")
    if width < 64 or height < 48:
        raise ValueError(f"synthetic size: {width}x{height} is too small; expected at least 64x48")
    out = [image_question(kind, i, width, height) for kind in ("colour", "count", "shape", "text") for i in range(count)]
    out += [video_question(i, width, height) for i in range(max(1, count // 2))]
    return out


def write_jsonl(questions: list, folder) -> str:
    """Writes built-in questions as files in the JSONL format (PNG images; a video as a folder of
    PNG frames) to ``folder``; returns the path of ``questions.jsonl``."""
    import json
    from pathlib import Path

    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for q in questions:
        d = {"id": q.id, "question": q.question, "answers": list(q.answers), "kind": q.kind}
        if q.tier is not None:
            d["tier"] = q.tier
        if q.box is not None:
            d["box"] = list(q.box)
        if q.is_video:
            sub = folder / q.id
            sub.mkdir(exist_ok=True)
            for t, f in enumerate(q.frames_):
                Image.fromarray(f).save(sub / f"{t:04d}.png")
            d.update(video=q.id, frame=len(q.frames_) - 1)
        else:
            Image.fromarray(q.frames_[-1]).save(folder / f"{q.id}.png")
            d["image"] = f"{q.id}.png"
        lines.append(json.dumps(d))
    path = folder / "questions.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)
