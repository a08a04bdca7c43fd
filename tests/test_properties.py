"""Invariants that hold for every input (hypothesis): any frame size, content and configuration
gives exactly G + S tokens, budgets within the total, valid levels, distinct saccades, finite
glimpses and consistent reuse links, on every backend (the CUDA one on the emulated device in CI).
Bounded examples, no deadline (a shared 2-core VM)."""

from __future__ import annotations

import numpy as np
import pytest

import arrcoc_rt
from conftest import devices, host

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

LODS = {64, 128, 256, 384, 400}


@pytest.mark.parametrize("device", devices())
@settings(max_examples=25, deadline=None, derandomize=True)
@given(w=st.integers(1, 96), h=st.integers(1, 80), seed=st.integers(0, 2**31 - 1),
       gx=st.integers(1, 8), gy=st.integers(1, 8), saccades=st.integers(0, 64),
       strategy=st.sampled_from(["balanced", "random", "saliency", "query"]),
       hysteresis=st.floats(0, 1), frames=st.integers(1, 3))
def test_every_pack_keeps_its_invariants(device, w, h, seed, gx, gy, saccades, strategy, hysteresis, frames):
    rng = np.random.default_rng(seed)
    G = gx * gy
    total = G * 64 + 400 * saccades // 2 + 64
    pipe = arrcoc_rt.Pipeline(w, h, device=device, gestalt_x=gx, gestalt_y=gy, saccades=saccades,
                              total_budget=total, strategy=strategy, hysteresis=hysteresis, num_threads=1)
    prev = None
    for _ in range(frames):
        r = pipe.process(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        assert len(r.kinds) == G + saccades and r.glimpses.shape == (G + saccades, 3, 16, 16)
        assert np.all(r.kinds[:G] == 0) and set(np.unique(r.kinds[G:])) <= {1, -1}
        assert np.all(np.diff((r.kinds[G:] == 1).astype(int)) <= 0), "padding only after the saccades"
        real = r.kinds >= 0
        assert r.budgets.sum() <= total and set(np.unique(r.budgets[real])) <= LODS
        assert np.all(r.budgets[~real] == 0) and np.all(r.levels[~real] == -1)
        assert np.all((r.levels[real] >= 0) & (r.levels[real] <= 3))
        sac = r.patches[r.kinds == 1]
        assert len(np.unique(sac)) == len(sac) and r.num_saccades == len(sac)
        assert np.all(np.isfinite(r.glimpses)) and np.all(r.glimpses[~real] == 0)
        assert np.all((r.positions[real, 0] >= 0) & (r.positions[real, 0] <= w))
        assert np.all((r.reuse == -1) | (r.reuse == r.previous))
        if prev is not None:  # a token continues a saccade or the same gestalt cell of the previous frame
            linked = r.previous >= 0
            assert np.all(r.previous[linked] < len(prev.kinds))
            assert np.all(prev.kinds[r.previous[linked & (r.kinds == 1)]] == 1)
            # a reused token is its cache's token in place: same position and level, same frame size
            reused = np.flatnonzero(r.reuse >= 0)
            assert np.array_equal(r.positions[reused], prev.positions[r.reuse[reused]])
            assert np.array_equal(r.levels[reused], prev.levels[r.reuse[reused]])
            assert not len(reused) or tuple(r.frame_size) == tuple(prev.frame_size)
        else:
            assert np.all(r.previous == -1)
        prev = r


@pytest.mark.parametrize("device", devices())
@settings(max_examples=30, deadline=None, derandomize=True)
@given(w=st.integers(1, 64), h=st.integers(1, 48), seed=st.integers(0, 2**31 - 1))
def test_texture_channels_are_finite_and_in_range_for_any_frame(device, w, h, seed):
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    tex = arrcoc_rt.TextureBuilder(w, h, device=device, dtype="float32", num_threads=1).build(img)
    for k in range(5):
        planes = host(tex.level(k))
        assert np.all(np.isfinite(planes)), f"level {k}"
    for c in (arrcoc_rt.Channel.RED, arrcoc_rt.Channel.LUMINANCE, arrcoc_rt.Channel.SALIENCY):
        p = host(tex.channel(c, arrcoc_rt.base_level(c)))
        assert p.min() >= 0.0 and p.max() <= 1.0, c
