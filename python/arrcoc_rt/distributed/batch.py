"""``run_batch``: a corpus of video files to token packs in Parquet, with Ray Data.

    from arrcoc_rt.distributed import run_batch, read_parquet

    report = run_batch(["archive/**/*.mp4"], "packs/", address="auto")
    packs = read_parquet("packs/clip-1a2b3c4d.parquet")        # FramePacks, frames in order

* One Ray Data task per file (``from_items(files).map(...)``, one file per block): its frames go
  through one Stream in order, because motion and temporal blending follow the frames.
* One Parquet file per input file, one row per frame, the token pack as columns
  (``records.arrow_schema``), written in row groups of ``rows_per_group`` frames.
* Resumable: each file is written to ``NAME.parquet.partial`` and renamed to ``NAME.parquet`` when
  complete (the rename is atomic), so a ``NAME.parquet`` with a readable footer is a finished file
  and a rerun skips it; a task that died leaves only a ``.partial``, which the rerun replaces. Each
  file records the options it was made with (its schema's ``arrcoc_options``): a rerun with other
  options converts it again instead of skipping it.
* A file that cannot be read fails alone (its error is in the report); the others go on. A worker
  that dies is retried by Ray Data (``max_retries``) from the file's start.
* ``_summary.json`` in the output folder lists every input: status, Parquet file, frames, corrupt
  packets, latency percentiles. (The leading ``_`` keeps Parquet readers that take a folder as one
  dataset, pyarrow, pandas, Spark, from reading it as data.)
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ..sources import VIDEO_SUFFIXES


SUMMARY_NAME = "_summary.json"


def expand_inputs(inputs) -> list[str]:
    """Files from paths, folders (their video files, recursively) and glob patterns ('**' works),
    in order, each file once (the same file under two spellings too). A path, folder or pattern
    that gives no file is kept as it is, to be reported as failed (``missing_reason``)."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    out, seen = [], set()

    def add(p) -> bool:
        p = str(p)
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            out.append(p)
        return True

    for item in inputs:
        s = str(item)
        if os.path.isdir(s):
            found = [add(p) for p in sorted(Path(s).rglob("*")) if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
        elif any(c in s for c in "*?[") and not os.path.exists(s):
            found = [add(p) for p in sorted(glob.glob(s, recursive=True)) if os.path.isfile(p)]
        else:
            found = [add(s)]
        if not found:
            add(s)  # reported as failed, with the reason
    return out


def missing_reason(item: str) -> str:
    """Why an input of ``expand_inputs`` is not a file to convert."""
    if os.path.isdir(item):
        return (f"{item!r} is a folder with no video files ({', '.join(VIDEO_SUFFIXES)}); "
                f"an image folder is one source for arrcoc-rt run, not a batch input")
    if any(c in item for c in "*?[") and not os.path.exists(item):
        return f"{item!r} matches no file"
    return f"{item!r} does not exist or is not a file"


def options_key(stream_options: dict, source_options: dict) -> str:
    """A fingerprint of the options a file is converted with (arrays by their bytes' hash), kept in
    its Parquet schema: a rerun with other options converts the file again."""
    import dataclasses
    import re

    def without_address(o) -> str:
        return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(o))

    def canon(o):
        if hasattr(o, "shape") and hasattr(o, "dtype"):
            try:
                a = np.ascontiguousarray(o)
                return {"array": hashlib.sha1(a.tobytes()).hexdigest(), "shape": list(a.shape), "dtype": str(a.dtype)}
            except Exception:  # noqa: BLE001 - e.g. a device tensor: its shape and type at least
                return {"type": type(o).__name__, "shape": list(o.shape), "dtype": str(o.dtype)}
        if dataclasses.is_dataclass(o):
            return {"type": type(o).__name__, **{f.name: getattr(o, f.name) for f in dataclasses.fields(o)}}
        if hasattr(o, "__dict__"):  # an object (a fitted PCA, an encoder): by its state, not its address
            return {"type": type(o).__qualname__, "state": {k: v for k, v in vars(o).items() if not k.startswith("__")}}
        return without_address(o)

    # Where it runs is not part of it: the kernels' thread count gives the same bits, and the CPU and
    # CUDA backends the same tokens within the tested tolerances (a rerun on GPUs skips CPU-made files).
    stream = {k: v for k, v in stream_options.items() if k not in ("num_threads", "device")}
    payload = {"stream": stream, "source": source_options}
    try:
        return json.dumps(payload, sort_keys=True, default=canon)
    except (ValueError, TypeError, RecursionError):  # a state that refers to itself: names and types only
        return json.dumps(payload, sort_keys=True, default=without_address)


