"""arrcoc-rt experiment: the VQA metric, the dataset readers (VQAv2 / TextVQA official layouts,
our JSONL), the token selections, the seeds' decision rules, exact visual-token counts reaching the
language model, and the command end to end on a tiny random LLaVA and the built-in synthetic set."""

import json
from pathlib import Path

import numpy as np
import pytest

from arrcoc_rt.experiment import data as D
from arrcoc_rt.experiment.report import build_result, format_report, verdicts
from arrcoc_rt.experiment.vqa import normalize_answer, vqa_accuracy

# ----------------------------------------------------------------------------- the VQA metric (no torch)


@pytest.mark.parametrize("text, want", [
    ("Two", "2"), ("the Red car.", "red car"), ("A dog!", "dog"), ("dont", "don't"), ("hot-dog", "hot dog"),
    ("1,000", "1000"), ("2.5", "2.5"), ("yes.", "yes"), ("  Yes\n", "yes"), ("an apple, a pear", "apple pear"),
    ("ten", "10"), ("none", "0"), ("well", "well"), ("whats that?", "what's that"),
])
def test_answer_normalization(text, want):
    assert normalize_answer(text) == want


def test_vqa_accuracy_known_cases():
    ten = lambda k, hit="2", miss="3": [hit] * k + [miss] * (10 - k)  # noqa: E731
    # min(#matching / 3, 1) averaged over the ten leave-one-out subsets: k of 10 references match
    for k, want in ((0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)):
        assert vqa_accuracy("two", ten(k)) == pytest.approx(want)
    assert vqa_accuracy("The two.", ten(3)) == pytest.approx(0.9)  # normalized before matching
    assert vqa_accuracy("Red", ["red"]) == 1.0 and vqa_accuracy("red car", ["red"]) == 0.0  # exact match
    assert vqa_accuracy("blue", ["red", "Blue!"]) == 1.0
    assert vqa_accuracy("x", ["x", "x", "y"]) == pytest.approx((1 / 3 + 1 / 3 + 2 / 3) / 3)
    with pytest.raises(ValueError):
        vqa_accuracy("x", [])


# ----------------------------------------------------------------------------- readers


def _jpeg(path, w, h, seed):
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(path)


def _vqav2(root):
    (root / "val2014").mkdir(parents=True)
    questions = {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "license": {},
                 "data_subtype": "val2014",
                 "questions": [{"image_id": 42, "question": "What color is the bus?", "question_id": 42000},
                               {"image_id": 42, "question": "How many wheels?", "question_id": 42001},
                               {"image_id": 7, "question": "Is it raining?", "question_id": 7000}]}
    answers = {42000: ["red"] * 6 + ["dark red"] * 4, 42001: ["4"] * 9 + ["four"], 7000: ["no"] * 10}
    types = {42000: "other", 42001: "number", 7000: "yes/no"}
    annotations = {"info": {}, "license": {}, "data_subtype": "val2014", "annotations": [
        {"question_id": qid, "image_id": qid // 1000, "question_type": "what", "answer_type": types[qid],
         "multiple_choice_answer": a[0],
         "answers": [{"answer": x, "answer_confidence": "yes", "answer_id": i + 1} for i, x in enumerate(a)]}
        for qid, a in answers.items()]}
    (root / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps(questions))
    (root / "v2_mscoco_val2014_annotations.json").write_text(json.dumps(annotations))
    _jpeg(root / "val2014" / "COCO_val2014_000000000042.jpg", 200, 150, 0)
    _jpeg(root / "val2014" / "COCO_val2014_000000000007.jpg", 120, 160, 1)   # another size, portrait


