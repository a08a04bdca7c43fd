"""Fuzz target: balancer weights files (.npz / .json, arrcoc_rt.weights). Either the input's bytes
as a file (mutated from the seed files: zips, NumPy headers, JSON), or a file written from fuzzed
keys, shapes, dtypes and values (NaN, inf, 1e38, subnormals, huge ints, ragged or deep lists);
loaded by load_weights / Pipeline(weights=path) / set_weights. Accepted weights must give packs
that keep their invariants, with finite scores and relevance in [0, 1]."""

from __future__ import annotations

import json

import numpy as np

from _common import check_result, frame_pixels, main, tmp_path

import arrcoc_rt
from arrcoc_rt.weights import SHAPES, load_weights

KEYS = sorted(SHAPES)
SPECIAL = [np.nan, np.inf, -np.inf, 1e38, -1e38, 3.4e38, 1e-45, 0.0, -0.0, 1.0, -1.0, 1e6, 88.0, -88.0]
PIPE = None


def fuzz_weights(fdp) -> dict:
    base = arrcoc_rt.weights.default_weights()
    out = {}
    for k in KEYS:
        r = fdp.ConsumeIntInRange(0, 15)
        if r == 0:
            continue  # missing
        a = base[k].astype(np.float64)
        if r == 1:  # wrong shape
            a = np.resize(a, tuple(fdp.ConsumeIntInRange(0, 130) for _ in range(fdp.ConsumeIntInRange(0, 3))))
        elif r == 2:  # wrong dtype
            a = a.astype(fdp.PickValueInList([np.int8, np.uint64, np.complex64, np.bool_, "U3"]))
        elif r <= 8:  # special values at fuzzed places, or everything scaled
            flat = a.reshape(-1)
            for _ in range(fdp.ConsumeIntInRange(0, 4)):
                if flat.size:
                    flat[fdp.ConsumeIntInRange(0, flat.size - 1)] = fdp.PickValueInList(SPECIAL)
            if fdp.ConsumeBool():
                a = a * fdp.PickValueInList([0.0, -1.0, 1e3, 1e30, 1e-30, fdp.ConsumeFloat()])
        out[k] = a
    if fdp.ConsumeIntInRange(0, 9) == 0:
        out[fdp.ConsumeUnicodeNoSurrogates(6) or "x"] = np.zeros(3)
    return out


def write(fdp, w: dict) -> str:
    if fdp.ConsumeBool():
        path = tmp_path("weights.npz")
        with open(path, "wb") as f:
            np.savez(f, **w)
        return path
    path = tmp_path("weights.json")
    mode = fdp.ConsumeIntInRange(0, 5)
    if mode == 0:  # not a dict, deep or ragged lists, huge ints, strings
        data = fdp.PickValueInList([[1, 2], "W1", None, 3, {"W1": [[1, 2], [3]]}, {"W1": 10**400},
                                    {"W1": "[1]"}, {"W1": {"a": 1}}, {"mix": [[[[[[[[[[1]]]]]]]]]]}])
        text = json.dumps(data) if not isinstance(data, str) else data
    else:
        text = json.dumps({k: v.tolist() for k, v in w.items()})  # NaN / Infinity as JSON extensions
    if fdp.ConsumeIntInRange(0, 7) == 0:
        text = text[: fdp.ConsumeIntInRange(0, len(text))]  # truncated
    with open(path, "w") as f:
        f.write(text)
    return path


def one_input(fdp):
    global PIPE
    mode = fdp.ConsumeIntInRange(0, 2)
    if mode == 0:  # the bytes are the file
        path = tmp_path(fdp.PickValueInList(["w.npz", "w.json", "w.txt", "w"]))
        with open(path, "wb") as f:
            f.write(fdp.ConsumeBytes(fdp.remaining_bytes()))
        load_weights(path)
        return
    w = fuzz_weights(fdp)
    source = write(fdp, w) if mode == 1 else w
    if PIPE is None:
        PIPE = arrcoc_rt.Pipeline(48, 32, device="cpu", gestalt_x=4, gestalt_y=4, saccades=24, num_threads=1)
    PIPE.set_weights(source)  # a refused set leaves the previous weights
    for _ in range(2):
        r = PIPE.process(frame_pixels(fdp, 48, 32))
        check_result(r, PIPE)
        for name in ("info_score", "salience_score", "query_score", "balanced_score"):
            v = np.asarray(getattr(r, name))
            assert np.all(np.isfinite(v)), name


if __name__ == "__main__":
    main(one_input)
