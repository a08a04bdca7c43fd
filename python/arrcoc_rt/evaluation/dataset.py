"""Evaluation items: a JSONL file of images (or video frames) with a query and the boxes where the
answer is, and the built-in synthetic set.

One item per line (blank lines and lines starting with ``#`` are skipped)::

    {"image": "kitchen.jpg", "query_text": "a red mug", "boxes": [[412, 220, 470, 290]]}
    {"image": "kitchen.jpg", "query_image": "mug.png", "boxes": [[412, 220, 470, 290]], "id": "mug"}
    {"video": "street.mp4", "frame": 120, "query_box": [40, 60, 90, 120], "boxes": [[300, 64, 352, 128]]}

* ``image`` (a path) or ``video`` (a path) with ``frame`` (0-based index of the decoded frame);
  relative paths are relative to the JSONL file's folder.
* At most one query: ``query_text`` (needs a CLIP/SigLIP encoder), ``query_image`` (an exemplar
  picture) or ``query_box`` ([x0, y0, x1, y1]: the exemplar is cut from the same image, e.g. one
  object of a kind to find the others). An item without a query is measured without one only.
* ``boxes``: where the answer is, ``[[x0, y0, x1, y1], ...]`` in pixels (``x1``/``y1`` exclusive);
  several boxes mean their union.
* ``id`` (optional): a name for the item in the report; by default ``<file stem>:<line>``.

Problems raise ``DatasetError`` (a ``ValueError``) naming the file, the line and the field.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..images import read_rgb8

FIELDS = ("id", "image", "video", "frame", "query_text", "query_image", "query_box", "boxes")
QUERY_FIELDS = ("query_text", "query_image", "query_box")


class DatasetError(ValueError):
    """An evaluation item (or its files) is malformed; the message names where and what."""


@dataclass
class Item:
    """One evaluation item: an image, an optional query and the boxes of the answer.

    ``source`` says where the image comes from, in a form that survives a trip through JSON:
    ``{"image": path}``, ``{"video": path, "frame": k}`` or ``{"builtin": scene, "width": w,
    "height": h}``. ``query_image`` is a path or an H x W x 3 uint8 array."""

    id: str
    source: dict
    boxes: list
    query_text: str | None = None
    query_image: object = None
    query_box: list | None = None
    where: str = ""  # "file.jsonl line 3", for messages
    scene: str = ""  # the image's name in the report (the file name, or the built-in scene)
    object_kind: str = ""  # built-in set: small | thin | large
    _pixels: np.ndarray | None = field(default=None, repr=False)

    @property
    def query_kind(self) -> str | None:
        """'text', 'exemplar' (a picture), 'exemplar-box' (cut from the image) or None."""
        if self.query_text is not None:
            return "text"
        if self.query_image is not None:
            return "exemplar"
        if self.query_box is not None:
            return "exemplar-box"
        return None

    def image(self) -> np.ndarray:
        """The H x W x 3 uint8 image, read-only (the last few images read are cached)."""
        if self._pixels is not None:
            return self._pixels
        try:
            return load_source(self.source)
        except DatasetError as e:
            raise DatasetError(f"{self.where}: {_in_field(self.source, e)}") from None

    def size(self) -> tuple[int, int] | None:
        """(width, height) of the image without decoding it; None for a video frame (known when read)."""
        if self._pixels is not None:
            return int(self._pixels.shape[1]), int(self._pixels.shape[0])
        if "builtin" in self.source:
            return int(self.source["width"]), int(self.source["height"])
        if "image" not in self.source:
            return None
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(self.source["image"]) as im:
                return im.size
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
            raise DatasetError(f"{self.where}: field 'image': cannot read the image "
                               f"{self.source['image']!r}: {e}") from None

    def check_boxes(self, width: int, height: int) -> None:
        """Raises DatasetError when a box (or the query box) is not inside the width x height image."""
        for name, boxes in (("boxes", self.boxes), ("query_box", [self.query_box] if self.query_box else [])):
            for k, (x0, y0, x1, y1) in enumerate(boxes):
                if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
                    label = f"{name}[{k}]" if name == "boxes" else name
                    raise DatasetError(f"{self.where}: field {label!r}: {[x0, y0, x1, y1]} is not inside the "
                                       f"{width}x{height} image (expected 0 <= x0 < x1 <= {width}, "
                                       f"0 <= y0 < y1 <= {height})")

    def query(self, image: np.ndarray | None = None):
        """This item's ``arrcoc_rt.Query`` (for ``Pipeline.process(query=...)``): the text, the
        exemplar picture, or the crop of ``image`` under ``query_box``; None without a query."""
        from ..query import Query

        if self.query_text is not None:
            return Query.text(self.query_text)
        if self.query_image is not None:
            if isinstance(self.query_image, np.ndarray):
                return Query.image(self.query_image)
            try:
                return Query.image(read_image(self.query_image))
            except DatasetError as e:
                raise DatasetError(f"{self.where}: field 'query_image': {e}") from None
        if self.query_box is not None:
            img = self.image() if image is None else image
            x0, y0, x1, y1 = (int(round(v)) for v in self.query_box)
            crop = img[y0:y1, x0:x1]
            if crop.shape[0] < 1 or crop.shape[1] < 1:
                raise DatasetError(f"{self.where}: field 'query_box': {list(self.query_box)} rounds to an empty crop "
                                   f"({x0}..{x1} x {y0}..{y1} pixels); expected a box at least one pixel wide and high")
            return Query.image(np.ascontiguousarray(crop))
        return None


def _in_field(source: dict, error: Exception) -> str:
    """An error reading an item's source, naming the field it came from."""
    text = str(error)
    if text.startswith("field "):
        return text
    return f"field {'image' if 'image' in source else 'video' if 'video' in source else 'source'!r}: {text}"


