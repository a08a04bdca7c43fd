"""The context network (seeds 000/001, issue #14): per frame, the query's embedding and the frame's
gestalt give softmax weights of the three scores, which the 'balanced' strategy applies before the
balancer. Both backends against the float64 reference, and that the weights do what they say."""

import numpy as np
import pytest

import arrcoc_rt
from arrcoc_rt import reference as R

from conftest import devices, real_image
from test_pipeline import _compare, _history, _reference_for


def _context(seed: int, scale: float = 0.3) -> dict:
    rng = np.random.default_rng(seed)
    w = arrcoc_rt.default_weights()
    for k in ("ctx_W1", "ctx_b1", "ctx_W2", "ctx_b2"):
        w[k] = rng.normal(0, scale, w[k].shape).astype(np.float32)
    return w


def test_the_default_is_off_and_leaves_the_scores_alone():
    w = arrcoc_rt.default_weights()
    assert not R.context_on(w)
    img = real_image("coffee")
    r = arrcoc_rt.Pipeline(img.shape[1], img.shape[0], device="cpu").process(img)
    np.testing.assert_array_equal(r.context_weights, np.full(3, np.float32(1 / 3)))


@pytest.mark.parametrize("device", devices())
def test_backends_match_the_reference_with_a_trained_context(device):
    """Random context parameters, an exemplar query (its embedding enters the network), two frames
    (the second with history)."""
    img = real_image("astronaut")
    h, w = img.shape[:2]
    pipe = arrcoc_rt.Pipeline(w, h, device=device, encoder="builtin", weights=_context(1), saccades=120)
    exemplar = np.ascontiguousarray(img[30:130, 150:280])
    r = pipe.process(img, query_image=exemplar)
    assert pipe._embedding_set is not None and np.any(pipe._embedding_set != 0)
    assert not np.allclose(r.context_weights, 1 / 3, atol=1e-3)
    _compare(pipe, r, _reference_for(pipe, r, None, has_query=True))
    prev = _history(r)
    r = pipe.process(np.roll(img, 8, axis=1), query_image=exemplar)
    _compare(pipe, r, _reference_for(pipe, r, prev, has_query=True))


@pytest.mark.parametrize("name", ["coffee", "astronaut", "chelsea"])
def test_the_weights_steer_the_allocation(name):
    """All the weight on information puts the saccades on busier patches (edge density, channel 12);
    all of it on salience puts them nearer the fixation (eccentricity, channel 5, is in salience)."""
    img = real_image(name)
    h, w = img.shape[:2]
    picked = {}
    for score, bias in (("info", [8.0, 0.0, 0.0]), ("salience", [0.0, 8.0, 0.0])):
        weights = dict(arrcoc_rt.default_weights(), ctx_b2=np.array(bias, np.float32))
        r = arrcoc_rt.Pipeline(w, h, device="cpu", weights=weights, saccades=40, text_floor=0).process(img)
        np.testing.assert_allclose(r.context_weights, R.context_weights(weights, np.zeros(40)), atol=1e-6)
        sel = r.patches[r.kinds == 1]
        picked[score] = [float(np.asarray(r.texture.channel(c, 4), np.float64).ravel()[sel].mean()) for c in (12, 5)]
    assert picked["info"][0] > picked["salience"][0], picked  # busier
    assert picked["salience"][1] < picked["info"][1], picked  # more central


def test_different_queries_get_different_weights():
    """The query embedding is an input: two exemplars of different content weigh the scores
    differently under the same parameters; without a query the embedding is zero."""
    img = real_image("astronaut")
    h, w = img.shape[:2]
    pipe = arrcoc_rt.Pipeline(w, h, device="cpu", encoder="builtin", weights=_context(2, scale=0.2))
    got = []
    for crop in (img[30:130, 150:280], img[380:480, 20:140]):
        got.append(pipe.process(img, query_image=np.ascontiguousarray(crop)).context_weights.copy())
    assert np.abs(got[0] - got[1]).max() > 1e-3, got
    pipe.process(img)
    assert pipe._embedding_set is None


def test_a_bad_query_embedding_is_refused():
    pipe = arrcoc_rt.Pipeline(64, 48, device="cpu")
    with pytest.raises(ValueError, match="expected 16"):
        pipe._allocator.set_query_embedding(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="NaN or inf"):
        pipe._allocator.set_query_embedding(np.full(16, np.nan, np.float32))
