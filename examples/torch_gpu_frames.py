"""Frames as torch tensors, zero-copy: on the GPU when there is one (they stay there), else on the CPU.

    python examples/torch_gpu_frames.py
"""

import torch

import arrcoc_rt
from arrcoc_rt.samples import sample_frames

device = "cuda" if arrcoc_rt.cuda_available() and torch.cuda.is_available() else "cpu"
frames = [torch.from_numpy(f).to(device) for f in sample_frames(640, 480, 8)]
pipe = arrcoc_rt.Pipeline(640, 480, device=device)
for t in frames:
    r = pipe.process(t)  # DLPack / __cuda_array_interface__: no copy of the frame
    # NumPy on the CPU; __dlpack__ object on CUDA. Level 1: a Pipeline keeps level 0 of red, green,
    # blue and motion only, unless created with texture_planes="all".
    lum = r.texture.channel("luminance", level=1)
    lum_t = torch.from_dlpack(lum) if device == "cuda" else torch.from_numpy(lum)
    print(f"frame {r.frame_index}: {r.num_saccades} saccades, mean luminance {lum_t.float().mean():.3f}, "
          f"{r.timings['total']:.1f} ms")
print(f"{len(frames)} frames on {device}")
