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
import sys

from . import runtime
from .commands.ask import _cmd_ask
from .commands.bench import _cmd_bench
from .commands.run import _cmd_demo, _cmd_run
from .commands.texture import _cmd_info, _cmd_texture
from .pipeline import STRATEGIES


def add_allocation_options(parser) -> None:
    """--gestalt and --text-floor, as `arrcoc-rt train` takes them (run and batch)."""
    parser.add_argument("--gestalt", type=int, metavar="K",
                        help="a K x K gestalt grid (default: the pipeline's, 16; as trained: docs/TRAINING.md)")
    parser.add_argument("--text-floor", type=int, metavar="N",
                        help="the text guardrail's level-of-detail floor (default 256; 0: off, ranking as trained)")


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
    r.add_argument("--png-dir", help="also write one overlay PNG per frame into this folder (overlay_NNNNN.png; "
                                     "those of an earlier run there are removed first)")
    r.add_argument("--hide", metavar="LAYER,...", help="overlay layers not to draw: heat, saccades, gestalt, cuts, "
                                                   "legend, caption (default: all drawn)")
    r.add_argument("--plot", help="latency per stage over the run, as a PNG (needs matplotlib)")
    r.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    r.add_argument("--max-frames", type=int, default=None, help="stop after this many frames (default: all)")
    r.add_argument("--drop-oldest", action="store_true", help="live sources: drop the oldest frame when behind")
    r.add_argument("--reconnect", type=int, metavar="N",
                   help="live sources: reconnection attempts in a row after a lost connection (default 5; 0: none)")
    r.add_argument("--follow", type=float, metavar="SECONDS",
                   help="a file still being written (MPEG-TS or MKV; not MP4, whose index comes last): wait for new "
                        "data, end after SECONDS without any (FFmpeg's timeout: up to about twice that)")
    r.add_argument("--strategy", default="balanced", choices=list(STRATEGIES),
                   help="how saccades are chosen (default: balanced)")
    r.add_argument("--saccades", type=int, default=273, help="saccade slots per frame (default: 273)")
    r.add_argument("--total-budget", type=int, default=100000,
                   help="levels of detail of all tokens together (default: 100000)")
    r.add_argument("--weights", help="balancer weights file (.npz or .json; default: the untrained default)")
    add_allocation_options(r)
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
    a.add_argument("image", help="an image file (or a video file: its first frame)")
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
        from .commands.common import _as_flags

        return _fail(_as_flags(str(e), getattr(args, "command", "")))
    except KeyboardInterrupt:  # Ctrl-C where a command has nothing to save: no traceback
        print("arrcoc-rt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (`arrcoc-rt bench | head`): quiet, as other tools are
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 141
    except OSError as e:  # a file that cannot be written or read (permissions, a full disk)
        return _fail(f"{e.strerror or e}{f': {e.filename!r}' if getattr(e, 'filename', None) else ''}")


def _fail(message: str) -> int:
    print(f"arrcoc-rt: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
