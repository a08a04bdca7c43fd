"""The `arrcoc-rt` command line.

    arrcoc-rt info                       version, build, devices
    arrcoc-rt texture [INPUT] --out DIR  the texture stage on an image, a video or the built-in sample
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from . import runtime
from .samples import sample_frames
from .texture import TextureBuilder

VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".ts"}


def _cmd_info(args) -> int:
    info = runtime.info()
    print(f"arrcoc_rt {info['version']}")
    print(f"CUDA backend compiled: {'yes' if info['cuda_built'] else 'no'}")
    print(f"CUDA GPUs found: {len(info['cuda_devices'])}"
          + "".join(f"\n  cuda:{i}: {name}" for i, name in enumerate(info['cuda_devices'])))
    print(f"devices: {', '.join(info['devices'])}")
    return 0


def _read_frames(path: Path, count: int) -> list[np.ndarray]:
    """Up to ``count`` RGB frames from an image (one frame) or a video file."""
    if not path.exists():
        raise SystemExit(f"arrcoc-rt: error: input {str(path)!r} does not exist")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        try:
            import av
        except ImportError:
            raise SystemExit("arrcoc-rt: error: reading video needs PyAV: pip install 'arrcoc_rt[video]'") from None
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
            return [np.asarray(im.convert("RGB"))]
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
    out = Path(args.out)
    (out / "channels").mkdir(parents=True, exist_ok=True)
    from .cascade import ClusterCascade

    cascade = ClusterCascade(w, h, device=builder.device)
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="arrcoc-rt", description="Where should a frozen VLM look? (arrcoc_rt)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, build (CUDA compiled?), GPUs found").set_defaults(func=_cmd_info)
    t = sub.add_parser("texture", help="build the 40-channel texture array and write PNGs of it")
    t.add_argument("input", nargs="?", help="image or video file (default: a built-in synthetic sample)")
    t.add_argument("--out", default="texture-demo", help="output folder (default: texture-demo)")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    t.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    t.add_argument("--frames", type=int, default=2,
                   help="frames to process from a video or the sample; motion needs 2 (default: 2)")
    t.set_defaults(func=_cmd_texture)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "frames", 1) < 1:
        raise SystemExit("arrcoc-rt: error: --frames must be at least 1")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
