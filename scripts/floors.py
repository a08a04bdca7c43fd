#!/usr/bin/env python3
"""Issue #15's table: per stage and frame size, the bytes a stage must move at least, its floor on
this machine (memory bandwidth measured here, not quoted) and on an H100 / H200 (their published
bandwidth), the measured time, and the ratio to the peer a user would write instead, in one run.

    python3 scripts/floors.py [--sizes 640x480,1280x720,1920x1080] [--frames 20] [--device cpu]

Bytes (at least, each byte once; reads + writes; float16 texture):
* texture: the frame read (3 B a pixel) + every texture plane the Pipeline writes, once (level 0:
  red, green, blue and motion only, TexturePlanes::kPipeline; every channel from level 1 on);
* texture, all planes: the same for a TextureBuilder(planes='all'), which writes every level-0
  plane too (what the OpenCV + NumPy peer computes and stores: the peer ratio is on this row);
* cascade: the level-2 planes it clusters (channels 3, 5, 10, 11, 15, 16) and the level-4 planes
  it scores (10, 11, 33) read, cluster ids (channel 13, levels 2-4) written;
* allocate + gather: the level-0 motion plane read (scene cut), the level-4 planes it scores read,
  channels 34, 37-39 written, and the glimpses (N x 3 x 16 x 16 float32) written with the texels
  they sample read.
Floors are bytes / bandwidth. This machine's bandwidth is the best of 5 copies of a 256 MB array
(NumPy, one thread: read + write). Peers: the OpenCV + NumPy texture (benchmarks/opencv_texture.py),
scikit-image's SLIC for the cascade, the torch balancer of benchmarks/bench_stages.py is not
repeated here (it needs a frame's candidates; see the pytest-benchmark run)."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

H100_GBS, H200_GBS = 3350.0, 4800.0  # published HBM bandwidth, GB/s (SXM)


def measured_bandwidth_gbs(mb: int = 256, repeats: int = 5) -> float:
    a = np.ones(mb * 2**20, np.uint8)
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.nbytes / best / 1e9


def stage_bytes(result) -> dict:
    tex = result.texture
    w, h = tex.width, tex.height
    levels = tex._info["levels"]
    es = 2  # float16
    plane = lambda k: levels[k][0] * levels[k][1] * es  # noqa: E731
    # the Pipeline's level-0 planes (the CUDA backend writes all of them, whatever the view shows)
    written0 = sum(1 for c in tex.channels_at(0) if tex.has_plane(c, 0) or tex.device != "cpu")
    stored = sum(lw * lh * (written0 if k == 0 else planes) * es for k, (lw, lh, _, planes) in enumerate(levels))
    n_tokens = int(np.asarray(result.kinds).shape[0])
    glimpses = n_tokens * 3 * 16 * 16 * 4
    return {
        "texture": 3 * w * h + stored,
        "texture, all planes": 3 * w * h + sum(lw * lh * planes * es for lw, lh, _, planes in levels),
        "cascade": 6 * plane(2) + 3 * plane(4) + plane(2) + plane(3) + plane(4),
        "allocate_and_gather": plane(0) + 12 * plane(4) + 4 * plane(4) + glimpses + n_tokens * 3 * 16 * 16 * es,
    }


def peer_times(frame, frames: int) -> dict:
    out = {}
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
        from opencv_texture import texture_opencv

        texture_opencv(frame)
        ts = []
        for _ in range(max(3, frames // 4)):
            t = time.perf_counter()
            texture_opencv(frame)
            ts.append(time.perf_counter() - t)
        out["texture, all planes"] = statistics.median(ts) * 1e3
    except ImportError:
        pass
    try:
        from skimage.segmentation import slic

        small = frame[::4, ::4]
        ts = []
        for _ in range(3):
            t = time.perf_counter()
            slic(small, n_segments=48, compactness=10, start_label=0)
            ts.append(time.perf_counter() - t)
        out["cascade"] = statistics.median(ts) * 1e3
    except ImportError:
        pass
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="640x480,1280x720,1920x1080")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    import arrcoc_rt
    from arrcoc_rt.samples import sample_frames

    bw = measured_bandwidth_gbs()
    print(f"arrcoc_rt {arrcoc_rt.__version__}, device {args.device}; this machine's copy bandwidth "
          f"{bw:.1f} GB/s (one thread); H100 {H100_GBS:.0f} GB/s, H200 {H200_GBS:.0f} GB/s (published)")
    print(f"{'size':>10} {'stage':>20} {'MB':>8} {'floor here':>11} {'H100':>8} {'H200':>8} {'measured':>9} "
          f"{'x floor':>8} {'peer':>8} {'peer/us':>8}")
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.split("x"))
        frames = sample_frames(w, h, args.frames + 2)
        pipe = arrcoc_rt.Pipeline(w, h, device=args.device)
        timings = []
        for i, f in enumerate(frames):
            r = pipe.process(f)
            if i >= 2:
                timings.append(r.timings)
        nbytes = stage_bytes(r)
        builder = arrcoc_rt.TextureBuilder(w, h, device=args.device, planes="all")
        full = []
        for i, f in enumerate(frames):
            t = time.perf_counter()
            builder.build(f)
            builder.synchronize()
            if i >= 2:
                full.append((time.perf_counter() - t) * 1e3)
        peers = peer_times(frames[-1], args.frames)
        for stage, b in nbytes.items():
            ms = statistics.median(full) if stage == "texture, all planes" else statistics.median(t[stage] for t in timings)
            here = b / bw / 1e6
            peer = peers.get(stage)
            print(f"{size:>10} {stage:>20} {b / 1e6:8.2f} {here:9.3f}ms {b / H100_GBS / 1e6 * 1e3:6.1f}us "
                  f"{b / H200_GBS / 1e6 * 1e3:6.1f}us {ms:7.2f}ms {ms / here:8.1f} "
                  f"{'-' if peer is None else f'{peer:6.1f}ms':>8} {'-' if peer is None else f'{peer / ms:7.1f}x':>8}")
        total = statistics.median(t["total"] for t in timings)
        pipeline_bytes = sum(b for stage, b in nbytes.items() if stage != "texture, all planes")
        print(f"{size:>10} {'whole pipeline':>20} {pipeline_bytes / 1e6:8.2f} "
              f"{pipeline_bytes / bw / 1e6:9.3f}ms {'':>8} {'':>8} {total:7.2f}ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
