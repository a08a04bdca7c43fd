"""arrcoc_rt.vlm: a tiny random LLaVA (built here, loaded through the adapter) fed with token packs."""

import ast
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import arrcoc_rt  # noqa: E402
from arrcoc_rt.vlm import kept_tokens, make_adapter  # noqa: E402

W, H = 128, 96


@pytest.fixture(scope="module")
def adapter(llava_dir):
    return make_adapter(f"llava:{llava_dir}", device="cpu")


def frame(seed=0):
    rng = np.random.default_rng(seed)
    f = (rng.random((H, W, 3)) * 60).astype(np.uint8)
    f[20:60, 70:110] = (220, 30, 30)  # something to look at
    return f


def pipeline(strategy="balanced"):
    return arrcoc_rt.Pipeline(W, H, device="cpu", strategy=strategy, gestalt_x=4, gestalt_y=3, saccades=12)


class LMProbe:
    """Records the sequence the language model and the projector actually receive."""

    def __init__(self, model):
        self.lm_lengths, self.projected = [], []
        self.hooks = [model.model.language_model.register_forward_pre_hook(self._lm, with_kwargs=True),
                      model.model.multi_modal_projector.register_forward_pre_hook(self._proj)]

    def _lm(self, module, args, kwargs):
        e = kwargs.get("inputs_embeds")
        self.lm_lengths.append(e.shape[1])

    def _proj(self, module, args):
        self.projected.append(args[0].shape[-2])

    def close(self):
        for h in self.hooks:
            h.remove()


@pytest.mark.parametrize("strategy", ["balanced", "random", "saliency"])
def test_visual_token_count_reaches_language_model(adapter, strategy):
    pipe = pipeline(strategy)
    f = frame()
    r = pipe.process(f)
    kinds = np.asarray(r.kinds)
    n_kept = int(np.sum(kinds >= 0))
    assert n_kept > 12  # gestalt plus some saccades
    probe = LMProbe(adapter.model)
    try:
        for tokens, expected in ((None, n_kept), (5, 5), (n_kept + 100, n_kept)):
            inputs = adapter.prepare(f, r, "what is here ?", tokens=tokens)
            assert inputs["num_visual_tokens"] == expected
            n_image = int((inputs["input_ids"] == adapter.image_token_id).sum())
            assert n_image == expected
            adapter.logits(inputs)
            assert probe.projected[-1] == expected                    # visual tokens projected
            text_len = inputs["input_ids"].shape[1] - expected
            assert probe.lm_lengths[-1] == text_len + expected         # and reaching the LM
    finally:
        probe.close()
    # Gestalt first, then the best saccades: tokens=N is a prefix of the pack's kept order.
    keep = kept_tokens(r)
    assert np.all(kinds[keep[:12]] == 0) and np.all(kinds[keep[12:]] == 1)
    np.testing.assert_array_equal(adapter.prepare(f, r, "what", tokens=14)["token_index"], keep[:14])


def test_features_are_the_gathered_grid(adapter):
    pipe = pipeline()
    f = frame(1)
    r = pipe.process(f)
    grid = adapter.vision_features(f)
    assert tuple(grid.shape) == (32, 4, 4) and grid.dtype == torch.float32   # 56 / 14 = 4; CLIP width 32
    inputs = adapter.prepare(f, r, "what is here ?", tokens=7)
    keep = inputs["token_index"]
    gathered = torch.from_numpy(r.gather_features(grid.numpy())[keep])
    with torch.no_grad():
        want = adapter.model.model.multi_modal_projector(gathered[None])[0]
    at = inputs["input_ids"][0] == adapter.image_token_id
    torch.testing.assert_close(inputs["inputs_embeds"][0, at], want)


