"""Issue #15's GPU figures in one short run (scripts/gpu_check.sh runs it first, before the tests):
per frame size, the whole pipeline on a CUDA stream of its own, with the frames already on the
device and no host copy (``copy=False``):

* latency: each frame submitted and waited for (p50 and p99 over ``--frames``), with the stages
  replayed as CUDA graphs and, for comparison, launched kernel by kernel;
* the same with the tokens copied to the host (``copy=True``: one wait per frame, as a NumPy user gets);
* throughput: frames submitted back to back, one wait at the end (frames per second);
* ``StreamGroup(--streams)``: B streams, each on a CUDA stream of its own, ``process_batch`` back to
  back (aggregate frames per second).

Prints a Markdown table (docs/PERFORMANCE.md keeps it with the date and the GPU) and writes JSON.
Issue #15's targets on an H100/H200: ≤ 0.5 ms p50 and ≤ 1 ms p99 per 1920×1080 frame, ≥ 2000 frames
per second in aggregate when batched. On the emulated device the script runs (the tests check it)
but its times mean nothing.

    python3 scripts/gpu_timings.py [--sizes 640x480,1920x1080] [--frames 200] [--streams 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

SIZES = "640x480,1280x720,1920x1080,3840x2160"


def _percentiles(seconds: list) -> dict:
    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 4), "p99_ms": round(float(np.percentile(ms, 99)), 4)}


def _latency(pipe, frames, stream, n: int, copy: bool) -> dict:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        pipe.process(frames[i % len(frames)], stream=stream, copy=copy)
        stream.synchronize()
        times.append(time.perf_counter() - t0)
    return _percentiles(times)


def time_size(width: int, height: int, n: int, streams: int, device: int, warmup: int = 10) -> dict:
    import arrcoc_rt
    from arrcoc_rt import cuda
    from arrcoc_rt.samples import sample_frames

    host_frames = sample_frames(width, height, 2)  # two frames of moving content
    frames = [cuda.to_device(f, device) for f in host_frames]
    row = {"size": f"{width}x{height}", "frames": n}
    graphs = cuda.graphs_enabled()
    with cuda.Stream(device) as s:
        pipe = arrcoc_rt.Pipeline(width, height, device=f"cuda:{device}")
        try:
            for use_graphs in (True, False):
                cuda.set_graphs(use_graphs)
                _latency(pipe, frames, s, warmup, copy=False)  # (re)captures the graphs, warms the caches
                row["graphs" if use_graphs else "kernel_by_kernel"] = _latency(pipe, frames, s, n, copy=False)
        finally:
            cuda.set_graphs(graphs)
        _latency(pipe, frames, s, warmup, copy=True)
        row["host_copy"] = _latency(pipe, frames, s, n, copy=True)
        t0 = time.perf_counter()
        enqueue = [pipe.process(frames[i % 2], stream=s, copy=False).timings["total"] for i in range(n)]
        s.synchronize()
        row["queued_fps"] = round(n / (time.perf_counter() - t0), 1)
        row["host_enqueue_p50_ms"] = round(float(np.median(enqueue)), 4)  # the host's share of a frame
    group = arrcoc_rt.StreamGroup(width, height, streams, device=f"cuda:{device}")
    try:
        batch = [frames[b % 2] for b in range(streams)]
        rounds = max(2, n // streams)
        for _ in range(3):
            group.process_batch(batch, copy=False)
        group.synchronize()
        t0 = time.perf_counter()
        for _ in range(rounds):
            group.process_batch(batch, copy=False)
        group.synchronize()
        row["group_streams"] = streams
        row["group_fps"] = round(rounds * streams / (time.perf_counter() - t0), 1)
    finally:
        group.close()
    return row


def table(rows: list) -> str:
    head = ("| size | p50 / p99, graphs | p50 / p99, kernel by kernel | p50 / p99, tokens to host | "
            "queued fps | host enqueue p50 | StreamGroup fps (B) |\n|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        g, k, c = r["graphs"], r["kernel_by_kernel"], r["host_copy"]
        lines.append(f"| {r['size']} | {g['p50_ms']:.3f} / {g['p99_ms']:.3f} ms | {k['p50_ms']:.3f} / {k['p99_ms']:.3f} ms | "
                     f"{c['p50_ms']:.3f} / {c['p99_ms']:.3f} ms | {r['queued_fps']:.0f} | {r['host_enqueue_p50_ms']:.3f} ms | "
                     f"{r['group_fps']:.0f} ({r['group_streams']}) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=SIZES, help=f"comma-separated WxH (default {SIZES})")
    ap.add_argument("--frames", type=int, default=200, help="frames timed per measurement (default 200)")
    ap.add_argument("--streams", type=int, default=8, help="StreamGroup's streams (default 8)")
    ap.add_argument("--device", type=int, default=0, help="CUDA device ordinal (default 0)")
    ap.add_argument("--json", help="also write the rows here")
    a = ap.parse_args(argv)
    import arrcoc_rt

    if not arrcoc_rt.cuda_available():
        print("gpu_timings: no usable CUDA device (a build without CUDA, or no GPU)", file=sys.stderr)
        return 2
    if a.frames < 2 or not 1 <= a.streams <= 64:
        print("gpu_timings: --frames must be >= 2 and --streams 1..64", file=sys.stderr)
        return 2
    from arrcoc_rt.frames import parse_size

    try:
        sizes = [parse_size(item, "--sizes") for item in a.sizes.split(",")]
    except ValueError as e:
        print(f"gpu_timings: {e} (several: comma-separated)", file=sys.stderr)
        return 2
    if f"cuda:{a.device}" not in arrcoc_rt.devices():
        print(f"gpu_timings: --device {a.device}: no such CUDA device; this machine has "
              f"{', '.join(d for d in arrcoc_rt.devices() if d != 'cpu')}", file=sys.stderr)
        return 2
    if a.json:  # refused now, not after the first size's minutes of device time
        try:
            open(a.json, "w").close()
        except OSError as e:
            print(f"gpu_timings: --json {a.json!r}: cannot write there ({e.strerror})", file=sys.stderr)
            return 2
    info = arrcoc_rt.info()
    rows = []
    for w, h in sizes:
        rows.append(time_size(w, h, a.frames, a.streams, a.device))
        print(f"{w}x{h}: {json.dumps(rows[-1])}", flush=True)
        if a.json:  # after each size: a run cut short still leaves the sizes it finished
            with open(a.json, "w") as f:
                json.dump({"info": info, "rows": rows}, f, indent=1, default=str)
    if arrcoc_rt.cuda.is_emulated():
        print("(the emulated CUDA device: these times mean nothing)")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
