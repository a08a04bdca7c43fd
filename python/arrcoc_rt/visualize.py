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


def _shown_level(tex: Texture, c: Channel) -> int:
    """The channel's base level, or level 1 where a Pipeline's texture did not write its level 0."""
    k = base_level(c)
    return k if tex.has_plane(c, k) else k + 1


def contact_sheet(tex: Texture, title: str = "", tile_width: int = 200) -> Image.Image:
    """All 40 channels on one sheet (each at its base level, nearest-upsampled), labelled with
    index, name, level and value range; then one row with the luminance at mip levels 0..4. A
    constant channel that a later stage writes is marked with that stage (encoder's: 17-32, an
    encoder's projections; query's: 33; allocator's: 34, 37-39): a texture alone leaves them 0."""
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
        k = _shown_level(tex, c)
        plane = to_host(tex.channel(c, k)).astype(np.float32)
        r, col = divmod(int(c), cols)
        x0, y0 = pad + col * (tw + pad), 30 + r * (th + label_h + pad)
        sheet.paste(_tile(plane, c in SIGNED, (tw, th)), (x0, y0))
        lo, hi = float(plane.min()), float(plane.max())
        draw.text((x0, y0 + th + 2), f"{int(c)} {c.name.lower()}" + (f" (L{k})" if k else ""),
                  fill=(230, 230, 230), font=font)
        note = ""
        if lo == hi and (17 <= int(c) <= 34 or int(c) >= 37):  # why a panel is blank
            note = "  encoder's" if int(c) <= 32 else "  query's" if int(c) == 33 else "  allocator's"
        draw.text((x0, y0 + th + 14), f"[{lo:.3g}, {hi:.3g}]{note}", fill=(150, 150, 160), font=font)
    y0 = 30 + 5 * (th + label_h + pad)
    for k in range(5):
        if not tex.has_plane(Channel.LUMINANCE, k):
            continue  # a Pipeline's texture (texture_planes='pipeline') has no level-0 luminance
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
        plane = to_host(tex.channel(c, _shown_level(tex, c))).astype(np.float32)
        p = folder / f"channel_{int(c):02d}_{c.name.lower()}.png"
        Image.fromarray(to_rgb8(plane, c in SIGNED)).save(p)
        paths.append(p)
    return paths


# ----------------------------------------------------------------------------- token overlays
# One drawing of the allocation, used by `arrcoc-rt run/demo` (OverlayWriter) and the live page
# (`arrcoc-rt serve`): a heat map of the budget per patch, saccade boxes coloured by level of detail,
# the gestalt grid, scene cuts, a legend and a caption, each switchable.

# Levels of detail of saccades: cool colours from coarse to fine (the heat map is warm), so a box
# never disappears into the heat under it; a dark shadow line keeps them visible on light pixels.
LOD_COLOURS = {400: (255, 255, 255), 384: (255, 80, 230), 256: (0, 235, 255), 128: (60, 140, 255),
               64: (150, 150, 190)}
# Opacity of each level's outline: the many coarse boxes (a 64 covers 128 x 128 px) stay faint.
LOD_ALPHA = {400: 255, 384: 240, 256: 220, 128: 160, 64: 60}
# Heat ramp for the budget per patch (0..1 of HEAT_MAX): transparent, dark red, red, orange, yellow.
HEAT_T = np.array([0.0, 0.35, 0.7, 1.0])
HEAT_RGB = np.array([[120, 0, 20], [220, 30, 0], [255, 150, 0], [255, 245, 120]], np.float32)
HEAT_MAX = 400.0  # the finest level of detail
OVERLAY_LAYERS = ("heat", "saccades", "gestalt", "cuts", "legend", "caption")


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def heat_colours(t: np.ndarray) -> np.ndarray:
    """float32 RGB (0..255) of values t in [0, 1] on the heat ramp."""
    t = np.clip(np.asarray(t, np.float32), 0.0, 1.0)
    return np.stack([np.interp(t, HEAT_T, HEAT_RGB[:, c]) for c in range(3)], axis=-1).astype(np.float32)


def _host(a) -> np.ndarray:
    return np.asarray(to_host(a))