def test_same_allocation_same_logits(adapter):
    pipe = pipeline()
    f = frame(2)
    r = pipe.process(f)
    a = adapter.logits(adapter.prepare(f, r, "what is here ?"))
    b = adapter.logits(adapter.prepare(f, r, "what is here ?"))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # A different allocation (fewer tokens) changes the model's view.
    c = adapter.logits(adapter.prepare(f, r, "what is here ?", tokens=3))
    assert c.shape[1] < a.shape[1]
    assert not torch.allclose(c[0, -1], a[0, -1])  # and another next-token prediction


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_greedy_generation(llava_dir, attn):
    ad = make_adapter(f"llava:{llava_dir}", device="cpu", attn_implementation=attn, tokens=8)
    assert ad.model.config._attn_implementation == attn
    pipe = pipeline()
    f = frame(3)
    r = pipe.process(f)
    inputs = ad.prepare(f, r, "what is on the left ?")
    assert inputs["num_visual_tokens"] == 8
    # A call's own tokens= overrides the adapter's cap; 'all' lifts it (None keeps the adapter's).
    assert ad.prepare(f, r, "what", tokens=5)["num_visual_tokens"] == 5
    assert ad.prepare(f, r, "what", tokens=None)["num_visual_tokens"] == 8
    assert ad.prepare(f, r, "what", tokens="all")["num_visual_tokens"] == int((np.asarray(r.kinds) >= 0).sum()) > 8
    with pytest.raises(ValueError, match="tokens"):
        ad.prepare(f, r, "what", tokens="most")
    out = ad.generate(inputs, max_new_tokens=4)
    assert isinstance(out, str)
    assert out == ad.generate(inputs, max_new_tokens=4)  # greedy: deterministic


def test_errors(tmp_path, adapter):
    with pytest.raises(ValueError, match="does not exist"):
        make_adapter(f"llava:{tmp_path / 'missing'}")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"model_type": "clip"}')
    with pytest.raises(ValueError, match="not 'llava'"):
        make_adapter(f"llava:{tmp_path / 'other'}")
    with pytest.raises(ValueError, match="not supported"):
        make_adapter("llava_onevision:/x")  # a kind with no adapter (llava_next and qwen2_vl have one)
    pipe = pipeline()
    f = frame()
    r = pipe.process(f)
    with pytest.raises(ValueError, match="tokens"):
        adapter.prepare(f, r, "what", tokens=0)
    with pytest.raises(ValueError, match="not the frame"):
        adapter.prepare(f[:50], r, "what")


def test_a_stream_answers_questions_sync_and_async(llava_dir, adapter):
    stream = arrcoc_rt.Stream(device="cpu", vlm=f"llava:{llava_dir}", gestalt_x=4, gestalt_y=3, saccades=12)
    with pytest.raises(ValueError, match="no frame processed yet"):
        stream.ask("what is here ?")
    for i in range(3):
        stream.process(frame(i))
    a = stream.ask("what is here ?", max_new_tokens=4)
    assert isinstance(a.text, str) and a.frame_index == 2 and a.visual_tokens > 0
    assert a.latency_ms["total"] >= a.latency_ms["generate"] > 0
    assert a.latency_ms["prefill"] > 0 and a.latency_ms["decode"] >= 0  # split by the first token's logits
    assert a.latency_ms["prefill"] + a.latency_ms["decode"] <= a.latency_ms["generate"] + 1e-6
    future = stream.ask("what is here ?", max_new_tokens=4, asynchronous=True)
    stream.process(frame(5))  # the front end moves on while the model answers about frame 2
    b = future.result(timeout=60)
    assert b.frame_index == 2 and b.text == a.text and b.visual_tokens == a.visual_tokens
    last = stream.ask("what is here ?", max_new_tokens=4)
    stream.close()  # frees the pipeline; a question about the last frame is still answered (from a copy)
    after = stream.ask("what is here ?", max_new_tokens=4)
    assert (after.frame_index, after.text, after.visual_tokens) == (last.frame_index, last.text, last.visual_tokens)
    assert stream.ask("what is here ?", max_new_tokens=2, passes=2).frame_index == last.frame_index
    with pytest.raises(ValueError, match="closed"):
        stream.ask("what is here ?", asynchronous=True)
    stream.reset()  # nothing to forget: no error
    plain = arrcoc_rt.Stream(device="cpu")
    plain.process(frame(0))
    with pytest.raises(ValueError, match="has no VLM"):
        plain.ask("what ?")
    hooked = arrcoc_rt.Stream(device="cpu", vlm=lambda r: None)  # a per-frame hook answers no questions
    hooked.process(frame(0))
    with pytest.raises(ValueError, match="vlm= is a callable"):
        hooked.ask("what ?")
    live = arrcoc_rt.Stream(device="cpu", vlm=adapter)
    live.process(frame(0))
    with pytest.raises(ValueError, match="max_new_tokens"):  # were accepted silently
        live.ask("what ?", max_new_tokens="3")
    with pytest.raises(TypeError, match="asynchronous"):
        live.ask("what ?", asynchronous="yes")
    live.close()


