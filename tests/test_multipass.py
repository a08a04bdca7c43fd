"""Looking again (issue #14 section 3, seed 002): Stream.ask(passes=n) on tiny models built here."""

import numpy as np
import pytest

from arrcoc_rt.vlm import multipass as mp

W, H = 160, 96


def test_the_seeds_exploration_schedule():
    assert mp.exploration_weight(0, 0.99) == 0.1
    assert [mp.exploration_weight(2, u) for u in (0.95, 0.71, 0.7, 0.5, 0.41, 0.4, 0.1)] == \
        [0.5, 0.5, 0.3, 0.3, 0.3, 0.05, 0.05]


def test_exploration_map_blends_relevance_with_unexplored_patches():
    rng = np.random.default_rng(0)
    relevance = np.zeros((4, 5))
    relevance[1, 2] = 3.0
    explored = np.zeros((4, 5), bool)
    explored[1, 2] = explored[0, 0] = True
    m = mp.exploration_map(relevance, explored, 0.5, rng)
    assert m.shape == (4, 5) and m.dtype == np.float32 and m.max() == 1.0
    assert m[0, 0] == 0  # explored and irrelevant: nothing
    assert np.all(m[~explored] > 0)  # every unexplored patch gets some weight
    only_explore = mp.exploration_map(relevance, explored, 1.0, np.random.default_rng(0))
    assert only_explore[1, 2] == 0 and only_explore[0, 0] == 0
    only_relevance = mp.exploration_map(relevance, explored, 0.0, rng)
    np.testing.assert_array_equal(only_relevance, relevance / 3.0)


def test_explored_patches_are_saccades_above_250_tokens():
    class Pack:
        kinds = np.array([0, 1, 1, 1, -1])
        budgets = np.array([400, 400, 128, 256, 0])
        patches = np.array([0, 3, 4, 7, -1])

    explored = mp.explored_patches([Pack()], (2, 4))
    assert explored.reshape(-1).nonzero()[0].tolist() == [3, 7]  # not the gestalt token, not 128 (<= 250)


def test_normalized_entropy_is_0_when_certain_and_1_when_uniform():
    torch = pytest.importorskip("torch")
    from arrcoc_rt.vlm.base import normalized_entropy

    assert normalized_entropy(torch.zeros(1, 300)) == pytest.approx(1.0, abs=1e-6)
    peaked = torch.full((1, 300), -1e4)
    peaked[0, 7] = 0
    assert normalized_entropy(peaked) == pytest.approx(0.0, abs=1e-6)
    masked = torch.full((1, 300), float("-inf"))
    masked[0, :2] = 0  # two equal tokens, the rest masked: log 2 / log 300, no NaN
    assert normalized_entropy(masked) == pytest.approx(np.log(2) / np.log(300), rel=1e-5)


# ----------------------------------------------------------------------------- on a tiny LLaVA

@pytest.fixture(scope="module")
def llava_dirs(tmp_path_factory):
    """An untrained tiny LLaVA (its next-token distributions are nearly uniform: uncertain) and the
    same model with its output layer scaled by 500 (peaked distributions: confident)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    import shutil

    import torch as _torch
    from transformers import LlavaForConditionalGeneration
    from vlm_models import build_tiny_llava

    unsure = build_tiny_llava(tmp_path_factory.mktemp("unsure"))
    sure = tmp_path_factory.mktemp("sure")
    model = LlavaForConditionalGeneration.from_pretrained(unsure)
    with _torch.no_grad():
        model.lm_head.weight.mul_(500.0)
    model.save_pretrained(sure)
    for f in unsure.iterdir():
        if "token" in f.name:
            shutil.copy(f, sure / f.name)
    return unsure, sure


def frame(seed=0):
    rng = np.random.default_rng(seed)
    f = (rng.random((H, W, 3)) * 60).astype(np.uint8)
    f[20:60, 70:110] = (220, 30, 30)
    return f


def _stream(path):
    import arrcoc_rt

    return arrcoc_rt.Stream(device="cpu", vlm=f"llava:{path}", gestalt_x=4, gestalt_y=3, saccades=12)


def test_an_uncertain_model_makes_more_passes_that_look_elsewhere(llava_dirs):
    stream = _stream(llava_dirs[0])
    for i in range(2):
        stream.process(frame(i))
    a = stream.ask("what is here ?", passes=4, max_new_tokens=3)
    ps = a.passes
    assert len(ps) >= 2, [p.uncertainty for p in ps]
    assert all(p.uncertainty > 0.7 for p in ps)  # near-uniform next-token distributions
    assert ps[0].exploration == 0.0 and all(p.exploration == 0.5 for p in ps[1:])  # > 0.7: explore heavily
    assert a.uncertainty == min(p.uncertainty for p in ps) and a.text in [p.text for p in ps]
    assert all(p.visual_tokens > 0 for p in ps) and len(a.latency_ms["passes"]) == len(ps)
    # Pass 2 gives close looks (saccades > 250 tokens) to patches pass 1 did not look at closely.
    first = mp.explored_patches([ps[0].pack], stream._last[1].relevance.shape)
    second = mp.explored_patches([ps[1].pack], stream._last[1].relevance.shape)
    assert (second & ~first).sum() >= 3, (first.sum(), second.sum())
    # Pass 1 is the stream's own allocation of the latest frame.
    np.testing.assert_array_equal(ps[0].pack.patches, stream._last[1].patches)
    # The same answer from the worker thread while the stream moves on.
    future = stream.ask("what is here ?", passes=4, max_new_tokens=3, asynchronous=True)
    stream.process(frame(7))
    b = future.result(timeout=120)
    assert [p.text for p in b.passes] == [p.text for p in ps]
    assert [p.uncertainty for p in b.passes] == pytest.approx([p.uncertainty for p in ps], abs=1e-5)
    stream.close()


def test_a_confident_model_stops_after_one_pass(llava_dirs):
    stream = _stream(llava_dirs[1])
    stream.process(frame(0))
    a = stream.ask("what is here ?", passes=4, max_new_tokens=3)
    assert len(a.passes) == 1 and a.uncertainty < mp.UNCERTAINTY_THRESHOLD
    plain = stream.ask("what is here ?", max_new_tokens=3)
    assert plain.text == a.text and plain.passes == ()
    stream.close()


def test_passes_errors(llava_dirs):
    stream = _stream(llava_dirs[1])
    stream.process(frame(0))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="passes"):
            stream.ask("what is here ?", passes=bad)
    s2 = __import__("arrcoc_rt").Stream(device="cpu", vlm=f"llava:{llava_dirs[1]}", ask_frames=2)
    s2.process(frame(0))
    with pytest.raises(ValueError, match="does not combine with frames"):
        s2.ask("what is here ?", passes=2, frames=2)
    stream.close()
    s2.close()


def test_cli_ask_and_run_look_again(llava_dirs, tmp_path):
    import subprocess
    import sys

    from PIL import Image

    Image.fromarray(frame(0)).save(tmp_path / "f.png")
    cli = [sys.executable, "-m", "arrcoc_rt.cli"]
    r = subprocess.run(cli + ["ask", "f.png", "what is here ?", "--vlm", f"llava:{llava_dirs[0]}", "--device", "cpu",
                              "--passes", "3", "--max-new-tokens", "2"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "pass 1:" in r.stderr and "pass 2:" in r.stderr and "exploration 0.5" in r.stderr
    r = subprocess.run(cli + ["run", "f.png", "--passes", "2"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode != 0 and "--passes" in r.stderr and "Traceback" not in r.stderr
