"""Built-in evaluation material made from real photographs (scikit-image's sample data; nothing is
downloaded), with the truth known by construction.

* Scenes: a photographed texture (gravel, grass, brick; tinted) with three objects cut from other
  photographs pasted in at known boxes: a small one (32 x 32 pixels, two patches wide), a thin one
  (12 pixels across, less than a patch, and 0.55 of the frame's height long) and a large smooth one
  (0.34 x 0.42 of the frame, little texture) in front of the busy background.
* Camouflage scenes (``gravel-camouflage``, ...): the same scenes with every object's colours made
  those of the background it covers (mean and spread per channel), so that only its structure and
  smoothness tell it apart: the low-contrast objects.
* A video: three panning shots with hard cuts between them; the second cut joins two shots of
  similar colour and brightness (the third shot's colours are matched to the second's).
"""

from __future__ import annotations

import functools

import numpy as np

# Where each object comes from: (photo, rows, columns) of the crop.
OBJECTS = {
    "cat-eye": ("chelsea", (78, 150), (134, 210)),
    "mission-patch": ("astronaut", (345, 425), (135, 215)),
    "spoon": ("coffee", (240, 330), (322, 410)),
    "rocket": ("rocket", (128, 392), (311, 333)),
    "flag": ("astronaut", (100, 290), (0, 24)),
    "helmet": ("astronaut", (385, 505), (300, 470)),
    "crema": ("coffee", (100, 185), (215, 360)),
    "night-sky": ("rocket", (0, 110), (340, 540)),
}

# Per scene: the background texture and its tint, then (object, kind, top-left corner as a fraction
# of the frame). Kinds: small (32 x 32), thin (vertical or horizontal), large (smooth).
SCENES = {
    "gravel": ("gravel", (1.0, 0.86, 0.70), [("cat-eye", "small", (0.10, 0.14)),
                                             ("rocket", "thin", (0.44, 0.22)),
                                             ("helmet", "large", (0.58, 0.36))]),
    "grass": ("grass", (0.55, 0.85, 0.42), [("mission-patch", "small", (0.78, 0.10)),
                                            ("rocket", "thin-horizontal", (0.08, 0.80)),
                                            ("crema", "large", (0.12, 0.15))]),
    "brick": ("brick", (0.95, 0.60, 0.48), [("spoon", "small", (0.62, 0.70)),
                                            ("flag", "thin", (0.88, 0.15)),
                                            ("night-sky", "large", (0.10, 0.20))]),
}

# Low-contrast versions of the scenes above: each object's colours matched to what it covers.
CAMOUFLAGE = "-camouflage"
SCENES.update({name + CAMOUFLAGE: SCENES[name] for name in list(SCENES)})

SMALL = 32  # pixels: two patches
THIN = 12  # pixels across: less than a patch


def _skimage_data():
    try:
        from skimage import data
    except ImportError:
        raise RuntimeError("the built-in evaluation set is made from scikit-image's sample photographs: "
                           "pip install \"arrcoc_rt[eval]\"") from None
    return data


@functools.lru_cache(maxsize=16)
def photo(name: str) -> np.ndarray:
    """A scikit-image sample photograph as H x W x 3 uint8 (grey ones repeated to RGB); read-only."""
    img = np.asarray(getattr(_skimage_data(), name)())
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = np.ascontiguousarray(img[..., :3], dtype=np.uint8)
    img.setflags(write=False)
    return img


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize((int(width), int(height)), Image.BICUBIC))


def _object_size(kind: str, width: int, height: int) -> tuple[int, int]:
    """(w, h) in pixels of an object of this kind in a width x height frame."""
    if kind == "small":
        return SMALL, SMALL
    length = round(0.55 * height)
    thickness = THIN
    if kind == "thin":
        return thickness, length
    if kind == "thin-horizontal":
        return length, thickness
    if kind == "large":
        return round(0.34 * width), round(0.42 * height)
    raise ValueError(f"kind: {kind!r} is not small, thin, thin-horizontal or large")