def test_frames_are_the_stock_multi_image_input(llava_dir, adapter):
    """Three frames, every cell of the 4 x 4 grid kept at level 0: the prompt holds one image-token
    block per frame in time order, frame_separator between blocks, and the logits are the stock
    model's on the same ids with the three frames' pixels (LLaVA's own multi-image path)."""
    from arrcoc_rt.vlm.base import PackSnapshot

    frames = [frame(s) for s in (5, 6, 7)]
    pipe = arrcoc_rt.Pipeline(W, H, device="cpu", gestalt_x=4, gestalt_y=4, gestalt_lod=400, saccades=0)
    results = [PackSnapshot(pipe.process(f)) for f in frames]
    sep = make_adapter(f"llava:{llava_dir}", device="cpu", frame_separator="on")
    pixels = torch.cat([adapter.pixel_values(f) for f in frames])
    for ad, sep_ids in ((adapter, []), (sep, [sep.tokenizer.convert_tokens_to_ids("on")])):
        inputs = ad.prepare_frames(frames, results, "what is here ?")
        assert inputs["num_visual_tokens"] == 48 and inputs["frame_tokens"] == [16, 16, 16]
        ids = inputs["input_ids"][0].tolist()
        text = ad._prompt_ids("what is here ?", 0)[0].tolist()             # the template, no image tokens
        block = [ad.image_token_id] * 16
        start, end = ids.index(ad.image_token_id), len(ids) - len(text) + ids.index(ad.image_token_id)
        assert ids[start:end] == block + sep_ids + block + sep_ids + block
        assert ids[:start] + ids[end:] == text
        with torch.no_grad():
            want = ad.model(input_ids=inputs["input_ids"], pixel_values=pixels,
                            attention_mask=inputs["attention_mask"]).logits
        torch.testing.assert_close(ad.logits(inputs), want, rtol=1e-5, atol=1e-5)
    # Frames out of order give other logits: the check can tell.
    swapped = adapter.prepare_frames(frames[::-1], results[::-1], "what is here ?")
    assert not torch.allclose(adapter.logits(swapped), adapter.logits(adapter.prepare_frames(frames, results,
                                                                                             "what is here ?")))
    with pytest.raises(ValueError, match="results"):
        adapter.prepare_frames(frames, results[:2], "what")


def test_a_stream_answers_over_the_last_frames(llava_dir):
    """ask(frames=3): 3 x tokens visual tokens reach the language model, from frames 2-4, sync and
    async (the async answer from the window's copies while the stream moves on)."""
    ad = make_adapter(f"llava:{llava_dir}", device="cpu", tokens=5)
    stream = arrcoc_rt.Stream(device="cpu", vlm=ad, ask_frames=3, gestalt_x=4, gestalt_y=3, saccades=12)
    stream.process(frame(0))
    assert stream.ask("what is here ?", frames=3, max_new_tokens=2).frame_indices == (0,)   # one frame so far
    for i in range(1, 5):
        stream.process(frame(i))
    probe = LMProbe(ad.model)
    try:
        a = stream.ask("what is here ?", frames=3, max_new_tokens=2)
    finally:
        probe.close()
    assert a.frame_indices == (2, 3, 4) and a.frame_index == 4 and a.visual_tokens == 15
    assert probe.projected[0] == 15 and probe.lm_lengths[0] == len(ad._prompt_ids("what is here ?", [5, 5, 5])[0])
    future = stream.ask("what is here ?", frames=3, max_new_tokens=2, asynchronous=True)
    stream.process(frame(5))
    b = future.result(timeout=60)
    assert (b.text, b.frame_indices, b.visual_tokens) == (a.text, a.frame_indices, a.visual_tokens)
    assert stream.ask("what is here ?", frames=3, max_new_tokens=2).frame_indices == (3, 4, 5)
    with pytest.raises(ValueError, match="ask_frames=3"):
        stream.ask("what is here ?", frames=4)
    with pytest.raises(ValueError, match="ask_frames"):
        arrcoc_rt.Stream(device="cpu", vlm=ad, ask_frames=0)
    stream.close()


