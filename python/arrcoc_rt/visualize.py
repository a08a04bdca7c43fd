"""Pictures of what the stages compute, readable by a person (Pillow)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .channels import Channel, base_level
from .texture import Texture, to_host

# Channels with a sign: shown blue (negative) - white - red (positive); others grey, 0 = black.
SIGNED = {Channel.GRAD_X, Channel.GRAD_Y, Channel.OPPONENT_RG, Channel.OPPONENT_BY, Channel.MOTION_X,
          Channel.MOTION_Y}


def to_rgb8(plane: np.ndarray, signed: bool) -> np.ndarray:
    """A float plane as an RGB picture, scaled by its own range (printed beside it)."""
    p = np.nan_to_num(np.asarray(plane, dtype=np.float32))
    if signed:
        m = float(np.abs(p).max()) or 1.0
        t = p / m
        r = np.where(t > 0, 1.0, 1.0 + t)
        b = np.where(t < 0, 1.0, 1.0 - t)
        g = 1.0 - np.abs(t)
        out = np.stack([r, g, b], axis=-1)
    else:
        m = float(p.max()) or 1.0
        out = np.repeat((np.clip(p, 0, None) / m)[..., None], 3, axis=-1)
    return (out * 255).round().astype(np.uint8)


def _tile(plane, signed, size):
    return Image.fromarray(to_rgb8(plane, signed)).resize(size, Image.NEAREST)


def contact_sheet(tex: Texture, title: str = "", tile_width: int = 200) -> Image.Image:
    """All 40 channels on one sheet (each at its base level, nearest-upsampled), labelled with
    index, name, level and value range; then one row with the luminance at mip levels 0..4."""
    font = ImageFont.load_default()
    aspect = tex.height / tex.width
    tw, th = tile_width, max(1, round(tile_width * aspect))
    cols, label_h, pad = 8, 28, 6
    rows = 5 + 1
    sheet = Image.new("RGB", (cols * (tw + pad) + pad, 30 + rows * (th + label_h + pad)), (24, 24, 28))
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, 8), title or f"arrcoc_rt texture {tex.width}x{tex.height}, frame {tex.frame_index}",
              fill=(240, 240, 240), font=font)
    for c in Channel:
        k = base_level(c)
        plane = to_host(tex.channel(c, k)).astype(np.float32)
        r, col = divmod(int(c), cols)
        x0, y0 = pad + col * (tw + pad), 30 + r * (th + label_h + pad)
        sheet.paste(_tile(plane, c in SIGNED, (tw, th)), (x0, y0))
        lo, hi = float(plane.min()), float(plane.max())
        draw.text((x0, y0 + th + 2), f"{int(c)} {c.name.lower()}" + (f" (L{k})" if k else ""),
                  fill=(230, 230, 230), font=font)
        draw.text((x0, y0 + th + 14), f"[{lo:.3g}, {hi:.3g}]", fill=(150, 150, 160), font=font)
    y0 = 30 + 5 * (th + label_h + pad)
    for k in range(5):
        x0 = pad + k * (tw + pad)
        plane = to_host(tex.channel(Channel.LUMINANCE, k)).astype(np.float32)
        sheet.paste(_tile(plane, False, (tw, th)), (x0, y0))
        w, h = tex.level_sizes[k]
        draw.text((x0, y0 + th + 2), f"luminance L{k} ({w}x{h})", fill=(230, 230, 230), font=font)
    return sheet


def save_channels(tex: Texture, folder) -> list:
    """One PNG per channel at its base level, native resolution: channel_NN_name.png."""
    from pathlib import Path

    folder = Path(folder)
    paths = []
    for c in Channel:
        plane = to_host(tex.channel(c, base_level(c))).astype(np.float32)
        p = folder / f"channel_{int(c):02d}_{c.name.lower()}.png"
        Image.fromarray(to_rgb8(plane, c in SIGNED)).save(p)
        paths.append(p)
    return paths
