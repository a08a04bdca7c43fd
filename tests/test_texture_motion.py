"""Motion (ch 10) and motion vectors (ch 35-36): known shifts, first frame, reset, size change."""

import numpy as np
import pytest

import arrcoc_rt
from arrcoc_rt import Channel
from arrcoc_rt import reference as R
from conftest import devices, real_image, to_numpy


def _textured(h, w, rng):
    """A photo-like frame bigger than needed (so shifted crops are real content, not wrap-around)."""
    img = real_image("astronaut").astype(np.int32)
    img = np.tile(img, (2, 2, 1))[: h + 64, : w + 64]
    return np.clip(img + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("shift", [(8, 0), (0, -12), (-4, 16), (12, 8), (0, 0)])
def test_motion_vectors_recover_a_known_shift(device, shift, rng):
    """Content that moves by (dx, dy) pixels between frames gives motion vectors (dx, dy)."""
    dx, dy = shift
    h, w = 160, 224
    big = _textured(h, w, rng)
    f1 = np.ascontiguousarray(big[32 : 32 + h, 32 : 32 + w])
    f2 = np.ascontiguousarray(big[32 - dy : 32 - dy + h, 32 - dx : 32 - dx + w])  # content moved by +shift
    b = arrcoc_rt.TextureBuilder(w, h, device=device, dtype="float32")
    b.build(f1)
    t = b.build(f2)
    mx, my = to_numpy(t.channel(Channel.MOTION_X, 4)), to_numpy(t.channel(Channel.MOTION_Y, 4))
    # blocks whose search window stays inside the frame must all find the shift exactly
    inner = (slice(1, -1), slice(1, -1))
    assert np.all(mx[inner] == dx), mx
    assert np.all(my[inner] == dy), my
    ref = R.build_texture(f2, previous=R.build_texture(f1))
    np.testing.assert_array_equal(mx, ref.channel(35, 4))
    np.testing.assert_array_equal(my, ref.channel(36, 4))
    motion = to_numpy(t.channel(Channel.MOTION))
    if shift == (0, 0):
        assert motion.max() == 0.0
    else:
        assert motion.mean() > 0.01


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("levels", [2, 3, 256])
def test_motion_vectors_follow_the_tie_rule_like_the_reference(device, levels, rng):
    """Frames of few grey levels make many equal SADs: every backend (and the CPU's SIMD path for
    blocks away from the edges) must break the ties exactly as the reference does."""
    h, w = 131, 203  # interior and edge blocks, partial blocks at the right and bottom
    grey = (rng.integers(0, levels, (h, w)) * (255 // max(levels - 1, 1))).astype(np.uint8)
    f1 = np.repeat(grey[:, :, None], 3, axis=2)
    f2 = np.roll(f1, (int(rng.integers(-9, 10)), int(rng.integers(-9, 10))), axis=(0, 1))
    f2[::5] = f1[::5]  # partly static, so displacements compete
    b = arrcoc_rt.TextureBuilder(w, h, device=device, dtype="float32")
    b.build(f1)
    t = b.build(f2)
    ref = R.build_texture(f2, previous=R.build_texture(f1))
    np.testing.assert_array_equal(to_numpy(t.channel(Channel.MOTION_X, 4)), ref.channel(35, 4))
    np.testing.assert_array_equal(to_numpy(t.channel(Channel.MOTION_Y, 4)), ref.channel(36, 4))


@pytest.mark.parametrize("device", devices())
def test_moving_object_lights_up_motion_only_where_it_moves(device):
    h, w = 96, 128
    f1 = np.full((h, w, 3), 40, np.uint8)
    f2 = f1.copy()
    f1[40:56, 20:36] = 230
    f2[40:56, 28:44] = 230  # the square moved 8 px right
    b = arrcoc_rt.TextureBuilder(w, h, device=device, dtype="float32")
    b.build(f1)
    motion = to_numpy(b.build(f2).channel(Channel.MOTION))
    assert motion[40:56, 16:48].max() > 0.3
    assert motion[:, 60:].max() == 0.0 and motion[:30].max() == 0.0


@pytest.mark.parametrize("device", devices())
def test_first_frame_reset_and_size_change_report_no_motion(device, rng):
    f1 = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    f2 = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    b = arrcoc_rt.TextureBuilder(64, 48, device=device)

    def no_motion(t):
        return (not t.motion_valid and to_numpy(t.channel(Channel.MOTION)).max() == 0
                and not to_numpy(t.channel(Channel.MOTION_X, 4)).any()
                and not to_numpy(t.channel(Channel.MOTION_Y, 4)).any())

    assert no_motion(b.build(f1))                      # first frame
    t = b.build(f2)
    assert t.motion_valid and to_numpy(t.channel(Channel.MOTION)).max() > 0.05
    b.reset()
    assert no_motion(b.build(f1))                      # after reset
    assert b.build(f2).motion_valid
    small = np.ascontiguousarray(f1[:30, :40])
    assert no_motion(b.build(small))                   # size changed: previous frame does not apply
    assert b.build(small).motion_valid                 # same size again: motion resumes
