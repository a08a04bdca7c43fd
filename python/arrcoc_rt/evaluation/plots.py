"""Pictures of an evaluation for a person to look at (Pillow only)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PATCH = 16
# Heat ramp for budget (0..1 of the figure's maximum): dark red, red, orange, pale yellow.
RAMP_T = np.array([0.0, 0.35, 0.7, 1.0])
RAMP_RGB = np.array([[110, 0, 0], [215, 35, 0], [255, 170, 0], [255, 250, 190]], np.float64)
BOX_COLOUR = (40, 255, 90)
QUERY_BOX_COLOUR = (60, 200, 255)
BACKGROUND = (24, 24, 28)
TEXT = (235, 235, 235)
MUTED = (160, 160, 170)


def heat_colours(t: np.ndarray) -> np.ndarray:
    """RGB (float, 0..255) of values t in [0, 1] on the heat ramp."""
    t = np.clip(t, 0.0, 1.0)
    return np.stack([np.interp(t, RAMP_T, RAMP_RGB[:, c]) for c in range(3)], axis=-1)


def heat_panel(image: np.ndarray, budget_map: np.ndarray, vmax: float, boxes=(), query_box=None) -> Image.Image:
    """The image in dim grey with the budget per patch over it as a heat map (transparent where no
    budget, opaque where ``vmax``), the answer's boxes in green and an exemplar box in blue."""
    img = np.asarray(image, np.float64)
    h, w = img.shape[:2]
    grey = img @ np.array([0.299, 0.587, 0.114])
    base = np.repeat((0.25 + 0.45 * grey / 255.0)[..., None] * 255.0, 3, axis=-1)
    t = np.asarray(budget_map, np.float64) / vmax if vmax > 0 else np.zeros(np.shape(budget_map))
    t = np.kron(t, np.ones((PATCH, PATCH)))[:h, :w]
    alpha = np.where(t > 0, 0.35 + 0.6 * np.sqrt(np.clip(t, 0, 1)), 0.0)[..., None]
    out = base * (1 - alpha) + heat_colours(t) * alpha
    pil = Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    if query_box is not None:
        x0, y0, x1, y1 = query_box
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=QUERY_BOX_COLOUR, width=1)
    for x0, y0, x1, y1 in boxes:
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=BOX_COLOUR, width=2)
    return pil


def _colour_bar(width: int, vmax: float, font) -> Image.Image:
    bar = Image.new("RGB", (width, 26), BACKGROUND)
    ramp = heat_colours(np.linspace(0, 1, max(width - 120, 10)))
    strip = np.repeat(ramp[None], 8, axis=0)
    bar.paste(Image.fromarray(np.rint(strip).astype(np.uint8)), (60, 4))
    draw = ImageDraw.Draw(bar)
    draw.text((4, 2), "budget", fill=MUTED, font=font)
    draw.text((60, 13), "0", fill=MUTED, font=font)
    draw.text((width - 110, 13), f"{vmax:.0f} per patch", fill=MUTED, font=font)
    return bar


def item_figure(image: np.ndarray, panels: list, boxes, title: str, query_box=None) -> Image.Image:
    """Panels side by side, each ``(caption, budget map)``, on one colour scale (the largest
    per-patch budget of all panels), with the title above and a colour bar below. Frames narrower
    than 480 pixels are drawn twice as large."""
    font = ImageFont.load_default()
    vmax = max([float(np.max(m)) for _, m in panels] + [0.0])
    scale = 2 if image.shape[1] < 480 else 1
    tiles = []
    for caption, m in panels:
        tile = heat_panel(image, m, vmax, boxes, query_box)
        if scale > 1:
            tile = tile.resize((tile.width * scale, tile.height * scale), Image.NEAREST)
        tiles.append((caption, tile))
    pad, head, foot = 8, 22, 16
    tw, th = tiles[0][1].size
    width = pad + len(tiles) * (tw + pad)
    fig = Image.new("RGB", (width, head + th + foot + 30 + pad), BACKGROUND)
    draw = ImageDraw.Draw(fig)
    draw.text((pad, 6), title, fill=TEXT, font=font)
    for k, (caption, tile) in enumerate(tiles):
        x = pad + k * (tw + pad)
        fig.paste(tile, (x, head))
        draw.text((x, head + th + 3), caption, fill=TEXT, font=font)
    fig.paste(_colour_bar(min(width - 2 * pad, 420), vmax, font), (pad, head + th + foot + 2))
    return fig


def timeline_figure(video: dict, width: int = 900, height: int = 300) -> Image.Image:
    """Per frame of an evaluated video: the cosine of consecutive saccade budget maps (blue), the
    churn (orange), true cuts (grey lines), detected cuts (red marks at the top)."""
    font = ImageFont.load_default()
    fig = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(fig)
    per = video["per_frame"]
    n = max(len(per["churn"]), 2)
    left, right, top, bottom = 40, 12, 34, 40
    pw, ph = width - left - right, height - top - bottom

    def px(k: float) -> float:
        return left + pw * k / (n - 1)

    def py(v: float) -> float:
        return top + ph * (1.0 - v)

    draw.text((left, 6), f"{video.get('name', 'video')}: {video['frames']} frames", fill=TEXT, font=font)
    for v in (0.0, 0.5, 1.0):
        draw.line((left, py(v), left + pw, py(v)), fill=(60, 60, 66))
        draw.text((6, py(v) - 6), f"{v:.1f}", fill=MUTED, font=font)
    for c in video.get("true_cuts", []):
        draw.line((px(c), top, px(c), top + ph), fill=(130, 130, 140), width=2)
    for c in video.get("detected_cuts", []):
        draw.polygon([(px(c) - 5, top - 10), (px(c) + 5, top - 10), (px(c), top - 2)], fill=(255, 60, 60))
    for key, colour in (("cosine", (80, 160, 255)), ("churn", (255, 160, 40))):
        values = per[key]
        for k in range(1, len(values)):  # no line across a frame without a value
            if values[k - 1] is not None and values[k] is not None:
                draw.line((px(k - 1), py(values[k - 1]), px(k), py(values[k])), fill=colour, width=2)
        for k, v in enumerate(values):
            if v is not None:
                draw.ellipse((px(k) - 2, py(v) - 2, px(k) + 2, py(v) + 2), fill=colour)
    y = height - 16
    legend = [("cosine of consecutive saccade budget maps", (80, 160, 255)), ("churn", (255, 160, 40)),
              ("true cut", (130, 130, 140)), ("detected cut", (255, 60, 60))]
    x = left
    for label, colour in legend:
        draw.rectangle((x, y + 2, x + 10, y + 10), fill=colour)
        draw.text((x + 14, y), label, fill=TEXT, font=font)
        x += 14 + 7 * len(label) + 16
    draw.text((left, top + ph + 4), "frame 0", fill=MUTED, font=font)
    draw.text((left + pw - 50, top + ph + 4), f"frame {n - 1}", fill=MUTED, font=font)
    return fig