def output_name(path: str) -> str:
    """``STEM-HASH8.parquet``: readable, and distinct for files of the same name in other folders
    (the hash is of the absolute path, so a rerun finds the same name)."""
    digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:8]
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(path).stem)[:80] or "video"
    return f"{stem}-{digest}.parquet"


def finished_file(path) -> tuple[int, str | None] | None:
    """(frames, options fingerprint or None when not recorded) of a finished Parquet file: present
    (renamed after its footer was written) and its footer reads (one read); None otherwise."""
    import pyarrow.parquet as pq

    if not os.path.exists(path):
        return None
    try:
        meta = pq.read_metadata(str(path))
    except (OSError, ValueError, Exception):  # noqa: BLE001 - pyarrow raises ArrowInvalid etc.
        return None
    options = (meta.schema.to_arrow_schema().metadata or {}).get(b"arrcoc_options")
    return meta.num_rows, options.decode() if options is not None else None


def convert_file(path: str, out_path: str, *, source_index: int = 0, stream_options: dict | None = None,
                 source_options: dict | None = None, rows_per_group: int = 64, options: str | None = None) -> dict:
    """One video file -> one Parquet file (``out_path``), frames in order; returns its report.
    ``options``: the options' fingerprint (``options_key``) kept in the file's schema. Runs in a Ray
    Data task (and works without Ray)."""
    import pyarrow.parquet as pq

    from ..sources import open as open_source
    from ..stream import Stream
    from .records import FramePack, arrow_schema, packs_to_table

    t0 = time.perf_counter()
    partial = out_path + ".partial"
    report = file_report(path, "failed", parquet=out_path, corrupt_packets=0, pid=os.getpid())
    latencies, packs, writer = [], [], None
    try:
        with open_source(path, **(source_options or {})) as src:
            stream = Stream(**(stream_options or {}))
            schema = arrow_schema()
            if options is not None:
                schema = schema.with_metadata({**(schema.metadata or {}), b"arrcoc_options": options.encode()})
            writer = pq.ParquetWriter(partial, schema, compression="zstd")
            for i, frame in enumerate(src):
                t = time.perf_counter()
                result = stream.process(frame)
                ms = (time.perf_counter() - t) * 1e3
                latencies.append(ms)
                packs.append(FramePack.from_result(result, source=path, source_index=source_index, frame_index=i,
                                                   latency_ms=ms))
                if len(packs) >= rows_per_group:
                    writer.write_table(packs_to_table(packs))
                    packs = []
            if packs:
                writer.write_table(packs_to_table(packs))
            writer.close()
            writer = None
            report["corrupt_packets"] = src.stats.corrupt_packets
        if not latencies:
            raise ValueError("no decodable video frames")
        os.replace(partial, out_path)  # atomic: a NAME.parquet is always a complete file
        report.update(status="complete", frames=len(latencies))
    except Exception as e:  # noqa: BLE001 - this file fails alone; the report says why
        report["error"] = f"{type(e).__name__}: {e}"
        report["parquet"] = None  # nothing was written
        if writer is not None:
            writer.close()
        if os.path.exists(partial):
            os.remove(partial)
    if latencies:
        v = np.asarray(latencies)
        report["latency_ms"] = {f"p{q}": round(float(np.percentile(v, q)), 3) for q in (50, 95, 99)}
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return report


def file_report(source, status: str, **fields) -> dict:
    """One input's entry of the summary, every key present (None where this run does not know it:
    a skipped file's packets and latencies were counted by the run that made it)."""
    return {"source": source, "parquet": None, "status": status, "error": None, "frames": 0,
            "corrupt_packets": None, "latency_ms": None, "seconds": 0.0, "pid": None, **fields}


def _task(row: dict, stream_options: dict, source_options: dict, rows_per_group: int, options: str) -> dict:
    r = convert_file(row["path"], row["out"], source_index=row["index"], stream_options=stream_options,
                     source_options=source_options, rows_per_group=rows_per_group, options=options)
    r["out"] = row["out"]  # the task's key (a failed file's report names no Parquet file)
    r["latency_ms"] = json.dumps(r["latency_ms"])  # one simple type per column for Ray Data
    return r


