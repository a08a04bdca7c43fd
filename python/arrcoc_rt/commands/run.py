"""`arrcoc-rt demo` and `arrcoc-rt run`: a source through a Stream, with the overlay, tokens per
frame (JSONL) and a summary."""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

import numpy as np

from .common import (_as_flags, _budget_option, _distinct_outputs, _error, _output_file, _output_folder, _plot,
                     _summary)

# Options of `run` that apply to runs on Ray only (distributed/cli.py), with their defaults.
_RAY_ONLY = {"format": "jsonl", "actors": None, "resume": "exact", "cpus_per_actor": 1.0, "gpus_per_actor": None}


def _stream_options(args) -> dict:
    """Query and encoder options for Stream from --query / --query-image / --encoder."""
    if args.query and args.query_image:
        raise _error("give --query or --query-image, not both")
    if args.query and not args.encoder.startswith(("clip:", "siglip:")):
        raise _error("--query TEXT needs a text encoder (--encoder clip:PATH or siglip:PATH); the built-in "
                     "encoder understands exemplar images (--query-image)")
    if args.encoder != "builtin" and not args.encoder.startswith(("clip:", "siglip:")):
        raise _error(f"--encoder {args.encoder!r}: expected builtin, clip:PATH or siglip:PATH")
    if args.query_image and not Path(args.query_image).exists():
        raise _error(f"--query-image {args.query_image!r} does not exist")
    query = args.query or args.query_image
    encoder = args.encoder if (query or args.encoder != "builtin") else None
    allocation = {}  # as `arrcoc-rt train` has them: run weights with the allocation they were trained for
    if getattr(args, "gestalt", None) is not None:
        allocation.update(gestalt_x=args.gestalt, gestalt_y=args.gestalt)
    if getattr(args, "text_floor", None) is not None:
        allocation["text_floor"] = args.text_floor
    return {"query_text": args.query, "query_image": args.query_image, "encoder": encoder, **allocation}


class _DeferredInterrupt:
    """Ctrl-C while a frame is in hand finishes that frame first (said on stderr), so the overlay,
    the JSONL and the summary hold the same frames; a second Ctrl-C, or one while waiting for the
    source, stops at once. Only the main thread receives signals, and only Python's own handler is
    replaced (an ignored SIGINT stays ignored): elsewhere nothing changes."""

    def __init__(self):
        self.in_frame = self.asked = False
        self._old = None

    def __enter__(self):
        import signal
        import threading

        # only where Ctrl-C is Python's KeyboardInterrupt: an ignored SIGINT (a script's `cmd &`) stays
        # ignored, and a handler set outside Python (getsignal: None) is left alone
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._old = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc):
        import signal

        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False

    def _on_sigint(self, signum, frame):
        if self.in_frame and not self.asked:
            self.asked = True
            print("\narrcoc-rt: stopping after this frame (Ctrl-C again to stop now)", file=sys.stderr)
            return
        raise KeyboardInterrupt


def _token_record(r, answer=None) -> dict:
    """One JSONL line: the frame's counts, timings and kept tokens (and --ask's answer, if any)."""
    keep = r.kinds >= 0
    record = {
        "frame": r.frame_index, "pts": r.pts, "scene_cut": r.scene_cut, "churn": r.churn,
        **({"reconnected": True, "gap_s": round(r.gap_s, 3)} if r.reconnected else {}),
        **({"resized": True} if r.resized else {}),
        **({"dropped_before": r.dropped_before} if r.dropped_before else {}),
        "counts": {"gestalt": int(np.sum(r.kinds == 0)), "saccades": int(r.num_saccades),
                   "padding": int(np.sum(r.kinds < 0))},
        "timings_ms": {k: round(float(v), 3) for k, v in r.timings.items()},
        "tokens": [{"x": round(float(x), 2), "y": round(float(y), 2), "box": [round(float(v), 1) for v in box],
                    "level": int(lv), "budget": int(b), "kind": "saccade" if k == 1 else "gestalt",
                    "patch": int(pa), "score": round(float(s), 5), "reuse": int(ru)}
                   for (x, y), box, lv, b, k, pa, s, ru in zip(
                       r.positions[keep], r.boxes[keep], r.levels[keep], r.budgets[keep], r.kinds[keep],
                       r.patches[keep], r.scores[keep], r.reuse[keep])]}
    if answer is not None:
        record["answer"] = {"text": answer.text, "frame_indices": list(answer.frame_indices),
                            "visual_tokens": int(answer.visual_tokens),
                            "latency_ms": round(float(answer.latency_ms["total"]), 1)}
    return record


