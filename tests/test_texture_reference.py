"""Every backend against the float64 reference: every channel, every level, many sizes,
random frames drawn fresh each run and real photographs (tolerances: see conftest.py)."""

import numpy as np
import pytest

import arrcoc_rt
from arrcoc_rt import reference as R
from conftest import REAL_IMAGES, compare_texture, devices, host, pixel_format_frames, poison, real_image

SIZES = [(1, 1), (2, 3), (3, 2), (17, 31), (31, 17), (640, 480), (1023, 769), (1920, 1080)]


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_random_frames_two_in_a_row(device, dtype, size, rng):
    w, h = size
    f1 = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    # second frame: a shifted copy plus noise, so motion and motion vectors are non-trivial
    f2 = np.roll(f1, (int(rng.integers(-8, 9)), int(rng.integers(-8, 9))), axis=(0, 1))
    f2 = np.clip(f2.astype(int) + rng.integers(-10, 11, f2.shape), 0, 255).astype(np.uint8)
    b = arrcoc_rt.TextureBuilder(w, h, device=device, dtype=dtype)
    poison(b)
    t1 = b.build(f1)
    r1 = R.build_texture(f1)
    assert not t1.motion_valid
    compare_texture(t1, r1, dtype, f"frame 1 {w}x{h}")
    poison(b)
    t2 = b.build(f2)
    r2 = R.build_texture(f2, previous=r1)
    assert t2.motion_valid and r2.motion_valid
    compare_texture(t2, r2, dtype, f"frame 2 {w}x{h}")


@pytest.mark.slow
def test_4k_cpu(rng):
    w, h = 4096, 2160
    img = real_image("astronaut")
    frame = np.ascontiguousarray(np.tile(img, (5, 8, 1))[:h, :w])
    frame[::7] = rng.integers(0, 256, frame[::7].shape, dtype=np.uint8)
    b = arrcoc_rt.TextureBuilder(w, h, device="cpu", dtype="float16")
    poison(b)
    compare_texture(b.build(frame), R.build_texture(frame), "float16", "4K")


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("name", REAL_IMAGES)
def test_real_photographs(device, dtype, name):
    img = real_image(name)
    h, w = img.shape[:2]
    # motion: the same photo moved by (8, -4) pixels, as a camera pan would
    moved = np.roll(img, (-4, 8), axis=(0, 1))
    b = arrcoc_rt.TextureBuilder(w, h, device=device, dtype=dtype)
    poison(b)
    t1 = b.build(img)
    r1 = R.build_texture(img)
    compare_texture(t1, r1, dtype, name)
    poison(b)
    t2 = b.build(moved)
    compare_texture(t2, R.build_texture(moved, previous=r1), dtype, name + " moved")


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("size", [(1, 1), (17, 31), (64, 48)], ids=["1x1", "17x31", "64x48"])
def test_pixel_formats(device, size, rng):
    w, h = size
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    b = arrcoc_rt.TextureBuilder(w, h, device=device, dtype="float32")
    for fmt, frame in pixel_format_frames(rgb, rng).items():
        b.reset()  # each format is compared as a first frame
        poison(b)
        tex = b.build(frame, pixel_format=fmt)
        ref = R.build_texture(frame, fmt)
        compare_texture(tex, ref, "float32", fmt)
        if fmt in ("bgr24", "rgba32", "bgra32", "rgbp"):  # same picture as rgb24: same colour channels, exactly
            np.testing.assert_array_equal(host(tex.channel("red")), rgb[..., 0] / np.float32(255))


def test_yuv_conversion_matches_known_values():
    # BT.601 limited range: Y=16 is black, Y=235 white, (81, 90, 240) is pure red.
    y = np.array([[16, 235, 81, 81]], np.uint8)
    u = np.array([[128, 90]], np.uint8)
    v = np.array([[128, 240]], np.uint8)
    rgb = R.frame_to_rgb8((y, u, v), "yuv420p")
    np.testing.assert_array_equal(rgb[0, 0], [0, 0, 0])
    np.testing.assert_array_equal(rgb[0, 1], [255, 255, 255])
    assert rgb[0, 2, 0] == 255 and rgb[0, 2, 1] < 5 and rgb[0, 2, 2] < 5
    b = arrcoc_rt.TextureBuilder(4, 1, device="cpu", dtype="float32")
    t = b.build((y, u, v), pixel_format="yuv420p")
    np.testing.assert_array_equal(np.asarray(t.channel("red")), rgb[..., 0] / np.float32(255))


