"""`arrcoc-rt info` and `arrcoc-rt texture` (the texture stage's 40 channels as pictures)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import runtime
from ..samples import sample_frames
from ..texture import TextureBuilder
from .common import _output_folder, _read_frames


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


def _cmd_texture(args) -> int:
    from ..visualize import contact_sheet, save_channels

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
    from ..cascade import ClusterCascade
    from ..runtime import device_string

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
    per_frame = (", ".join(f"{t:.2f} ms" for t in times) + " (first includes warm-up)" if len(times) <= 8 else
                 f"first {times[0]:.2f} ms (warm-up), then median {np.median(times[1:]):.2f} ms, "
                 f"max {np.max(times[1:]):.2f} ms over {len(times) - 1} frames")
    print(f"backend: {builder.device}, storage {builder.dtype}; build time per frame: {per_frame}")
    print(f"motion between the last two frames: {'yes' if tex.motion_valid else 'no (single frame)'}")
    print(f"cluster cascade: {result.grid[0] * result.grid[1]} clusters, kept {result.kept_clusters.tolist()}, "
          f"{len(result.candidate_patches())} candidate patches")
    print("channels 17-34 and 37-39 are written by later stages (an encoder, a query, the allocator: "
          "arrcoc-rt run): here they are 0, blank on the sheet")
    print(f"wrote {sheet_path} (all 40 channels + mip levels), {out / 'channels'}/ (one PNG per channel), "
          f"{out / 'input.png'}")
    return 0