def background(texture: str, tint, width: int, height: int) -> np.ndarray:
    """A photographed texture at its own scale, mirrored to cover the frame, tinted."""
    grey = photo(texture)[..., 0].astype(np.float64)
    reps = (-(-height // grey.shape[0]), -(-width // grey.shape[1]))
    tiled = np.pad(grey, ((0, (reps[0] - 1) * grey.shape[0]), (0, (reps[1] - 1) * grey.shape[1])),
                   mode="symmetric")[:height, :width]
    return np.clip(np.rint(tiled[..., None] * np.asarray(tint, np.float64)), 0, 255).astype(np.uint8)


def scene(name: str, width: int = 640, height: int = 480) -> tuple[np.ndarray, dict]:
    """One built-in scene: (H x W x 3 uint8 image, {object: (kind, [x0, y0, x1, y1])})."""
    if name not in SCENES:
        raise ValueError(f"scene: {name!r} is not one of {', '.join(SCENES)}")
    if width < 160 or height < 120:
        raise ValueError(f"scene size {width}x{height} is too small; expected at least 160x120")
    texture, tint, objects = SCENES[name]
    img = background(texture, tint, width, height).copy()
    boxes = {}
    for obj, kind, (fx, fy) in objects:
        source, (r0, r1), (c0, c1) = OBJECTS[obj]
        crop = photo(source)[r0:r1, c0:c1]
        if kind == "thin-horizontal":
            crop = np.rot90(crop)  # the object lies on its side
        w, h = _object_size(kind, width, height)
        x0, y0 = round(fx * width), round(fy * height)
        pasted = _resize(crop, w, h)
        if name.endswith(CAMOUFLAGE):
            pasted = _match_colours([pasted], [img[y0:y0 + h, x0:x0 + w]])[0]
        img[y0:y0 + h, x0:x0 + w] = pasted
        boxes[obj] = (kind.split("-")[0], [x0, y0, x0 + w, y0 + h])
    return img, boxes


def _pan(img: np.ndarray, width: int, height: int, frames: int, step: tuple[int, int]) -> list[np.ndarray]:
    """``frames`` windows of width x height moving by ``step`` pixels per frame over the photo,
    scaled so that the whole pan fits."""
    need_w, need_h = width + abs(step[0]) * (frames - 1), height + abs(step[1]) * (frames - 1)
    scale = max(need_w / img.shape[1], need_h / img.shape[0])
    big = _resize(img, int(np.ceil(img.shape[1] * scale)), int(np.ceil(img.shape[0] * scale)))
    x = 0 if step[0] >= 0 else big.shape[1] - width
    y = 0 if step[1] >= 0 else big.shape[0] - height
    out = []
    for _ in range(frames):
        out.append(np.ascontiguousarray(big[y:y + height, x:x + width]))
        x, y = x + step[0], y + step[1]
    return out


def _match_colours(frames: list[np.ndarray], reference: list[np.ndarray]) -> list[np.ndarray]:
    """``frames`` with each channel's mean and spread made those of ``reference``."""
    a = np.stack(frames).astype(np.float64)
    r = np.stack(reference).astype(np.float64)
    mean_a, std_a = a.mean(axis=(0, 1, 2)), a.std(axis=(0, 1, 2)) + 1e-6
    out = (a - mean_a) / std_a * r.std(axis=(0, 1, 2)) + r.mean(axis=(0, 1, 2))
    return [np.ascontiguousarray(f) for f in np.clip(np.rint(out), 0, 255).astype(np.uint8)]


def video(width: int = 640, height: int = 360, shot_frames=(16, 16, 16), step: int = 3):
    """The built-in video: (list of H x W x 3 uint8 frames, true cut frames).

    Shot 1 pans right over the astronaut, shot 2 pans down and right over the coffee cup, shot 3
    pans left over the cat with its colours matched to shot 2 (mean and spread per channel): the
    second cut joins two shots of similar colour and brightness. A cut frame is the first frame of
    the new shot."""
    if len(shot_frames) != 3 or any(int(n) < 2 for n in shot_frames):
        raise ValueError(f"shot_frames: {shot_frames!r}; expected three shot lengths of at least 2 frames")
    if width < 64 or height < 64:
        raise ValueError(f"video size {width}x{height} is too small; expected at least 64x64")
    n1, n2, n3 = (int(n) for n in shot_frames)
    shot1 = _pan(photo("astronaut"), width, height, n1, (step, 0))
    shot2 = _pan(photo("coffee"), width, height, n2, (step, max(1, step // 2)))
    shot3 = _match_colours(_pan(photo("chelsea"), width, height, n3, (-step, 0)), shot2)
    return shot1 + shot2 + shot3, [n1, n1 + n2]
