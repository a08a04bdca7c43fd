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


# ----------------------------------------------------------------------------- token overlays

LOD_COLOURS = {400: (230, 40, 40), 384: (240, 130, 30), 256: (240, 220, 40), 128: (60, 200, 80), 64: (60, 140, 240)}


def overlay(frame_rgb: np.ndarray, result, *, heat_alpha: float = 0.45, patch: int = 16) -> np.ndarray:
    """The frame with the allocation drawn on it: the homunculus (levels of detail per patch) as a
    red heat map, each saccade as a box of its glimpse's extent coloured by level of detail (legend
    in the corner), gestalt tokens as small grey dots, and a red frame plus "SCENE CUT" on cuts."""
    img = np.asarray(frame_rgb, dtype=np.float32)
    h, w = img.shape[:2]
    hom = np.asarray(result.homunculus, np.float32)
    if hom.max() > 0:
        heat = np.kron(hom / hom.max(), np.ones((patch, patch), np.float32))[:h, :w]
        img[..., 0] = img[..., 0] * (1 - heat_alpha * heat) + 255 * heat_alpha * heat
        img[..., 1] *= 1 - 0.6 * heat_alpha * heat
        img[..., 2] *= 1 - 0.6 * heat_alpha * heat
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for (x, y), box, kind, lod in zip(result.positions, result.boxes, result.kinds, result.budgets):
        if kind == 0:
            draw.point((float(x), float(y)), fill=(200, 200, 200))
        elif kind == 1:
            draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), outline=LOD_COLOURS.get(int(lod)))
    font = ImageFont.load_default()
    for k, (lod, col) in enumerate(sorted(LOD_COLOURS.items(), reverse=True)):
        draw.rectangle((4, 4 + 12 * k, 12, 12 + 12 * k), fill=col)
        draw.text((15, 2 + 12 * k), str(lod), fill=(255, 255, 255), font=font)
    draw.text((4, h - 14), f"frame {result.frame_index}  saccades {result.num_saccades}", fill=(255, 255, 255),
              font=font)
    if result.scene_cut:
        draw.rectangle((0, 0, w - 1, h - 1), outline=(255, 0, 0), width=4)
        draw.text((w // 2 - 30, 6), "SCENE CUT", fill=(255, 60, 60), font=font)
    return np.asarray(pil)


class OverlayWriter:
    """Writes overlays to an MP4 (PyAV, MPEG-4 part 2: always available) and/or PNGs per frame."""

    def __init__(self, path=None, png_folder=None, fps: float = 30.0):
        self.path, self.png_folder, self.fps = path, png_folder, fps
        self._container = self._stream = None
        self.frames = 0
        self.first = None  # the first overlay drawn (RGB array)
        if png_folder is not None:
            from pathlib import Path

            Path(png_folder).mkdir(parents=True, exist_ok=True)

    def write(self, frame_rgb, result) -> np.ndarray:
        img = overlay(frame_rgb, result)
        if self.first is None:
            self.first = img
        if self.png_folder is not None:
            from pathlib import Path

            Image.fromarray(img).save(Path(self.png_folder) / f"overlay_{self.frames:05d}.png")
        if self.path is not None:
            import av
            from fractions import Fraction

            h, w = img.shape[:2]
            if self._container is None:
                self._container = av.open(str(self.path), "w")
                self.codec = overlay_codec()
                self._stream = self._container.add_stream(self.codec, rate=Fraction(self.fps).limit_denominator(1001))
                self._stream.width, self._stream.height = w + (w % 2), h + (h % 2)
                self._stream.pix_fmt = "yuv420p"
                self._stream.bit_rate = 4_000_000
            sw, sh = self._stream.width, self._stream.height
            if (w, h) != (sw, sh):  # odd sizes and mid-stream size changes: fit the first frame's size
                img = np.asarray(Image.fromarray(img).resize((sw, sh)))
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                self._container.mux(packet)
        self.frames += 1
        return img

    def close(self) -> None:
        if self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None


def overlay_codec() -> str:
    """H.264 (libx264) when PyAV's FFmpeg has the encoder, else MPEG-4 (always there)."""
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def latency_plot(timings: list, path) -> None:
    """Per-frame latency per stage and saccade counts over a run (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("the plot needs matplotlib: pip install matplotlib") from None
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for key in ("texture", "cascade", "allocate_and_gather", "total"):
        ax.plot([t[key] for t in timings], label=key)
    ax.set_xlabel("frame")
    ax.set_ylabel("ms")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
