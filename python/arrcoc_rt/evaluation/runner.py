"""Runs the pipeline over evaluation items and a video, measures where the saccades went, and
writes a report (table, results.json, pictures).

    from arrcoc_rt.evaluation import builtin_items, builtin_video, evaluate_images, evaluate_video, write_report

    images = evaluate_images(builtin_items(), device="cpu")
    frames, cuts = builtin_video()
    video = evaluate_video(frames, cuts, device="cpu")
    write_report({"images": images, "video": video}, "arrcoc-eval")

Every image is processed as a first frame (no temporal state), once without a query and once per
item with its query, by one pipeline configuration (``pipeline_options``: any ``Pipeline`` keyword;
``encoder`` defaults to 'builtin'). The video runs through a ``Stream`` without a query.
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from itertools import combinations
from pathlib import Path

import numpy as np

from .dataset import DatasetError, Item, check_items, load_source, source_key
from .metrics import (box_area_share, box_share, churn_stats, cut_scores, distinctiveness, lift,
                      saccade_budget_map, temporal_coherence, top_region_iou)

IOU_CRITERION = 0.5
DISTINCTIVENESS_CRITERION = 0.3
QUERY_FIELD = {"text": "query_text", "exemplar": "query_image", "exemplar-box": "query_box"}


def _finite(values) -> list:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def _median(values):
    v = _finite(values)
    return float(np.median(v)) if v else None


def _clean(obj):
    """The same structure with NumPy scalars as Python numbers and nan/inf as None (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    return str(obj)  # e.g. a Path among the pipeline options


class _Pipelines:
    """Pipelines by frame size (the last few), sharing one encoder object."""

    def __init__(self, options: dict, device: str, keep: int = 4):
        from ..encoders import make_encoder
        from ..runtime import device_string, resolve_device

        self.options = dict(options)
        self.device = device_string(*resolve_device(device))
        self.options["encoder"] = make_encoder(self.options.get("encoder"), self.device)
        self._cache: OrderedDict = OrderedDict()
        self._keep = keep

    def get(self, width: int, height: int):
        from ..pipeline import Pipeline

        key = (width, height)
        if key in self._cache:
            self._cache.move_to_end(key)
        else:
            self._cache[key] = Pipeline(width, height, device=self.device, **self.options)
            while len(self._cache) > self._keep:
                self._cache.popitem(last=False)
        return self._cache[key]


def _allocate(pipe, image: np.ndarray, query) -> dict:
    """One frame from a fresh state: saccade budget map, relevance map, saccade count."""
    pipe.reset()
    r = pipe.process(image, query=query)
    return {"map": saccade_budget_map(r), "relevance": np.asarray(r.relevance, np.float64),
            "saccades": int(r.num_saccades)}


def _measures(run: dict, boxes, width: int, height: int, area_share: float) -> dict:
    share = box_share(run["map"], boxes, width, height)
    return {"share": share, "lift": lift(share, area_share),
            "top_region_iou": top_region_iou(run["relevance"], boxes, width, height),
            "saccades": run["saccades"]}


def _query_description(item: Item):
    kind = item.query_kind
    if kind is None:
        return None
    if kind == "text":
        return {"kind": kind, "text": item.query_text}
    if kind == "exemplar":
        return {"kind": kind, "image": item.query_image if isinstance(item.query_image, str) else "(array)"}
    return {"kind": kind, "box": item.query_box}


def evaluate_images(items, pipeline_options: dict | None = None, device: str = "cpu", *, progress=None) -> dict:
    """Measures, per item, how much of the saccade budget lands on the item's boxes.

    Per item: ``area_share`` (the boxes' share of the pixels); ``query_free`` and ``with_query``
    (None without a query), each with ``share`` (share of the saccade budget in the boxes),
    ``lift`` (share / area_share), ``top_region_iou`` (IoU of the boxes with the box-sized region of
    the most relevant patches; > 0.5 finds it) and ``saccades``; ``lift_over_query_free`` (query
    share / query-free share); and ``maps`` (the saccade budget maps, for the pictures).
    Across items: ``distinctiveness`` for each pair of differently queried items on one image (1 - cosine of
    their saccade budget maps; > 0.3 is a real difference) and a ``summary`` of medians.

    ``items``: ``Item`` objects (``load_jsonl``, ``builtin_items``). ``pipeline_options``: keywords
    for ``Pipeline`` (``encoder`` defaults to 'builtin'; text queries need 'clip:PATH' or
    'siglip:PATH'). ``progress``: called as progress(done, total, item_id) after each item.
    Returns a JSON-serializable dict (undefined values are None). Raises DatasetError for an item
    whose files or boxes are bad."""
    items = list(items)
    options = dict(pipeline_options or {})
    options.setdefault("encoder", "builtin")
    encoder = options["encoder"]
    encoder_name = encoder if isinstance(encoder, str) or encoder is None else getattr(encoder, "name", "")
    for item in items:
        if encoder_name is None and item.query_kind is not None:
            raise DatasetError(f"{item.where}: field {QUERY_FIELD[item.query_kind]!r}: queries need an "
                               "encoder (encoder 'builtin' for exemplars, 'clip:PATH' or 'siglip:PATH' for text)")
    if encoder_name in (None, "builtin"):
        for item in items:
            if item.query_kind == "text":
                raise DatasetError(f"{item.where}: field 'query_text': text queries need a CLIP/SigLIP encoder "
                                   f"(encoder 'clip:PATH' or 'siglip:PATH'); the {encoder_name or 'missing'} encoder "
                                   "takes exemplar images (query_image, query_box)")
    check_items(items)  # a bad file or box fails now, not after the items before it have run
    pipelines = _Pipelines(options, device)
    query_free: dict = {}  # source key -> run without a query
    keep_alive = []  # the pipeline recognises a repeated query by id(): no query object may be freed and reused
    rows = []
    for done, item in enumerate(items, start=1):
        image = item.image()
        height, width = image.shape[:2]
        item.check_boxes(width, height)
        pipe = pipelines.get(width, height)
        key = source_key(item.source)
        if key not in query_free:
            query_free[key] = _allocate(pipe, image, None)
        free = query_free[key]
        area = box_area_share(item.boxes, width, height)
        row = {"id": item.id, "scene": item.scene, "object": item.object_kind or None, "source": item.source,
               "size": [width, height], "boxes": item.boxes, "query": _query_description(item),
               "area_share": area, "query_free": _measures(free, item.boxes, width, height, area),
               "with_query": None, "lift_over_query_free": None,
               "maps": {"query_free": free["map"].astype(int).tolist(), "with_query": None}}
        query = item.query(image)
        if query is not None:
            keep_alive.append(query)
            run = _allocate(pipe, image, query)
            row["with_query"] = _measures(run, item.boxes, width, height, area)
            qf_share = row["query_free"]["share"]
            row["lift_over_query_free"] = (row["with_query"]["share"] / qf_share
                                           if math.isfinite(qf_share) and qf_share > 0 else math.nan)
            row["maps"]["with_query"] = run["map"].astype(int).tolist()
        rows.append(row)
        if progress is not None:
            progress(done, len(items), item.id)

    pairs = []
    by_image: dict = {}
    for row in rows:
        if row["maps"]["with_query"] is not None:
            by_image.setdefault(source_key(row["source"]), []).append(row)
    for group in by_image.values():
        for a, b in combinations(group, 2):
            if a["query"] == b["query"]:  # the same query twice (e.g. boxes of two instances): not a pair of queries
                continue
            pairs.append({"scene": a["scene"], "a": a["id"], "b": b["id"],
                          "distinctiveness": distinctiveness(a["maps"]["with_query"], b["maps"]["with_query"])})

    queried = [r for r in rows if r["with_query"] is not None]
    ious = _finite(r["with_query"]["top_region_iou"] for r in queried)
    dist = _finite(p["distinctiveness"] for p in pairs)
    summary = {
        "items": len(rows), "items_with_query": len(queried),
        "median_area_share": _median(r["area_share"] for r in rows),
        "median_query_free_share": _median(r["query_free"]["share"] for r in rows),
        "median_query_free_lift": _median(r["query_free"]["lift"] for r in rows),
        "median_query_share": _median(r["with_query"]["share"] for r in queried),
        "median_query_lift": _median(r["with_query"]["lift"] for r in queried),
        "median_lift_over_query_free": _median(r["lift_over_query_free"] for r in queried),
        "median_query_free_iou": _median(r["query_free"]["top_region_iou"] for r in rows),
        "median_query_iou": _median(ious),
        "iou_above_criterion": sum(v > IOU_CRITERION for v in ious), "iou_criterion": IOU_CRITERION,
        "distinctiveness_pairs": len(pairs), "median_distinctiveness": _median(dist),
        "distinctiveness_above_criterion": sum(v > DISTINCTIVENESS_CRITERION for v in dist),
        "distinctiveness_criterion": DISTINCTIVENESS_CRITERION,
    }
    settings = {"device": pipelines.device, "encoder": encoder if isinstance(encoder, str) or encoder is None
                else getattr(encoder, "name", type(encoder).__name__),
                "pipeline_options": {k: v for k, v in options.items() if k != "encoder"}}
    return _clean({"settings": settings, "items": rows, "distinctiveness": pairs, "summary": summary})


def _frame_size(frame) -> list:
    """[width, height] of an av.VideoFrame or an H x W x C array."""
    if hasattr(frame, "planes"):
        return [int(frame.width), int(frame.height)]
    shape = np.shape(frame)
    return [int(shape[1]), int(shape[0])]


def evaluate_video(frames_or_path, true_cuts, pipeline_options: dict | None = None, device: str = "cpu", *,
                   tolerance: int = 0, max_frames: int | None = None, name: str | None = None) -> dict:
    """Temporal behaviour on a video without a query: coherence of the saccades from frame to frame,
    churn, and scene-cut detection against ``true_cuts`` (frame indices, each the first frame of a
    new shot).

    ``frames_or_path``: H x W x 3 uint8 frames (a list or any iterable) or a video file path (read
    with ``arrcoc_rt.open``). Returns ``coherence`` (cosine of consecutive saccade budget maps:
    median, min, pairs; pairs across a true cut are left out), ``churn`` (median, mean, max over
    frames after the first, true cut frames left out), ``cuts`` (precision, recall, missed, false;
    a detection counts within ``tolerance`` frames), and ``per_frame`` lists. JSON-serializable."""
    try:
        cuts = sorted({int(c) for c in true_cuts})
    except (TypeError, ValueError):
        raise DatasetError(f"cuts: {true_cuts!r} is not a list of frame indices") from None
    options = dict(pipeline_options or {})
    options.pop("encoder", None)  # no query here: an encoder would change nothing
    from ..runtime import device_string, resolve_device
    from ..sources import SourceError, open as open_source
    from ..stream import Stream

    stream = Stream(device=device_string(*resolve_device(device)), **options)
    source = None
    if isinstance(frames_or_path, (str, Path)):
        try:
            source = open_source(str(frames_or_path))
        except (SourceError, ValueError) as e:
            raise DatasetError(f"video: {e}") from None
        frames, name = source, name or str(frames_or_path)
    else:
        frames = frames_or_path
    maps, churn, detected, saccades = [], [], [], []
    size = None
    try:
        for k, frame in enumerate(frames):
            if max_frames is not None and k >= max_frames:
                break
            frame_size = _frame_size(frame)
            if size is not None and frame_size != size:
                raise DatasetError(f"video: frame {k} is {frame_size[0]}x{frame_size[1]}, frame 0 was "
                                   f"{size[0]}x{size[1]}; coherence compares the frames of one size")
            r = stream.process(frame)
            maps.append(saccade_budget_map(r))
            churn.append(r.churn)
            saccades.append(int(r.num_saccades))
            if r.scene_cut:
                detected.append(k)
            size = frame_size
    except SourceError as e:
        raise DatasetError(f"video: {e}") from None
    finally:
        if source is not None:
            source.close()
    n = len(maps)
    if n < 2:
        raise DatasetError(f"video: {n} frame(s); a video evaluation needs at least 2")
    bad = [c for c in cuts if not 1 <= c < n]
    if bad:
        raise DatasetError(f"cuts: {bad} are not frames 1..{n - 1} of this {n}-frame video "
                           "(a cut is the first frame of a new shot)")
    coherence = temporal_coherence(maps, skip=cuts)
    return _clean({
        "name": name or "video", "frames": n, "size": size, "true_cuts": cuts, "detected_cuts": detected,
        "cuts": dict(cut_scores(detected, cuts, tolerance), tolerance=tolerance),
        "coherence": {k: v for k, v in coherence.items() if k != "cosines"},
        "churn": churn_stats(churn, skip=cuts),
        "per_frame": {"cosine": coherence["cosines"], "churn": churn, "scene_cut": [k in detected for k in range(n)],
                      "saccades": saccades},
    })


# ----------------------------------------------------------------------------- report


def _split(results: dict):
    """(images, video) from evaluate_images' dict, evaluate_video's, or {"images": .., "video": ..}."""
    if "items" in results:
        return results, None
    if "per_frame" in results:
        return None, results
    return results.get("images"), results.get("video")


def _f(v, digits: int = 3, width: int = 7) -> str:
    return f"{v:{width}.{digits}f}" if isinstance(v, (int, float)) and math.isfinite(v) else f"{'-':>{width}s}"


def format_table(results: dict) -> str:
    """The results as fixed-width text (what ``write_report`` prints)."""
    images, video = _split(results)
    lines = []
    if images:
        rows = images["items"]
        s = images["summary"]
        kinds = sorted({r["query"]["kind"] for r in rows if r["query"]})
        lines.append(f"images: {s['items']} items, {s['items_with_query']} with a query"
                     f"{' (' + ', '.join(kinds) + ')' if kinds else ''}; "
                     f"device {images['settings']['device']}, encoder {images['settings']['encoder']}")
        lines.append("share = share of the saccade budget in the box; lift = share / the box's share of the pixels")
        name_w = max([len(r["id"]) for r in rows] + [4])
        lines.append(f"{'item':{name_w}s} {'object':7s} {'area':>7s} | {'query-free':^15s} | {'with query':^15s} | "
                     f"{'lift vs':>7s} | {'IoU top relevance':^15s}")
        lines.append(f"{'':{name_w}s} {'':7s} {'share':>7s} | {'share':>7s} {'lift':>7s} | {'share':>7s} {'lift':>7s} | "
                     f"{'q-free':>7s} | {'q-free':>7s} {'query':>7s}")
        lines.append("-" * len(lines[-1]))
        for r in rows:
            q = r["with_query"] or {}
            lines.append(f"{r['id']:{name_w}s} {(r['object'] or '-'):7s} {_f(r['area_share'])} | "
                         f"{_f(r['query_free']['share'])} {_f(r['query_free']['lift'], 2)} | "
                         f"{_f(q.get('share'))} {_f(q.get('lift'), 2)} | {_f(r['lift_over_query_free'], 2)} | "
                         f"{_f(r['query_free']['top_region_iou'])} {_f(q.get('top_region_iou'))}")
        lines.append(f"medians: query-free lift {_f(s['median_query_free_lift'], 2).strip()}, query lift "
                     f"{_f(s['median_query_lift'], 2).strip()}, lift over query-free "
                     f"{_f(s['median_lift_over_query_free'], 2).strip()}, IoU with query "
                     f"{_f(s['median_query_iou']).strip()} (above {s['iou_criterion']}: "
                     f"{s['iou_above_criterion']}/{s['items_with_query']})")
        if images["distinctiveness"]:
            lines.append(f"distinctiveness (1 - cosine of two queries' saccade budget maps on one image; "
                         f"criterion > {s['distinctiveness_criterion']}):")
            for p in images["distinctiveness"]:
                where = "" if p["a"].startswith(p["scene"]) else f"{p['scene']}: "
                lines.append(f"  {where}{p['a']} vs {p['b']}: {_f(p['distinctiveness']).strip()}")
            lines.append(f"  median {_f(s['median_distinctiveness']).strip()}; above the criterion: "
                         f"{s['distinctiveness_above_criterion']}/{s['distinctiveness_pairs']} pairs")
    if video:
        if lines:
            lines.append("")
        c, coh, ch = video["cuts"], video["coherence"], video["churn"]
        size = f" {video['size'][0]}x{video['size'][1]}" if video.get("size") else ""
        lines.append(f"video: {video['name']}, {video['frames']} frames{size}; true cuts {video['true_cuts']}, "
                     f"detected {video['detected_cuts']}")
        lines.append(f"  cuts: precision {_f(c['precision'], 2).strip()}, recall {_f(c['recall'], 2).strip()}; "
                     f"missed {c['missed']}, false {c['false']} (tolerance {c['tolerance']} frames)")
        lines.append(f"  coherence (cosine of consecutive saccade budget maps, not across true cuts): median "
                     f"{_f(coh['median']).strip()}, min {_f(coh['min']).strip()} over {coh['pairs']} pairs")
        lines.append(f"  churn (share of saccades on new content; first and cut frames left out): median "
                     f"{_f(ch['median']).strip()}, mean {_f(ch['mean']).strip()}, max {_f(ch['max']).strip()} "
                     f"over {ch['frames']} frames")
    return "\n".join(lines) + "\n"


def _json_text(results: dict) -> str:
    """Indented JSON with each innermost list of numbers kept on one line (maps stay readable)."""
    text = json.dumps(results, indent=1)
    return re.sub(r"\[\s*([-0-9.eE+, \nnultrfas]+?)\s*\]",
                  lambda m: "[" + ", ".join(p.strip() for p in m.group(1).split(",")) + "]", text)


def _file_name(item_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", item_id).strip("_") or "item"


def write_report(results: dict, out_dir, *, quiet: bool = False) -> dict:
    """Writes ``results.json``, ``report.txt`` (the table, also printed unless ``quiet``),
    ``homunculus_<item>.png`` per image item (the saccade budget per patch as a heat map over the
    frame, without and with the query, the boxes in green) and ``video_timeline.png``.
    ``results``: what evaluate_images or evaluate_video returned, or {"images": ..., "video": ...}.
    Returns {"table": text, "files": [paths written]}."""
    from .plots import item_figure, timeline_figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = _clean(results)
    images, video = _split(results)
    table = format_table(results)
    files = []
    (out / "results.json").write_text(_json_text(results) + "\n")
    (out / "report.txt").write_text(table)
    files += [out / "results.json", out / "report.txt"]
    notes = []
    used = set()
    for row in (images or {}).get("items", []):
        try:
            frame = load_source(row["source"])
        except (DatasetError, OSError, ValueError, RuntimeError) as e:
            notes.append(f"no picture for {row['id']}: {e}")
            continue
        panels = [(f"query-free: share {_f(row['query_free']['share']).strip()}, lift "
                   f"{_f(row['query_free']['lift'], 2).strip()}", np.asarray(row["maps"]["query_free"], float))]
        if row["maps"]["with_query"] is not None:
            q = row["with_query"]
            panels.append((f"{row['query']['kind']}: share {_f(q['share']).strip()}, lift {_f(q['lift'], 2).strip()}, "
                           f"IoU {_f(q['top_region_iou']).strip()}", np.asarray(row["maps"]["with_query"], float)))
        query_box = (row["query"] or {}).get("box")
        if query_box is not None and [query_box] == row["boxes"]:
            query_box = None  # the exemplar is the answer's box itself
        title = f"{row['id']}: saccade budget per patch (box in green" + (
            ", exemplar box in blue)" if query_box is not None else ")")
        name = _file_name(row["id"])
        while name in used:
            name += "_"
        used.add(name)
        path = out / f"homunculus_{name}.png"
        item_figure(np.asarray(frame), panels, row["boxes"], title, query_box).save(path)
        files.append(path)
    if video:
        path = out / "video_timeline.png"
        timeline_figure(video).save(path)
        files.append(path)
    # Pictures an earlier run wrote here (other items, or a video) would pass for this run's: gone.
    stale = [p for p in [*out.glob("homunculus_*.png"), out / "video_timeline.png"] if p.is_file() and p not in files]
    for p in stale:
        p.unlink()
    if stale:
        notes.append(f"removed {len(stale)} picture(s) an earlier run left in {out}")
    if not quiet:
        print(table, end="")
        for note in notes:
            print(note)
    return {"table": table, "files": [str(p) for p in files]}
