"""`arrcoc-rt bench`: per-stage latency tables, on synthetic frames, an image, or a video from each
PyAV packet to the token pack."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .common import _cuda_notes, _error, _is_video, _read_frames


def _bench_video(path: Path, count: int, devices) -> int:
    """From each PyAV packet to the token pack, per frame: demux + decode (PyAV with its default
    threading, the decoder's own), convert (the decoder's planes handed to the kernels; PyAV's
    conversion only for other pixel formats) and each pipeline stage, p50/p95/p99 over ``count``
    frames after 3 warm-up frames. One frame size is timed: timing stops where the video changes
    size (said in the output). Ctrl-C stops timing; what was measured is printed."""
    import av

    from ..pipeline import Pipeline
    from ..stream import frame_from_av

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
    from ..pipeline import Pipeline
    from ..runtime import cuda_available
    from ..samples import sample_frames

    if args.input and args.size is not None:
        raise _error(f"--size sets the synthetic frames' size; {args.input!r}'s frames keep their own size "
                     f"(leave out --size or the input)")
    if args.device is None:
        devices = ["cpu"] + (["cuda"] if cuda_available() else [])
    else:
        from ..runtime import device_string, resolve_device

        try:
            devices = [device_string(*resolve_device(args.device))]
        except (ValueError, TypeError) as e:
            raise _error(f"--device: {str(e).removeprefix('device: ')}") from None
    on_cuda = any(d != "cpu" for d in devices)
    if args.input and Path(args.input).is_dir():
        raise _error(f"input {args.input}: is a folder; expected a video or an image file")
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
        from ..frames import parse_size

        from ..texture import MAX_DIMENSION

        try:
            w, h = parse_size(args.size or "640x480", "--size")
        except ValueError as e:
            raise _error(str(e)) from None
        if max(w, h) > MAX_DIMENSION:  # before the frames are made (100000x100000 would be 30 GB of them)
            raise _error(f"--size {args.size}: expected each side 1..{MAX_DIMENSION}")
        frames = sample_frames(w, h, 2)
    h, w = frames[0].shape[:2]
    pipes = {dev: Pipeline(w, h, device=dev) for dev in devices}  # a refused size stops before the table
    print(f"arrcoc-rt bench: {Path(args.input).name + ', ' if args.input else ''}{w}x{h}, {args.frames} frames per "
          f"device (after 3 warm-up frames)")
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