def _process_all(frames_iter, stream, writer, jsonl, total, progress: bool):
    """Runs the stream over frames; returns per-frame timings, cut frames, saccade counts, churn
    (per frame after the first), the frames where the size or pixel format changed (the stream's
    state was reset there, so no cut can be found in them) and whether Ctrl-C stopped it (what was
    processed is kept). ``jsonl``: a path, opened at the first frame (a run that gives no frame
    leaves an earlier file as it was), or "-" for stdout."""
    import json

    from tqdm import tqdm  # rate and ETA on a terminal; nothing otherwise

    bar = tqdm(total=total or None, unit="frame", disable=not progress, dynamic_ncols=True, leave=True)
    timings, cuts, saccades, resized = [], [], [], []
    churn = []  # share of saccades on new content, per frame after the first
    out = None
    interrupted = False
    try:
        with _DeferredInterrupt() as ctrl_c:
            for frame in frames_iter:
                ctrl_c.in_frame = True
                t0 = time.perf_counter()
                r = stream.process(frame)
                wall = (time.perf_counter() - t0) * 1e3
                answer = None
                question = getattr(stream, "question", None)
                if question and r.frame_index % stream.ask_every == 0:
                    answer = stream.ask(question, frames=getattr(stream, "ask_frames", 1),
                                        passes=getattr(stream, "ask_passes", 1), budget=getattr(stream, "ask_budget", None))
                    t = f"t={answer.pts:.2f}s " if answer.pts is not None else ""
                    over = f" over {len(answer.frame_indices)} frames" if len(answer.frame_indices) > 1 else ""
                    (bar.write if progress else print)(
                        f"{t}frame {answer.frame_index}: {answer.text!r} ({answer.visual_tokens} visual "
                        f"tokens{over}, {answer.latency_ms['total']:.0f} ms)", file=sys.stderr if jsonl == "-" else None)
                if writer is not None:
                    rgb = frame.to_ndarray(format="rgb24") if hasattr(frame, "planes") else np.asarray(frame)
                    writer.write(rgb, r)
                if jsonl == "-":
                    out = sys.stdout
                    out.write(json.dumps(_token_record(r, answer)) + "\n")
                elif jsonl:
                    try:  # (a pipe whose reader left, a full disk): named, not a bare BrokenPipeError
                        if out is None:
                            out = open(jsonl, "w")
                        out.write(json.dumps(_token_record(r, answer)) + "\n")
                    except OSError as e:
                        raise _error(f"--jsonl {jsonl}: cannot be written ({e.strerror or e}) at frame "
                                     f"{r.frame_index}") from None
                timings.append(dict(r.timings, wall=wall))
                saccades.append(r.num_saccades)
                if r.churn is not None:
                    churn.append(r.churn)
                if r.scene_cut:
                    cuts.append(r.frame_index)
                if r.resized:
                    resized.append(r.frame_index)
                bar.set_postfix_str(f"{wall:.1f} ms/frame", refresh=False)
                bar.update(1)
                ctrl_c.in_frame = False
                if ctrl_c.asked:
                    interrupted = True
                    break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        if out is not None and out is not sys.stdout:
            try:
                out.close()
            except OSError:  # its write error, if any, is the one raised
                pass
        elif out is sys.stdout:
            out.flush()
    return timings, cuts, saccades, churn, resized, interrupted