def check_items(items) -> None:
    """Before any work: every image item's file opens and its boxes lie inside it (video frames are
    checked when they are decoded). Raises DatasetError naming the first bad item."""
    for item in items:
        size = item.size()
        if size is not None:
            item.check_boxes(*size)


# ----------------------------------------------------------------------------- reading images


def read_image(path, error: type = DatasetError) -> np.ndarray:
    """An image file as H x W x 3 uint8 RGB (``error``, a DatasetError by default, when unreadable)."""
    return read_rgb8(path, "image", error)


def read_video_frame(path, frame: int) -> np.ndarray:
    """Frame ``frame`` (0-based, in decoding order) of a video file as H x W x 3 uint8 RGB."""
    try:
        import av
    except ImportError:
        raise DatasetError("video items need PyAV: pip install av") from None
    count = 0
    try:
        with av.open(str(path)) as container:
            for f in container.decode(video=0):
                if count == frame:
                    return np.ascontiguousarray(f.to_ndarray(format="rgb24"))
                count += 1
    except (av.error.FFmpegError, OSError) as e:
        raise DatasetError(f"cannot decode the video {str(path)!r}: {e}") from None
    raise DatasetError(f"field 'frame': the video {str(path)!r} has no frame {frame} (it has {count} frames)")


@functools.lru_cache(maxsize=8)
def _load_cached(key: str) -> np.ndarray:
    source = json.loads(key)
    if "image" in source:
        img = read_image(source["image"])
    elif "video" in source:
        img = read_video_frame(source["video"], int(source["frame"]))
    elif "builtin" in source:
        from .synthetic import scene

        img = scene(source["builtin"], int(source["width"]), int(source["height"]))[0]
    else:
        raise DatasetError(f"source {source!r} names no image, video or built-in scene")
    img.setflags(write=False)  # shared by every item on this image
    return img


def load_source(source: dict) -> np.ndarray:
    """The image an item's ``source`` describes (see ``Item``); the last few are cached."""
    return _load_cached(json.dumps(source, sort_keys=True))


def source_key(source: dict) -> str:
    """A string that is equal for two items on the same image."""
    return json.dumps(source, sort_keys=True)


# ----------------------------------------------------------------------------- JSONL


