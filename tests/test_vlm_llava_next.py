"""arrcoc_rt.vlm: a tiny random LLaVA-NeXT (built here, loaded through the adapter) fed with token
packs: gestalt tokens from the base view, saccades from the high-resolution grid with its row
newlines, checked against the stock model's own multi-tile input."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import arrcoc_rt  # noqa: E402
from arrcoc_rt.vlm import kept_tokens, make_adapter  # noqa: E402
from arrcoc_rt.vlm.base import PackSnapshot  # noqa: E402
from vlm_models import build_tiny_llava_next  # noqa: E402  (tests/vlm_models.py)

W, H = 128, 96  # -> the 112 x 112 pinpoint: 2 x 2 tiles, an 8 x 8 grid unpadded to 6 x 8; base 4 x 4
PROMPT = "what is here ?"


@pytest.fixture(scope="module")
def next_dir(tmp_path_factory):
    return build_tiny_llava_next(tmp_path_factory.mktemp("tiny_llava_next"))


@pytest.fixture(scope="module")
def adapter(next_dir):
    return make_adapter(f"llava_next:{next_dir}", device="cpu")


def frame(seed=0):
    rng = np.random.default_rng(seed)
    f = (rng.random((H, W, 3)) * 60).astype(np.uint8)
    f[20:60, 70:110] = (220, 30, 30)
    return f


def every_cell(seed=0):
    """A pack holding every cell at level 0: a gestalt token on each base cell (4 x 4) and a saccade
    on each high-resolution cell (6 x 8), the saccades in a shuffled (best-first-like) order."""
    snap = object.__new__(PackSnapshot)
    gy, gx = np.mgrid[0:4, 0:4]
    sy, sx = np.mgrid[0:6, 0:8]
    sacc = np.stack([(sx.ravel() + 0.5) * W / 8, (sy.ravel() + 0.5) * H / 6], 1)
    sacc = sacc[np.random.default_rng(seed).permutation(len(sacc))]
    snap.positions = np.concatenate([np.stack([(gx.ravel() + 0.5) * W / 4, (gy.ravel() + 0.5) * H / 4], 1), sacc])
    snap.kinds = np.array([0] * 16 + [1] * 48, np.int32)
    snap.levels = np.zeros(64, np.int32)
    snap.frame_size, snap.frame_index, snap.pts, snap._pipeline = (W, H), 0, None, None
    return snap


def stock(ad, frames, prompt=PROMPT):
    """The stock model's input, LlavaNextProcessor's steps by hand: the image processor's tiles, and
    each <image> of the prompt (the frames' placeholders joined by the separator) expanded to the
    model's count, base + rows x (columns + 1), then tokenized (spaces between the tiny WordLevel
    tokenizer's image tokens)."""
    images = [ad.image_processor(images=[f], return_tensors="pt") for f in frames]
    n = 16 + 6 * (8 + 1)
    placeholders = ad.frame_separator.join([" <image>" * n + " "] * len(frames))
    ids = ad.tokenizer(ad.template.replace("{prompt}", prompt).replace("<image>", placeholders),
                       return_tensors="pt")["input_ids"]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "pixel_values": torch.cat([im["pixel_values"] for im in images]),
            "image_sizes": torch.cat([im["image_sizes"] for im in images])}


def test_views_are_the_models_own_grids(adapter):
    f = frame()
    hires, base = adapter.vision_features(f), adapter.base_features(f)
    assert tuple(hires.shape) == (32, 6, 8) and tuple(base.shape) == (32, 4, 4)
    s = stock(adapter, [f])
    with torch.no_grad():
        packed = adapter.model.model.get_image_features(s["pixel_values"], s["image_sizes"]).pooler_output[0]
    proj = adapter.model.model.multi_modal_projector
    with torch.no_grad():
        torch.testing.assert_close(packed[:16], proj(base.reshape(32, 16).T[None])[0])
        rows = packed[16:].reshape(6, 9, -1)                       # 6 rows of 8 cells + a newline
        torch.testing.assert_close(rows[:, :8].reshape(48, -1), proj(hires.reshape(32, 48).T[None])[0])
        torch.testing.assert_close(rows[:, 8], adapter.image_newline[None].expand(6, -1))


