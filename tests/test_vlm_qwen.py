"""arrcoc_rt.vlm: tiny random Qwen2-VL / Qwen2.5-VL models (built here, loaded through the adapter)
fed with token packs; positions checked against the model's own get_rope_index and stock forward."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import arrcoc_rt  # noqa: E402
from arrcoc_rt.vlm import kept_tokens, make_adapter  # noqa: E402

W, H = 128, 96
PROMPT = "what is here ?"
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
           "<|video_pad|>"]
WORDS = ["system", "user", "assistant", "You", "are", "a", "helpful", "assistant.", "what", "is", "here", "?", "red",
         "square", "the", "on", "left"]
VOCAB = {"<unk>": 0, **{w: i + 1 for i, w in enumerate(SPECIAL + WORDS)}}
# The processor's pixel budget for the tiny models: a 128 x 96 frame becomes 140 x 84 pixels,
# 10 x 6 patches of 14 px, a 5 x 3 merged grid.
MIN_PIXELS, MAX_PIXELS = 28 * 28 * 4, 28 * 28 * 15


def build_checkpoint(path, kind):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2VLImageProcessorPil

    torch.manual_seed(0 if kind == "qwen2_vl" else 1)
    text = dict(vocab_size=len(VOCAB), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                initializer_range=0.3,  # sharp enough attention that wrong positions change the logits
                # head_dim 16: 8 rotary frequencies split over (t, h, w)
                rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
                bos_token_id=VOCAB["<|endoftext|>"], eos_token_id=VOCAB["<|im_end|>"],
                pad_token_id=VOCAB["<|endoftext|>"])
    ids = dict(image_token_id=VOCAB["<|image_pad|>"], video_token_id=VOCAB["<|video_pad|>"],
               vision_start_token_id=VOCAB["<|vision_start|>"], vision_end_token_id=VOCAB["<|vision_end|>"])
    merge = dict(patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    if kind == "qwen2_vl":
        cfg = transformers.Qwen2VLConfig(
            vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, **merge),
            text_config=text, **ids)
        model = transformers.Qwen2VLForConditionalGeneration(cfg)
    else:  # window attention over 2 x 2 merged cells, then one full-attention block
        cfg = transformers.Qwen2_5_VLConfig(
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                               window_size=56, fullatt_block_indexes=[1], **merge),
            text_config=text, **ids)
        model = transformers.Qwen2_5_VLForConditionalGeneration(cfg)
    model.eval().save_pretrained(path)
    tok = Tokenizer(models.WordLevel(VOCAB, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<|endoftext|>", eos_token="<|im_end|>",
                            additional_special_tokens=SPECIAL).save_pretrained(path)
    Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def qwen_dirs(tmp_path_factory):
    return {kind: build_checkpoint(tmp_path_factory.mktemp(kind), kind) for kind in ("qwen2_vl", "qwen2_5_vl")}


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
