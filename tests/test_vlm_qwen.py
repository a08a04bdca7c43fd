"""arrcoc_rt.vlm: tiny random Qwen2-VL / Qwen2.5-VL models (built here, loaded through the adapter)
fed with token packs; positions checked against the model's own get_rope_index and stock forward."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import arrcoc_rt  # noqa: E402
from arrcoc_rt.vlm import kept_tokens, make_adapter  # noqa: E402
from arrcoc_rt.vlm.base import PackSnapshot  # noqa: E402
from vlm_models import MAX_PIXELS, MIN_PIXELS, build_tiny_qwen  # noqa: E402  (tests/vlm_models.py)

W, H = 128, 96
PROMPT = "what is here ?"


@pytest.fixture(scope="module")
def qwen_dirs(tmp_path_factory):
    return {kind: build_tiny_qwen(tmp_path_factory.mktemp(kind), kind) for kind in ("qwen2_vl", "qwen2_5_vl")}


@pytest.fixture(scope="module")
def adapters(qwen_dirs):
    return {kind: make_adapter(f"{kind}:{path}", device="cpu") for kind, path in qwen_dirs.items()}


@pytest.fixture(scope="module")
def adapter(adapters):
    return adapters["qwen2_vl"]


def frame(seed=0):
    rng = np.random.default_rng(seed)
    f = (rng.random((H, W, 3)) * 60).astype(np.uint8)
    f[20:60, 70:110] = (220, 30, 30)  # something to look at
    return f


def pipeline(strategy="balanced", **kw):
    kw = {"gestalt_x": 4, "gestalt_y": 3, "saccades": 12, **kw}
    return arrcoc_rt.Pipeline(W, H, device="cpu", strategy=strategy, **kw)


def stock_inputs(ad, f, prompt=PROMPT):
    """What Qwen2VLProcessor hands the model (its video half needs torchvision, absent here, so its
    steps are done by hand): the image processor's pixels and grid, the image placeholder expanded
    to one token per merged cell, tokenized, and the modality of each token."""
    from transformers import AutoImageProcessor

    image = AutoImageProcessor.from_pretrained(ad.model.name_or_path, local_files_only=True)(
        images=[f], return_tensors="pt")
    n = int(image["image_grid_thw"].prod()) // 4
    text = ad.template.replace("{prompt}", prompt).replace("<image>", "<|image_pad|>" * n)
    ids = ad.tokenizer(text, return_tensors="pt")
    return {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"],
            "pixel_values": image["pixel_values"], "image_grid_thw": image["image_grid_thw"],
            "mm_token_type_ids": (ids["input_ids"] == ad.image_token_id).int()}


def full_positions(ad, stock):
    pos, deltas = ad.model.model.get_rope_index(stock["input_ids"], mm_token_type_ids=stock["mm_token_type_ids"],
                                                image_grid_thw=stock["image_grid_thw"],
                                                attention_mask=stock["attention_mask"])
    return pos, deltas


class LMProbe:
    """Records the length of the sequence the language model actually receives."""

    def __init__(self, model):
        self.lengths = []
        self.hook = model.model.language_model.register_forward_pre_hook(self._lm, with_kwargs=True)

    def _lm(self, module, args, kwargs):
        self.lengths.append(kwargs["inputs_embeds"].shape[1])

    def close(self):
        self.hook.remove()


@pytest.mark.parametrize("strategy", ["balanced", "random", "saliency"])
def test_visual_token_count_reaches_language_model(adapter, strategy):
    f = frame()
    r = pipeline(strategy).process(f)
    kinds = np.asarray(r.kinds)
    n_kept = int(np.sum(kinds >= 0))
    assert n_kept > 15  # more tokens than the 5 x 3 merged grid has cells: some share a cell
    probe = LMProbe(adapter.model)
    try:
        for tokens, expected in ((None, n_kept), (5, 5), (n_kept + 100, n_kept)):
            inputs = adapter.prepare(f, r, PROMPT, tokens=tokens)
            assert inputs["num_visual_tokens"] == expected
            n_image = int((inputs["input_ids"] == adapter.image_token_id).sum())
            assert n_image == expected
            adapter.logits(inputs)
            text_len = inputs["input_ids"].shape[1] - expected
            assert probe.lengths[-1] == text_len + expected            # all of them reach the LM
            assert inputs["position_ids"].shape == (3, 1, text_len + expected)
            # tokens=N takes the first N of the pack's kept order (gestalt first, best saccades next).
            want = kept_tokens(r) if tokens is None else kept_tokens(r, tokens)
            assert sorted(inputs["token_index"].tolist()) == sorted(want.tolist())
    finally:
        probe.close()


@pytest.mark.parametrize("kind", ["qwen2_vl", "qwen2_5_vl"])
@pytest.mark.parametrize("tokens", [None, 7])
def test_positions_are_the_full_grids(adapters, kind, tokens):
    ad = adapters[kind]
    f = frame(1)
    r = pipeline().process(f)
    inputs = ad.prepare(f, r, PROMPT, tokens=tokens)
    stock = stock_inputs(ad, f)
    full, full_deltas = full_positions(ad, stock)                       # [3, 1, L_full], the unpruned prompt
    _, gh, gw = stock["image_grid_thw"][0].tolist()
    h, w = gh // 2, gw // 2
    # The cell under each kept token's centre, computed here from the pack.
    keep = inputs["token_index"]
    pos = np.asarray(r.positions, np.float64)[keep]
    cells = np.minimum(pos[:, 1] * h // H, h - 1).astype(int) * w + np.minimum(pos[:, 0] * w // W, w - 1).astype(int)
    np.testing.assert_array_equal(inputs["cells"], cells)
    assert np.all(np.diff(cells) >= 0)                                  # raster order in the prompt

    ids, got = inputs["input_ids"][0], inputs["position_ids"][:, 0]
    full_ids = stock["input_ids"][0]
    first = int(torch.nonzero(full_ids == ad.image_token_id)[0])       # where the image starts
    at = torch.nonzero(ids == ad.image_token_id)[:, 0]
    assert at.tolist() == list(range(first, first + len(keep)))
    torch.testing.assert_close(got[:, at], full[:, 0, first + torch.from_numpy(cells)], rtol=0, atol=0)
    # The text around the image keeps its positions too (nothing renumbered).
    torch.testing.assert_close(got[:, :first], full[:, 0, :first], rtol=0, atol=0)
    n_tail = len(ids) - first - len(keep)
    torch.testing.assert_close(got[:, len(ids) - n_tail:], full[:, 0, len(full_ids) - n_tail:], rtol=0, atol=0)
    torch.testing.assert_close(ids[:first], full_ids[:first], rtol=0, atol=0)
    # Decoding continues where the full prompt's would.
    assert int(inputs["rope_deltas"]) + len(ids) == int(full_deltas) + len(full_ids) == int(full.max()) + 1


def test_features_are_the_gathered_merged_grid(adapter):
    f = frame(1)
    r = pipeline().process(f)
    grid = adapter.vision_features(f)
    assert tuple(grid.shape) == (32, 3, 5) and grid.dtype == torch.float32
    stock = stock_inputs(adapter, f)
    with torch.no_grad():
        merged = adapter.model.model.get_image_features(stock["pixel_values"], stock["image_grid_thw"],
                                                        return_dict=True).pooler_output[0]
    torch.testing.assert_close(grid.reshape(32, -1).T, merged, rtol=0, atol=0)   # raster order of the merged grid
    inputs = adapter.prepare(f, r, PROMPT, tokens=9)
    want = torch.from_numpy(r.gather_features(grid.numpy())[inputs["token_index"]])
    at = inputs["input_ids"][0] == adapter.image_token_id
    torch.testing.assert_close(inputs["inputs_embeds"][0, at], want)


def test_same_allocation_same_logits(adapter):
    f = frame(2)
    r = pipeline().process(f)
    a = adapter.logits(adapter.prepare(f, r, PROMPT))
    b = adapter.logits(adapter.prepare(f, r, PROMPT))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    c = adapter.logits(adapter.prepare(f, r, PROMPT, tokens=3))        # another allocation, another view
    assert c.shape[1] < a.shape[1]
    assert not torch.allclose(c[0, -1], a[0, -1])  # and another next-token prediction


@pytest.mark.parametrize("kind", ["qwen2_vl", "qwen2_5_vl"])
def test_all_cells_kept_is_the_stock_model(adapters, kind):
    """One level-0 gestalt token per merged cell keeps every cell with its own feature: the adapter's
    input must then be the stock input, and its logits and greedy tokens the stock model's."""
    ad = adapters[kind]
    f = frame(3)
    r = pipeline(gestalt_x=5, gestalt_y=3, gestalt_lod=400, saccades=0).process(f)
    inputs = ad.prepare(f, r, PROMPT)
    stock = stock_inputs(ad, f)
    assert inputs["num_visual_tokens"] == 15
    torch.testing.assert_close(inputs["input_ids"], stock["input_ids"], rtol=0, atol=0)
    with torch.no_grad():
        want = ad.model(**stock).logits
    torch.testing.assert_close(ad.logits(inputs), want, rtol=1e-5, atol=1e-5)
    # The check can tell: the same tokens at renumbered (1-D) positions give other logits.
    plain = dict(inputs, position_ids=torch.arange(inputs["input_ids"].shape[1]).view(1, 1, -1).expand(3, 1, -1))
    assert not torch.allclose(ad.logits(plain), want, rtol=1e-3, atol=1e-3)
    with torch.no_grad():
        stock_new = ad.model.generate(**stock, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    stock_new = stock_new[:, stock["input_ids"].shape[1]:]
    torch.testing.assert_close(ad.generate_ids(inputs, 4, min_new_tokens=4), stock_new, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["qwen2_vl", "qwen2_5_vl"])
def test_decoding_continues_at_the_right_positions(adapters, kind):
    """generate on a pruned prompt against a plain greedy loop that places each new token at
    length + rope_deltas on all three axes (no cache: every step is a full forward)."""
    ad = adapters[kind]
    f = frame(4)
    r = pipeline().process(f)
    inputs = ad.prepare(f, r, PROMPT, tokens=10)
    n_new = 4
    got = ad.generate_ids(inputs, n_new, min_new_tokens=n_new)[0]
    embeds, positions = inputs["inputs_embeds"], inputs["position_ids"]
    delta = int(inputs["rope_deltas"])
    want = []
    with torch.no_grad():
        for _ in range(n_new):
            logits = ad.model(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
                              position_ids=positions).logits[0, -1]
            logits[ad.model.config.text_config.eos_token_id] = -float("inf")   # as min_new_tokens does
            token = int(logits.argmax())
            want.append(token)
            nxt = torch.full((3, 1, 1), positions.shape[-1] + delta, dtype=positions.dtype)
            positions = torch.cat([positions, nxt], dim=-1)
            embeds = torch.cat([embeds, ad.model.get_input_embeddings()(torch.tensor([[token]]))], dim=1)
    assert got.tolist() == want


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_greedy_generation(qwen_dirs, attn):
    ad = make_adapter(f"qwen2_vl:{qwen_dirs['qwen2_vl']}", device="cpu", attn_implementation=attn, tokens=8)
    assert ad.model.config._attn_implementation == attn
    f = frame(3)
    r = pipeline().process(f)
    inputs = ad.prepare(f, r, "what is on the left ?")
    assert inputs["num_visual_tokens"] == 8
    out = ad.generate(inputs, max_new_tokens=4)
    assert isinstance(out, str)
    assert out == ad.generate(inputs, max_new_tokens=4)  # greedy: deterministic


def test_pixel_budget_follows_the_processor(qwen_dirs, adapter):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    f = frame()
    h, w = smart_resize(H, W, 28, MIN_PIXELS, MAX_PIXELS)              # the saved processor's budget
    assert tuple(adapter.vision_features(f).shape[1:]) == (h // 28, w // 28) == (3, 5)
    small = make_adapter(f"qwen2_vl:{qwen_dirs['qwen2_vl']}", device="cpu", max_pixels=28 * 28 * 4)
    h, w = smart_resize(H, W, 28, MIN_PIXELS, 28 * 28 * 4)
    assert tuple(small.vision_features(f).shape[1:]) == (h // 28, w // 28) != (3, 5)
    r = pipeline().process(f)
    inputs = small.prepare(f, r, PROMPT)
    assert int(inputs["cells"].max()) < (h // 28) * (w // 28)


def test_errors(tmp_path, qwen_dirs, adapter):
    with pytest.raises(ValueError, match="does not exist"):
        make_adapter(f"qwen2_vl:{tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="not 'qwen2_5_vl'"):
        make_adapter(f"qwen2_5_vl:{qwen_dirs['qwen2_vl']}")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"model_type": "llava"}')
    with pytest.raises(ValueError, match="not 'qwen2_vl'"):
        make_adapter(f"qwen2_vl:{tmp_path / 'other'}")
    f = frame()
    r = pipeline().process(f)
    with pytest.raises(ValueError, match="tokens"):
        adapter.prepare(f, r, PROMPT, tokens=0)
    with pytest.raises(ValueError, match="not the frame"):
        adapter.prepare(f[:50], r, PROMPT)
    with pytest.raises(ValueError, match="image token"):
        adapter.prepare(f, r, "what is <|image_pad|> ?")


def test_a_stream_answers_with_qwen(qwen_dirs):
    stream = arrcoc_rt.Stream(device="cpu", vlm=f"qwen2_vl:{qwen_dirs['qwen2_vl']}", gestalt_x=4, gestalt_y=3,
                              saccades=12)
    for i in range(2):
        stream.process(frame(i))
    a = stream.ask(PROMPT, max_new_tokens=3)
    b = stream.ask(PROMPT, max_new_tokens=3, asynchronous=True).result(timeout=60)  # gathered from a copy
    assert isinstance(a.text, str) and a.frame_index == 1 and a.visual_tokens > 0
    assert b.text == a.text and b.visual_tokens == a.visual_tokens
    stream.close()


# ----------------------------------------------------------------------------- the last k frames


def stock_video_inputs(ad, frames, prompt=PROMPT):
    """The stock model's input for one video whose temporal patches are these frames (each frame
    filling its patch, as the image processor does for a still image), built by hand as
    stock_inputs is: pixel_values_videos, video_grid_thw [[k, gh, gw]], one video token per merged
    cell of each patch, modality 2 on them."""
    from transformers import AutoImageProcessor

    proc = AutoImageProcessor.from_pretrained(ad.model.name_or_path, local_files_only=True)
    images = [proc(images=[f], return_tensors="pt") for f in frames]
    _, gh, gw = images[0]["image_grid_thw"][0].tolist()
    n = len(frames) * gh * gw // 4
    text = ad.template.replace("{prompt}", prompt).replace("<image>", "<|video_pad|>" * n)
    ids = ad.tokenizer(text, return_tensors="pt")
    return {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"],
            "pixel_values_videos": torch.cat([im["pixel_values"] for im in images]),
            "video_grid_thw": torch.tensor([[len(frames), gh, gw]]),
            "mm_token_type_ids": (ids["input_ids"] == ad.video_token_id).int() * 2}


@pytest.mark.parametrize("kind", ["qwen2_vl", "qwen2_5_vl"])
def test_frames_with_every_cell_kept_are_the_stock_video(adapters, kind):
    """Three frames, every merged cell kept at level 0: the input ids, the logits and 4 greedy tokens
    equal the stock model's on the k-patch video; the temporal position is the frame's index."""
    ad = adapters[kind]
    frames = [frame(s) for s in (5, 6, 7)]
    pipe = pipeline(gestalt_x=5, gestalt_y=3, gestalt_lod=400, saccades=0)
    results = [PackSnapshot(pipe.process(f)) for f in frames]
    inputs = ad.prepare_frames(frames, results, PROMPT)
    stock = stock_video_inputs(ad, frames)
    assert inputs["num_visual_tokens"] == 3 * 15 and inputs["frame_tokens"] == [15, 15, 15]
    torch.testing.assert_close(inputs["input_ids"], stock["input_ids"], rtol=0, atol=0)
    full, _ = ad.model.model.get_rope_index(stock["input_ids"], mm_token_type_ids=stock["mm_token_type_ids"],
                                            video_grid_thw=stock["video_grid_thw"],
                                            attention_mask=stock["attention_mask"])
    torch.testing.assert_close(inputs["position_ids"], full, rtol=0, atol=0)
    at = torch.nonzero(inputs["input_ids"][0] == ad.video_token_id)[:, 0]
    t = inputs["position_ids"][0, 0, at] - inputs["position_ids"][0, 0, at[0]]
    step = 1 if kind == "qwen2_vl" else ad.model.config.vision_config.tokens_per_second  # 1 s per patch
    assert t.tolist() == [i * step for i in range(3) for _ in range(15)]
    with torch.no_grad():
        want = ad.model(**stock).logits
    torch.testing.assert_close(ad.logits(inputs), want, rtol=1e-5, atol=1e-5)
    one_t = dict(inputs, position_ids=inputs["position_ids"].clone())
    one_t["position_ids"][0, 0, at] = inputs["position_ids"][0, 0, at[0]]  # every frame at t = 0: the check can tell
    assert not torch.allclose(ad.logits(one_t), want, rtol=1e-3, atol=1e-3)
    with torch.no_grad():
        stock_new = ad.model.generate(**stock, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    stock_new = stock_new[:, stock["input_ids"].shape[1]:]
    torch.testing.assert_close(ad.generate_ids(inputs, 4, min_new_tokens=4), stock_new, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["qwen2_vl", "qwen2_5_vl"])
def test_frames_pruned_keep_the_videos_positions(adapters, kind):
    """k frames at tokens=N each: k x N visual tokens reach the language model, each frame's in time
    order and raster order, at the full video's positions of (its frame, its cell); Qwen2.5-VL's
    temporal positions follow seconds_per_frame as get_rope_index's second_per_grid_ts does."""
    ad = adapters[kind]
    frames = [frame(s) for s in (8, 9, 10)]
    pipe = pipeline()
    results = [PackSnapshot(pipe.process(f)) for f in frames]
    spf = 0.5 if kind == "qwen2_5_vl" else None
    probe = LMProbe(ad.model)
    try:
        inputs = ad.prepare_frames(frames, results, PROMPT, tokens=7, seconds_per_frame=spf)
        ad.logits(inputs)
    finally:
        probe.close()
    assert inputs["num_visual_tokens"] == 21 and inputs["frame_tokens"] == [7, 7, 7]
    ids = inputs["input_ids"][0]
    at = torch.nonzero(ids == ad.video_token_id)[:, 0]
    assert len(at) == 21 and probe.lengths == [len(ids)]
    stock = stock_video_inputs(ad, frames)
    kw = {"second_per_grid_ts": torch.tensor([spf])} if spf else {}
    full, full_deltas = ad.model.model.get_rope_index(
        stock["input_ids"], mm_token_type_ids=stock["mm_token_type_ids"], video_grid_thw=stock["video_grid_thw"],
        attention_mask=stock["attention_mask"], **kw)
    first = int(torch.nonzero(stock["input_ids"][0] == ad.video_token_id)[0])
    want = []
    for i, (r, keep, cells) in enumerate(zip(results, inputs["token_index"], inputs["cells"])):
        assert sorted(keep.tolist()) == sorted(kept_tokens(r, 7).tolist())
        pos = np.asarray(r.positions, np.float64)[keep]                 # the cell under each centre, here
        np.testing.assert_array_equal(cells, np.minimum(pos[:, 1] * 3 // H, 2).astype(int) * 5
                                      + np.minimum(pos[:, 0] * 5 // W, 4).astype(int))
        assert np.all(np.diff(cells) >= 0)
        want += (first + i * 15 + cells).tolist()
    got = inputs["position_ids"][:, 0]
    torch.testing.assert_close(got[:, at], full[:, 0, want], rtol=0, atol=0)
    torch.testing.assert_close(got[:, :first], full[:, 0, :first], rtol=0, atol=0)
    n_tail = len(ids) - first - 21
    torch.testing.assert_close(got[:, -n_tail:], full[:, 0, -n_tail:], rtol=0, atol=0)
    assert int(inputs["rope_deltas"]) + len(ids) == int(full_deltas) + stock["input_ids"].shape[1]
    if spf:  # t = index x tokens_per_second x seconds per frame
        tps = ad.model.config.vision_config.tokens_per_second
        assert sorted(set((got[0, at] - got[0, at[0]]).tolist())) == [int(i * tps * spf) for i in range(3)]
    # The embeddings are each frame's gathered merged grid, oldest frame first.
    grids = [ad.vision_features(f) for f in frames]
    gathered = torch.cat([torch.from_numpy(r.gather_features(g.numpy())[k])
                          for r, g, k in zip(results, grids, inputs["token_index"])])
    torch.testing.assert_close(inputs["inputs_embeds"][0, at], gathered)
    small = np.ascontiguousarray(frame(1)[:64, :96])
    r_small = arrcoc_rt.Pipeline(96, 64, device="cpu", gestalt_x=4, gestalt_y=3, saccades=12).process(small)
    with pytest.raises(ValueError, match="one size"):
        ad.prepare_frames([frames[0], small], [results[0], PackSnapshot(r_small)], PROMPT)


def test_a_stream_answers_over_the_last_frames_with_qwen(qwen_dirs):
    """ask(frames=3) on av.VideoFrames (yuv420p, kept by reference) and arrays: 3 x N tokens, the
    frames it saw, the same answer sync and async (from the copies) and as prepare_frames gives."""
    av = pytest.importorskip("av")
    ad = make_adapter(f"qwen2_vl:{qwen_dirs['qwen2_vl']}", device="cpu", tokens=6)
    stream = arrcoc_rt.Stream(device="cpu", vlm=ad, ask_frames=3, gestalt_x=4, gestalt_y=3, saccades=12)
    frames = []
    for i in range(4):
        f = av.VideoFrame.from_ndarray(frame(20 + i), format="rgb24").reformat(format="yuv420p")
        frames.append(f.to_ndarray(format="rgb24"))
        stream.process(f)
    a = stream.ask(PROMPT, frames=3, max_new_tokens=3)
    assert a.frame_indices == (1, 2, 3) and a.frame_index == 3 and a.visual_tokens == 3 * 6
    snaps = [snap for _, snap in stream._window]                       # frames 1, 2, 3
    assert [s.frame_index for s in snaps] == [1, 2, 3]
    future = stream.ask(PROMPT, frames=3, max_new_tokens=3, asynchronous=True)
    stream.process(frame(30))  # the front end moves on (an RGB array: another pixel format, a new window)
    b = future.result(timeout=60)
    assert (b.text, b.frame_indices, b.visual_tokens) == (a.text, a.frame_indices, a.visual_tokens)
    inputs = ad.prepare_frames(frames[1:], snaps, PROMPT)
    assert inputs["num_visual_tokens"] == 18 and ad.generate(inputs, max_new_tokens=3) == a.text
    c = stream.ask(PROMPT, frames=3, max_new_tokens=3)                 # only frame 4 since the change
    assert c.frame_indices == (4,) and c.visual_tokens == 6
    with pytest.raises(ValueError, match="ask_frames=3"):
        stream.ask(PROMPT, frames=4)
    stream.close()


# ----------------------------------------------------------------------------- chosen features (the experiment)


@pytest.mark.parametrize("kind", ["qwen2_vl", "qwen2_5_vl"])
def test_prepare_features_keeps_the_full_grids_positions(adapters, kind):
    """Tokens chosen on the merged grid (pooled, pruned) sit at the full image's positions of the cell
    under each token's centre, in raster order; at every cell in raster order it is prepare's input
    with every cell kept."""
    from arrcoc_rt.experiment.methods import select_all, select_uniform, select_visionzip

    ad = adapters[kind]
    f = frame(11)
    grid = ad.vision_features(f)                                         # [32, 3, 5]
    stock = stock_inputs(ad, f)
    full, full_deltas = full_positions(ad, stock)
    first = int(torch.nonzero(stock["input_ids"][0] == ad.image_token_id)[0])
    # uniform to 3 tokens: 1 x 3 windows rows [0, 3), columns [0, 2), [1, 4), [3, 5): centres (1.0, 1.5),
    # (2.5, 1.5), (4.0, 1.5) -> cells (1, 1), (1, 2), (1, 4)
    for feats, pos, cells in (select_uniform(grid, 3) + ([6, 7, 9],), select_visionzip(grid, 6) + (None,),
                              select_all(grid) + (list(range(15)),)):
        want_cells = (np.floor(pos[:, 1]) * 5 + np.floor(pos[:, 0])).astype(int)
        if cells is not None:
            assert want_cells.tolist() == cells
        inputs = ad.prepare_features(feats, PROMPT, positions=pos, grid=(3, 5))
        n = len(feats)
        assert inputs["num_visual_tokens"] == n
        order = inputs["feature_index"]
        np.testing.assert_array_equal(inputs["cells"], want_cells[order])
        assert np.all(np.diff(inputs["cells"]) >= 0)
        ids = inputs["input_ids"][0]
        at = torch.nonzero(ids == ad.image_token_id)[:, 0]
        assert at.tolist() == list(range(first, first + n))
        got = inputs["position_ids"][:, 0]
        torch.testing.assert_close(got[:, at], full[:, 0, first + torch.from_numpy(inputs["cells"])], rtol=0, atol=0)
        torch.testing.assert_close(got[:, :first], full[:, 0, :first], rtol=0, atol=0)
        assert int(inputs["rope_deltas"]) + len(ids) == int(full_deltas) + stock["input_ids"].shape[1]
        torch.testing.assert_close(inputs["inputs_embeds"][0, at], feats[torch.from_numpy(order)])
    # every cell: the stock model's logits
    with torch.no_grad():
        want = ad.model(**stock).logits
    torch.testing.assert_close(ad.logits(inputs), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="positions"):
        ad.prepare_features(feats, PROMPT)
    with pytest.raises(ValueError, match=r"\[N, 32\]"):
        ad.prepare_features(feats[:, :8], PROMPT, positions=pos, grid=(3, 5))
    # a trial passed a pack's pixel positions: every token fell on the last cell, silently
    with pytest.raises(ValueError, match="off the 3 x 5 grid"):
        ad.prepare_features(feats, PROMPT, positions=pos * 28, grid=(3, 5))
    with pytest.raises(ValueError, match="NaN or inf"):
        ad.prepare_features(feats * float("nan"), PROMPT, positions=pos, grid=(3, 5))