def load_jsonl(path) -> list[Item]:
    """The items of a JSONL dataset file (see the module docstring). Checks every line's fields and
    that the files it names exist; image sizes are checked when the images are read."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read the dataset {str(path)!r}: {e}") from None
    folder = path.resolve().parent
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        items.append(parse_item(line, f"{path.name} line {number}", folder, default_id=f"{path.stem}:{number}"))
    if not items:
        raise DatasetError(f"{str(path)!r} holds no items (one JSON object per line)")
    seen = {}
    for it in items:
        if it.id in seen:
            raise DatasetError(f"{it.where}: field 'id': {it.id!r} is also the id of {seen[it.id]}")
        seen[it.id] = it.where
    return items


def json_object(line: str, fields, fail) -> dict:
    """One JSONL line as a JSON object holding only ``fields``; ``fail(message)`` raises otherwise
    (shared with the experiment's question files)."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        # a line that ends inside a value: most likely a pretty-printed JSON file, not JSON Lines
        spans = e.pos >= len(line.rstrip()) or e.msg.startswith("Unterminated string")
        fail(f"not valid JSON ({e.msg} at column {e.colno})" +
             ("; the line ends inside a JSON value: each line must hold one whole JSON object (JSON Lines), "
              "not a pretty-printed JSON file" if spans else ""))
    if not isinstance(obj, dict):
        fail(f"expected a JSON object {{...}}; got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(fields))
    if unknown:
        fail(f"unknown field(s) {', '.join(map(repr, unknown))}; expected {', '.join(fields)}")
    return obj


def parse_item(line: str, where: str, folder: Path, default_id: str = "") -> Item:
    """One JSONL line as an Item; ``where`` (e.g. "set.jsonl line 3") starts every error message."""

    def fail(msg: str):
        raise DatasetError(f"{where}: {msg}")

    obj = json_object(line, FIELDS, fail)

    def file_field(name: str) -> Path:
        value = obj[name]
        if not isinstance(value, str) or not value:
            fail(f"field {name!r}: expected a file path (string); got {value!r}")
        p = Path(value)
        p = p if p.is_absolute() else folder / p
        if not p.is_file():
            fail(f"field {name!r}: {str(p)!r} " + ("is a folder; expected a file" if p.is_dir() else "does not exist"))
        return p

    if ("image" in obj) == ("video" in obj):
        fail("expected exactly one of the fields 'image' and 'video'")
    if "image" in obj:
        if "frame" in obj:
            fail("field 'frame': only for a 'video' item")
        source = {"image": str(file_field("image"))}
        scene = Path(obj["image"]).name
    else:
        frame = obj.get("frame")
        if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
            fail(f"field 'frame': a 'video' item needs the frame index, an int >= 0; got {frame!r}")
        source = {"video": str(file_field("video")), "frame": frame}
        scene = f"{Path(obj['video']).name}#{frame}"

    queries = [k for k in QUERY_FIELDS if k in obj]
    if len(queries) > 1:
        fail(f"fields {', '.join(map(repr, queries))}: give at most one query")
    query_text = query_image = query_box = None
    if "query_text" in obj:
        query_text = obj["query_text"]
        if not isinstance(query_text, str) or not query_text.strip():
            fail(f"field 'query_text': expected a non-empty string; got {query_text!r}")
    if "query_image" in obj:
        query_image = str(file_field("query_image"))
    if "query_box" in obj:
        query_box = _box(obj["query_box"], "query_box", fail)

    if "boxes" not in obj:
        fail("field 'boxes' is missing: [[x0, y0, x1, y1], ...] in pixels")
    boxes = obj["boxes"]
    if not isinstance(boxes, list) or not boxes:
        fail(f"field 'boxes': expected a non-empty list of [x0, y0, x1, y1]; got {boxes!r}")
    boxes = [_box(b, f"boxes[{k}]", fail) for k, b in enumerate(boxes)]

    item_id = obj.get("id", default_id)
    if not isinstance(item_id, (str, int)) or isinstance(item_id, bool) or str(item_id) == "":
        fail(f"field 'id': expected a non-empty string; got {item_id!r}")
    return Item(id=str(item_id), source=source, boxes=boxes, query_text=query_text, query_image=query_image,
                query_box=query_box, where=where, scene=scene)


def _box(value, name: str, fail) -> list:
    if not isinstance(value, list) or len(value) != 4 or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in value):
        fail(f"field {name!r}: expected [x0, y0, x1, y1] (four numbers, pixels); got {value!r}")
    x0, y0, x1, y1 = value
    if x1 <= x0 or y1 <= y0:
        fail(f"field {name!r}: {value!r} is empty; expected x1 > x0 and y1 > y0")
    if x1 - x0 < 1 or y1 - y0 < 1:
        fail(f"field {name!r}: {value!r} is smaller than one pixel; boxes are in pixels [x0, y0, x1, y1] "
             "(normalised coordinates 0..1 are not read: multiply them by the image's width and height)")
    return [float(v) if isinstance(v, float) else int(v) for v in value]


# ----------------------------------------------------------------------------- the built-in set


def builtin_items(width: int = 640, height: int = 480, scenes=None) -> list[Item]:
    """The built-in synthetic set (see ``arrcoc_rt.evaluation.synthetic``): per scene, one item per
    pasted object (small, thin, large smooth), its exemplar cut from the image at its own box
    (``query_box``). ``scenes``: names to use (default all: gravel, grass, brick and their
    low-contrast versions gravel-camouflage, grass-camouflage, brick-camouflage)."""
    from .synthetic import SCENES, scene

    names = list(SCENES) if scenes is None else list(scenes)
    items = []
    for name in names:
        img, objects = scene(name, width, height)
        img.setflags(write=False)
        source = {"builtin": name, "width": int(width), "height": int(height)}
        for obj, (kind, box) in objects.items():
            items.append(Item(id=f"{name}/{obj}", source=source, boxes=[box], query_box=list(box),
                              where=f"built-in scene {name!r}", scene=name, object_kind=kind, _pixels=img))
    return items


def builtin_video(width: int = 640, height: int = 360, shot_frames=(16, 16, 16)):
    """The built-in synthetic video: (frames, true cut frames); see ``synthetic.video``."""
    from .synthetic import video

    return video(width, height, shot_frames)