def test_every_cell_kept_is_the_stock_model(next_dir, adapter):
    """Every base and high-resolution cell kept at level 0: the input ids, logits and 4 greedy tokens
    equal the stock model's on its own multi-tile input, for one frame and for two (two images)."""
    f = frame(1)
    inputs = adapter.prepare(f, every_cell(), PROMPT)
    assert inputs["num_visual_tokens"] == 64 and inputs["num_newline_tokens"] == 6
    s = stock(adapter, [f])
    torch.testing.assert_close(inputs["input_ids"], s["input_ids"], rtol=0, atol=0)
    with torch.no_grad():
        want = adapter.model(**s).logits
    torch.testing.assert_close(adapter.logits(inputs), want, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        stock_new = adapter.model.generate(**s, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    got = adapter.model.generate(inputs_embeds=inputs["inputs_embeds"], attention_mask=inputs["attention_mask"],
                                 max_new_tokens=4, min_new_tokens=4, do_sample=False)
    torch.testing.assert_close(got, stock_new[:, s["input_ids"].shape[1]:], rtol=0, atol=0)
    # The saccades went back to raster order: the pack's order (shuffled) would give other logits.
    at = torch.nonzero(inputs["input_ids"][0] == adapter.image_token_id)[:, 0]
    shuffled = inputs["inputs_embeds"].clone()
    shuffled[0, at[16:24]] = shuffled[0, at[16:24]].flip(0)
    assert not torch.allclose(adapter.logits(dict(inputs, inputs_embeds=shuffled)), want, rtol=1e-3, atol=1e-3)
    # Two frames: two image blocks, the stock model's two-image input.
    g = frame(2)
    two = adapter.prepare_frames([f, g], [every_cell(1), every_cell(2)], PROMPT)
    s2 = stock(adapter, [f, g])
    assert two["num_visual_tokens"] == 128 and two["frame_tokens"] == [64, 64] and two["num_newline_tokens"] == 12
    torch.testing.assert_close(two["input_ids"], s2["input_ids"], rtol=0, atol=0)
    with torch.no_grad():
        want2 = adapter.model(**s2).logits
    torch.testing.assert_close(adapter.logits(two), want2, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strategy", ["balanced", "saliency"])
def test_pack_tokens_reach_the_language_model(adapter, strategy):
    """tokens=N: N visual tokens (gestalt from the base grid, saccades from the high-resolution grid
    in raster order) plus one newline per row holding a saccade reach the language model."""
    f = frame(3)
    r = arrcoc_rt.Pipeline(W, H, device="cpu", strategy=strategy, gestalt_x=4, gestalt_y=3, saccades=12).process(f)
    lengths = []
    hook = adapter.model.model.language_model.register_forward_pre_hook(
        lambda m, a, kw: lengths.append(kw["inputs_embeds"].shape[1]), with_kwargs=True)
    try:
        inputs = adapter.prepare(f, r, PROMPT, tokens=20)
        adapter.logits(inputs)
    finally:
        hook.remove()
    keep = kept_tokens(r, 20)
    kinds = np.asarray(r.kinds)
    assert inputs["num_visual_tokens"] == 20 and sorted(inputs["token_index"].tolist()) == sorted(keep.tolist())
    cells = inputs["cells"]
    n_sacc = int(np.sum(kinds[keep] == 1))
    assert len(cells) == n_sacc > 0 and np.all(np.diff(cells) >= 0)
    rows = len(np.unique(cells // 8))
    assert inputs["num_newline_tokens"] == rows
    text = len(adapter._prompt_ids(PROMPT, 0)[0])
    assert lengths == [text + 20 + rows]
    # The embeddings: projected gathers of the two grids, a newline closing each row.
    proj = adapter.model.model.multi_modal_projector
    base, hires = adapter.base_features(f), adapter.vision_features(f)
    idx = inputs["token_index"]
    with torch.no_grad():
        g = proj(torch.from_numpy(r.gather_features(base.numpy())[idx[:12]])[None])[0]
        s = proj(torch.from_numpy(r.gather_features(hires.numpy())[idx[12:]])[None])[0]
    want, last_row = [g], None
    for j, c in enumerate(cells):
        if last_row is not None and c // 8 != last_row:
            want.append(adapter.image_newline[None])
        want.append(s[j:j + 1])
        last_row = c // 8
    want.append(adapter.image_newline[None])
    at = inputs["input_ids"][0] == adapter.image_token_id
    torch.testing.assert_close(inputs["inputs_embeds"][0, at], torch.cat(want))


def test_prepare_features_rows_and_the_experiment(adapter):
    """Uniform pooling of the 6 x 8 grid to 12 tokens: 3 rows of 4, each closed by a newline; the
    experiment's uniform and balanced methods deliver exactly N visual tokens on LLaVA-NeXT."""
    from arrcoc_rt.experiment.methods import Method, select_uniform
    from arrcoc_rt.experiment.runner import Clock, FrameStore, MemoryMeter, MethodRunner, Settings
    from arrcoc_rt.experiment.synthetic import synthetic_questions

    f = frame(4)
    grid = adapter.vision_features(f)
    feats, pos = select_uniform(grid, 12)
    inputs = adapter.prepare_features(feats, PROMPT, positions=pos, grid=(6, 8))
    assert inputs["num_visual_tokens"] == 12 and inputs["num_newline_tokens"] == 3
    with torch.no_grad():
        proj = adapter.model.model.multi_modal_projector(feats[None])[0]
    nl = adapter.image_newline[None]
    want = torch.cat([proj[0:4], nl, proj[4:8], nl, proj[8:12], nl])
    at = inputs["input_ids"][0] == adapter.image_token_id
    torch.testing.assert_close(inputs["inputs_embeds"][0, at], want)
    with pytest.raises(ValueError, match="positions"):
        adapter.prepare_features(feats, PROMPT)
    with pytest.raises(ValueError, match="off the 6 x 8 grid"):  # pixel positions, not cells
        adapter.prepare_features(feats, PROMPT, positions=np.asarray(pos) * 32, grid=(6, 8))
    q = synthetic_questions(count=1, width=W, height=H)[0]
    store = FrameStore([q], 1, None, 64.0)
    meter = MemoryMeter(False)
    try:
        for m in (Method("equal", "uniform", tokens=12), Method("equal", "balanced", tokens=12, saccades=8, gestalt=2)):
            record = MethodRunner(m, adapter, Settings(max_new_tokens=1, device="cpu", warmup=0), store, Clock(False),
                                  meter).step(q)
            assert record["visual_tokens"] == 12, m.key
    finally:
        meter.close()


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_a_stream_answers_over_frames_with_llava_next(next_dir, attn):
    ad = make_adapter(f"llava_next:{next_dir}", device="cpu", tokens=10, attn_implementation=attn)
    assert ad.model.config._attn_implementation == attn
    stream = arrcoc_rt.Stream(device="cpu", vlm=ad, ask_frames=2, gestalt_x=4, gestalt_y=3, saccades=12)
    for i in range(3):
        stream.process(frame(10 + i))
    a = stream.ask(PROMPT, frames=2, max_new_tokens=3)
    assert a.frame_indices == (1, 2) and a.visual_tokens == 20 and isinstance(a.text, str)
    b = stream.ask(PROMPT, frames=2, max_new_tokens=3, asynchronous=True).result(timeout=60)
    assert (b.text, b.frame_indices, b.visual_tokens) == (a.text, a.frame_indices, a.visual_tokens)
    stream.close()


def test_errors(tmp_path, next_dir, adapter):
    with pytest.raises(ValueError, match="does not exist"):
        make_adapter(f"llava_next:{tmp_path / 'missing'}")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"model_type": "llava"}')
    with pytest.raises(ValueError, match="not 'llava_next'"):
        make_adapter(f"llava_next:{tmp_path / 'other'}")
    with pytest.raises(ValueError, match="not 'llava'"):
        make_adapter(f"llava:{next_dir}")
    f = frame()
    r = arrcoc_rt.Pipeline(W, H, device="cpu", gestalt_x=4, gestalt_y=3, saccades=12).process(f)
    with pytest.raises(ValueError, match="not the frame"):
        adapter.prepare(f[:50], r, PROMPT)
    with pytest.raises(ValueError, match="image token"):
        adapter.prepare(f, r, "what <image> ?")
