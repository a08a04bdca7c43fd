"""A live camera, low latency: drop the oldest frame when processing falls behind (counted).

    python examples/webcam.py [/dev/video0] [seconds]
"""

import sys
import time

import arrcoc_rt

device = sys.argv[1] if len(sys.argv) > 1 else "/dev/video0"
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
try:
    source = arrcoc_rt.open(device, webcam_size=(1280, 720), webcam_rate=30, drop_oldest=True, queue_size=2)
except arrcoc_rt.SourceError as e:
    sys.exit(f"no camera: {e}")
start = time.perf_counter()
with source, arrcoc_rt.Stream(device="auto") as stream:
    for frame in source:
        r = stream.process(frame)
        print(f"\rframe {r.frame_index}: {r.timings['total']:.1f} ms, {r.num_saccades} saccades, "
              f"dropped so far {source.stats.dropped}", end="")
        if time.perf_counter() - start > seconds:
            break
print(f"\n{source.stats.delivered} frames processed, {source.stats.dropped} dropped")