def test_vqav2_reader(tmp_path):
    _vqav2(tmp_path)
    qs = D.load_dataset(f"vqav2:{tmp_path}")
    assert [q.id for q in qs] == ["42000", "42001", "7000"]
    q = qs[0]
    assert q.question == "What color is the bus?" and len(q.answers) == 10 and q.answers.count("dark red") == 4
    assert q.dataset == "vqav2" and q.kind == "other" and qs[1].kind == "number"
    assert q.source["image"].endswith("val2014/COCO_val2014_000000000042.jpg")
    assert q.load_frames()[0].shape == (150, 200, 3) and not q.is_video
    assert vqa_accuracy("Four", qs[1].answers) == 1.0
    assert D.thresholds_for(qs) == ("vqav2", (2.0, 5.0))
    picked = D.sample(qs, 2, seed=0)
    assert len(picked) == 2 and picked == D.sample(qs, 2, seed=0) and D.sample(qs, 5, seed=0) == qs
    (tmp_path / "val2014" / "COCO_val2014_000000000007.jpg").unlink()
    with pytest.raises(D.DatasetError, match="does not exist"):
        D.check_files(qs)
    with pytest.raises(D.DatasetError, match="no image folder"):
        D.load_dataset(f"vqav2:{tmp_path}", split="test2015")
    with pytest.raises(D.DatasetError, match="questions: .*test2015_questions.json' does not exist"):
        D.load_dataset(f"vqav2:{tmp_path}", split="test2015", images=tmp_path / "val2014")


def test_textvqa_reader(tmp_path):
    (tmp_path / "train_images").mkdir()
    entries = [{"question": "what brand is this?", "image_id": "003a8ae2ef43b901", "image_classes": ["Bottle"],
                "flickr_original_url": "", "flickr_300k_url": "", "image_width": 100, "image_height": 80,
                "answers": ["coca cola"] * 7 + ["coke"] * 3, "question_tokens": ["what", "brand", "is", "this"],
                "question_id": 34602, "set_name": "val"}]
    (tmp_path / "TextVQA_0.5.1_val.json").write_text(json.dumps({"dataset_type": "val", "dataset_name": "textvqa",
                                                                 "dataset_version": "0.5.1", "data": entries}))
    _jpeg(tmp_path / "train_images" / "003a8ae2ef43b901.jpg", 100, 80, 2)
    qs = D.load_dataset(f"textvqa:{tmp_path}")
    assert len(qs) == 1 and qs[0].id == "34602" and qs[0].answers[-1] == "coke" and qs[0].dataset == "textvqa"
    assert qs[0].load_frames()[0].shape == (80, 100, 3)
    assert D.thresholds_for(qs) == ("textvqa", (3.0, 7.0))
    assert vqa_accuracy("Coca-Cola", qs[0].answers) == 1.0 and vqa_accuracy("Coke.", qs[0].answers) == pytest.approx(0.9)


def test_jsonl_format_and_the_synthetic_set(tmp_path):
    from arrcoc_rt.experiment.synthetic import synthetic_questions, write_jsonl

    qs = synthetic_questions(count=1, width=160, height=120)
    assert [q.kind for q in qs] == ["colour", "count", "shape", "text", "video"]
    assert all(q.box is not None and q.answers for q in qs) and qs[-1].is_video and len(qs[-1].frames_) == 6
    np.testing.assert_array_equal(synthetic_questions(1, 160, 120)[0].frames_[0], qs[0].frames_[0])  # deterministic
    path = write_jsonl(qs, tmp_path / "set")
    back = D.load_jsonl(path)
    assert [(q.id, q.question, q.answers, q.box, q.kind) for q in back] == \
           [(q.id, q.question, q.answers, q.box, q.kind) for q in qs]
    np.testing.assert_array_equal(back[0].load_frames()[0], qs[0].frames_[0])
    v = back[-1]
    assert v.is_video and v.source["frame"] == 5
    frames = v.load_frames(2)
    assert len(frames) == 3
    np.testing.assert_array_equal(frames[-1], qs[-1].frames_[-1])
    np.testing.assert_array_equal(frames[0], qs[-1].frames_[3])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "set/synthetic-colour-0.png", "question": "q", "answers": "red"}\n')
    with pytest.raises(D.DatasetError, match="bad.jsonl line 1: field 'answers'"):
        D.load_jsonl(bad)
    # a frame past the end of its image folder, named with its line before any model loads (was:
    # after the model had loaded, without the file or line)
    lines = Path(path).read_text().splitlines()
    last = json.loads(lines[-1])
    last["frame"] = 99
    past = Path(path).with_name("past.jsonl")
    past.write_text("\n".join(lines[:-1] + [json.dumps(last)]) + "\n")
    with pytest.raises(D.DatasetError, match=r"past.jsonl line 5: field 'frame': .* has no frame 99 \(it has 6 images\)"):
        D.check_files(D.load_jsonl(past))
    with pytest.raises(D.DatasetError, match="'/nowhere' does not exist or is not a folder"):
        D.load_dataset("vqav2:/nowhere")


