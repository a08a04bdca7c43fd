"""The `arrcoc-rt` command line.

    arrcoc-rt demo                       the main job on a built-in clip: overlay video + summary
    arrcoc-rt run SOURCE [--out overlay.mp4] [--jsonl tokens.jsonl]   a file, URL, webcam or image folder
    arrcoc-rt run SOURCE --vlm KIND:PATH --ask "question" [--every N] [--frames K]   answers on a stream
    arrcoc-rt run SOURCE... --ray [ADDRESS] --out DIR   many sources on a Ray cluster (distributed/cli.py)
    arrcoc-rt batch VIDEOS_OR_GLOB... --out DIR [--ray ADDRESS]   video files to Parquet on Ray, resumable
    arrcoc-rt bench [INPUT]              per-stage latency table (p50/p95/p99, fps), CPU and GPU
    arrcoc-rt eval [DATASET.jsonl]       where the budget goes: boxes, lifts, IoU, coherence, cuts
    arrcoc-rt ask IMAGE --vlm llava:PATH "question"   a frozen VLM's answer from the allocated tokens
    arrcoc-rt experiment --vlm llava:PATH [--data ...]  augmentation study + equal-token comparison (VQA)
    arrcoc-rt serve [SOURCE]             a live page in the browser: watch, steer and ask (the serve extra)
    arrcoc-rt info                       version, build, devices
    arrcoc-rt texture [INPUT] --out DIR  the texture stage's 40 channels as pictures
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

from . import runtime
from .images import pil_to_rgb8
from .pipeline import STRATEGIES
from .samples import sample_frames
from .texture import TextureBuilder

from .sources import VIDEO_SUFFIXES


def _is_video(path: Path) -> bool:
    """A video file by its suffix: a known video suffix, or one that no image reader claims."""
    from PIL import Image

    suffix = path.suffix.lower()
    return suffix in VIDEO_SUFFIXES or suffix not in Image.registered_extensions()


def _cmd_info(args) -> int:
    info = runtime.info()
    print(f"arrcoc_rt {info['version']}")
    print(f"CUDA backend compiled: {'yes' if info['cuda_built'] else 'no'}")
    if info["cuda_emulated"]:
        print("CUDA device: EMULATED on the CPU (a test build, ARRCOC_CUDA=EMULATE; no GPU is used)")
    print(f"CUDA {'emulated devices' if info['cuda_emulated'] else 'GPUs found'}: {len(info['cuda_devices'])}"
          + "".join(f"\n  cuda:{i}: {name}" for i, name in enumerate(info['cuda_devices'])))
    print(f"devices: {', '.join(info['devices'])}")
    return 0


def _read_frames(path: Path, count: int) -> list[np.ndarray]:
    """Up to ``count`` RGB frames from an image (one frame) or a video file."""
    if not path.exists():
        raise SystemExit(f"arrcoc-rt: error: input {str(path)!r} does not exist")
    if _is_video(path):
        try:
            import av
        except ImportError:
            raise SystemExit("arrcoc-rt: error: reading video needs PyAV (a dependency of arrcoc_rt): pip install av") from None
        frames = []
        try:
            with av.open(str(path)) as container:
                for frame in container.decode(video=0):
                    frames.append(frame.to_ndarray(format="rgb24"))
                    if len(frames) == count:
                        break
        except av.error.FFmpegError as e:
            raise SystemExit(f"arrcoc-rt: error: cannot decode {str(path)!r}: {e}") from None
        if not frames:
            raise SystemExit(f"arrcoc-rt: error: {str(path)!r} has no decodable video frames")
        return frames
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return [pil_to_rgb8(im, f"image {str(path)!r}")]
    except (UnidentifiedImageError, OSError) as e:
        raise SystemExit(f"arrcoc-rt: error: cannot read image {str(path)!r}: {e}") from None


def _cmd_texture(args) -> int:
    from .visualize import contact_sheet, save_channels

    if args.input:
        frames = _read_frames(Path(args.input), args.frames)
        source = args.input
    else:
        frames = sample_frames(640, 480, count=args.frames)
        source = "built-in sample (moving disc)"
    h, w = frames[0].shape[:2]
    try:
        builder = TextureBuilder(w, h, device=args.device, dtype=args.dtype)
    except ValueError as e:
        raise SystemExit(f"arrcoc-rt: error: {e}") from None
    _output_folder(args.out, "--out")
    out = Path(args.out)
    (out / "channels").mkdir(parents=True, exist_ok=True)
    from .cascade import ClusterCascade
    from .runtime import device_string

    cascade = ClusterCascade(w, h, device=device_string(builder.device, builder.cuda_device))
    times = []
    for f in frames:
        if f.shape[:2] != (h, w):
            raise SystemExit("arrcoc-rt: error: frames change size mid-stream; the texture demo expects one size")
        t0 = time.perf_counter()
        tex = builder.build(f)
        builder.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
        result = cascade.run(tex)  # fills channel 13 (cluster ids)
    sheet = contact_sheet(tex, f"arrcoc_rt texture of {source}: {w}x{h}, frame {tex.frame_index}, "
                               f"{builder.device}, {builder.dtype}")
    sheet_path = out / "contact_sheet.png"
    sheet.save(sheet_path)
    save_channels(tex, out / "channels")
    from PIL import Image

    Image.fromarray(frames[-1]).save(out / "input.png")
    print(f"input: {source} ({w}x{h}, {len(frames)} frame(s))")
    print(f"backend: {builder.device}, storage {builder.dtype}; build time per frame: "
          + ", ".join(f"{t:.2f} ms" for t in times) + " (first includes warm-up)")
    print(f"motion between the last two frames: {'yes' if tex.motion_valid else 'no (single frame)'}")
    print(f"cluster cascade: {result.grid[0] * result.grid[1]} clusters, kept {result.kept_clusters.tolist()}, "
          f"{len(result.candidate_patches())} candidate patches")
    print(f"wrote {sheet_path} (all 40 channels + mip levels), {out / 'channels'}/ (one PNG per channel), "
          f"{out / 'input.png'}")
    return 0


def _percentiles(values) -> str:
    v = np.asarray(values, np.float64)
    return f"p50 {np.percentile(v, 50):.2f}  p95 {np.percentile(v, 95):.2f}  p99 {np.percentile(v, 99):.2f} ms"


def _output_file(path, flag: str) -> None:
    """--flag PATH names a file the command writes: checked before any work (a path found wrong
    only when the results are written would lose them)."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise _error(f"{flag} {path}: is a folder; expected a file path")
    if not p.parent.is_dir():
        raise _error(f"{flag} {path}: the folder {str(p.parent)!r} does not exist")


