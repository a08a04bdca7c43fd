"""The Ray parts of the command line (``arrcoc_rt/cli.py`` only routes here):

    arrcoc-rt run SOURCE... --ray [ADDRESS] --out DIR    one JSONL (or Parquet) per source + _summary.json
    arrcoc-rt batch VIDEOS_OR_GLOB... [--ray ADDRESS] --out DIR    Parquet per file, resumable

ADDRESS: 'auto' (the cluster this machine belongs to), 'HOST:PORT', 'ray://HOST:10001'; without
one a local cluster is started. docs/SCALING.md has the details.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from ..pipeline import STRATEGIES
from .batch import SUMMARY_NAME

_ADDRESS = re.compile(r"^(auto|local|ray://\S+|[\w.\-]+:\d+)$")


def _error(msg: str) -> SystemExit:
    return SystemExit(f"arrcoc-rt: error: {msg}")


def _need_ray(what: str):
    try:
        import pyarrow  # noqa: F401
        import ray  # noqa: F401
    except ImportError as e:
        raise _error(f"{what} needs Ray and pyarrow ({e.name} is missing): pip install 'arrcoc_rt[ray]'") from None


def add_run_options(parser) -> None:
    """The ``--ray`` options of ``arrcoc-rt run``."""
    g = parser.add_argument_group("many sources on Ray (--ray; docs/SCALING.md)")
    g.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run every SOURCE on a Ray cluster: ADDRESS ('auto', HOST:PORT, ray://HOST:10001) or, "
                        "without one, a local cluster; --out is then a folder (one JSONL per source + _summary.json)")
    g.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl",
                   help="with --ray: tokens per source as JSONL (default) or Parquet")
    g.add_argument("--actors", type=int, help="with --ray: number of actors (default: one per source on GPUs, "
                                               "else as many as the cluster's CPUs)")
    g.add_argument("--cpus-per-actor", type=float, default=1.0, help="with --ray: CPUs per actor (default 1)")
    g.add_argument("--gpus-per-actor", type=float,
                   help="with --ray: GPUs per actor, whole or a fraction (default: an equal share if there are GPUs)")
    g.add_argument("--resume", choices=["exact", "skip"], default="exact",
                   help="with --ray, after an actor restart: rebuild the state exactly (default) or start it afresh")


def _split_address(sources, address) -> tuple[list, str | None]:
    """(sources, address). ``--ray a.mp4`` (a source right after --ray, not an address) is taken as
    a source and the cluster is a local one."""
    sources = list(sources)
    if address is not None and not _ADDRESS.match(address):
        sources.insert(0, address)
        address = None
    return sources, (None if address in (None, "local") else address)


def _out_name(index: int, source) -> str:
    stem = Path(str(source)).stem if not str(source).isdigit() else f"video{source}"
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:60] or "source"
    return f"{index:03d}-{stem}"


def run_on_ray(args, stream_options: dict) -> int:
    """``arrcoc-rt run SOURCE... --ray [ADDRESS]``."""
    _need_ray("--ray")
    for flag in ("png_dir", "plot", "jsonl", "ask", "vlm", "hide"):
        if getattr(args, flag, None):
            raise _error(f"--{flag.replace('_', '-')} is for a single source without --ray; with --ray, --out is "
                         "a folder with one token file per source")
    from .live import run_many
    from .records import packs_to_table

    sources, address = _split_address(args.source, args.ray)
    sources = [int(s) if s.isdigit() else s for s in sources]  # webcam numbers, as without --ray
    if args.summary:  # written at the end: checked now (a bad path lost the run's summary)
        from ..commands.common import _distinct_outputs, _output_file

        _output_file(args.summary, "--summary")
        for source in sources:
            _distinct_outputs({"--summary": args.summary}, source)
    out = Path(args.out or "arrcoc-ray-run")
    out.mkdir(parents=True, exist_ok=True)
    source_options = {k: getattr(args, k) for k in ("start", "end", "fps", "follow") if getattr(args, k) is not None}
    if args.reconnect is not None:
        source_options["reconnect_attempts"] = args.reconnect
    if args.drop_oldest:
        source_options["drop_oldest"] = True
    stream_options = {k: v for k, v in stream_options.items() if v is not None}
    try:
        run = run_many(sources, address=address, num_actors=args.actors, num_cpus=args.cpus_per_actor,
                       num_gpus=args.gpus_per_actor, resume=args.resume, max_frames=args.max_frames,
                       progress=not args.quiet and sys.stderr.isatty(), source_options=source_options,
                       device=args.device, strategy=args.strategy, saccades=args.saccades,
                       total_budget=args.total_budget, weights=args.weights, **stream_options)
    except (ValueError, TypeError, OSError) as e:
        raise _error(str(e)) from None
    names = {i: _out_name(i, s) for i, s in enumerate(sources)}
    for n in names.values():
        (out / f"{n}.{args.format}").unlink(missing_ok=True)  # no earlier run's file passes for this one's
    files, writers, pending = {}, {}, {}
    interrupted = False
    try:
        for pack in run:
            i = pack.source_index
            if args.format == "jsonl":
                if i not in files:  # opened at the first frame: a source that fails at once leaves no file
                    files[i] = open(out / f"{names[i]}.jsonl", "w")
                files[i].write(json.dumps(pack.to_json()) + "\n")
                continue
            pending.setdefault(i, []).append(pack)
            if len(pending[i]) >= 64:
                _write_parquet(writers, out / f"{names[i]}.parquet", i, pending.pop(i), packs_to_table)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        run.close()
        for i, packs in pending.items():
            _write_parquet(writers, out / f"{names[i]}.parquet", i, packs, packs_to_table)
        for w in writers.values():
            w.close()
        for f in files.values():
            f.close()
    reports = run.summary()
    for r in reports:
        path = out / f"{names[r['index']]}.{args.format}"
        r["output"] = str(path) if path.exists() else None
    summary = Path(args.summary) if args.summary else out / SUMMARY_NAME
    summary.write_text(json.dumps({"placement": run.placement, "address": address or "local", "sources": reports,
                                   "interrupted": interrupted}, indent=2))
    print(f"{'source':40s} {'status':9s} {'frames':>7s} {'fps':>7s} {'drops':>6s} {'corrupt':>8s} {'lost':>5s} "
          f"{'restarts':>8s} {'p50 ms':>7s} {'p95 ms':>7s}")
    for r in reports:
        lat = r["latency_ms"] or {}
        print(f"{str(r['source'])[-40:]:40s} {r['status']:9s} {r['frames']:7d} {r['fps'] or 0:7.1f} {r['dropped']:6d} "
              f"{r['corrupt_packets']:8d} {r['lost_frames']:5d} {r['restarts']:8d} {lat.get('p50', 0):7.2f} "
              f"{lat.get('p95', 0):7.2f}")
        if r["error"]:
            print(f"  {r['error']}")
    print(f"wrote {out}/ (one {args.format} per source) and {summary}")
    if interrupted:
        return 130
    return 1 if any(r["status"] == "failed" for r in reports) else 0


def _write_parquet(writers, path, i, packs, packs_to_table) -> None:
    import pyarrow.parquet as pq

    table = packs_to_table(packs)
    if i not in writers:
        writers[i] = pq.ParquetWriter(str(path), table.schema, compression="zstd")
    writers[i].write_table(table)


def add_batch_parser(subparsers) -> None:
    """Registers ``arrcoc-rt batch``."""
    b = subparsers.add_parser("batch", help="a corpus of video files to token packs in Parquet, on Ray (resumable)",
                              description="Turns video files into Parquet files of token packs (one row per frame) "
                                          "with Ray Data, one task per file; files finished by an earlier run are "
                                          "skipped. docs/SCALING.md.")
    b.add_argument("inputs", nargs="+", metavar="VIDEOS_OR_GLOB",
                   help="video files, folders (their videos, recursively) or glob patterns ('archive/**/*.mp4')")
    b.add_argument("--out", required=True, help="output folder: STEM-HASH.parquet per file and _summary.json")
    b.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="Ray cluster ('auto', HOST:PORT, ray://HOST:10001); default or without ADDRESS: a local one")
    b.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    b.add_argument("--cpus-per-task", type=float, default=1.0, help="CPUs per file task (default 1)")
    b.add_argument("--gpus-per-task", type=float,
                   help="GPUs per file task, whole or a fraction (default: 1 when the cluster has GPUs)")
    b.add_argument("--query", help="text query (needs --encoder clip:PATH or siglip:PATH)")
    b.add_argument("--query-image", help="exemplar image: look for this object (built-in encoder)")
    b.add_argument("--encoder", default="builtin", help="builtin (default) | clip:PATH | siglip:PATH")
    b.add_argument("--strategy", default="balanced", choices=list(STRATEGIES),
                   help="how saccades are chosen (default: balanced)")
    b.add_argument("--saccades", type=int, default=273, help="saccade slots per frame (default: 273)")
    b.add_argument("--total-budget", type=int, default=100000, help="levels of detail of all tokens (default 100000)")
    b.add_argument("--weights", help="balancer weights file (.npz or .json)")
    from ..cli import add_allocation_options

    add_allocation_options(b)
    b.add_argument("--start", type=float, help="seconds into each file to start at")
    b.add_argument("--end", type=float, help="seconds into each file to stop at")
    b.add_argument("--fps", type=float, help="sample at most this many frames per second")
    b.add_argument("--redo", action="store_true", help="convert files finished by an earlier run again")
    b.add_argument("--quiet", action="store_true", help="no progress bar, no line per file")
    b.set_defaults(func=_cmd_batch)


def _cmd_batch(args) -> int:
    _need_ray("arrcoc-rt batch")
    from ..commands.run import _stream_options
    from .batch import run_batch

    stream_options = {k: v for k, v in _stream_options(args).items() if v is not None}
    source_options = {k: getattr(args, k) for k in ("start", "end", "fps") if getattr(args, k) is not None}
    inputs, address = _split_address(args.inputs, args.ray)

    printed = set()

    def line(r):
        printed.add(r["source"])
        if not args.quiet:
            extra = f"{r['frames']} frames, {r['seconds']:.1f} s" if r["status"] == "complete" else r["error"]
            print(f"{r['status']:8s} {r['source']}: {extra}", flush=True)

    try:
        reports = run_batch(inputs, args.out, address=address, num_cpus=args.cpus_per_task,
                            num_gpus=args.gpus_per_task, redo=args.redo,
                            progress=not args.quiet and sys.stderr.isatty(),
                            source_options=source_options, on_file=line, device=args.device, strategy=args.strategy,
                            saccades=args.saccades, total_budget=args.total_budget, weights=args.weights,
                            **stream_options)
    except (ValueError, TypeError, OSError) as e:
        raise _error(str(e)) from None
    except KeyboardInterrupt:
        summary = Path(args.out) / SUMMARY_NAME
        try:
            listed = bool(json.loads(summary.read_text()).get("interrupted"))
        except (OSError, ValueError):
            listed = False
        said = (f"{summary} lists every file (unfinished ones 'stopped')" if listed else
                "before any file was converted")
        print(f"interrupted: {said}; run the same command again to convert the rest", file=sys.stderr)
        return 130
    count = {s: sum(r["status"] == s for r in reports) for s in ("complete", "skipped", "failed")}
    for r in reports:
        if r["status"] == "failed" and not args.quiet and r["source"] not in printed:  # failed before a task ran
            print(f"failed   {r['source']}: {r['error']}")
    print(f"{len(reports)} files: {count['complete']} converted, {count['skipped']} already complete (skipped), "
          f"{count['failed']} failed; {sum(r['frames'] for r in reports)} frames in {args.out}/ "
          f"({SUMMARY_NAME} lists every file)")
    return 1 if count["failed"] else 0
