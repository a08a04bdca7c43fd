"""Built-in sample frames, generated deterministically (no files, no downloads)."""

from __future__ import annotations

import numpy as np


def sample_frames(width: int = 640, height: int = 480, count: int = 2, step=(8, 4)) -> list[np.ndarray]:
    """``count`` RGB frames of a synthetic scene: sky gradient, textured ground, coloured shapes,
    a block of 'text' stripes, and a bright disc that moves by ``step`` pixels per frame."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = x / max(width - 1, 1), y / max(height - 1, 1)
    base = np.zeros((height, width, 3))
    base[..., 0] = 0.35 + 0.25 * v
    base[..., 1] = 0.55 + 0.2 * v
    base[..., 2] = 0.85 - 0.3 * v
    ground = v > 0.62
    tex = 0.5 + 0.25 * np.sin(x * 0.35) * np.cos(y * 0.22) + 0.1 * np.sin((x + y) * 0.05)
    base[ground] = np.stack([0.35 * tex, 0.45 * tex, 0.2 * tex], axis=-1)[ground]
    # a red box and a green triangle
    box = (np.abs(u - 0.22) < 0.08) & (np.abs(v - 0.45) < 0.1)
    base[box] = (0.85, 0.15, 0.1)
    tri = (v > 0.3) & (v < 0.58) & (np.abs(u - 0.8) < (v - 0.3) * 0.35)
    base[tri] = (0.1, 0.7, 0.2)
    # 'text': rows of dark dashes on a light board
    board = (np.abs(u - 0.5) < 0.14) & (np.abs(v - 0.2) < 0.09)
    base[board] = 0.92
    dashes = board & (np.sin(x * 0.9) > 0.1) & ((y.astype(int) // 6) % 2 == 0) & (np.abs(v - 0.2) < 0.07)
    base[dashes] = 0.08
    frames = []
    for i in range(count):
        f = base.copy()
        cx, cy = 0.35 * width + i * step[0], 0.72 * height + i * step[1]
        disc = (x - cx) ** 2 + (y - cy) ** 2 < (0.06 * min(width, height)) ** 2
        f[disc] = (1.0, 0.95, 0.6)
        frames.append(np.clip(np.round(f * 255), 0, 255).astype(np.uint8))
    return frames


def demo_clip(width: int = 640, height: int = 360, frames: int = 48, cut_at: int = 24) -> list[np.ndarray]:
    """A deterministic clip with motion, text and a scene cut at frame ``cut_at``: first the
    sample scene (a disc moving across, a text board), then a night scene with two lit squares
    moving in opposite directions and a striped sign."""
    day = sample_frames(width, height, count=cut_at, step=(6, 0))
    y, x = np.mgrid[0:height, 0:width]
    night_base = np.zeros((height, width, 3))
    night_base[..., 2] = 0.12 + 0.1 * y / height
    night_base[..., 1] = 0.05
    sign = (np.abs(x - 0.75 * width) < 0.1 * width) & (np.abs(y - 0.25 * height) < 0.08 * height)
    night_base[sign & ((x // 5) % 2 == 0)] = (0.9, 0.9, 0.3)
    out = list(day)
    for i in range(frames - cut_at):
        f = night_base.copy()
        s = max(4, min(width, height) // 10)
        ax, ay = int(0.1 * width) + 5 * i, int(0.6 * height)
        bx, by = int(0.8 * width) - 5 * i, int(0.75 * height)
        f[ay:ay + s, max(ax, 0):max(ax + s, 0)] = (1.0, 0.3, 0.2)
        f[by:by + s, max(bx, 0):max(bx + s, 0)] = (0.3, 1.0, 0.4)
        out.append(np.clip(np.round(f * 255), 0, 255).astype(np.uint8))
    return out