# ----------------------------------------------------------------------------- the seeds' rules


def _rule(v, name):
    return next(r for r in v["rules"] if r["rule"] == name)["status"]


def test_verdicts_fire_as_the_seeds_say():
    v = verdicts({"base": 50.0, "random": 50.0, "saliency": 55.0, "query": 60.0})
    assert _rule(v, "STOP") == "fired" and v["decision"] == "STOP"
    v = verdicts({"base": 50.0, "random": 53.0, "saliency": 55.0, "query": 58.0, "balanced": 54.0})
    assert [_rule(v, r) for r in ("STOP", "selection matters", "query-awareness helps", "GO")] == \
           ["not fired", "fired", "fired", "fired"]
    assert v["decision"] == "GO (strong)" and "promising" in v["balanced"]
    v = verdicts({"base": 50.0, "random": 51.0, "saliency": 50.5, "query": 51.5})
    assert _rule(v, "selection matters") == "not fired" and _rule(v, "query-awareness helps") == "fired"
    assert v["decision"] == "NO-GO"
    v = verdicts({"base": 50.0, "random": 51.0, "saliency": 52.0, "query": 53.0})  # gain 3 > 2: GO on VQA
    assert v["decision"] == "GO"
    for query, want in ((52.5, "NO-GO"), (54.0, "GO"), (58.0, "GO (strong)")):  # TextVQA's thresholds
        acc = {"base": 50.0, "random": 51.0, "saliency": 52.0, "query": query}
        assert verdicts(acc, promising=3, strong=7)["decision"] == want
    v = verdicts({"base": 50.0, "random": 51.0, "saliency": 52.0, "query": None})
    assert _rule(v, "GO") == "n/a" and v["decision"].startswith("undecided")
    assert verdicts({"base": 50.0, "random": 50.5, "saliency": 52.0, "query": 60.0}, margin=1.0)["decision"] == "STOP"


def _records(method, accs, **extra):
    return [dict(method=method, study="augmentation", name=method.split("/")[1], requested_tokens=None,
                 saccades=extra.get("saccades", 0), gestalt=256, overlap=extra.get("overlap"), question_id=str(i),
                 dataset="vqav2", kind="", video=False, prediction="", answers=["x"], accuracy=a,
                 visual_tokens=extra.get("tokens", 256), in_box=None, box_area=None, select_ms=1.0, vision_ms=2.0,
                 prefill_ms=3.0, decode_ms=4.0, e2e_ms=extra.get("e2e", 10.0), new_tokens=2, peak_memory_mb=1.0,
                 memory_increase_mb=0.0) for i, a in enumerate(accs)]


def test_decision_read_from_a_constructed_accuracy_table():
    n = 100
    acc = lambda hits: [1.0] * hits + [0.0] * (n - hits)  # noqa: E731
    records = _records("augmentation/base", acc(50))
    for ov, table in ((False, {"random": 53, "saliency": 55, "query": 58, "balanced": 57}),
                      (True, {"random": 50, "saliency": 50, "query": 50, "balanced": 50})):
        for name, hits in table.items():
            records += _records(f"augmentation/{name}/S273/{'overlap' if ov else 'no-overlap'}", acc(hits),
                                saccades=273, overlap=ov, tokens=529, e2e=15.0)
    result = build_result(records, config={"vlm": "v", "data": "d", "questions": n, "video_questions": 0,
                                           "grid": [24, 24], "device": "cpu"},
                          notes=[], run_info={"memory_kind": "process_peak_rss"}, thresholds=(2.0, 5.0))
    aug = result["augmentation"]
    assert aug["main"] == {"saccades": 273, "overlap": False}          # the seeds' protocol: overlap prevented
    main = next(e for e in aug["settings"] if not e["overlap"])
    assert main["verdicts"]["decision"] == "GO (strong)"
    assert main["arms"]["query"]["gain"] == pytest.approx(8.0)
    assert main["arms"]["query"]["tokens_ratio"] == pytest.approx(529 / 256)
    assert main["arms"]["query"]["latency_ratio"] == pytest.approx(1.5)
    lo, hi = main["arms"]["query"]["paired"]["ci95"]
    assert lo <= 8.0 <= hi
    other = next(e for e in aug["settings"] if e["overlap"])
    assert other["verdicts"]["decision"] == "STOP"
    text = format_report(result)
    assert "DECISION: GO (strong)" in text and "decision here: STOP" in text and "2.07" in text


