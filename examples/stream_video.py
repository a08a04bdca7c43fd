"""A video file in, an overlay video out (writes and uses a small sample clip if none is given).

    python examples/stream_video.py [INPUT.mp4] [OUTPUT.mp4]
"""

import sys

import arrcoc_rt
from arrcoc_rt.visualize import OverlayWriter

src_path = sys.argv[1] if len(sys.argv) > 1 else "sample_clip.mp4"
out_path = sys.argv[2] if len(sys.argv) > 2 else "overlay.mp4"
if len(sys.argv) == 1:  # make a clip so the example runs anywhere
    import av

    from arrcoc_rt.samples import demo_clip

    with av.open(src_path, "w") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 640, 360, "yuv420p"
        for f in demo_clip():
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())

with arrcoc_rt.open(src_path) as source, arrcoc_rt.Stream(device="auto") as stream:
    rate = source.stream.average_rate  # the overlay plays at the source's rate
    writer = OverlayWriter(out_path, fps=float(rate) if rate else 30.0)
    for frame in source:
        result = stream.process(frame)  # yuv420p planes straight into our conversion kernel
        writer.write(frame.to_ndarray(format="rgb24"), result)
        if result.scene_cut:
            print(f"scene cut at frame {result.frame_index} (t = {result.pts:.2f} s)")
writer.close()
print(f"{source.stats.decoded} frames -> {out_path}; corrupt packets skipped: {source.stats.corrupt_packets}")