def _heat_layer(pil: Image.Image, hom: np.ndarray, patch: int, alpha: float, vmax: float) -> Image.Image:
    """The frame, a little dimmed and desaturated, under the budget per patch: colour and opacity
    grow with the square root of the budget (64 is visible, 400 strong), bilinear between patch
    centres; patches with no budget stay clear. (Drawn on the patch grid and scaled up by Pillow.)"""
    w, h = pil.size
    gh, gw = hom.shape
    t = np.sqrt(np.clip(hom / vmax, 0.0, 1.0)).astype(np.float32)
    grid = np.empty((gh, gw, 4), np.uint8)
    grid[..., :3] = np.rint(heat_colours(t))
    grid[..., 3] = np.rint(255.0 * alpha * np.minimum(1.0, 1.4 * t))
    heat = Image.fromarray(grid).resize((gw * patch, gh * patch), Image.BILINEAR).crop((0, 0, w, h))
    base = Image.blend(pil, pil.convert("L").convert("RGB"), 0.3).point(lambda v: int(v * 0.8 + 0.5))
    return Image.alpha_composite(base.convert("RGBA"), heat).convert("RGB")


def budget_per_patch(result, *, gestalt: bool = False) -> np.ndarray:
    """[h4, w4] float32 levels of detail per patch: the saccades' (``gestalt=False``) or all tokens'
    (``gestalt=True``: ``result.homunculus`` itself)."""
    if hasattr(result, "_check_view"):  # a copy=False result overwritten by a later frame is refused
        result._check_view("budget_per_patch")
    hom = _host(result.homunculus).astype(np.float32)
    if gestalt:
        return hom
    kinds, patches = _host(result.kinds), _host(result.patches)
    g = (kinds == 0) & (patches >= 0)
    out = hom.ravel().copy()
    np.subtract.at(out, patches[g], _host(result.budgets)[g].astype(np.float32))
    return np.maximum(out, 0.0).reshape(hom.shape)


