"""Image files as H x W x 3 uint8 RGB, the one way every part of the package reads them (image
folders, exemplar files, the CLI, datasets, the live page).

Pillow's ``convert("RGB")`` clips 16-bit pixels to 255 and 32-bit float ones to 0 or 1: a 16-bit
ramp became 13 levels, a float TIFF black. Here 16-bit grey (mode I;16, or I with values within
0..65535, as older Pillows and PGM files give it) is scaled to 8 bits (v / 257, rounded; Pillow
itself reads 16-bit colour PNGs as 8-bit RGB), and float pixels or integers beyond 16 bits, whose
range a file does not state, are refused with a ValueError instead of a silent cast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["pil_to_rgb8", "read_rgb8"]

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def pil_to_rgb8(im, what: str = "image") -> np.ndarray:
    """A PIL image as a C-contiguous H x W x 3 uint8 RGB array (see the module docstring)."""
    if im.mode in _SIXTEEN_BIT or im.mode == "I":
        values = np.asarray(im)
        # Pillow before 10.3 opens 16-bit grey PNGs (and any version 16-bit PGMs) as "I"
        if im.mode != "I" or values.size == 0 or (values.min() >= 0 and values.max() <= 65535):
            grey = np.rint(values.astype(np.float64) / 257.0).astype(np.uint8)
            return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if im.mode in ("I", "F"):
        kind = "32-bit integer pixels beyond 0..65535" if im.mode == "I" else "32-bit float pixels"
        raise ValueError(f"{what}: {kind} (PIL mode {im.mode!r}) have no known range; expected an 8- or "
                         "16-bit image (convert it, e.g. scale to 0..255 and save as PNG)")
    return np.ascontiguousarray(np.asarray(im.convert("RGB")))


def read_rgb8(path, what: str = "image", error: type = ValueError) -> np.ndarray:
    """An image file as H x W x 3 uint8 RGB; ``error`` (ValueError by default) names the file when
    it cannot be read or its pixels cannot be taken as 8-bit colour."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return pil_to_rgb8(im, f"{what} {str(Path(path))!r}")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise error(f"cannot read the {what} {str(path)!r}: {e}") from None
    except ValueError as e:
        if error is ValueError:
            raise
        raise error(str(e)) from None
