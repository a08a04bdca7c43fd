"""Throughput of arrcoc_rt.distributed on a local Ray cluster: N file sources with 1 or 2 actors,
against the same files through Streams one after the other in this process (docs/SCALING.md).

    python3 benchmarks/ray_throughput.py [--size 640x480] [--frames 90] [--cpus 2]

Prints frames per second, all sources together and per source, for run_many and for the
sequential baseline. Needs the ray extra. The clips are generated (demo_clip, mpeg4) in a
temporary folder; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import av
import ray

import arrcoc_rt
from arrcoc_rt.distributed import run_many
from arrcoc_rt.samples import demo_clip


def write_video(path, frames, rate=30):
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=rate)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    return str(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--frames", type=int, default=90, help="frames per clip")
    ap.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of the local cluster")
    ap.add_argument("--sources", default="1,2,4", help="numbers of sources to try")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    tmp = tempfile.mkdtemp(prefix="arrcoc-ray-bench-")
    clip = demo_clip(w, h, frames=args.frames, cut_at=args.frames // 2)
    counts = [int(n) for n in args.sources.split(",")]
    paths = [write_video(os.path.join(tmp, f"clip{i}.mp4"), clip) for i in range(max(counts))]

    def sequential(ps, threads=1):
        t = time.perf_counter()
        n = 0
        for p in ps:
            with arrcoc_rt.open(p) as src, arrcoc_rt.Stream(device="cpu", num_threads=threads) as s:
                for f in src:
                    s.process(f)
                    n += 1
        return n / (time.perf_counter() - t)

    sequential(paths[:1])  # warm-up (page cache, first pipeline)
    t = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    print(f"ray.init: {time.perf_counter() - t:.1f} s; {w}x{h}, {args.frames} frames per clip, {args.cpus} CPUs; "
          f"load average before: {os.getloadavg()[0]:.1f}")
    print(f"{'sources':>7s} {'how':28s} {'frames/s all':>12s} {'frames/s per source':>20s}")
    for n in counts:
        for threads in (1, 0):
            fps = sequential(paths[:n], threads)
            how = f"sequential, {threads or 'all'} thread(s)"
            print(f"{n:7d} {how:28s} {fps:12.1f} {fps / n:20.1f}")
        for actors in (1, 2):
            if actors > n:
                continue
            t = time.perf_counter()
            with run_many(paths[:n], device="cpu", num_actors=actors, progress=False) as run:
                frames, first = 0, None
                for _ in run:
                    frames += 1
                    first = first or time.perf_counter()
            end = time.perf_counter()
            steady = (frames - 1) / (end - first)  # after the actors started (first frame in)
            per = [r["fps"] for r in run.summary()]
            print(f"{n:7d} {f'run_many, {actors} actor(s)':28s} {frames / (end - t):12.1f} {min(per):9.1f} .. "
                  f"{max(per):.1f}   steady {steady:.1f} frames/s, first frame after {first - t:.2f} s")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
