"""Fuzz target: pipeline options. Pipeline(width, height, **options) with every documented knob
(and unknown ones) set to values of any type and range — ints past their limits, NaN, inf, bools,
strings, NumPy scalars — then, when it was accepted, two or three frames through it: every pack
must keep its invariants (exactly G + S tokens, budget within the total, valid levels, distinct
saccades, finite outputs) whatever the configuration. TextureBuilder and ClusterCascade arguments
too."""

from __future__ import annotations

import numpy as np

from _common import check_result, frame_pixels, fuzz_value, main

import arrcoc_rt
from arrcoc_rt.cascade import CASCADE_DEFAULTS
from arrcoc_rt.pipeline import ALLOCATOR_DEFAULTS

KNOBS = sorted(CASCADE_DEFAULTS) + sorted(ALLOCATOR_DEFAULTS)
EXTRA = ["strategy", "gestalt_lod", "gestalt_overlap", "dtype", "patch", "encoder_every", "pca_frames",
         "num_threads", "budget", "bogus"]
CHOICES = {"strategy": ["balanced", "random", "saliency", "query", "best"], "gestalt_lod": [64, 128, 256, 384, 400, 65],
           "gestalt_overlap": [True, False, 1], "dtype": ["float16", "float32", "float64"], "patch": [16, 8],
           "num_threads": [0, 1, 2, 3, -1, 1025, True]}


def knob_value(fdp, name):
    r = fdp.ConsumeIntInRange(0, 3)
    if r == 0:
        return fuzz_value(fdp)
    if name in CHOICES and r == 1:
        return fdp.PickValueInList(CHOICES[name])
    spec = CASCADE_DEFAULTS.get(name) or ALLOCATOR_DEFAULTS.get(name)
    if spec is None:
        return fdp.ConsumeIntInRange(-1, 12)
    _, lo, hi, kind = spec
    if kind is int:  # mostly in range, biased to the small end (the frames are small)
        return fdp.ConsumeIntInRange(lo, min(hi, lo + 64)) if fdp.ConsumeBool() else fdp.ConsumeIntInRange(lo - 1, hi + 1)
    return lo + (hi - lo) * fdp.ConsumeProbability() if fdp.ConsumeBool() else fdp.ConsumeFloat()


def one_input(fdp):
    which = fdp.ConsumeIntInRange(0, 5)
    shape = fdp.ConsumeIntInRange(0, 7)
    if shape == 0:  # long and thin: one level-2 row (a 2048x4 frame once made a seed grid of 362 cells)
        w, h = fdp.ConsumeIntInRange(1, 2100), fdp.ConsumeIntInRange(1, 8)
    elif shape == 1:  # up to 100 x 100 (97x61 with 256 seeds once made 20 x 13 cells: past 256)
        w, h = fdp.ConsumeIntInRange(1, 100), fdp.ConsumeIntInRange(1, 100)
    else:
        w, h = fdp.ConsumeIntInRange(1, 72), fdp.ConsumeIntInRange(1, 56)
    if which == 0:
        args = [fuzz_value(fdp) if fdp.ConsumeIntInRange(0, 3) == 0 else v for v in (w, h)]
        kw = {k: knob_value(fdp, k) for k in ("dtype", "num_threads") if fdp.ConsumeBool()}
        if fdp.ConsumeBool():
            kw["fixation"] = fdp.PickValueInList([(0.5, 0.5), (0, 1), (1.5, 0), (float("nan"), 0.1), "ab", 3, (1, 2, 3)])
        b = arrcoc_rt.TextureBuilder(*args, device="cpu", **kw)
        tex = b.build(frame_pixels(fdp, min(w, b.max_width), min(h, b.max_height)))
        if fdp.ConsumeBool():
            b.set_fixation(fuzz_value(fdp), fuzz_value(fdp))
        cascade = arrcoc_rt.ClusterCascade(b.max_width, b.max_height, device="cpu",
                                           **{k: knob_value(fdp, k) for k in CASCADE_DEFAULTS if fdp.ConsumeBool()})
        res = cascade.run(tex)
        assert res.labels.shape == (tex.level_sizes[2][1], tex.level_sizes[2][0])
        return
    opts = {}
    for _ in range(fdp.ConsumeIntInRange(0, 8)):
        name = fdp.PickValueInList(KNOBS + EXTRA)
        opts[name] = knob_value(fdp, name)
    args = (w, h) if fdp.ConsumeIntInRange(0, 7) else (fuzz_value(fdp), h)
    pipe = arrcoc_rt.Pipeline(*args, device="cpu", **opts)
    for _ in range(fdp.ConsumeIntInRange(1, 3)):
        fw, fh = fdp.ConsumeIntInRange(1, pipe.width), fdp.ConsumeIntInRange(1, pipe.height)
        r = pipe.process(frame_pixels(fdp, fw, fh))
        check_result(r, pipe)
        assert r.frame_size == (fw, fh)
        if fdp.ConsumeIntInRange(0, 3) == 0:
            pipe.reset()
    if fdp.ConsumeBool():  # running back: features of any shape
        f = np.resize(np.frombuffer(fdp.ConsumeBytes(64) or b"\x01", np.uint8),
                      (fdp.ConsumeIntInRange(0, 5), fdp.ConsumeIntInRange(0, 9), fdp.ConsumeIntInRange(0, 9)))
        out = r.gather_features(f.astype(np.float32) if fdp.ConsumeIntInRange(0, 7) else f)
        assert out.shape == (len(r.kinds), f.shape[0]) and np.all(np.isfinite(out))


if __name__ == "__main__":
    main(one_input)