def run_batch(inputs, out_dir, *, query=None, address=None, num_cpus: float = 1.0, num_gpus=None,
              max_retries: int = 2, rows_per_group: int = 64, redo: bool = False, progress=None,
              source_options=None, on_file=None, check_resources: bool = True, **stream_options) -> list[dict]:
    """Turns every input file into ``out_dir/STEM-HASH.parquet`` (see the module docstring) with
    Ray Data on the cluster at ``address`` (``None``: a local one, or the one this process joined).

    ``inputs``: files, folders, glob patterns. ``num_cpus`` / ``num_gpus`` per task (default: 1 CPU;
    a whole GPU per task when the cluster has GPUs and ``device`` is not 'cpu'; fractions share one).
    ``redo=True`` converts finished files again. ``on_file(report)`` is called as each file ends.
    ``check_resources=False``: do not refuse a request no node has now (an autoscaling cluster that
    adds such nodes on demand).
    Returns one report per input, in input order: status 'complete', 'skipped' (finished by an
    earlier run) or 'failed' (with ``error``), frames, corrupt packets, latency percentiles."""
    from ..sources import check_open_options
    from .live import _validate, _with_query, check_feasible, check_per_worker, connect

    for name, v, lo in (("max_retries", max_retries, 0), ("rows_per_group", rows_per_group, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name}: {v!r}; expected an int >= {lo}")
    check_per_worker(num_cpus, num_gpus, "task")
    check_open_options(source_options)
    files = expand_inputs(inputs)
    if not files:
        raise ValueError(f"no video files in {inputs!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stream_options = _with_query(query, stream_options)
    _validate(stream_options)
    key = options_key(stream_options, dict(source_options or {}))
    reports: dict[int, dict] = {}
    todo = []
    for i, f in enumerate(files):
        target = out / output_name(f)
        finished = finished_file(target)
        # a file written before options were recorded (no arrcoc_options) is taken as it is, as then
        if finished is not None and not redo and finished[1] in (key, None):
            reports[i] = file_report(f, "skipped", parquet=str(target), frames=finished[0])
        elif not os.path.isfile(f):
            reports[i] = file_report(f, "failed", error=missing_reason(f))
        else:
            todo.append({"index": i, "path": os.path.abspath(f), "out": str(target.resolve()),
                         "replaces": finished is not None})
    if todo:
        import ray
        import ray.data

        connect(address)
        if num_gpus is None:
            use = ray.cluster_resources().get("GPU", 0) > 0 and str(stream_options.get("device", "auto")) != "cpu"
            num_gpus = 1 if use else 0
        if not num_gpus and "num_threads" not in stream_options:
            stream_options["num_threads"] = max(1, int(round(num_cpus)))
        show = sys.stderr.isatty() if progress is None else bool(progress)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = show
        ctx.max_errored_blocks = len(todo)  # a task that keeps crashing loses its file, not the job
        if check_resources:
            check_feasible(ray, "a task", num_cpus, num_gpus)
        for t in todo:  # redone, or made with other options: gone once the run goes ahead (not before),
            if t.pop("replaces"):  # so that a conversion that fails leaves no stale file beside its report
                Path(t["out"]).unlink(missing_ok=True)
        ds = ray.data.from_items(todo, override_num_blocks=len(todo))  # one file per block, one block per task
        kwargs = dict(fn_kwargs={"stream_options": stream_options, "source_options": dict(source_options or {}),
                                 "rows_per_group": rows_per_group, "options": key},
                      num_cpus=num_cpus, num_gpus=num_gpus or None)
        with warnings.catch_warnings():
            # Ray Data retries a crashed task forever by default; a file that crashes its worker must fail
            # after max_retries. Ray 2.60 has only the (deprecated) remote-args hook for that.
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            try:
                ds = ds.map(_task, ray_remote_args_fn=lambda: {"max_retries": max_retries}, **kwargs)
            except TypeError:  # a Ray without the hook
                ds = ds.map(_task, **kwargs)
        by_out = {t["out"]: t["index"] for t in todo}
        try:
            for row in ds.iter_rows():
                r = dict(row)
                r["latency_ms"] = json.loads(r["latency_ms"])
                i = by_out[r.pop("out")]
                r["source"] = files[i]
                reports[i] = r
                if on_file is not None:
                    on_file(r)
        except KeyboardInterrupt:  # the summary still lists every file; the next run resumes
            for t in todo:
                if t["index"] not in reports:
                    reports[t["index"]] = file_report(files[t["index"]], "stopped", error="interrupted (Ctrl-C)")
            _write_summary(out, [reports[i] for i in range(len(files))], interrupted=True)
            raise
        for t in todo:
            if t["index"] not in reports:  # its task crashed max_retries + 1 times
                reports[t["index"]] = file_report(files[t["index"]], "failed",
                                                  error=f"its task crashed {max_retries + 1} times (worker died)")
    result = [reports[i] for i in range(len(files))]
    _write_summary(out, result)
    return result


def _write_summary(out: Path, reports: list, *, interrupted: bool = False) -> None:
    (out / SUMMARY_NAME).write_text(json.dumps({"files": reports, "interrupted": interrupted}, indent=2))


def read_parquet(path, source_index: int = 0):
    """The FramePacks of one Parquet file written by ``run_batch`` (or ``run --ray --format parquet``)."""
    import pyarrow.parquet as pq

    from .records import table_to_packs

    return table_to_packs(pq.read_table(str(path)), source_index=source_index)