def overlay(frame_rgb: np.ndarray, result, *, heat: bool = True, saccades: bool = True, gestalt: bool = True,
            cuts: bool = True, legend: bool = True, caption: bool = True, heat_gestalt: bool = False,
            heat_alpha: float = 0.6, heat_max: float | None = None, scale: int = 1, patch: int = 16) -> np.ndarray:
    """The frame with the allocation drawn on it, as an H x W x 3 uint8 array (``scale`` times
    larger: 2 keeps the labels of a small frame readable). Layers, each switchable:

    * ``heat``: the budget per patch as a heat map: the levels of detail of the saccades centred in
      each patch (``budget_per_patch``), or of all tokens with ``heat_gestalt=True`` (the
      homunculus, gestalt included), on a fixed scale of 0..``heat_max`` (400, or 464 with the
      gestalt) so frames compare;
    * ``saccades``: each saccade's glimpse extent as a thin box coloured by its level of detail
      (``LOD_COLOURS``; coarse boxes faint, fine ones drawn on top) with a dot at its centre;
    * ``gestalt``: the gestalt grid as faint lines between its cells and dots at their centres;
    * ``cuts``: a red frame and "SCENE CUT" on a scene cut;
    * ``legend``: the colours of the levels (with how many saccades have each) and the heat scale;
    * ``caption``: frame index, saccades, churn.
    """
    img = np.asarray(frame_rgb)
    if img.dtype != np.uint8:  # a float frame in 0..1 would come out black
        raise TypeError(f"frame_rgb: dtype {img.dtype}; expected uint8 RGB (0..255), the frame given to process()")
    if img.ndim == 2:  # gray8
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.ndim == 3 and img.shape[0] == 3 and img.shape[2] not in (3, 4):  # (3, H, W), as process() reads it
        img = img.transpose(1, 2, 0)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"frame_rgb: expected H x W x 3 RGB (or H x W x 4, 3 x H x W, H x W); got shape {img.shape}")
    fw, fh = getattr(result, "frame_size", (0, 0))
    if (fw, fh) != (0, 0) and (img.shape[1], img.shape[0]) != (fw, fh):
        raise ValueError(f"frame_rgb: {img.shape[1]}x{img.shape[0]}, but the result is of a {fw}x{fh} frame; "
                         "draw a result on the frame it was computed from")
    k = int(scale)
    if k != scale or not 1 <= k <= 8:
        raise ValueError(f"scale: {scale!r} is out of range; expected an int 1..8")
    h, w = img.shape[:2]
    pil = Image.fromarray(np.ascontiguousarray(img[..., :3], np.uint8))
    if heat_max is None:
        heat_max = HEAT_MAX + (64.0 if heat_gestalt else 0.0)
    if heat:
        pil = _heat_layer(pil, budget_per_patch(result, gestalt=heat_gestalt), patch, heat_alpha, heat_max)
    if k > 1:
        pil = pil.resize((w * k, h * k), Image.BILINEAR)
    layer = Image.new("RGBA", pil.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    if hasattr(result, "_check_view"):
        result._check_view("overlay")
    kinds, budgets = _host(result.kinds), _host(result.budgets)
    positions, boxes = _host(result.positions).astype(np.float32), np.asarray(result.boxes, np.float32)
    W, H = pil.size
    if gestalt:
        centres = positions[kinds == 0]
        if len(centres):
            for axis, size, line in ((0, W, lambda v: (v, 0, v, H - 1)), (1, H, lambda v: (0, v, W - 1, v))):
                c = np.unique(np.round(centres[:, axis], 1)) * k
                for v in (c[:-1] + c[1:]) / 2:
                    draw.line(line(float(v)), fill=(255, 255, 255, 45))
            for x, y in centres * k:
                draw.rectangle((x - 1, y - 1, x, y), fill=(255, 255, 255, 110))
    counts = {lod: 0 for lod in LOD_COLOURS}
    if saccades:
        sac = np.flatnonzero(kinds == 1)
        for t in sac[np.argsort(budgets[sac], kind="stable")]:  # coarse first, fine on top
            lod = int(budgets[t])
            counts[lod] = counts.get(lod, 0) + 1
            col, a = LOD_COLOURS.get(lod, (255, 255, 255)), LOD_ALPHA.get(lod, 200)
            x0, y0, x1, y1 = (boxes[t] * k).tolist()
            if lod > 64:  # a dark shadow line keeps the box visible on light pixels
                draw.rectangle((x0 + 1, y0 + 1, x1, y1), outline=(0, 0, 0, a // 2))
            draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=col + (a,))
            x, y = (positions[t] * k).tolist()
            draw.rectangle((x - 1, y - 1, x + 1, y + 1), fill=col + (min(255, a + 60),))
    fs = max(11, min(W, 2 * H) // 45)
    font = _font(fs)
    if legend and (saccades or heat):  # it explains those two layers; without them an empty panel
        rows = [(lod, col) for lod, col in sorted(LOD_COLOURS.items(), reverse=True)]
        lw = 9 * fs
        lh = (len(rows) + 1 if saccades else 0) * (fs + 3) + (3 * fs + 10 if heat else 0) + 6
        draw.rectangle((4, 4, 4 + lw, 4 + lh), fill=(0, 0, 0, 150))
        y = 8
        if saccades:
            draw.text((9, y), "level of detail", fill=(235, 235, 235, 255), font=font)
            y += fs + 3
            for lod, col in rows:
                draw.rectangle((9, y + 2, 9 + fs, y + fs), outline=col + (255,), width=2)
                draw.text((14 + fs, y), f"{lod}  x{counts.get(lod, 0)}", fill=(235, 235, 235, 255), font=font)
                y += fs + 3
        if heat:
            draw.text((9, y), "budget per patch", fill=(235, 235, 235, 255), font=font)
            y += fs + 3
            bar = heat_colours(np.sqrt(np.linspace(0, 1, lw - 10)))
            bh = max(4, fs // 2)
            layer.paste(Image.fromarray(np.repeat(np.rint(bar)[None].astype(np.uint8), bh, axis=0)).convert("RGBA"),
                        (9, y + 2))
            y += bh + 3
            draw.text((9, y), "0", fill=(235, 235, 235, 255), font=font)
            top = f"{heat_max:.0f}"
            draw.text((lw - draw.textlength(top, font=font), y), top, fill=(235, 235, 235, 255), font=font)
    if caption:
        churn = getattr(result, "churn", None)
        text = f"frame {result.frame_index}   saccades {result.num_saccades}" + (
            f"   churn {churn:.2f}" if churn is not None else "")
        draw.rectangle((4, H - fs - 10, 10 + draw.textlength(text, font=font), H - 4), fill=(0, 0, 0, 150))
        draw.text((7, H - fs - 8), text, fill=(255, 255, 255, 255), font=font)
    if cuts and result.scene_cut:
        bw = max(3, fs // 3)
        draw.rectangle((0, 0, W - 1, H - 1), outline=(255, 40, 40, 255), width=bw)
        label = "SCENE CUT"
        tw = draw.textlength(label, font=font)
        draw.rectangle((W / 2 - tw / 2 - 6, bw, W / 2 + tw / 2 + 6, bw + fs + 8), fill=(220, 20, 20, 230))
        draw.text((W / 2 - tw / 2, bw + 3), label, fill=(255, 255, 255, 255), font=font)
    return np.asarray(Image.alpha_composite(pil.convert("RGBA"), layer).convert("RGB"))


class OverlayWriter:
    """Writes overlays to a video (PyAV: H.264 where libx264 is available, else MPEG-4 part 2) and/or PNGs per frame;
    ``layers``: those of OVERLAY_LAYERS to draw (default all)."""

    def __init__(self, path=None, png_folder=None, fps: float = 30.0, layers=OVERLAY_LAYERS):
        unknown = set(layers) - set(OVERLAY_LAYERS)
        if unknown:
            raise ValueError(f"layers: {', '.join(sorted(unknown))} unknown; expected some of {', '.join(OVERLAY_LAYERS)}")
        self.path, self.png_folder, self.fps = path, png_folder, fps
        self.layers = {name: name in layers for name in OVERLAY_LAYERS}  # overlay()'s switches
        self._container = self._stream = None
        self.frames = 0
        self.first = None  # the first overlay drawn (RGB array)
        if png_folder is not None:
            from pathlib import Path

            if Path(png_folder).exists() and not Path(png_folder).is_dir():
                raise ValueError(f"png_folder: {str(png_folder)!r} is a file; expected a folder")
            Path(png_folder).mkdir(parents=True, exist_ok=True)
        if path is not None:  # now, not at the first frame: a path or format that cannot work fails before any work
            self._open_video()

    def _open_video(self) -> None:
        import av
        from fractions import Fraction
        from pathlib import Path

        self._created = not Path(self.path).exists()  # only a file this writer made is ever removed
        try:
            self._container = av.open(str(self.path), "w")
            self.codec = overlay_codec()
            self._stream = self._container.add_stream(self.codec, rate=Fraction(self.fps).limit_denominator(1001))
        except (OSError, ValueError, av.error.FFmpegError) as e:
            if self._container is not None:
                self._discard(self._container)
            self._container = self._stream = None
            raise ValueError(f"overlay video {str(self.path)!r}: cannot write it ({e}); expected a path in an "
                             "existing folder ending in .mp4, .mkv, .mov or .avi") from None
        self._stream.pix_fmt = "yuv420p"
        self._stream.bit_rate = 4_000_000

    def _discard(self, container) -> None:
        """Closes an unwritten video; removes its file only if this writer made it."""
        from pathlib import Path

        container.close()
        if self._created:
            Path(self.path).unlink(missing_ok=True)

    def write(self, frame_rgb, result) -> np.ndarray:
        img = overlay(frame_rgb, result, **self.layers)
        if self.first is None:
            self.first = img
        if self.png_folder is not None:
            from pathlib import Path

            Image.fromarray(img).save(Path(self.png_folder) / f"overlay_{self.frames:05d}.png")
        if self.path is not None:
            import av

            if self._container is None:
                raise ValueError(f"overlay video {str(self.path)!r}: this writer is closed")
            h, w = img.shape[:2]
            if self.frames == 0:  # the video's size: the first frame's (even, as yuv420p needs)
                self._stream.width, self._stream.height = w + (w % 2), h + (h % 2)
            sw, sh = self._stream.width, self._stream.height
            if (w, h) != (sw, sh):  # odd sizes and mid-stream size changes: fit the first frame's size
                img = np.asarray(Image.fromarray(img).resize((sw, sh)))
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                self._container.mux(packet)
        self.frames += 1
        return img

    def close(self) -> None:
        if self._container is None:
            return
        container, self._container = self._container, None
        if self.frames == 0:  # nothing was written: no empty video of ours is left behind
            self._discard(container)
            return
        for packet in self._stream.encode():
            container.mux(packet)
        container.close()


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
