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