def _cmd_demo(args) -> int:
    import json

    from ..samples import demo_clip
    from ..stream import Stream
    from ..visualize import OverlayWriter

    _output_folder(args.out, "--out", create=True)
    out = Path(args.out)
    frames = demo_clip()
    try:
        stream = Stream(device=args.device)
    except ValueError as e:
        raise _error(str(e)) from None
    writer = OverlayWriter(out / "overlay.mp4", fps=12)
    try:
        timings, cuts, saccades, churn, _, interrupted = _process_all(frames, stream, writer, out / "tokens.jsonl",
                                                                      len(frames), sys.stderr.isatty())
    finally:
        writer.close()
    from PIL import Image

    if not timings:  # Ctrl-C during the first frame
        print("arrcoc-rt demo: interrupted before the first frame; nothing written", file=sys.stderr)
        return 130
    summary = {
        "frames": len(timings), "tokens_per_frame": int(stream.pipeline.config["gestalt_x"] * stream.pipeline.config["gestalt_y"]
                                + stream.pipeline.config["saccades"]),
        "device": stream.pipeline.device, "saccades_mean": float(np.mean(saccades)),
        "latency_ms": {q: float(np.percentile([t["wall"] for t in timings], q)) for q in (50, 95, 99)},
        "stage_median_ms": {k: float(np.median([t[k] for t in timings])) for k in ("texture", "cascade",
                                                                                    "allocate_and_gather")},
        "scene_cuts": cuts, "expected_scene_cuts": [24],
        "churn_median": float(np.median(churn)) if churn else None, "interrupted": interrupted,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    try:
        import matplotlib  # noqa: F401

        _plot(timings, out / "latency.png")
    except ImportError:
        pass
    Image.fromarray(writer.first).save(out / "overlay_first.png")
    print(f"arrcoc-rt demo: built-in clip, {len(frames)} frames of 640x360 with a scene cut at frame 24, "
          f"on {summary['device']}")
    print(_summary(timings, cuts, saccades, churn, "\ninterrupted (Ctrl-C)" if interrupted else ""))
    print(f"wrote {out / 'overlay.mp4'}, {out / 'overlay_first.png'}, {out / 'tokens.jsonl'}, {out / 'summary.json'}")
    return 130 if interrupted else 0


def _summary_path(args) -> str | None:
    """Where `run` writes its summary: --summary, else summary.json beside --out or --jsonl (not
    beside stdout's "-"), else nowhere."""
    return args.summary or next((str(Path(p).with_name("summary.json")) for p in (args.out, args.jsonl)
                                 if p and p != "-"), None)


def _cmd_run(args) -> int:
    from ..sources import SourceError, open as open_source
    from ..stream import Stream
    from ..visualize import OVERLAY_LAYERS, OverlayWriter

    options = _stream_options(args)
    if args.max_frames is not None and args.max_frames < 1:
        raise _error(f"--max-frames {args.max_frames}: expected at least 1 (leave it out for every frame)")
    if args.ray is None:  # (with --ray, --out is the output folder: checked there)
        ray_only = [f"--{flag.replace('_', '-')}" for flag, default in _RAY_ONLY.items() if getattr(args, flag) != default]
        if ray_only:
            raise _error(f"{', '.join(ray_only)}: for runs on Ray only; add --ray (a local cluster) or --ray ADDRESS")
        files = {f"--{flag}": getattr(args, flag) for flag in ("out", "jsonl", "summary", "plot")}
        if args.jsonl == "-":
            files.pop("--jsonl")
        summary = _summary_path(args)
        if args.summary is None and summary is not None:
            files["the summary (beside --out or --jsonl; --summary to move it)"] = summary
        for flag, path in files.items():
            _output_file(path, flag)
        if args.plot:  # not after the whole run (the summary was lost with it)
            import importlib.util

            if importlib.util.find_spec("matplotlib") is None:
                raise _error(f"--plot {args.plot}: needs matplotlib; install it with pip install 'arrcoc_rt[plot]'")
        _distinct_outputs(dict(files, **{"--png-dir": args.png_dir}), args.source[0] if len(args.source) == 1 else None)
    _output_folder(args.png_dir, "--png-dir")
    hidden = {v.strip() for v in (args.hide or "").split(",") if v.strip()}
    if hidden - set(OVERLAY_LAYERS):
        raise _error(f"--hide {args.hide}: {', '.join(sorted(hidden - set(OVERLAY_LAYERS)))} is no overlay layer; "
                     f"expected some of {', '.join(OVERLAY_LAYERS)}")
    if args.ray is not None:  # many sources on a Ray cluster
        from ..distributed.cli import run_on_ray

        return run_on_ray(args, options)
    if len(args.source) > 1:
        raise _error(f"{len(args.source)} sources given; several sources run on Ray: add --ray (a local cluster) "
                     "or --ray ADDRESS")
    args.source = args.source[0]
    source = int(args.source) if args.source.isdigit() else args.source
    ranged = {k: getattr(args, k) for k in ("start", "end", "fps") if getattr(args, k) is not None}
    try:
        if args.reconnect is not None:
            ranged["reconnect_attempts"] = args.reconnect
        if args.follow is not None:
            ranged["follow"] = args.follow
        src = open_source(source, drop_oldest=True, **ranged) if args.drop_oldest else open_source(source, **ranged)
    except (SourceError, ValueError) as e:
        raise _error(str(e)) from None
    if args.ask is not None and not args.ask.strip():
        raise _error("--ask: the question is empty")
    if bool(args.vlm) != bool(args.ask):
        raise _error("--vlm and --ask go together")
    if args.every < 1:
        raise _error(f"--every {args.every}: asks every N frames; expected N >= 1")
    if args.frames > 1 and not args.ask:
        raise _error("--frames is the window --ask answers over; it needs --vlm and --ask")
    if args.tokens is not None and (not args.ask or args.tokens < 1):
        raise _error(f"--tokens {args.tokens}: the visual tokens --ask's model sees per frame; at least 1, and "
                     "it needs --vlm and --ask")
    try:
        stream = Stream(device=args.device, strategy=args.strategy, saccades=args.saccades,
                        total_budget=args.total_budget, weights=args.weights, vlm=args.vlm,
                        ask_frames=args.frames, **options)
    except (ValueError, TypeError, OSError) as e:
        raise _error(_as_flags(str(e))) from None
    if args.passes < 1 or (args.passes > 1 and not args.ask) or (args.passes > 1 and args.frames > 1):
        raise _error(f"--passes {args.passes}: looks again at the latest frame for --ask; at least 1, and not "
                     "with --frames")
    stream.question, stream.ask_every, stream.ask_passes = args.ask, args.every, args.passes
    if args.tokens is not None:
        stream.adapter.tokens = args.tokens
    stream.ask_budget = _budget_option(args.budget)
    if stream.ask_budget is not None and (not args.ask or args.frames > 1):
        raise _error(f"--budget {args.budget}: sets the budget of --ask's question on the latest frame; not "
                     "without --ask, not with --frames")
    fps = 30.0
    if args.fps:
        fps = float(args.fps)  # the overlay plays the sampled frames at their sampling rate
    elif hasattr(src, "stream") and src.stream.average_rate:
        fps = float(src.stream.average_rate)
    _output_folder(args.png_dir, "--png-dir", create=True)  # made now: every other check has passed
    writer = (OverlayWriter(args.out, png_folder=args.png_dir, fps=fps, layers=set(OVERLAY_LAYERS) - hidden)
              if (args.out or args.png_dir) else None)
    frames = src if args.max_frames is None else itertools.islice(src, min(args.max_frames, sys.maxsize))
    try:
        timings, cuts, saccades, churn, resized, interrupted = _process_all(frames, stream, writer, args.jsonl,
                                                            getattr(src, "frame_count", 0),
                                                            not args.quiet and sys.stderr.isatty())
    except SourceError as e:
        raise _error(str(e)) from None
    finally:
        if writer is not None:
            writer.close()
        src.close()
    if not timings and not interrupted:  # nothing was written: earlier outputs stay as they were
        ranged_note = " in the range asked for (--start/--end)" if (args.start or args.end is not None) else ""
        raise _error(f"no frames processed: {args.source!r} gave none{ranged_note}; "
                     f"{src.stats.decoded} decoded, {src.stats.corrupt_packets} corrupt packets")
    if args.png_dir and writer is not None:  # an earlier, longer run's frames would read as this run's
        for old in Path(args.png_dir).glob("overlay_[0-9]*.png"):
            if old.stem[len("overlay_"):].isdigit() and int(old.stem[len("overlay_"):]) >= writer.frames:
                old.unlink()
    report = print if args.jsonl != "-" else (lambda text: print(text, file=sys.stderr))  # stdout: the tokens
    st = src.stats
    summary_path = _summary_path(args)
    if summary_path and timings:
        import json

        cfg = stream.pipeline.config
        Path(summary_path).write_text(json.dumps({
            "source": str(args.source), "frames": len(timings), "device": stream.pipeline.device,
            "settings": {k: cfg[k] for k in ("strategy", "saccades", "total_budget", "gestalt_x", "gestalt_y", "text_floor")} |
                        {"weights": args.weights or "default", "encoder": options.get("encoder") or "builtin"},
            "saccades_mean": float(np.mean(saccades)),
            "latency_ms": {q: float(np.percentile([t["wall"] for t in timings], q)) for q in (50, 95, 99)},
            "churn_median": float(np.median(churn)) if churn else None, "scene_cuts": cuts,
            "resized_at": resized,
            "decoded": st.decoded, "corrupt_packets": st.corrupt_packets, "dropped": st.dropped,
            "disconnects": st.disconnects, "reconnects": st.reconnects, "gap_s": round(st.gap_s, 3),
            "interrupted": interrupted}, indent=2))
    if args.plot and timings:
        _plot(timings, args.plot, report)
    report(_summary(timings, cuts, saccades, churn,
                   f"\nsource: {st.decoded} frames decoded, {st.corrupt_packets} corrupt packets skipped, "
                   f"{st.dropped} frames dropped"
                   + (f", {st.disconnects} connection(s) lost, {st.reconnects} reconnected ({st.gap_s:.1f} s without "
                      "frames)" if st.disconnects else "")
                   + (f"\nframe size or pixel format changed at frame(s) {resized}: the state was reset there, so a "
                      "cut in the same frame cannot be told" if resized else "")
                   + ("\ninterrupted (Ctrl-C)" if interrupted else "")))
    return 130 if interrupted else 0