def test_cli_ask_and_run_with_questions(llava_dir, tmp_path):
    import subprocess
    import sys

    from PIL import Image

    Image.fromarray(frame(0)).save(tmp_path / "f.png")
    out = subprocess.run([sys.executable, "-m", "arrcoc_rt.cli", "ask", str(tmp_path / "f.png"), "what is here ?",
                          "--vlm", f"llava:{llava_dir}", "--device", "cpu", "--tokens", "6", "--max-new-tokens", "3"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "(6 visual tokens;" in out.stderr
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(frame(i)).save(folder / f"{i:02d}.png")
    out = subprocess.run([sys.executable, "-m", "arrcoc_rt.cli", "run", str(folder), "--vlm", f"llava:{llava_dir}",
                          "--ask", "what is here ?", "--every", "2", "--device", "cpu", "--quiet"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("visual tokens") == 2 and "frame 0:" in out.stdout and "frame 2:" in out.stdout


def test_cli_run_asks_over_the_last_frames(llava_dir, tmp_path, capsys):
    from PIL import Image

    from arrcoc_rt.cli import main

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(frame(i)).save(folder / f"{i:02d}.png")
    rc = main(["run", str(folder), "--vlm", f"llava:{llava_dir}", "--ask", "what is here ?", "--every", "3",
               "--frames", "2", "--device", "cpu", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    lines = [line for line in out.splitlines() if "visual tokens" in line]
    assert len(lines) == 2 and lines[0].startswith("frame 0:") and lines[1].startswith("frame 3:")
    assert "over" not in lines[0] and "visual tokens over 2 frames" in lines[1]
    # the answers go into the JSONL too, on the frames they were asked on (they went to stdout only)
    jsonl = tmp_path / "t.jsonl"
    assert main(["run", str(folder), "--vlm", f"llava:{llava_dir}", "--ask", "what is here ?", "--every", "3",
                 "--frames", "2", "--device", "cpu", "--quiet", "--jsonl", str(jsonl)]) == 0
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    asked = {r["frame"]: r["answer"] for r in records if "answer" in r}
    assert sorted(asked) == [0, 3] and asked[3]["frame_indices"] == [2, 3] and asked[3]["visual_tokens"] > 0
    printed = [line.split(": ", 1)[1].rsplit(" (", 1)[0] for line in capsys.readouterr().out.splitlines()
               if "visual tokens" in line]  # frame N: 'text' (...)
    assert [a["text"] for a in asked.values()] == [ast.literal_eval(text) for text in printed]
    assert main(["run", str(folder), "--frames", "2", "--device", "cpu", "--quiet"]) == 2
    assert "--frames" in capsys.readouterr().err
    # --tokens caps what the model sees per frame, as `ask --tokens` does.
    assert main(["run", str(folder), "--vlm", f"llava:{llava_dir}", "--ask", "what is here ?", "--every", "3",
                 "--tokens", "4", "--device", "cpu", "--quiet"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "visual tokens" in line]
    assert len(lines) == 2 and all("(4 visual tokens" in line for line in lines), lines
    for bad in (["--tokens", "0", "--vlm", f"llava:{llava_dir}", "--ask", "q"], ["--tokens", "4"]):
        assert main(["run", str(folder), "--device", "cpu", "--quiet", *bad]) == 2
        assert "--tokens" in capsys.readouterr().err


def test_a_token_cap_below_the_gestalt_grid_still_covers_the_frame():
    """tokens=N below the G gestalt tokens keeps N of them spread over the whole frame (it kept the
    first N in raster order: the top rows only, the rest of the frame hidden); at N >= G, every
    gestalt token and the best saccades, as before."""
    pipe = arrcoc_rt.Pipeline(256, 256, device="cpu", gestalt_x=16, gestalt_y=16, saccades=20,
                              total_budget=16 * 16 * 64 + 20 * 400)
    r = pipe.process(frame().repeat(3, axis=0).repeat(2, axis=1)[:256, :256])
    kinds, pos = np.asarray(r.kinds), np.asarray(r.positions)
    gestalt = np.flatnonzero(kinds == 0)
    assert len(gestalt) == 256
    cell = lambda k: (int(pos[k, 1] // 16), int(pos[k, 0] // 16))  # noqa: E731 (row, column) of a 16-px cell
    for n in (4, 16, 64):  # each 2^m x 2^m block of the grid holds exactly one kept token
        keep = kept_tokens(r, n)
        assert len(keep) == n and np.all(kinds[keep] == 0) and np.all(np.diff(keep) > 0)
        block = 16 // int(np.sqrt(n))
        counts = np.zeros((16 // block, 16 // block), int)
        for k in keep:
            i, j = cell(k)
            counts[i // block, j // block] += 1
        assert np.all(counts == 1), (n, counts)
    keep = kept_tokens(r, 144)  # the docs' old example: 144 of 256
    rows = {cell(k)[0] for k in keep}
    assert len(keep) == 144 and rows == set(range(16)), sorted(rows)
    full = kept_tokens(r)
    assert np.all(kinds[full[:256]] == 0) and np.all(kinds[full[256:]] == 1)
    np.testing.assert_array_equal(kept_tokens(r, 260), full[:260])
    np.testing.assert_array_equal(kept_tokens(r, 10_000), full)


def test_user_mistakes_are_named_before_the_model_loads(llava_dir, adapter):
    """Wrong device and dtype strings, an empty checkpoint path, a PIL image or None where a frame
    or result goes, a channels-first frame and features of the wrong width: each a ValueError or
    TypeError naming the argument (were torch's RuntimeError / AttributeError after the model had
    loaded, or a matrix-shape error from inside the projector)."""
    from PIL import Image

    for device in ("gpu", "cuda:x", 3):
        with pytest.raises(ValueError, match=r"device: .*expected 'auto', 'cpu', 'cuda' or 'cuda:N'"):
            make_adapter(f"llava:{llava_dir}", device=device)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no usable CUDA device"):
            make_adapter(f"llava:{llava_dir}", device="cuda")
        assert make_adapter(f"llava:{llava_dir}", device="auto").device.type == "cpu"
    with pytest.raises(ValueError, match="dtype: 'fp16' is not supported; expected one of float32"):
        make_adapter(f"llava:{llava_dir}", device="cpu", dtype="fp16")
    with pytest.raises(TypeError, match="dtype"):
        make_adapter(f"llava:{llava_dir}", device="cpu", dtype=torch.int8)
    with pytest.raises(ValueError, match="needs a checkpoint folder"):
        make_adapter("llava:")
    pipe = pipeline()
    f = frame()
    r = pipe.process(f)
    with pytest.raises(TypeError, match=r"frame: .*got Image.*np.asarray\(image\)"):
        adapter.prepare(Image.fromarray(f), r, "what")
    with pytest.raises(TypeError, match="result: expected the FrameResult"):
        adapter.prepare(f, None, "what")
    import av  # an av.VideoFrame, as arrcoc_rt.open yields, is the picture it holds (it was refused)

    vf = av.VideoFrame.from_ndarray(f, format="rgb24")
    torch.testing.assert_close(adapter.prepare(vf, r, "what")["inputs_embeds"], adapter.prepare(f, r, "what")["inputs_embeds"])
    with pytest.raises(ValueError, match="channels-first"):
        adapter.prepare(np.ascontiguousarray(f.transpose(2, 0, 1)), r, "what")
    with pytest.raises(ValueError, match=r"features: expected \[N, 32\]"):
        adapter.prepare_features(np.zeros((3, 7), np.float32), "what")
    with pytest.raises(ValueError, match="NaN or inf"):
        adapter.prepare_features(np.full((3, 32), np.nan, np.float32), "what")