# ----------------------------------------------------------------------------- selections on a grid

def test_uniform_is_average_pooling_and_visionzip_evs_select_as_documented():
    torch = pytest.importorskip("torch")
    from arrcoc_rt.experiment.methods import grid_shape, select_evs, select_uniform, select_visionzip

    g = torch.randn(8, 4, 6, generator=torch.Generator().manual_seed(0))
    f, pos = select_uniform(g, 6)                       # 2 x 3 of a 4 x 6 grid: 2 x 2 blocks
    want = g.reshape(8, 2, 2, 3, 2).mean(dim=(2, 4)).reshape(8, 6).T
    torch.testing.assert_close(f, want)
    np.testing.assert_allclose(pos, [[1, 1], [3, 1], [5, 1], [1, 3], [3, 3], [5, 3]])
    f, _ = select_uniform(g, 9)                          # 3 x 3: overlapping windows
    torch.testing.assert_close(f, torch.nn.functional.adaptive_avg_pool2d(g[None], (3, 3))[0].reshape(8, 9).T)
    assert grid_shape(12, 4, 6) == (3, 4) and grid_shape(24, 4, 6) == (4, 6)
    with pytest.raises(ValueError, match="cannot be pooled"):
        select_uniform(g, 7)
    # VisionZip-style: the largest-norm cells first (raster order), then merged context; N = all cells
    # gives back every cell once
    flat = g.reshape(8, 24).T
    f, pos = select_visionzip(g, 8)
    dominant = round(8 * 54 / 64)
    top = np.sort(np.argsort(-flat.norm(dim=1).numpy(), kind="stable")[:dominant])
    torch.testing.assert_close(f[:dominant], flat[top])
    assert f.shape == (8, 8) and pos.shape == (8, 2)
    f, _ = select_visionzip(g, 24)
    assert sorted(map(tuple, f.numpy().round(5))) == sorted(map(tuple, flat.numpy().round(5)))
    # EVS-style: the cells that changed most since the previous frame, raster order, own positions
    prev = g.clone()
    changed = [3, 10, 17, 22]
    for c in changed:
        prev[:, c // 6, c % 6] = -prev[:, c // 6, c % 6]
    f, pos = select_evs(g, prev, 4)
    torch.testing.assert_close(f, flat[changed])
    np.testing.assert_allclose(pos, [[c % 6 + 0.5, c // 6 + 0.5] for c in changed])
    torch.testing.assert_close(select_evs(g, None, 6)[0], select_uniform(g, 6)[0])


# ----------------------------------------------------------------------------- with a tiny LLaVA


@pytest.fixture(scope="module")
def adapter(llava_dir):
    from arrcoc_rt.vlm import make_adapter

    return make_adapter(f"llava:{llava_dir}", device="cpu")


class Probe:
    """The number of visual tokens the projector maps and the sequence length the LM receives."""

    def __init__(self, model):
        self.projected, self.lm = [], []
        self.hooks = [model.model.multi_modal_projector.register_forward_pre_hook(
                          lambda m, a: self.projected.append(a[0].detach().clone())),
                      model.model.language_model.register_forward_pre_hook(
                          lambda m, a, kw: self.lm.append(kw["inputs_embeds"].shape[1]), with_kwargs=True)]

    def close(self):
        for h in self.hooks:
            h.remove()


def test_every_method_delivers_exactly_n_visual_tokens(adapter):
    from arrcoc_rt.experiment.methods import Method, build_methods, pack_split
    from arrcoc_rt.experiment.runner import Clock, FrameStore, MemoryMeter, MethodRunner, Settings
    from arrcoc_rt.experiment.synthetic import synthetic_questions

    qs = synthetic_questions(count=1, width=160, height=120)
    image, video = qs[0], qs[-1]
    methods, notes = build_methods(["equal"], grid=(4, 4), tokens=(4, 9, 16), has_query=True)
    assert any("N=16" in n for n in notes)             # not below the 16 cells: 'all' is that point
    names = {m.name for m in methods}
    assert names == {"all", "uniform", "random", "saliency", "query", "balanced", "visionzip", "evs"}
    assert pack_split(529, 24) == (16, 273) and pack_split(64, 24) == (5, 39)
    settings = Settings(max_new_tokens=1, device="cpu", warmup=0)
    store = FrameStore(qs, 1, None, 64.0)
    meter = MemoryMeter(False)
    probe = Probe(adapter.model)
    try:
        for m in methods:
            runner = MethodRunner(m, adapter, settings, store, Clock(False), meter)
            for q in ([video] if m.video_only else [image, video]):
                rec = runner.step(q)
                n = m.tokens
                assert rec["visual_tokens"] == n, (m.key, q.id)
                assert probe.projected[-1].shape[-2] == n, m.key          # n tokens through the projector
                text = len(adapter._prompt_ids(settings.prompt.format(question=q.question), 0)[0])
                assert probe.lm[0] == text + n, m.key                     # and into the language model
                probe.projected.clear()
                probe.lm.clear()
                if m.is_pack and m.name != "all":
                    assert rec["saccades_placed"] == n - m.gestalt ** 2
    finally:
        probe.close()
        meter.close()


def test_uniform_reaches_the_projector_as_pooled_grid(adapter):
    torch = pytest.importorskip("torch")
    from arrcoc_rt.experiment.methods import Method
    from arrcoc_rt.experiment.runner import Clock, FrameStore, MemoryMeter, MethodRunner, Settings
    from arrcoc_rt.experiment.synthetic import synthetic_questions

    q = synthetic_questions(count=1, width=160, height=120)[1]
    store = FrameStore([q], 1, None, 64.0)
    grid = adapter.vision_features(store.frames(q)[-1])
    probe = Probe(adapter.model)
    meter = MemoryMeter(False)
    try:
        MethodRunner(Method("equal", "uniform", tokens=4), adapter, Settings(max_new_tokens=1), store, Clock(False),
                     meter).step(q)
    finally:
        probe.close()
        meter.close()
    want = torch.nn.functional.avg_pool2d(grid[None], 2)[0].reshape(grid.shape[0], 4).T
    torch.testing.assert_close(probe.projected[0][0], want)


def test_prepare_features_matches_prepare_for_the_same_tokens(adapter):
    torch = pytest.importorskip("torch")
    import arrcoc_rt

    f = np.zeros((96, 128, 3), np.uint8)
    f[20:60, 70:110] = (220, 30, 30)
    r = arrcoc_rt.Pipeline(128, 96, device="cpu", gestalt_x=4, gestalt_y=3, saccades=6).process(f)
    a = adapter.prepare(f, r, "what is here ?", tokens=10)
    feats = r.gather_features(adapter.vision_features(f).numpy())[a["token_index"]]
    b = adapter.prepare_features(feats, "what is here ?")
    assert b["num_visual_tokens"] == 10
    torch.testing.assert_close(a["inputs_embeds"], b["inputs_embeds"])
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        adapter.prepare_features(feats[0], "what")


class Recording:
    """An adapter that keeps the inputs it built (prepare / prepare_features) for the test to read."""

    def __init__(self, adapter):
        self._adapter, self.inputs = adapter, []

    def __getattr__(self, name):
        return getattr(self._adapter, name)

    def prepare(self, *a, **kw):
        self.inputs.append(self._adapter.prepare(*a, **kw))
        return self.inputs[-1]

    def prepare_features(self, *a, **kw):
        self.inputs.append(self._adapter.prepare_features(*a, **kw))
        return self.inputs[-1]


def test_every_method_delivers_exactly_n_visual_tokens_on_qwen(tmp_path):
    """Qwen2-VL: every method puts exactly N visual tokens into the language model, each at the full
    image's rotary position of its merged-grid cell; a grid method's token at the cell under its
    selection's centre (uniform: the centre cell of its pooling window)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from vlm_models import build_tiny_qwen

    from arrcoc_rt.experiment.methods import build_methods, select_evs, select_uniform, select_visionzip
    from arrcoc_rt.experiment.runner import Clock, FrameStore, MemoryMeter, MethodRunner, Settings
    from arrcoc_rt.experiment.synthetic import synthetic_questions
    from arrcoc_rt.vlm import make_adapter

    qwen = make_adapter(f"qwen2_vl:{build_tiny_qwen(tmp_path / 'qwen')}", device="cpu")
    qs = synthetic_questions(count=1, width=160, height=120)
    image, video = qs[0], qs[-1]
    settings = Settings(max_new_tokens=1, device="cpu", warmup=0, prompt="{question}")
    store = FrameStore(qs, 1, None, 64.0)
    grid = qwen.vision_features(store.frames(image)[-1])
    h, w = grid.shape[1:]
    assert (h, w) == (3, 4)                                              # 160 x 120 -> 112 x 84 pixels
    methods, _ = build_methods(["equal"], grid=(h, w), tokens=(4, 9), has_query=False)
    assert {m.name for m in methods} == {"all", "uniform", "random", "saliency", "balanced", "visionzip", "evs"}
    rec = Recording(qwen)
    lengths = []
    hook = qwen.model.model.language_model.register_forward_pre_hook(
        lambda m, a, kw: lengths.append(kw["inputs_embeds"].shape[1]), with_kwargs=True)
    meter = MemoryMeter(False)
    try:
        for m in methods:
            runner = MethodRunner(m, rec, settings, store, Clock(False), meter)
            for q in ([video] if m.video_only else [image, video]):
                rec.inputs.clear()
                lengths.clear()
                record = runner.step(q)
                inputs = rec.inputs[-1]
                n = m.tokens
                assert record["visual_tokens"] == inputs["num_visual_tokens"] == n, (m.key, q.id)
                ids = inputs["input_ids"]
                at = torch.nonzero(ids[0] == qwen.image_token_id)[:, 0]
                assert len(at) == n and lengths[0] == ids.shape[1], m.key          # n tokens reach the LM
                # the full, unpruned prompt's positions at the fed cells
                head, tail = qwen._prompt_parts(settings.prompt.format(question=q.question))
                full_ids = torch.tensor([head + [qwen.image_token_id] * (h * w) + tail])
                full, _ = qwen.model.model.get_rope_index(
                    full_ids, mm_token_type_ids=(full_ids == qwen.image_token_id).int(),
                    image_grid_thw=inputs["image_grid_thw"])
                cells = torch.from_numpy(np.asarray(inputs["cells"], np.int64))
                torch.testing.assert_close(inputs["position_ids"][:, 0, at], full[:, 0, len(head) + cells],
                                           rtol=0, atol=0)
                if not m.is_pack:
                    frames = store.frames(q)
                    g = qwen.vision_features(frames[-1])
                    if m.name == "all":
                        pos = np.stack(np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5), -1).reshape(-1, 2)
                    elif m.name == "uniform":
                        pos = select_uniform(g, n)[1]
                    elif m.name == "visionzip":
                        pos = select_visionzip(g, n)[1]
                    else:
                        pos = select_evs(g, qwen.vision_features(frames[-2]), n)[1]
                    want = np.sort((np.floor(pos[:, 1]) * w + np.floor(pos[:, 0])).astype(int))
                    np.testing.assert_array_equal(inputs["cells"], want, err_msg=m.key)
    finally:
        hook.remove()
        meter.close()


def test_the_command_end_to_end(llava_dir, tmp_path, capsys):
    import csv

    from arrcoc_rt.cli import main

    out = tmp_path / "exp"
    out.mkdir()
    (out / "budget.csv").write_text("an earlier run's\n")  # not this run's: no budget study here
    rc = main(["experiment", "--vlm", f"llava:{llava_dir}", "--device", "cpu", "--synthetic-count", "1",
               "--synthetic-size", "160x120", "--saccades", "4", "--tokens", "4,9", "--max-new-tokens", "2",
               "--warmup", "0", "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    table = captured.out
    for part in ("AUGMENTATION STUDY", "rules (the seeds'):", "DECISION:", "EQUAL VISUAL TOKENS", "ALL METHODS", "evs",
                 "visionzip"):
        assert part in table
    assert (out / "report.txt").read_text().strip() == table.strip()
    assert not (out / "budget.csv").exists()
    result = json.loads((out / "results.json").read_text())
    methods = result["methods"]
    assert result["augmentation"]["main"] == {"saccades": 4, "overlap": False}
    rules = result["augmentation"]["settings"][0]["verdicts"]["rules"]        # no text encoder: query rules n/a
    assert [(r["rule"], r["status"] == "n/a") for r in rules] == [("STOP", False), ("selection matters", False),
                                                                   ("query-awareness helps", True), ("GO", True)]
    assert methods["augmentation/base"]["visual_tokens"] == 16                 # 4 x 4 grid: the base scales down
    assert methods["augmentation/random/S4/no-overlap"]["visual_tokens"] == 20
    for key, s in methods.items():
        if s["study"] == "equal":
            assert s["visual_tokens_min"] == s["visual_tokens_max"] == s["requested_tokens"], key
            assert s["latency_ms"]["e2e"]["median"] > 0 and s["peak_memory_mb"] > 0
    assert methods["equal/evs/N4"]["n"] == 1 and methods["equal/uniform/N4"]["n"] == 5
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["method"] for r in rows} == set(methods) and "prefill_ms_median" in rows[0]
    with open(out / "records.csv") as f:
        records = list(csv.DictReader(f))
    assert len(records) == len(result["records"]) == sum(s["n"] for s in methods.values())
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in records)


def test_the_command_on_vqav2_files_and_with_a_text_query(llava_dir, tmp_path, capsys):
    pytest.importorskip("tokenizers")
    from test_hf_encoders import _tiny

    from arrcoc_rt.cli import main

    _vqav2(tmp_path / "vqa")
    clip = _tiny("clip", tmp_path / "clip")
    out = tmp_path / "exp"
    rc = main(["experiment", "--vlm", f"llava:{llava_dir}", "--device", "cpu", "--data", f"vqav2:{tmp_path / 'vqa'}",
               "--sample", "2", "--seed", "1", "--study", "augmentation", "--saccades", "3", "--overlap", "prevented",
               "--encoder", f"clip:{clip}", "--max-new-tokens", "1", "--warmup", "0", "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    result = json.loads((out / "results.json").read_text())
    assert result["config"]["benchmark"] == "vqav2" and result["config"]["questions"] == 2
    assert "augmentation/query/S3/no-overlap" in result["methods"]             # a text encoder: the query arm runs
    main_setting = result["augmentation"]["settings"][0]
    assert main_setting["verdicts"]["decision"] in ("STOP", "GO", "GO (strong)", "NO-GO")
    assert [r["rule"] for r in main_setting["verdicts"]["rules"]] == ["STOP", "selection matters",
                                                                      "query-awareness helps", "GO"]
    assert main(["experiment", "--vlm", f"llava:{llava_dir}", "--data", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read the questions" in capsys.readouterr().err


def test_the_saliency_arm_runs_the_seeds_sobel_baseline_when_asked(llava_dir, tmp_path, capsys):
    """--saliency sobel: the 'saliency' method ranks by seed 000's mean Sobel magnitude (the
    pipeline's 'sobel' strategy); the default keeps this project's salience score."""
    from arrcoc_rt.cli import main
    from arrcoc_rt.experiment.methods import Method
    from arrcoc_rt.experiment.runner import Clock, FrameStore, MemoryMeter, MethodRunner, Settings
    from arrcoc_rt.experiment.synthetic import synthetic_questions

    questions = synthetic_questions(count=1, width=160, height=120)
    store = FrameStore(questions, 1, None, 64.0)
    for choice, strategy in (("saliency", "saliency"), ("sobel", "sobel")):
        runner = MethodRunner(Method("augmentation", "saliency", saccades=4, gestalt=4), None,
                              Settings(device="cpu", saliency_strategy=choice), store, Clock(False), MemoryMeter(False))
        assert runner.pipe.config["strategy"] == strategy
    out = tmp_path / "exp"
    out.mkdir()
    (out / "budget.csv").write_text("an earlier run's\n")  # not this run's: no budget study here
    rc = main(["experiment", "--vlm", f"llava:{llava_dir}", "--device", "cpu", "--synthetic-count", "1",
               "--synthetic-size", "160x120", "--study", "augmentation", "--saccades", "4", "--overlap", "prevented",
               "--max-new-tokens", "2", "--warmup", "0", "--saliency", "sobel", "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    result = json.loads((out / "results.json").read_text())
    assert result["config"]["saliency"] == "sobel" and "augmentation/saliency/S4/no-overlap" in result["methods"]


def test_unpoolable_token_counts_prompts_and_dtypes_are_refused_up_front(capsys):
    """Found before any model is loaded or any method has run (was: a crash hours in, nothing written)."""
    from arrcoc_rt.cli import main
    from arrcoc_rt.experiment.methods import build_methods

    methods, notes = build_methods(["equal"], grid=(4, 4), tokens=[4, 7], equal_methods=("uniform", "balanced"),
                                   has_query=False, has_video=False)
    assert sorted(m.key for m in methods) == ["equal/balanced/N4", "equal/balanced/N7", "equal/uniform/N4"]
    assert any("uniform at N=7 is left out" in n for n in notes)
    for extra, message in ((["--prompt", "Q: {question} in {n} words"], "--prompt"), (["--dtype", "foo"], "--dtype"),
                           (["--margin", "nan"], "--margin"), (["--margin", "-100"], "--margin")):
        assert main(["experiment", "--vlm", "llava:/nowhere", "--synthetic-count", "1", *extra]) == 2
        assert message in capsys.readouterr().err


def test_the_random_arm_draws_the_same_for_a_question_whatever_ran_before(llava_dir):
    """Its draw hashes (seed, frame index, patch): each question gets a fresh pipeline, so --warmup
    and the questions before it do not change its saccades (was: 6528 / 6528 / 6400 budget)."""
    from arrcoc_rt.experiment import load_dataset
    from arrcoc_rt.experiment.methods import Method
    from arrcoc_rt.experiment.runner import Settings, run
    from arrcoc_rt.vlm import make_adapter

    questions = load_dataset("builtin", synthetic_count=1, synthetic_size=(160, 120))
    adapter = make_adapter(f"llava:{llava_dir}", device="cpu")
    method = Method("augmentation", "random", saccades=4, gestalt=4, overlap=False)
    draws = []
    for qs, warmup in ((questions, 0), (questions, 2), (questions[::-1], 1)):
        records, _ = run(adapter, qs, [method], Settings(grid=(4, 4), warmup=warmup, max_new_tokens=1))
        draws.append({r["question_id"]: (r["in_box"], r["allocated_budget"]) for r in records})
    assert draws[0] == draws[1] == draws[2]


def test_questions_of_other_image_sizes_keep_their_own_qwen_grid(tmp_path):
    """Qwen2-VL sizes its grid by the image: a question of another size than the first gets its own
    grid (was: the first question's, and uniform's N then crashed the run). Uniform pooling still
    gives exactly N tokens where that grid cannot make N without repeating cells, and says so."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from vlm_models import build_tiny_qwen

    from arrcoc_rt.experiment.methods import Method
    from arrcoc_rt.experiment.runner import Clock, FrameStore, MemoryMeter, MethodRunner, Settings
    from arrcoc_rt.experiment.synthetic import synthetic_questions
    from arrcoc_rt.vlm import make_adapter

    qwen = make_adapter(f"qwen2_vl:{build_tiny_qwen(tmp_path / 'qwen')}", device="cpu")
    import dataclasses

    wide = dataclasses.replace(synthetic_questions(count=1, width=160, height=120)[0], id="wide")
    square = dataclasses.replace(synthetic_questions(count=1, width=160, height=160)[0], id="square")
    store = FrameStore([wide, square], 1, None, 64.0)
    grids = [tuple(qwen.vision_features(store.frames(q)[-1]).shape[1:]) for q in (wide, square)]
    assert grids == [(3, 4), (3, 3)]  # 8 = 2 x 4 fits the first, no r x c = 8 fits the second
    settings = Settings(max_new_tokens=1, device="cpu", warmup=0, prompt="{question}", grid=grids[0])
    meter = MemoryMeter(False)
    uniform = MethodRunner(Method("equal", "uniform", tokens=8), qwen, settings, store, Clock(False), meter)
    records = [uniform.step(q) for q in (wide, square)]
    assert [r["visual_tokens"] for r in records] == [8, 8]
    assert "uniform_repeated_cells" not in records[0] and records[1]["uniform_repeated_cells"]
    balanced = MethodRunner(Method("equal", "balanced", tokens=8, saccades=4, gestalt=2, overlap=True), qwen,
                            settings, store, Clock(False), meter)
    for q in (wide, square):
        balanced.step(q)
    assert store.grids == {store.frames(wide)[-1].shape[:2]: (3, 4), store.frames(square)[-1].shape[:2]: (3, 3)}
    meter.close()
