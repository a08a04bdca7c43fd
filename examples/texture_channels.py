"""Build the texture array of a few frames and print what the channels say.

    python examples/texture_channels.py [IMAGE]
"""

import sys

import numpy as np

import arrcoc_rt
from arrcoc_rt import Channel
from arrcoc_rt.samples import sample_frames

if len(sys.argv) > 1:
    from PIL import Image

    frames = [np.asarray(Image.open(sys.argv[1]).convert("RGB"))]
else:
    frames = sample_frames(640, 480, count=3)  # a disc moving 8 px right, 4 px down per frame

h, w = frames[0].shape[:2]
builder = arrcoc_rt.TextureBuilder(w, h, device="auto")
print(builder)
for frame in frames:
    tex = builder.build(frame)
    sal = arrcoc_rt.to_host(tex.channel(Channel.SALIENCY, level=1)).astype(np.float32)
    i, j = np.unravel_index(np.argmax(sal), sal.shape)
    mvx = arrcoc_rt.to_host(tex.channel(Channel.MOTION_X, level=4)).astype(np.float32)
    mvy = arrcoc_rt.to_host(tex.channel(Channel.MOTION_Y, level=4)).astype(np.float32)
    moving = (mvx != 0) | (mvy != 0)
    summary = (f", median motion ({np.median(mvx[moving]):+.0f}, {np.median(mvy[moving]):+.0f}) px"
               if moving.any() else "")
    print(f"frame {tex.frame_index}: most salient at pixel ({2 * j + 1}, {2 * i + 1}); "
          f"{int(moving.sum())} moving 16x16 patches{summary}")
