"""Questions for ``arrcoc-rt experiment``: our JSONL format, VQAv2 and TextVQA as distributed, and
the built-in synthetic set (``synthetic``).

JSONL, one question per line (blank lines and lines starting with ``#`` are skipped)::

    {"image": "kitchen.jpg", "question": "What color is the mug?", "answers": ["red", "red", "dark red"]}
    {"video": "street.mp4", "frame": 120, "question": "What does the sign say?", "answers": ["stop"],
     "box": [300, 64, 352, 128], "id": "sign-1", "kind": "text"}

* ``image`` (a path), or ``video`` (a video file PyAV decodes, or a folder of images taken in name
  order) with ``frame`` (0-based index of the decoded frame); relative paths are relative to the
  JSONL file's folder. On a video the method sees the frames before ``frame`` too (``--context-frames``;
  EVS compares with the one before).
* ``question``: the text; ``answers``: the reference answers, a non-empty list of strings (ten
  for the VQA metric, one for exact match; see ``vqa``).
* ``box`` (optional): [x0, y0, x1, y1] in pixels (x1/y1 exclusive), where the answer is; the report
  then gives the share of the visual tokens whose centre falls in it.
* ``id`` (optional; default ``<file stem>:<line>``) and ``kind`` (optional; a tag the report groups by).
* ``tier`` (optional): the question's labelled tier, ``simple``, ``medium`` or ``complex``
  (``arrcoc_rt.vlm.tiers``); a ``--budget`` run then scores the tiers it assigned against it.

Problems raise ``DatasetError`` (a ``ValueError``) naming the file, the line and the field.

VQAv2 (``read_vqav2``): ``v2_OpenEnded_mscoco_{split}_questions.json`` + ``v2_mscoco_{split}_annotations.json``
+ a folder of ``COCO_{split}_{image_id:012d}.jpg``; the ten answers per question; ``kind`` is the
answer type (yes/no, number, other). TextVQA (``read_textvqa``): ``TextVQA_0.5.1_{split}.json`` + a
folder of ``{image_id}.jpg`` (train and val share ``train_images``); its ten answers per question.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..evaluation.dataset import json_object
from ..evaluation.dataset import read_image as evaluation_read_image
from ..sources import IMAGE_SUFFIXES
from ..vlm.tiers import TIERS

FIELDS = ("id", "image", "video", "frame", "question", "answers", "box", "kind", "tier")
# Decision thresholds of the seeds (points of accuracy): (promising, strong).
THRESHOLDS = {"vqav2": (2.0, 5.0), "textvqa": (3.0, 7.0)}


class DatasetError(ValueError):
    """A question (or its files) is malformed; the message names where and what."""


@dataclass
class Question:
    """One question about an image or a video frame.

    ``source``: ``{"image": path}``, ``{"video": path, "frame": k}`` or ``{"synthetic": name}`` (the
    frames are then held in ``frames_``)."""

    id: str
    question: str
    answers: list
    source: dict
    box: list | None = None
    dataset: str = "jsonl"
    kind: str = ""
    where: str = ""
    tier: str | None = None  # the labelled tier (simple / medium / complex), when known
    frames_: list | None = field(default=None, repr=False)  # synthetic: [..., target] RGB arrays

    @property
    def is_video(self) -> bool:
        return "video" in self.source or (self.frames_ is not None and len(self.frames_) > 1)

    def load_frames(self, context: int = 1) -> list:
        """[earlier frames..., the frame asked about] as H x W x 3 uint8 RGB: up to ``context`` frames
        before it on a video, just the image otherwise."""
        if self.frames_ is not None:
            return list(self.frames_[-(context + 1):]) if self.is_video else [self.frames_[-1]]
        if "image" in self.source:
            return [read_image(self.source["image"])]
        return read_video_frames(self.source["video"], int(self.source["frame"]), context)


# ----------------------------------------------------------------------------- images and frames


def read_image(path) -> np.ndarray:
    """An image file as H x W x 3 uint8 RGB (this module's DatasetError when unreadable)."""
    return evaluation_read_image(path, DatasetError)


def folder_frames(folder) -> list:
    """The frames of a video given as a folder of images: its image files in name order."""
    return sorted(f for f in Path(folder).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)


def read_video_frames(path, frame: int, context: int = 1) -> list:
    """Frames ``frame - context .. frame`` (as many as exist; 0-based, in decoding order) of a video
    file or of a folder of images in name order, as H x W x 3 uint8 RGB."""
    p = Path(path)
    first = max(0, frame - max(0, int(context)))
    if p.is_dir():
        files = folder_frames(p)
        if frame >= len(files):
            raise DatasetError(f"field 'frame': the image folder {str(p)!r} has no frame {frame} "
                               f"(it has {len(files)} images)")
        return [read_image(f) for f in files[first:frame + 1]]
    try:
        import av
    except ImportError:
        raise DatasetError("video questions need PyAV: pip install av") from None
    frames, count = [], 0
    try:
        with av.open(str(p)) as container:
            for f in container.decode(video=0):
                if count >= first:
                    frames.append(np.ascontiguousarray(f.to_ndarray(format="rgb24")))
                if count == frame:
                    return frames
                count += 1
    except (av.error.FFmpegError, OSError) as e:
        raise DatasetError(f"cannot decode the video {str(p)!r}: {e}") from None
    raise DatasetError(f"field 'frame': the video {str(p)!r} has no frame {frame} (it has {count} frames)")


def fit_frame(frame: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """(frame, scale): the frame shrunk (bicubic, aspect kept) so its longer side is at most
    ``max_side``; the same frame and 1.0 when it already fits (or ``max_side`` is None)."""
    h, w = frame.shape[:2]
    if max_side is not None and max_side < 0:  # would shrink every frame to 1 x 1
        raise ValueError(f"max_side: {max_side} is out of range; expected >= 1 (or 0 / None: no limit)")
    if not max_side or max(h, w) <= max_side:
        return frame, 1.0
    from PIL import Image

    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.BICUBIC)), size[0] / w


