"""The text guardrail (issue #14): patches that look like text never drop below `text_floor`.
Signs are rendered with Pillow's own font over real photographs that scikit-image ships."""

import numpy as np
import pytest

import arrcoc_rt
from arrcoc_rt import reference as R

from conftest import devices, host
from test_pipeline import _compare, _history, _reference_for

PIL = pytest.importorskip("PIL")
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

W, H = 640, 480
BACKGROUNDS = ("grass", "gravel", "brick", "astronaut", "coffee", "chelsea", "rocket", "camera", "page")
STYLES = ((18, (20, 20, 20), (235, 230, 220)), (14, (250, 250, 250), (30, 60, 140)), (24, (200, 30, 30), (240, 240, 240)))


def _photo(name: str) -> np.ndarray:
    from skimage import data
    from skimage.transform import resize

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    return resize(img[..., :3], (H, W), preserve_range=True, anti_aliasing=True).astype(np.uint8)


def _sign(photo: np.ndarray, size: int, ink, board):
    """(image with a two-line sign, [30, 40] bool: the patches where text covers > 8 % of the pixels)."""
    img = Image.fromarray(photo)
    draw = ImageDraw.Draw(img)
    ink_mask = Image.new("L", (W, H), 0)
    draw_mask = ImageDraw.Draw(ink_mask)
    font = ImageFont.load_default(size=size)
    draw.rectangle([200, 160, 456, 240], fill=board)
    for k, line in enumerate(("EXIT 24  Main St", "Open 9am - 5pm")):
        draw.text((208, 166 + k * (size + 8)), line, fill=ink, font=font)
        draw_mask.text((208, 166 + k * (size + 8)), line, fill=255, font=font)
    cover = np.asarray(ink_mask, np.float64).reshape(H // 16, 16, W // 16, 16).mean((1, 3)) / 255
    return np.asarray(img), cover > 0.08


def _text_patches(result) -> np.ndarray:
    tex = result.texture
    return R.text_likeness(host(tex.channel(9, 4)), host(tex.channel(14, 4))) >= 0.02


def test_the_text_measure_finds_text_and_little_else():
    """Recall over the patches that hold text, and the share of the other patches flagged, over 9
    photographs x 3 sign styles (and each photograph without a sign). Measured when chosen: 0.91 and
    0.0017 (the 'page' photograph is a scanned page: its real text counts as 'other' here)."""
    pipe = arrcoc_rt.Pipeline(W, H, device="cpu")
    found = text = flagged = other = 0
    for name in BACKGROUNDS:
        photo = _photo(name)
        for style in STYLES:
            img, truth = _sign(photo, *style)
            for frame, has in ((img, truth), (photo, np.zeros_like(truth))):
                pipe.reset()
                t = _text_patches(pipe.process(frame))
                found += (t & has).sum()
                text += has.sum()
                flagged += (t & ~has).sum()
                other += (~has).sum()
    assert found / text >= 0.85, found / text
    assert flagged / other <= 0.005, flagged / other


@pytest.mark.parametrize("name", ["grass", "coffee"])
def test_text_never_drops_below_the_floor(name):
    """Every patch that looks like text holds a saccade of at least text_floor; without the guardrail
    some of them do not (the test could fail)."""
    img, truth = _sign(_photo(name), *STYLES[0])
    on = arrcoc_rt.Pipeline(W, H, device="cpu", saccades=60).process(img)
    text = _text_patches(on).ravel()
    assert text.sum() >= 0.8 * truth.sum()
    budget = np.zeros(text.size, np.int64)
    sac = on.kinds == 1
    budget[on.patches[sac]] = on.budgets[sac]
    assert np.all(budget[text] >= 256), budget[text]
    off = arrcoc_rt.Pipeline(W, H, device="cpu", saccades=60, text_floor=0).process(img)
    budget_off = np.zeros(text.size, np.int64)
    budget_off[off.patches[off.kinds == 1]] = off.budgets[off.kinds == 1]
    assert np.any(budget_off[text] < 256)


def test_the_floor_holds_when_the_budget_is_scaled_down():
    img, _ = _sign(_photo("gravel"), *STYLES[1])
    r = arrcoc_rt.Pipeline(W, H, device="cpu", saccades=200, total_budget=256 * 64 + 200 * 100,
                           text_floor=128).process(img)
    text = _text_patches(r).ravel()
    budget = np.zeros(text.size, np.int64)
    budget[r.patches[r.kinds == 1]] = r.budgets[r.kinds == 1]
    assert np.all(budget[text] >= 128) and r.budgets.sum() <= 256 * 64 + 200 * 100


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("strategy", ["balanced", "query", "random"])
def test_backends_match_the_reference_on_signs(device, strategy):
    img, _ = _sign(_photo("brick"), *STYLES[2])
    pipe = arrcoc_rt.Pipeline(W, H, device=device, strategy=strategy, saccades=80, total_budget=40000)
    r = pipe.process(img)
    _compare(pipe, r, _reference_for(pipe, r, None))
    prev = _history(r)
    r = pipe.process(np.roll(img, 8, axis=1))  # held saccades and text candidates together
    _compare(pipe, r, _reference_for(pipe, r, prev))


@pytest.mark.parametrize("kwargs,pattern", [(dict(text_floor=32), r"text_floor 32 is not a level of detail"),
                                            (dict(text_floor=300), r"text_floor 300 is not a level of detail"),
                                            (dict(text_threshold=0.0), r"text_threshold: 0.0 is out of range"),
                                            (dict(text_threshold=2.0), r"text_threshold: 2.0 is out of range")])
def test_bad_guardrail_settings(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        arrcoc_rt.Pipeline(64, 48, device="cpu", **kwargs)
