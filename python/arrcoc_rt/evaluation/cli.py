"""``arrcoc-rt eval``: where do the saccades go, with and without a query, and do they hold still?

    arrcoc-rt eval                                  the built-in synthetic set and video (no downloads)
    arrcoc-rt eval items.jsonl --out eval-run       your images and boxes (format: arrcoc_rt.evaluation.dataset)
    arrcoc-rt eval --video clip.mp4 --cuts 120,348  your video only
    arrcoc-rt eval items.jsonl --video clip.mp4 --cuts 120,348
    arrcoc-rt eval items.jsonl --encoder clip:/models/clip-vit-b16     text queries
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

DESCRIPTION = """Measures where arrcoc_rt puts its saccades. For each item (an image, a query and the boxes where
the answer is): the share of the saccade budget inside the boxes without and with the query, its lift
over the boxes' share of the pixels, and the IoU of the boxes with the most relevant patches; for queries
on one image, how different their allocations are. For a video: how steady the saccades stay from frame
to frame (coherence, churn) and how well scene cuts are found. Writes a table (printed and report.txt),
results.json and pictures of the allocations (PNG) to --out."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers the ``eval`` subcommand on an ``argparse`` subparsers object; ``run`` is its
    ``func`` default."""
    p = subparsers.add_parser("eval", help="measure where the saccades go on images with known boxes, and their "
                                           "stability and cut detection on a video",
                              description=DESCRIPTION)
    p.add_argument("dataset", nargs="?", metavar="DATASET.jsonl",
                   help="items, one JSON object per line: {\"image\": path, \"query_text\" | \"query_image\" | "
                        "\"query_box\": ..., \"boxes\": [[x0, y0, x1, y1], ...]} in pixels (default: the built-in "
                        "synthetic set and video; with --video alone, that video only)")
    p.add_argument("--video", metavar="PATH",
                   help="evaluate this video (a file, an image folder or anything arrcoc-rt run reads) without a "
                        "query: saccade coherence, churn and scene cuts")
    p.add_argument("--cuts", metavar="K,K,...",
                   help="true scene cuts of --video: frame indices (0-based), each the first frame of a new shot, "
                        "e.g. 10,20 (default: none)")
    p.add_argument("--out", default="arrcoc-eval", metavar="DIR",
                   help="output folder for report.txt, results.json and the PNGs (default: arrcoc-eval)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--encoder", default="builtin", metavar="builtin|clip:PATH|siglip:PATH",
                   help="semantic encoder for the queries: builtin (weight-free; exemplar images) or a local "
                        "CLIP/SigLIP checkpoint folder (also text queries) (default: builtin)")
    p.set_defaults(func=run)
    return p


def _error(message: str) -> int:
    print(f"arrcoc-rt: error: {message}", file=sys.stderr)
    return 2


def _output_folder_problem(path: str) -> str | None:
    """What would keep --out from becoming the report's folder, or None (nothing is created here:
    a run that fails on its input leaves no folder behind)."""
    out = Path(path).absolute()
    if out.exists():
        if not out.is_dir():
            return "is a file; expected a folder"
        return None if os.access(out, os.W_OK | os.X_OK) else "the folder is not writable"
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot be created: {parent} is a file"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot be created: {parent} is not writable"
    return None


def _parse_cuts(text: str | None) -> list[int]:
    if text is None or not text.strip():
        return []
    try:
        cuts = [int(t) for t in text.replace(" ", "").split(",") if t != ""]
    except ValueError:
        raise ValueError(f"--cuts {text!r}: expected frame indices separated by commas, e.g. 10,20") from None
    if any(c < 1 for c in cuts):
        raise ValueError(f"--cuts {text!r}: a cut is the first frame of a new shot, so at least frame 1")
    return cuts


def _progress(done: int, total: int, item_id: str) -> None:
    sys.stderr.write(f"\r[{done}/{total}] {item_id[:60]:60s}" + ("\n" if done == total else ""))
    sys.stderr.flush()


def run(args) -> int:
    """Runs ``arrcoc-rt eval``; returns the exit code (2 for bad input, with the reason on stderr)."""
    from ..encoders import make_encoder
    from ..runtime import resolve_device
    from .dataset import DatasetError, builtin_items, builtin_video, check_items, load_jsonl
    from .runner import evaluate_images, evaluate_video, write_report

    encoder = args.encoder
    if encoder != "builtin" and (not encoder.startswith(("clip:", "siglip:")) or not encoder.split(":", 1)[1]):
        return _error(f"--encoder {encoder!r}: expected builtin, clip:PATH or siglip:PATH (a model folder)")
    try:
        resolve_device(args.device)
        cuts = _parse_cuts(args.cuts)
    except (TypeError, ValueError) as e:
        return _error(str(e))
    if args.cuts and not args.video:
        return _error("--cuts describes --video; give the video too")
    problem = _output_folder_problem(args.out)
    if problem:
        return _error(f"--out {args.out}: {problem}")
    builtin_images = not args.dataset and not args.video  # --video alone: that video only
    if builtin_images and importlib.util.find_spec("skimage") is None:
        return _error("the built-in evaluation set is made from scikit-image's sample photographs, which is not "
                      "installed: pip install \"arrcoc_rt[eval]\" (or give your own items.jsonl)")
    try:
        items = load_jsonl(args.dataset) if args.dataset else builtin_items() if builtin_images else []
        check_items(items)  # every image opens and holds its boxes, before any work
    except DatasetError as e:
        return _error(str(e))
    try:
        # loaded once here: a bad checkpoint is a clean error, and every pipeline shares the model
        options = {"encoder": make_encoder(encoder, args.device)}
    except (TypeError, ValueError) as e:
        return _error(str(e))
    progress = _progress if sys.stderr.isatty() else None
    try:
        video = None  # first: a video that cannot be read, or cuts past its end, fail before the images run
        if args.video:
            video = evaluate_video(args.video, cuts, options, args.device)
        elif builtin_images:
            frames, true_cuts = builtin_video()
            video = evaluate_video(frames, true_cuts, options, args.device, name="built-in synthetic video")
        images = None
        if items:
            print(f"arrcoc-rt eval: {len(items)} items from {args.dataset or 'the built-in synthetic set'}",
                  file=sys.stderr)
            images = evaluate_images(items, options, args.device, progress=progress)
    except DatasetError as e:
        return _error(str(e))
    report = write_report({"images": images, "video": video}, args.out)
    print(f"wrote results.json, report.txt and {len(report['files']) - 2} PNG(s) to {args.out.rstrip('/') or '/'}/")
    return 0


def main(argv=None) -> int:
    """``python -m arrcoc_rt.evaluation.cli [args]``: the eval command on its own."""
    parser = argparse.ArgumentParser(prog="arrcoc-rt")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