@pytest.mark.parametrize("device", devices())
def test_smaller_frames_than_maximum(device, rng):
    """One builder, frames of several sizes up to its maximum: each matches its own reference."""
    b = arrcoc_rt.TextureBuilder(96, 80, device=device, dtype="float32")
    for w, h in [(96, 80), (17, 31), (1, 1), (95, 79)]:
        f = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        poison(b)
        t = b.build(f)
        assert (t.width, t.height) == (w, h) and not t.motion_valid
        compare_texture(t, R.build_texture(f), "float32", f"{w}x{h} in 96x80")


@pytest.mark.parametrize("device", devices())
def test_float16_is_float32_rounded_at_level0(device, rng):
    """Level 0 in float16 is exactly the float32 result rounded to nearest even: checks our
    float->half conversion (csrc/shared/half.h) on hundreds of thousands of real values."""
    f = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    t16 = arrcoc_rt.TextureBuilder(320, 240, device=device, dtype="float16").build(f)
    t32 = arrcoc_rt.TextureBuilder(320, 240, device=device, dtype="float32").build(f)
    for c in arrcoc_rt.Texture.channels_at(0):
        a16, a32 = host(t16.channel(c, 0)), host(t32.channel(c, 0))
        np.testing.assert_array_equal(a16.view(np.uint16), a32.astype(np.float16).view(np.uint16), err_msg=c.name)


def test_fixation_moves_eccentricity():
    f = np.zeros((40, 60, 3), np.uint8)
    b = arrcoc_rt.TextureBuilder(60, 40, device="cpu", dtype="float32", fixation=(0.0, 0.0))
    ecc = np.asarray(b.build(f).channel("eccentricity"))
    np.testing.assert_allclose(ecc, R.eccentricity(60, 40, (0.0, 0.0)), atol=1e-6)
    assert ecc[0, 0] < 0.05 and ecc[-1, -1] == 1.0
    b.set_fixation(1.0, 1.0)
    ecc = np.asarray(b.build(f).channel("eccentricity"))
    assert ecc[-1, -1] < 0.05 and ecc[0, 0] == 1.0


def test_channel_accessors_and_layout():
    b = arrcoc_rt.TextureBuilder(33, 17, device="cpu")
    t = b.build(np.zeros((17, 33, 3), np.uint8))
    assert t.level_sizes == [(33, 17), (17, 9), (9, 5), (5, 3), (3, 2)]
    assert [len(t.channels_at(k)) for k in range(5)] == [15, 16, 17, 17, 40]
    assert t.level(0).shape == (15, 17, 33) and t.level(4).shape == (40, 2, 3)
    # the level array and the channel accessor see the same memory
    lum_plane = t.channels_at(1).index(arrcoc_rt.Channel.LUMINANCE)
    assert np.shares_memory(t.level(1)[lum_plane], t.channel("luminance", 1))
    assert t.channel(arrcoc_rt.Channel.SALIENCY, 1).shape == (9, 17)
    with pytest.raises(ValueError, match="saliency is stored from level 1"):
        t.channel("saliency", 0)
    with pytest.raises(ValueError, match="stored from level 4"):
        t.channel(arrcoc_rt.Channel.MOTION_X, 2)
    with pytest.raises(ValueError, match="unknown name"):
        t.channel("brightness")
    with pytest.raises(ValueError, match="out of range"):
        t.channel(40)
    with pytest.raises(ValueError, match="level: 5 is out of range"):
        t.level(5)
    assert not t.channel("red").flags.writeable
    b.build(np.zeros((17, 33, 3), np.uint8))
    with pytest.raises(RuntimeError, match="overwritten"):
        t.channel("red")
