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
Operations (estimated: the arithmetic of the shared formulas, csrc/shared/*_math.h, per element, as
`stage_ops` lists them; an add, multiply, compare, shift, square root or table lookup each count one;
loads, stores and index arithmetic do not): the texture's 147 per level-0 pixel (point channels 33,
3x3 gradients and frame difference 29, the five 5-tap sums both ways 41, contrast, edge density,
motion and entropy 44), 4 per texel of every mip, the saliency maps per level-1 texel and block
matching's 81 x 16 SADs per patch; the cascade's SLIC assignment (17 per seed compared, 9 seeds per
texel, iterations + 1 times) and sums; the allocation's balancer MLP (about 18,600 per candidate)
and 9 per glimpse sample and channel. Their floor is operations / this machine's arithmetic rate,
measured in the run as the float32 matrix product's rate (NumPy's BLAS on every core; a fused
multiply-add counts two: the most this machine's vector units do, so a lower bound).
Floors are bytes / bandwidth. This machine's bandwidth is the best of 5 copies of a 256 MB array
(NumPy, one thread: read + write). Peers: the OpenCV + NumPy texture (benchmarks/opencv_texture.py,
given the previous frame: motion and block matching included), timed on the same frames alternately
with the texture builder (frame by frame, so that a slow minute slows both, not their ratio), and, on
the last frame pair,
scikit-image's SLIC + NumPy cascade with the cascade's settings (benchmarks/skimage_cascade.py, as in
benchmarks/bench_stages.py); the torch balancer of benchmarks/bench_stages.py is not repeated here (it
needs a frame's candidates; see the pytest-benchmark run). On CUDA (--device cuda) a Pipeline's
per-stage times are host enqueue times, so only the texture and the whole pipeline are timed there."""

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


def measured_gflops(n: int = 1024, repeats: int = 5) -> float:
    a = np.ones((n, n), np.float32)
    b = np.ones((n, n), np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best / 1e9


def stage_ops(result, config: dict) -> dict:
    """Arithmetic operations per frame and stage (the module docstring says what counts)."""
    levels = result.texture._info["levels"]
    texels = [lw * lh for lw, lh, _, _ in levels]
    w1 = levels[1][0]
    patches = texels[4]
    # texture: level 0, then 4 per mip texel of channels 0-16 (not 13, the cascade's; not 11 at level
    # 1, computed there) and of the three float feature pyramids
    level0 = 147 * texels[0]
    mips = sum(4 * n * ((16 if k > 1 else 15) + 3) for k, n in enumerate(texels) if k >= 1)
    saliency = (3 * 3 * w1 * sum(lh for _, lh, _, _ in levels[2:5])  # rows of levels 2-4 lerped along x
                + (3 * (3 * 3 + 5) + 3 + 7) * texels[1])  # y lerps + centre-surround, block maxima, combine
    motion = 15 * texels[2] + patches * 81 * (16 * 3 + 4)  # level-2 luma sums; SADs and the choice
    seeds, iters = config["num_seeds"], config["iterations"]
    cascade = (6 * texels[2] + (iters + 1) * 9 * 17 * texels[2] + iters * 6 * texels[2] + 8 * texels[2]
               + seeds * 64 + patches * (20 + config["top_clusters"]))  # seeds' updates; keys, member scans
    candidates = int((np.asarray(result.candidates) >= 0).sum())
    g = int(np.asarray(result.glimpses).shape[-1])
    n_tokens = int(np.asarray(result.kinds).shape[0])
    mlp = 2 * 3 * 128 + 5 * 128 + 128 + 2 * 128 * 64 + 5 * 64 + 64 + 2 * 64  # 3 -> 128 -> 64 -> 1, LayerNorms, ReLUs
    allocate = 2 * texels[0] + candidates * mlp + n_tokens * 3 * g * g * 9 + patches * 40
    texture = level0 + mips + saliency + motion
    return {"texture": texture, "texture, all planes": texture, "cascade": cascade, "allocate_and_gather": allocate}


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


def opencv_texture_peer():
    """The OpenCV + NumPy texture (benchmarks/opencv_texture.py) as a callable frame -> None that
    carries its previous frame's state (so it computes motion and block matching as arrcoc's
    texture does), or None without OpenCV."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        from opencv_texture import texture_opencv
    except ImportError:
        return None
    state = {}

    def run(frame):
        _, _, _, state["lum"], state["small"] = texture_opencv(frame, state.get("lum"), state.get("small"))

    return run


def peer_times(previous, frame) -> dict:
    """Median ms of the cascade's peer a user would write instead, on the frame pair (previous,
    frame): scikit-image's SLIC + NumPy cascade with the cascade's settings, on a CPU texture of the
    same frames (benchmarks/skimage_cascade.py, as in bench_stages.py). The texture's peer is timed
    in main(), alternately with the texture, frame by frame."""
    out = {}
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

    def median_ms(run, repeats):
        run()  # warm-up
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            run()
            ts.append(time.perf_counter() - t)
        return statistics.median(ts) * 1e3

    try:
        import skimage.segmentation  # noqa: F401

        import arrcoc_rt
        from skimage_cascade import cascade_skimage

        cpu = arrcoc_rt.Pipeline(frame.shape[1], frame.shape[0], device="cpu")
        cpu.process(previous)
        out["cascade"] = median_ms(cascade_skimage(cpu.process(frame).texture), 5)
    except ImportError:
        pass
    return out


def parse_sizes(text: str) -> list:
    from arrcoc_rt.frames import parse_size

    try:
        return [parse_size(item, "--sizes") for item in text.split(",")]
    except ValueError as e:
        raise SystemExit(f"floors.py: {e} (several: comma-separated)") from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="640x480,1280x720,1920x1080")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    sizes = parse_sizes(args.sizes)
    if args.frames < 1:
        raise SystemExit(f"floors.py: --frames: expected at least 1; got {args.frames}")
    import arrcoc_rt
    from arrcoc_rt.runtime import device_string, resolve_device
    from arrcoc_rt.samples import sample_frames

    try:  # 'auto' is the CPU without a GPU (it was taken for CUDA); a device that is not here is one line
        args.device = device_string(*resolve_device(args.device))
    except (ValueError, TypeError) as e:
        raise SystemExit(f"floors.py: --device: {str(e).removeprefix('device: ')}") from None
    bw = measured_bandwidth_gbs()
    gflops = measured_gflops()
    print(f"arrcoc_rt {arrcoc_rt.__version__}, device {args.device}; this machine's copy bandwidth "
          f"{bw:.1f} GB/s (one thread), arithmetic {gflops:.0f} GFLOP/s (float32 matrix product, every core); "
          f"H100 {H100_GBS:.0f} GB/s, H200 {H200_GBS:.0f} GB/s (published)")
    print(f"{'size':>10} {'stage':>20} {'MB':>8} {'floor here':>11} {'H100':>8} {'H200':>8} {'Mop':>8} "
          f"{'op floor':>9} {'measured':>9} {'x floor':>8} {'x op fl':>8} {'peer':>8} {'peer/us':>8}")
    cuda = args.device != "cpu"
    if cuda:
        print("CUDA: a Pipeline's per-stage times are host enqueue times (the last stage includes the wait),"
              " so per stage only the texture is timed, as TextureBuilder.build + synchronize; the whole"
              " pipeline's time includes the wait for its results (scripts/gpu_timings.py times a GPU frame"
              " with events)")
    for w, h in sizes:
        size = f"{w}x{h}"
        frames = sample_frames(w, h, args.frames + 2)
        pipe = arrcoc_rt.Pipeline(w, h, device=args.device)
        timings = []
        for i, f in enumerate(frames):
            r = pipe.process(f)
            if i >= 2:
                timings.append(r.timings)
        nbytes = stage_bytes(r)
        nops = stage_ops(r, pipe.config)
        synchronized = {}  # stage -> ms, each build waited for
        peer_texture_ms = None
        for stage, planes in (("texture, all planes", "all"), ("texture", "pipeline") if cuda else (None, None)):
            if stage is None:
                continue
            builder = arrcoc_rt.TextureBuilder(w, h, device=args.device, planes=planes)
            # The peer of this row, on the same frames, alternately with the builder: a slow minute
            # of a shared machine slows both, not the ratio (they were timed one after the other).
            peer = opencv_texture_peer() if stage == "texture, all planes" else None
            times, peer_ms = [], []
            for i, f in enumerate(frames):
                t = time.perf_counter()
                builder.build(f)
                builder.synchronize()
                if i >= 2:
                    times.append((time.perf_counter() - t) * 1e3)
                if peer is not None:
                    t = time.perf_counter()
                    peer(f)
                    if i >= 2:
                        peer_ms.append((time.perf_counter() - t) * 1e3)
            synchronized[stage] = statistics.median(times)
            if peer_ms:
                peer_texture_ms = statistics.median(peer_ms)
        peers = peer_times(frames[-2], frames[-1])
        if not cuda and peer_texture_ms is not None:
            peers["texture, all planes"] = peer_texture_ms
        for stage, b in nbytes.items():
            if stage in synchronized:
                ms = synchronized[stage]
            elif cuda:
                ms = None  # an enqueue time: no measurement of the stage's device work
            else:
                ms = statistics.median(t[stage] for t in timings)
            here = b / bw / 1e6
            peer = peers.get(stage)
            op_floor = nops[stage] / gflops / 1e6
            measured = "-" if ms is None else f"{ms:7.2f}ms"
            ratios = ("-", "-") if ms is None else (f"{ms / here:8.1f}", f"{ms / op_floor:8.1f}")
            print(f"{size:>10} {stage:>20} {b / 1e6:8.2f} {here:9.3f}ms {b / H100_GBS / 1e6 * 1e3:6.1f}us "
                  f"{b / H200_GBS / 1e6 * 1e3:6.1f}us {nops[stage] / 1e6:8.1f} {op_floor:7.3f}ms "
                  f"{measured:>9} {ratios[0]:>8} {ratios[1]:>8} "
                  f"{'-' if peer is None else f'{peer:6.1f}ms':>8} "
                  f"{'-' if peer is None or ms is None else f'{peer / ms:7.1f}x':>8}")
        total = statistics.median(t["total"] for t in timings)
        pipeline_bytes = sum(b for stage, b in nbytes.items() if stage != "texture, all planes")
        pipeline_ops = sum(n for stage, n in nops.items() if stage != "texture, all planes")
        print(f"{size:>10} {'whole pipeline':>20} {pipeline_bytes / 1e6:8.2f} "
              f"{pipeline_bytes / bw / 1e6:9.3f}ms {'':>8} {'':>8} {pipeline_ops / 1e6:8.1f} "
              f"{pipeline_ops / gflops / 1e6:7.3f}ms {total:7.2f}ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