def _output_folder(path, flag: str) -> None:
    """--flag PATH names a folder the command creates or fills: not an existing file."""
    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise _error(f"{flag} {path}: is a file; expected a folder")


def _error(msg: str) -> SystemExit:
    return SystemExit(f"arrcoc-rt: error: {msg}")


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
    return {"query_text": args.query, "query_image": args.query_image, "encoder": encoder}


def _process_all(frames_iter, stream, writer, jsonl, total, progress: bool):
    from tqdm import tqdm  # rate and ETA on a terminal; nothing otherwise

    bar = tqdm(total=total or None, unit="frame", disable=not progress, dynamic_ncols=True, leave=True)
    """Runs the stream over frames; returns per-frame timings, cut frames, saccade counts, churn
    (per frame after the first), the frames where the size or pixel format changed (the stream's
    state was reset there, so no cut can be found in them) and whether Ctrl-C stopped it (what was
    processed is kept)."""
    import json

    timings, cuts, saccades, resized = [], [], [], []
    churn = []  # share of saccades on new content, per frame after the first
    out = open(jsonl, "w") if jsonl else None
    interrupted = False
    try:
        for frame in frames_iter:
            t0 = time.perf_counter()
            r = stream.process(frame)
            timings.append(dict(r.timings, wall=(time.perf_counter() - t0) * 1e3))
            saccades.append(r.num_saccades)
            if r.churn is not None:
                churn.append(r.churn)
            if r.scene_cut:
                cuts.append(r.frame_index)
            if r.resized:
                resized.append(r.frame_index)
            question = getattr(stream, "question", None)
            if question and r.frame_index % stream.ask_every == 0:
                a = stream.ask(question, frames=getattr(stream, "ask_frames", 1), passes=getattr(stream, "ask_passes", 1),
                               budget=getattr(stream, "ask_budget", None))
                t = f"t={a.pts:.2f}s " if a.pts is not None else ""
                over = f" over {len(a.frame_indices)} frames" if len(a.frame_indices) > 1 else ""
                (bar.write if progress else print)(f"{t}frame {a.frame_index}: {a.text!r} ({a.visual_tokens} visual "
                                                   f"tokens{over}, {a.latency_ms['total']:.0f} ms)")
            if writer is not None:
                rgb = frame.to_ndarray(format="rgb24") if hasattr(frame, "planes") else np.asarray(frame)
                writer.write(rgb, r)
            if out is not None:
                keep = r.kinds >= 0
                out.write(json.dumps({
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
                                   r.patches[keep], r.scores[keep], r.reuse[keep])]}) + "\n")
            bar.set_postfix_str(f"{timings[-1]['wall']:.1f} ms/frame", refresh=False)
            bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        if out is not None:
            out.close()
    return timings, cuts, saccades, churn, resized, interrupted


