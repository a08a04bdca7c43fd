"""Fuzz target: frame views. TextureBuilder.build and Pipeline.process on arrays of fuzzed size,
dtype, dimensions, strides (packed, row-padded, zero, negative, transposed, broadcast), pixel
format, layout and planes (nv12 / yuv420p tuples), over one to three frames per builder (motion
state, size changes). A built texture must be finite in every stored plane; a token pack must keep
its invariants."""

from __future__ import annotations

import numpy as np

from _common import check_result, fuzz_array, main, small_dim, strided

import arrcoc_rt

FORMATS = [None, None, "rgb24", "bgr24", "rgba32", "bgra32", "gray8", "nv12", "yuv420p", "rgbp", "yuv444", ""]
LAYOUTS = [None, None, None, "HWC", "CHW", "chw"]
CHANNELS = {"rgb24": 3, "bgr24": 3, "rgba32": 4, "bgra32": 4, "gray8": 0, "rgbp": 3}


def plane(fdp, shape):
    """A plane of the given shape, or (sometimes) of a nearby wrong shape or dtype."""
    shape = list(shape)
    if fdp.ConsumeIntInRange(0, 9) == 0:
        shape[fdp.ConsumeIntInRange(0, len(shape) - 1)] += fdp.ConsumeIntInRange(-1, 1)
        shape = [max(s, 0) for s in shape]
    dtype = np.uint8 if fdp.ConsumeIntInRange(0, 9) else np.uint16
    return strided(fdp, shape, dtype)


def make_frame(fdp, fmt, mw, mh):
    r = fdp.ConsumeIntInRange(0, 9)
    if r == 0:  # anything at all
        return fdp.PickValueInList([None, "frame.png", b"\x00" * 12, [[1, 2, 3]], 3.5, memoryview(b"abc")])
    if r == 1:
        return fuzz_array(fdp, hi_dim=max(mw, mh) + 2)
    w, h = small_dim(fdp, mw + 1), small_dim(fdp, mh + 1)
    if fmt in ("nv12", "yuv420p"):
        ch, cw = (h + 1) // 2, (w + 1) // 2
        y = plane(fdp, (h, w))
        if fmt == "nv12":
            uv = plane(fdp, (ch, cw, 2) if fdp.ConsumeBool() else (ch, 2 * cw))
            planes = [y, uv]
        else:
            planes = [y, plane(fdp, (ch, cw)), plane(fdp, (ch, cw))]
        if fdp.ConsumeIntInRange(0, 9) == 0:
            planes = planes[: fdp.ConsumeIntInRange(0, len(planes) + 1)] or planes * 2
        return tuple(planes) if fdp.ConsumeBool() else list(planes)
    c = CHANNELS.get(fmt, fdp.PickValueInList([3, 3, 4, 0]))
    if fmt == "rgbp" or (fmt is None and fdp.ConsumeIntInRange(0, 4) == 0):
        shape = (3, h, w)
    else:
        shape = (h, w, c) if c else (h, w)
    a = strided(fdp, shape, np.uint8 if fdp.ConsumeIntInRange(0, 19) else fdp.PickValueInList([np.int8, np.float32]))
    if fdp.ConsumeIntInRange(0, 9) == 0:  # an object that only has __array_interface__
        class ArrayLike:
            __array_interface__ = a.__array_interface__
            keep = a
        return ArrayLike()
    return a


def one_input(fdp):
    mw, mh = fdp.ConsumeIntInRange(1, 48), fdp.ConsumeIntInRange(1, 40)
    threads = fdp.ConsumeIntInRange(1, 3)
    if fdp.ConsumeIntInRange(0, 2) == 0:
        kw = dict(gestalt_x=fdp.ConsumeIntInRange(1, 4), gestalt_y=fdp.ConsumeIntInRange(1, 4),
                  saccades=fdp.ConsumeIntInRange(0, 24))
        target = arrcoc_rt.Pipeline(mw, mh, device="cpu", num_threads=threads, **kw)
    else:
        target = arrcoc_rt.TextureBuilder(mw, mh, device="cpu", dtype=fdp.PickValueInList(["float16", "float32"]),
                                          num_threads=threads)
    for _ in range(fdp.ConsumeIntInRange(1, 3)):
        fmt = fdp.PickValueInList(FORMATS)
        layout = fdp.PickValueInList(LAYOUTS)
        frame = make_frame(fdp, fmt, mw, mh)
        try:
            if isinstance(target, arrcoc_rt.Pipeline):
                r = target.process(frame, pixel_format=fmt, layout=layout)
                check_result(r, target)
                tex = r.texture
            else:
                tex = target.build(frame, pixel_format=fmt, layout=layout)
        except (ValueError, TypeError):
            continue  # the next frame goes to the same object: a refused frame must leave it usable
        assert 1 <= tex.width <= mw and 1 <= tex.height <= mh
        for k in range(5):  # every plane written (a Pipeline's texture keeps 4 of level 0's 15)
            for c in tex.channels_at(k):
                if tex.has_plane(c, k):
                    assert np.all(np.isfinite(np.asarray(tex.channel(c, k), np.float32))), f"{c.name}@L{k} not finite"


if __name__ == "__main__":
    main(one_input)
