"""Fuzz target: queries. Pipeline.process with query_vector / query_map / query_image /
query_text / query= (Query objects and the deprecated bare arrays) of fuzzed shape, dtype, strides
and values (NaN, inf, huge), several at once, exemplar images as arrays or as files whose bytes
come from the input (mutated from the seed PNG/JPEG/BMP/GIF files), on pipelines with and without the
built-in encoder. Accepted queries must give packs that keep their invariants."""

from __future__ import annotations

import numpy as np

from _common import check_result, frame_pixels, fuzz_array, main, small_dim, strided, tmp_path

import arrcoc_rt
from arrcoc_rt.encoders import DIMS

SPECIAL = [np.nan, np.inf, -np.inf, 1e38, -1e38, 1e-45, 0.0, 1.0, -1.0, 2.0]
PIPES = {}


def pipeline(with_encoder: bool):
    if with_encoder not in PIPES:
        PIPES[with_encoder] = arrcoc_rt.Pipeline(48, 40, device="cpu", encoder="builtin" if with_encoder else None,
                                                 gestalt_x=3, gestalt_y=3, saccades=16, num_threads=1)
    return PIPES[with_encoder]


def values(fdp, a: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "fc" and a.size and fdp.ConsumeBool():
        a = np.array(a)  # writable copy
        for _ in range(fdp.ConsumeIntInRange(1, 3)):
            a.reshape(-1)[fdp.ConsumeIntInRange(0, a.size - 1)] = fdp.PickValueInList(SPECIAL)
    return a


def query_value(fdp, kind: str, w: int, h: int):
    r = fdp.ConsumeIntInRange(0, 5)
    if r == 0:
        return fuzz_array(fdp, hi_dim=64)
    if kind == "vector":
        shape = (DIMS,) if r > 2 else (small_dim(fdp, 64),) if r == 1 else (fdp.ConsumeIntInRange(1, 4), DIMS)
        return values(fdp, strided(fdp, shape, fdp.PickValueInList([np.float32, np.float64, np.float32, np.int16])))
    if kind == "map":
        shape = fdp.PickValueInList([(h, w), ((h + 15) // 16, (w + 15) // 16), (w, h), (h + 1, w)])
        return values(fdp, strided(fdp, shape, fdp.PickValueInList([np.float32, np.float64, np.uint8, np.bool_])))
    if kind == "image":
        if r <= 2:
            return tmp_path("does-not-exist.png")
        shape = (small_dim(fdp, 96), small_dim(fdp, 96), 3 if fdp.ConsumeIntInRange(0, 7) else 4)
        return strided(fdp, shape, np.uint8 if fdp.ConsumeIntInRange(0, 7) else np.float32)
    return fdp.ConsumeUnicodeNoSurrogates(12)


def one_input(fdp):
    if fdp.ConsumeIntInRange(0, 3) == 0:  # an exemplar image file: the rest of the input's bytes
        w, h = fdp.ConsumeIntInRange(1, 48), fdp.ConsumeIntInRange(1, 40)
        path = tmp_path(fdp.PickValueInList(["q.png", "q.jpg", "q.bmp", "q"]))
        with open(path, "wb") as f:
            f.write(fdp.ConsumeBytes(fdp.remaining_bytes()))
        pipe = pipeline(True)
        r = pipe.process(frame_pixels(fdp, w, h), query_image=path if fdp.ConsumeBool() else arrcoc_rt.Query.image(path))
        check_result(r, pipe)
        return
    pipe = pipeline(fdp.ConsumeBool())
    w, h = fdp.ConsumeIntInRange(1, 48), fdp.ConsumeIntInRange(1, 40)
    kwargs = {}
    for _ in range(fdp.ConsumeIntInRange(0, 2) if fdp.ConsumeIntInRange(0, 7) == 0 else 1):
        kind = fdp.PickValueInList(["vector", "map", "image", "text"])
        value = query_value(fdp, kind, w, h)
        how = fdp.ConsumeIntInRange(0, 5)
        if how == 0:  # a Query object
            kwargs["query"] = getattr(arrcoc_rt.Query, kind if kind != "map" else "map")(value)
        elif how == 1:  # the deprecated bare query=
            kwargs["query"] = value
        else:
            kwargs[f"query_{kind}"] = value
    for _ in range(fdp.ConsumeIntInRange(1, 2)):
        r = pipe.process(frame_pixels(fdp, w, h), **kwargs)
        check_result(r, pipe)
        assert np.all(np.isfinite(np.asarray(r.texture.channel(33, 4), np.float32)))


if __name__ == "__main__":
    main(one_input)