def _plot(timings, path) -> None:
    from .visualize import latency_plot

    try:
        latency_plot(timings, path)
        print(f"wrote {path}")
    except RuntimeError as e:  # matplotlib missing: the requested plot cannot be written
        raise _error(f"--plot {path}: {e}; install it with pip install 'arrcoc_rt[plot]'") from None


def _summary(timings, cuts, saccades, churn, extra: str = "") -> str:
    if not timings:
        return "no frames processed" + extra
    stability = (f"saccade churn (share on new content per frame): median {np.median(churn):.3f}, "
                 f"max {np.max(churn):.3f}\n" if churn else "")
    return (f"frames: {len(timings)}; saccades per frame: mean {np.mean(saccades):.1f}\n"
            f"latency (end to end): {_percentiles([t['wall'] for t in timings])}\n" + stability +
            f"scene cuts at frames: {cuts}" + extra)


def _cmd_demo(args) -> int:
    import json

    from .samples import demo_clip
    from .stream import Stream
    from .visualize import OverlayWriter

    _output_folder(args.out, "--out")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frames = demo_clip()
    try:
        stream = Stream(device=args.device)
    except ValueError as e:
        raise _error(str(e)) from None
    writer = OverlayWriter(out / "overlay.mp4", fps=12)
    try:
        timings, cuts, saccades, churn, _, _ = _process_all(frames, stream, writer, out / "tokens.jsonl", len(frames),
                                                  sys.stderr.isatty())
    finally:
        writer.close()
    from PIL import Image

    summary = {
        "frames": len(timings), "tokens_per_frame": int(stream.pipeline.config["gestalt_x"] * stream.pipeline.config["gestalt_y"]
                                + stream.pipeline.config["saccades"]),
        "device": stream.pipeline.device, "saccades_mean": float(np.mean(saccades)),
        "latency_ms": {q: float(np.percentile([t["wall"] for t in timings], q)) for q in (50, 95, 99)},
        "stage_median_ms": {k: float(np.median([t[k] for t in timings])) for k in ("texture", "cascade",
                                                                                    "allocate_and_gather")},
        "scene_cuts": cuts, "expected_scene_cuts": [24],
        "churn_median": float(np.median(churn)) if churn else None,
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
    print(_summary(timings, cuts, saccades, churn))
    print(f"wrote {out / 'overlay.mp4'}, {out / 'overlay_first.png'}, {out / 'tokens.jsonl'}, {out / 'summary.json'}")
    return 0


def _cmd_run(args) -> int:
    from .sources import SourceError, open as open_source
    from .stream import Stream
    from .visualize import OVERLAY_LAYERS, OverlayWriter

    options = _stream_options(args)
    if args.max_frames is not None and args.max_frames < 1:
        raise _error(f"--max-frames {args.max_frames}: expected at least 1 (leave it out for every frame)")
    if args.ray is None:  # (with --ray, --out is the output folder: checked there)
        for flag in ("out", "jsonl", "summary", "plot"):
            _output_file(getattr(args, flag), f"--{flag}")
    _output_folder(args.png_dir, "--png-dir")
    hidden = {v.strip() for v in (args.hide or "").split(",") if v.strip()}
    if hidden - set(OVERLAY_LAYERS):
        raise _error(f"--hide {args.hide}: {', '.join(sorted(hidden - set(OVERLAY_LAYERS)))} is no overlay layer; "
                     f"expected some of {', '.join(OVERLAY_LAYERS)}")
    if args.ray is not None:  # many sources on a Ray cluster
        from .distributed.cli import run_on_ray

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
        raise _error(str(e)) from None
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
    writer = (OverlayWriter(args.out, png_folder=args.png_dir, fps=fps, layers=set(OVERLAY_LAYERS) - hidden)
              if (args.out or args.png_dir) else None)
    frames = src if args.max_frames is None else itertools.islice(src, args.max_frames)
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
    if args.plot and timings:
        _plot(timings, args.plot)
    st = src.stats
    summary_path = args.summary or next((str(Path(p).with_name("summary.json")) for p in (args.out, args.jsonl) if p),
                                        None)
    if summary_path and timings:
        import json

        cfg = stream.pipeline.config
        Path(summary_path).write_text(json.dumps({
            "source": str(args.source), "frames": len(timings), "device": stream.pipeline.device,
            "settings": {k: cfg[k] for k in ("strategy", "saccades", "total_budget", "gestalt_x", "gestalt_y")} |
                        {"weights": args.weights or "default", "encoder": options.get("encoder") or None},
            "saccades_mean": float(np.mean(saccades)),
            "latency_ms": {q: float(np.percentile([t["wall"] for t in timings], q)) for q in (50, 95, 99)},
            "churn_median": float(np.median(churn)) if churn else None, "scene_cuts": cuts,
            "resized_at": resized,
            "decoded": st.decoded, "corrupt_packets": st.corrupt_packets, "dropped": st.dropped,
            "disconnects": st.disconnects, "reconnects": st.reconnects, "gap_s": round(st.gap_s, 3),
            "interrupted": interrupted}, indent=2))
    print(_summary(timings, cuts, saccades, churn,
                   f"\nsource: {st.decoded} frames decoded, {st.corrupt_packets} corrupt packets skipped, "
                   f"{st.dropped} frames dropped"
                   + (f", {st.disconnects} connection(s) lost, {st.reconnects} reconnected ({st.gap_s:.1f} s without "
                      "frames)" if st.disconnects else "")
                   + (f"\nframe size or pixel format changed at frame(s) {resized}: the state was reset there, so a "
                      "cut in the same frame cannot be told" if resized else "")
                   + ("\ninterrupted (Ctrl-C)" if interrupted else "")))
    return 130 if interrupted else 0


def _budget_option(value):
    """--budget: a preset name (the question's tier picks the budget) or an int total budget."""
    from .vlm.tiers import PRESETS

    if value is None or value in PRESETS:
        return value
    try:
        return int(value)
    except ValueError:
        raise _error(f"--budget {value}: expected one of {', '.join(PRESETS)} or an int total budget") from None


def _cmd_ask(args) -> int:
    from .pipeline import Pipeline
    from .runtime import resolve_device
    from .stream import _answer, _answer_passes
    from .vlm import make_adapter

    if not args.question.strip():
        raise _error("question: expected a non-empty question")
    frames = _read_frames(Path(args.image), 1)
    h, w = frames[0].shape[:2]
    kind, ordinal = resolve_device(args.device)
    vlm = make_adapter(args.vlm, device="cpu" if kind == "cpu" else f"cuda:{ordinal}", tokens=args.tokens)
    result = Pipeline(w, h, device=args.device).process(frames[0])
    if args.passes < 1:
        raise _error(f"--passes {args.passes}: expected at least 1")
    budget = _budget_option(args.budget)
    tier = total = None
    if budget is not None:
        from .vlm.tiers import question_tier, tier_budget

        tier = question_tier(args.question).name if isinstance(budget, str) else None
        total = tier_budget(tier, {}, budget) if tier else budget
    if args.passes == 1 and budget is None:
        a = _answer(vlm, frames[0], result, args.question, args.max_new_tokens)
    else:
        extra = {} if total is None else {"total_budget": total}
        a = _answer_passes(vlm, frames[0], None if total is not None else result, args.question, args.passes,
                           args.max_new_tokens, lambda width, height: Pipeline(width, height, device=args.device,
                                                                              **extra), tier, (0, None))
    if a.total_budget is not None:
        print(f"budget: {a.total_budget}" + (f" (a {a.tier} question)" if a.tier else ""), file=sys.stderr)
    print(a.text)
    for i, p in enumerate(a.passes):
        print(f"pass {i + 1}: {p.text!r} (uncertainty {p.uncertainty:.3f}, exploration {p.exploration:g}, "
              f"{p.visual_tokens} visual tokens)", file=sys.stderr)
    print(f"({a.visual_tokens} visual tokens; {a.latency_ms['total']:.0f} ms)", file=sys.stderr)
    return 0


def _bench_video(path: Path, count: int, devices) -> int:
    """From each PyAV packet to the token pack, per frame: demux + decode (PyAV with its default
    threading, the decoder's own), convert (the decoder's planes handed to the kernels; PyAV's
    conversion only for other pixel formats) and each pipeline stage, p50/p95/p99 over ``count``
    frames after 3 warm-up frames. One frame size is timed: timing stops where the video changes
    size (said in the output). Ctrl-C stops timing; what was measured is printed."""
    import av

    from .pipeline import Pipeline
    from .stream import frame_from_av

    interrupted = False
    for dev in devices:
        rows: dict = {}
        stopped_at = None  # (frame, its size) where the video changed size
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise _error(f"{str(path)!r} has no video stream")
            stream = container.streams.video[0]
            demux = container.demux(stream)
            pipe, n, seen = None, 0, 0
            t_read = time.perf_counter()
            try:
                while n < count and stopped_at is None:  # (n counts the timed frames, after 3 warm-up ones)
                    try:
                        packet = next(demux)
                    except StopIteration:
                        break
                    for frame in packet.decode():
                        if n >= count:  # a packet may hold more frames than are left to time
                            break
                        if pipe is not None and (frame.width, frame.height) != (pipe.width, pipe.height):
                            stopped_at = (seen, frame.width, frame.height)
                            break
                        t_decoded = time.perf_counter()
                        planes, fmt, _ = frame_from_av(frame)
                        t_converted = time.perf_counter()
                        if pipe is None:
                            pipe = Pipeline(frame.width, frame.height, device=dev)
                        r = pipe.process(planes, pixel_format=fmt)
                        t_done = time.perf_counter()
                        seen += 1
                        if seen > 3:  # warm-up frames are not counted
                            n += 1
                            split = {"decode": (t_decoded - t_read) * 1e3, "convert": (t_converted - t_decoded) * 1e3,
                                     **{k: r.timings[k] for k in ("texture", "encoder", "cascade",
                                                                  "allocate_and_gather")},
                                     "pipeline": r.timings["total"], "packet_to_pack": (t_done - t_read) * 1e3}
                            for k, v in split.items():
                                rows.setdefault(k, []).append(v)
                        t_read = time.perf_counter()
            except KeyboardInterrupt:
                interrupted = True
        if not rows:
            if interrupted:
                return 130
            raise _error(f"{str(path)!r}: fewer than 4 decodable frames" + (
                f" before it changes size at frame {stopped_at[0]}" if stopped_at else ""))
        if stopped_at is not None and dev == devices[0]:
            print(f"(the video changes size at frame {stopped_at[0]}, to {stopped_at[1]}x{stopped_at[2]}: timed the "
                  f"frames before it; bench times one size)")
        if dev == devices[0]:
            print(f"arrcoc-rt bench: {path.name}, {pipe.width}x{pipe.height} {stream.codec_context.name}, "
                  f"{len(rows['decode'])} frames per device (after 3 warm-up frames), packet to token pack")
            print(f"{'device':6s} {'stage':20s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s}")
        for k, v in rows.items():
            print(f"{dev:6s} {k:20s} {np.percentile(v, 50):8.2f} {np.percentile(v, 95):8.2f} {np.percentile(v, 99):8.2f}")
        print(f"{dev:6s} {'fps (p50)':20s} {1000.0 / np.percentile(rows['packet_to_pack'], 50):8.1f}")
        if interrupted:
            print("(interrupted: the frames timed until then)")
            return 130
    return 0


def _cmd_bench(args) -> int:
    from .pipeline import Pipeline
    from .runtime import cuda_available
    from .samples import sample_frames

    if args.input and args.size is not None:
        raise _error(f"--size sets the synthetic frames' size; {args.input!r}'s frames keep their own size "
                     f"(leave out --size or the input)")
    if args.device is None:
        devices = ["cpu"] + (["cuda"] if cuda_available() else [])
    else:
        from .runtime import device_string, resolve_device

        try:
            devices = [device_string(*resolve_device(args.device))]
        except (ValueError, TypeError) as e:
            raise _error(f"--device: {str(e).removeprefix('device: ')}") from None
    on_cuda = any(d != "cpu" for d in devices)
    if args.input and _is_video(Path(args.input)):
        if not Path(args.input).exists():
            raise _error(f"input {args.input!r} does not exist")
        rc = _bench_video(Path(args.input), args.frames, devices)
        _cuda_notes(on_cuda)
        return rc
    if args.input:
        frames = _read_frames(Path(args.input), 2)
        if len(frames) == 1:
            frames = frames * 2
    else:
        from .frames import parse_size

        try:
            w, h = parse_size(args.size or "640x480", "--size")
        except ValueError as e:
            raise _error(str(e)) from None
        frames = sample_frames(w, h, 2)
    h, w = frames[0].shape[:2]
    pipes = {dev: Pipeline(w, h, device=dev) for dev in devices}  # a refused size stops before the table
    print(f"arrcoc-rt bench: {w}x{h}, {args.frames} frames per device (after 3 warm-up frames)")
    print(f"{'device':6s} {'stage':20s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s}")
    for dev, pipe in pipes.items():
        ts, interrupted = [], False
        try:
            for i in range(3):
                pipe.process(frames[i % 2])
            for i in range(args.frames):
                ts.append(pipe.process(frames[i % 2]).timings)
        except KeyboardInterrupt:  # what was measured is printed, without a traceback
            interrupted = True
        if ts:
            for key in ("texture", "cascade", "allocate_and_gather", "total"):
                v = [t[key] for t in ts]
                print(f"{dev:6s} {key:20s} {np.percentile(v, 50):8.2f} {np.percentile(v, 95):8.2f} "
                      f"{np.percentile(v, 99):8.2f}")
            print(f"{dev:6s} {'fps (p50)':20s} {1000.0 / np.percentile([t['total'] for t in ts], 50):8.1f}")
        if interrupted:
            print(f"(interrupted after {len(ts)} timed frames)")
            return 130
    _cuda_notes(on_cuda)
    return 0


def _cuda_notes(on_cuda: bool) -> None:
    """What the table's CUDA rows mean, or why there are none."""
    from . import cuda
    from .runtime import cuda_available

    if not cuda_available():
        print("(no CUDA GPU here: CPU only)")
        return
    if not on_cuda:
        return
    print("(cuda: the stages are host times: texture and cascade only queue their kernels, "
          "allocate_and_gather includes the wait for the device; the total is the frame's time. "
          "scripts/gpu_timings.py times a GPU frame with events)")
    if cuda.is_emulated():
        print("(cuda is the EMULATED device, on the CPU: its times mean nothing)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="arrcoc-rt", description="Where should a frozen VLM look? (arrcoc_rt)")
    p.add_argument("--version", action="version", version=f"arrcoc-rt {runtime.info()['version']}")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="the main job on a built-in clip (no downloads): overlay video and summary")
    d.add_argument("--out", default="arrcoc-demo", help="output folder (default: arrcoc-demo)")
    d.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    d.set_defaults(func=_cmd_demo)
    r = sub.add_parser("run", help="process a video file, URL, webcam (/dev/videoN or N) or image folder")
    r.add_argument("source", nargs="+", help="a video file, URL (rtsp://...), webcam (/dev/videoN or N) or image "
                                             "folder; several with --ray")
    r.add_argument("--query", help="text query (needs --encoder clip:PATH or siglip:PATH)")
    r.add_argument("--query-image", help="exemplar image: look for this object (built-in encoder)")
    r.add_argument("--encoder", default="builtin", help="builtin (default) | clip:PATH | siglip:PATH")
    r.add_argument("--out", help="overlay video to write (.mp4); with --ray: the output folder")
    r.add_argument("--jsonl", help="tokens per frame, one JSON object per line")
    r.add_argument("--png-dir", help="also write one overlay PNG per frame into this folder")
    r.add_argument("--hide", metavar="LAYER,...", help="overlay layers not to draw: heat, saccades, gestalt, cuts, "
                                                   "legend, caption (default: all drawn)")
    r.add_argument("--plot", help="latency per stage over the run, as a PNG (needs matplotlib)")
    r.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    r.add_argument("--max-frames", type=int, default=None, help="stop after this many frames (default: all)")
    r.add_argument("--drop-oldest", action="store_true", help="live sources: drop the oldest frame when behind")
    r.add_argument("--reconnect", type=int, metavar="N",
                   help="live sources: reconnection attempts in a row after a lost connection (default 5; 0: none)")
    r.add_argument("--follow", type=float, metavar="SECONDS",
                   help="a file still being written: wait for new data, end after SECONDS without any")
    r.add_argument("--strategy", default="balanced", choices=list(STRATEGIES),
                   help="how saccades are chosen (default: balanced)")
    r.add_argument("--saccades", type=int, default=273, help="saccade slots per frame (default: 273)")
    r.add_argument("--total-budget", type=int, default=100000,
                   help="levels of detail of all tokens together (default: 100000)")
    r.add_argument("--weights", help="balancer weights file (.npz or .json; default: the untrained default)")
    r.add_argument("--summary", help="summary JSON to write (default: summary.json beside --out or --jsonl; with "
                                     "--ray: _summary.json in the --out folder)")
    r.add_argument("--vlm", help="a frozen VLM to ask (--ask): llava:PATH, llava_next:PATH, qwen2_vl:PATH or "
                                 "qwen2_5_vl:PATH (a local checkpoint folder)")
    r.add_argument("--ask", help="question for the VLM, answered on the latest frame (or the last --frames) every "
                                 "--every frames")
    r.add_argument("--every", type=int, default=30, help="ask every this many frames (default: 30)")
    r.add_argument("--frames", type=int, default=1, metavar="K",
                   help="--ask answers over the last K frames, each with its own tokens (default: 1, the latest)")
    r.add_argument("--tokens", type=int, metavar="N",
                   help="visual tokens that reach --ask's model per frame (default: all kept; docs/VLM.md)")
    r.add_argument("--passes", type=int, default=1, metavar="N",
                   help="--ask looks again, up to N passes, while the answer is uncertain (docs/VLM.md)")
    r.add_argument("--budget", metavar="PRESET|N",
                   help="--ask's question sets the budget: fast, balanced or accurate (by its tier), or a total "
                        "budget N (docs/VLM.md)")
    r.add_argument("--start", type=float, help="seconds into the source to start at (files seek there)")
    r.add_argument("--end", type=float, help="seconds into the source to stop at")
    r.add_argument("--fps", type=float, help="sample at most this many frames per second (e.g. 1 or 2 for a VLM)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    from .distributed.cli import add_batch_parser, add_run_options

    add_run_options(r)  # --ray [ADDRESS] and its options (arrcoc_rt/distributed/cli.py)
    r.set_defaults(func=_cmd_run)
    b = sub.add_parser("bench", help="per-stage latency table (p50/p95/p99, fps) on CPU and GPU if present")
    b.add_argument("input", nargs="?", help="image, or a video file: then from each PyAV packet to the token pack, split "
                                            "into decode, convert and each stage (default: synthetic frames)")
    b.add_argument("--size", help="synthetic frame size, without an input (default 640x480)")
    b.add_argument("--frames", type=int, default=30, help="frames to time per device and stage (default: 30)")
    b.add_argument("--device", help="one device to time: cpu, cuda, cuda:N or auto (default: the CPU and, if "
                                    "present, the current CUDA device)")
    b.set_defaults(func=_cmd_bench)
    sub.add_parser("info", help="version, build (CUDA compiled?), GPUs found").set_defaults(func=_cmd_info)
    a = sub.add_parser("ask", help="ask a frozen VLM about one image, fed only the allocated tokens")
    a.add_argument("image", help="an image file")
    a.add_argument("question", help="the question")
    a.add_argument("--vlm", required=True, help="llava:PATH, llava_next:PATH, qwen2_vl:PATH or qwen2_5_vl:PATH (a local "
                                                "checkpoint folder; nothing is downloaded)")
    a.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    a.add_argument("--tokens", type=int, help="visual tokens that reach the language model (default: all kept)")
    a.add_argument("--max-new-tokens", type=int, default=32, help="longest answer in tokens (default: 32)")
    a.add_argument("--passes", type=int, default=1, metavar="N",
                   help="look again, up to N passes, while the answer is uncertain (docs/VLM.md)")
    a.add_argument("--budget", metavar="PRESET|N",
                   help="the question sets the budget: fast, balanced or accurate (by its tier), or a total budget N")
    a.set_defaults(func=_cmd_ask)
    t = sub.add_parser("texture", help="build the 40-channel texture array and write PNGs of it")
    t.add_argument("input", nargs="?", help="image or video file (default: a built-in synthetic sample)")
    t.add_argument("--out", default="texture-demo", help="output folder (default: texture-demo)")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    t.add_argument("--dtype", default="float16", choices=["float16", "float32"],
                   help="storage type of the texture (default: float16)")
    t.add_argument("--frames", type=int, default=2,
                   help="frames to process from a video or the sample; motion needs 2 (default: 2)")
    t.set_defaults(func=_cmd_texture)
    from .evaluation.cli import add_parser as add_eval_parser

    add_eval_parser(sub)  # arrcoc-rt eval: saccade budget on annotated boxes, coherence, cuts
    from .learning.cli import add_parser as add_train_parser

    add_train_parser(sub)
    from .experiment.cli import add_parser as add_experiment_parser

    add_experiment_parser(sub)  # arrcoc-rt experiment: does the choice of tokens help a frozen VLM answer?
    add_batch_parser(sub)  # arrcoc-rt batch: video files to Parquet on Ray (arrcoc_rt/distributed/cli.py)
    from .serve.cli import add_parser as add_serve_parser

    add_serve_parser(sub)  # arrcoc-rt serve: the live page (Gradio, imported only when it runs)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "frames", 1) < 1:
        return _fail("--frames must be at least 1")
    from .sources import SourceError

    try:
        return args.func(args)
    except SystemExit as e:  # the subcommands' own one-line errors (_error): exit code 2, like argparse
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            return 2
        raise
    except (ValueError, TypeError, SourceError) as e:  # bad input found deeper (device, sizes, files)
        return _fail(str(e))
    except OSError as e:  # a file that cannot be written or read (permissions, a full disk)
        return _fail(f"{e.strerror or e}{f': {e.filename!r}' if getattr(e, 'filename', None) else ''}")


def _fail(message: str) -> int:
    print(f"arrcoc-rt: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
