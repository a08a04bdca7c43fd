"""Fuzz target: PCA files (encoders.PCA16.load and Pipeline(encoder='builtin', pca=path)). The
input's bytes as an .npz (mutated from the seed files), or an .npz written from fuzzed keys,
shapes, dtypes and values (any C, NaN, inf, huge). A projection that loads must run: the frame's
channels 17..32 must be written without touching memory outside the arrays given."""

from __future__ import annotations

import numpy as np

from _common import check_result, frame_pixels, main, tmp_path

import arrcoc_rt
from arrcoc_rt.encoders import DIMS, PCA16

SPECIAL = [np.nan, np.inf, -np.inf, 1e38, -1e38, 1e-45, 0.0, 1.0]


def fuzz_npz(fdp, path: str) -> None:
    z = {}
    c = DIMS if fdp.ConsumeIntInRange(0, 2) else fdp.ConsumeIntInRange(0, 40)
    for key, shape in (("mean", (c,)), ("components", (16, c)), ("n", ())):
        r = fdp.ConsumeIntInRange(0, 11)
        if r == 0:
            continue
        if r == 1:
            shape = tuple(fdp.ConsumeIntInRange(0, 40) for _ in range(fdp.ConsumeIntInRange(0, 3)))
        a = np.resize(np.frombuffer(fdp.ConsumeBytes(4 * 16) or b"\x00", np.float32), shape).astype(np.float64)
        a = np.where(np.isfinite(a), np.clip(a, -2, 2), 0.0)
        if r == 2:
            a = a.astype(fdp.PickValueInList([np.int32, np.complex64, np.bool_, "U2", np.float16]))
        elif r == 3 and a.size:
            a.reshape(-1)[fdp.ConsumeIntInRange(0, a.size - 1)] = fdp.PickValueInList(SPECIAL)
        z[key] = a
    if fdp.ConsumeIntInRange(0, 9) == 0:
        z["extra"] = np.zeros(2)
    with open(path, "wb") as f:
        np.savez(f, **z)


def one_input(fdp):
    path = tmp_path("pca.npz")
    if fdp.ConsumeIntInRange(0, 2) == 0:
        with open(path, "wb") as f:
            f.write(fdp.ConsumeBytes(fdp.remaining_bytes()))
        PCA16.load(path)
        return
    fuzz_npz(fdp, path)
    source = path if fdp.ConsumeIntInRange(0, 3) else PCA16.load(path)
    w, h = fdp.ConsumeIntInRange(1, 40), fdp.ConsumeIntInRange(1, 40)
    pipe = arrcoc_rt.Pipeline(w, h, device="cpu", encoder="builtin", pca=source, gestalt_x=2, gestalt_y=2,
                              saccades=8, num_threads=1)
    for _ in range(2):
        r = pipe.process(frame_pixels(fdp, w, h))
        check_result(r, pipe)
        np.asarray(r.texture.channel(17, 4), np.float32)  # the projection was written


if __name__ == "__main__":
    main(one_input)