# ----------------------------------------------------------------------------- JSONL


def load_jsonl(path) -> list[Question]:
    """The questions of a JSONL file (see the module docstring); checks every line and that the
    files it names exist."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read the questions {str(path)!r}: {e}") from None
    folder = path.resolve().parent
    out, seen = [], {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        q = parse_line(line, f"{path.name} line {number}", folder, f"{path.stem}:{number}")
        if q.id in seen:
            raise DatasetError(f"{q.where}: field 'id': {q.id!r} is also the id of {seen[q.id]}")
        seen[q.id] = q.where
        out.append(q)
    if not out:
        raise DatasetError(f"{str(path)!r} holds no questions (one JSON object per line)")
    return out


def parse_line(line: str, where: str, folder: Path, default_id: str) -> Question:
    """One JSONL line as a Question; ``where`` starts every error message."""

    def fail(msg: str):
        raise DatasetError(f"{where}: {msg}")

    obj = json_object(line, FIELDS, fail)

    def path_field(name: str, folder_ok: bool = False) -> str:
        value = obj[name]
        if not isinstance(value, str) or not value:
            fail(f"field {name!r}: expected a path (string); got {value!r}")
        p = Path(value)
        p = p if p.is_absolute() else folder / p
        if not (p.is_file() or (folder_ok and p.is_dir())):
            fail(f"field {name!r}: {str(p)!r} does not exist")
        return str(p)

    if ("image" in obj) == ("video" in obj):
        fail("expected exactly one of the fields 'image' and 'video'")
    if "image" in obj:
        if "frame" in obj:
            fail("field 'frame': only for a 'video' question")
        source = {"image": path_field("image")}
    else:
        frame = obj.get("frame")
        if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
            fail(f"field 'frame': a 'video' question needs the frame index, an int >= 0; got {frame!r}")
        source = {"video": path_field("video", folder_ok=True), "frame": frame}
    question = obj.get("question")
    if not isinstance(question, str) or not question.strip():
        fail(f"field 'question': expected a non-empty string; got {question!r}")
    answers = obj.get("answers")
    if (not isinstance(answers, list) or not answers
            or any(not isinstance(a, str) or not a.strip() for a in answers)):
        fail(f"field 'answers': expected a non-empty list of non-empty strings; got {answers!r}")
    box = None
    if "box" in obj:
        box = check_box(obj["box"], fail)
    kind = obj.get("kind", "")
    if not isinstance(kind, str):
        fail(f"field 'kind': expected a string; got {kind!r}")
    tier = obj.get("tier")
    if "tier" in obj and tier not in TIERS:
        fail(f"field 'tier': expected one of {', '.join(TIERS)}; got {tier!r}")
    qid = obj.get("id", default_id)
    if isinstance(qid, bool) or not isinstance(qid, (str, int)) or str(qid) == "":
        fail(f"field 'id': expected a non-empty string; got {qid!r}")
    return Question(id=str(qid), question=question.strip(), answers=list(answers), source=source, box=box,
                    dataset="jsonl", kind=kind, where=where, tier=tier)


def check_box(value, fail) -> list:
    if not isinstance(value, list) or len(value) != 4 or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in value):
        fail(f"field 'box': expected [x0, y0, x1, y1] (four numbers, pixels); got {value!r}")
    if value[2] <= value[0] or value[3] <= value[1]:
        fail(f"field 'box': {value!r} is empty; expected x1 > x0 and y1 > y0")
    return [float(v) for v in value]


# ----------------------------------------------------------------------------- VQAv2 and TextVQA


def _read_json(path, what: str):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{what}: {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{what}: cannot read {str(path)!r}: {e}") from None


def read_vqav2(questions_file, annotations_file, image_dir) -> list[Question]:
    """VQAv2 as distributed: the questions file (``{"data_subtype": "val2014", "questions":
    [{"image_id", "question", "question_id"}, ...]}``), the annotations file (``{"annotations":
    [{"question_id", "answer_type", "answers": [{"answer": ...}, ...]}, ...]}``) and the folder of
    ``COCO_{data_subtype}_{image_id:012d}.jpg``. Image files are checked when read (``check_files``)."""
    qs = _read_json(questions_file, "VQAv2 questions")
    an = _read_json(annotations_file, "VQAv2 annotations")
    if not isinstance(qs, dict) or not isinstance(qs.get("questions"), list):
        raise DatasetError(f"VQAv2 questions: {str(questions_file)!r} has no 'questions' list")
    if not isinstance(an, dict) or not isinstance(an.get("annotations"), list):
        raise DatasetError(f"VQAv2 annotations: {str(annotations_file)!r} has no 'annotations' list")
    subtype = qs.get("data_subtype") or an.get("data_subtype")
    if not isinstance(subtype, str) or not subtype:
        raise DatasetError(f"VQAv2 questions: {str(questions_file)!r} names no 'data_subtype' (e.g. 'val2014'), "
                           "which the image file names need")
    by_id = {}
    for a in an["annotations"]:
        try:
            by_id[a["question_id"]] = a
        except (KeyError, TypeError):
            raise DatasetError(f"VQAv2 annotations: an entry without 'question_id': {str(a)[:120]}") from None
    folder = Path(image_dir)
    out = []
    for q in qs["questions"]:
        try:
            qid, image_id, text = q["question_id"], int(q["image_id"]), q["question"]
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"VQAv2 questions: an entry without question_id/image_id/question: {str(q)[:120]}") from None
        a = by_id.get(qid)
        if a is None:
            raise DatasetError(f"VQAv2: question {qid} has no annotation in {str(annotations_file)!r} "
                               "(test splits are not annotated)")
        answers = [x["answer"] for x in a.get("answers", []) if isinstance(x, dict) and isinstance(x.get("answer"), str)]
        if not answers:
            raise DatasetError(f"VQAv2 annotations: question {qid} has no answers")
        out.append(Question(id=str(qid), question=str(text), answers=answers, dataset="vqav2",
                            kind=str(a.get("answer_type", "")),
                            source={"image": str(folder / f"COCO_{subtype}_{image_id:012d}.jpg")},
                            where=f"VQAv2 question {qid}"))
    return out


def read_textvqa(json_file, image_dir) -> list[Question]:
    """TextVQA as distributed: ``TextVQA_0.5.1_{split}.json`` (``{"data": [{"question_id",
    "image_id", "question", "answers": [10 strings]}, ...]}``) and the folder of ``{image_id}.jpg``."""
    d = _read_json(json_file, "TextVQA")
    if not isinstance(d, dict) or not isinstance(d.get("data"), list):
        raise DatasetError(f"TextVQA: {str(json_file)!r} has no 'data' list")
    folder = Path(image_dir)
    out = []
    for e in d["data"]:
        try:
            qid, image_id, text, answers = e["question_id"], e["image_id"], e["question"], e["answers"]
        except (KeyError, TypeError):
            raise DatasetError(f"TextVQA: an entry without question_id/image_id/question/answers: {str(e)[:120]}") from None
        answers = [a for a in answers if isinstance(a, str)]
        if not answers:
            raise DatasetError(f"TextVQA: question {qid} has no answers (test splits are not annotated)")
        out.append(Question(id=str(qid), question=str(text), answers=answers, dataset="textvqa", kind="text",
                            source={"image": str(folder / f"{image_id}.jpg")}, where=f"TextVQA question {qid}"))
    return out


def _first_dir(*candidates) -> Path | None:
    return next((Path(c) for c in candidates if c is not None and Path(c).is_dir()), None)


def load_dataset(spec: str, *, split: str | None = None, images=None, synthetic_count: int = 6,
                 synthetic_size=(640, 480)) -> list[Question]:
    """Questions for ``--data``: ``builtin`` (the synthetic set), a ``.jsonl`` file, ``vqav2:ROOT``
    (ROOT holds the questions and annotations files of ``split``, default val2014, and the images in
    ROOT/{split}/ unless ``images`` names the folder) or ``textvqa:ROOT`` (ROOT holds
    TextVQA_0.5.1_{split}.json, split default val, and the images in ROOT/train_images/ or
    ROOT/train_val_images/train_images/ (ROOT/test_images/ for test) unless ``images`` names it)."""
    if spec == "builtin":
        from .synthetic import synthetic_questions

        return synthetic_questions(count=synthetic_count, width=synthetic_size[0], height=synthetic_size[1])
    kind, _, root = spec.partition(":")
    if kind == "vqav2" and root:
        split = split or "val2014"
        r = Path(root)
        if not r.is_dir():
            raise DatasetError(f"VQAv2: {root!r} does not exist or is not a folder (expected the folder of the "
                               f"questions and annotations files)")
        folder = _first_dir(images, r / split, r / "images" / split)
        if folder is None:
            raise DatasetError(f"VQAv2: no image folder: give --images DIR (looked for {str(r / split)!r})")
        return read_vqav2(r / f"v2_OpenEnded_mscoco_{split}_questions.json", r / f"v2_mscoco_{split}_annotations.json",
                          folder)
    if kind == "textvqa" and root:
        split = split or "val"
        r = Path(root)
        if not r.is_dir():
            raise DatasetError(f"TextVQA: {root!r} does not exist or is not a folder (expected the folder of "
                               f"TextVQA_0.5.1_{split}.json)")
        sub = "test_images" if split == "test" else "train_images"
        folder = _first_dir(images, r / sub, r / f"train_val_images/{sub}", r / "images")
        if folder is None:
            raise DatasetError(f"TextVQA: no image folder: give --images DIR (looked for {str(r / sub)!r})")
        return read_textvqa(r / f"TextVQA_0.5.1_{split}.json", folder)
    if spec.endswith(".jsonl") or Path(spec).is_file():
        return load_jsonl(spec)
    raise DatasetError(f"--data {spec!r}: expected builtin, a .jsonl file, vqav2:ROOT or textvqa:ROOT")


def sample(questions: list, n: int | None, seed: int = 0) -> list:
    """``n`` questions drawn without replacement with ``numpy.random.default_rng(seed)``, in their
    original order; all of them when ``n`` is None or at least their number."""
    if n is None or n >= len(questions):
        return list(questions)
    if n < 1:
        raise ValueError(f"--sample {n}: expected at least 1")
    idx = np.sort(np.random.default_rng(seed).choice(len(questions), size=n, replace=False))
    return [questions[i] for i in idx]


def check_files(questions: list) -> None:
    """DatasetError naming the first question whose image or video is missing (after sampling, so a
    partial download of a large set can still be sampled)."""
    missing = [q for q in questions
               if q.frames_ is None and not Path(q.source.get("image") or q.source.get("video")).exists()]
    if missing:
        q = missing[0]
        raise DatasetError(f"{q.where or q.id}: {q.source.get('image') or q.source.get('video')!r} does not exist "
                           f"({len(missing)} of {len(questions)} questions have no file)")
    counts = {}  # a frame past the end of its image folder: found now, not after the model has loaded
    for q in questions:
        folder = q.source.get("video") if q.frames_ is None else None
        if folder is not None and Path(folder).is_dir():
            if folder not in counts:
                counts[folder] = len(folder_frames(folder))
            if int(q.source["frame"]) >= counts[folder]:
                raise DatasetError(f"{q.where or q.id}: field 'frame': the image folder {folder!r} has no frame "
                                   f"{q.source['frame']} (it has {counts[folder]} images)")


def thresholds_for(questions: list) -> tuple[str, tuple[float, float]]:
    """(benchmark name, (promising, strong) points) for the seeds' GO rule: TextVQA's when every
    question is from TextVQA, else VQAv2's."""
    kinds = {q.dataset for q in questions}
    if kinds == {"textvqa"}:
        return "textvqa", THRESHOLDS["textvqa"]
    return ("vqav2" if kinds == {"vqav2"} else "vqa"), THRESHOLDS["vqav2"]
