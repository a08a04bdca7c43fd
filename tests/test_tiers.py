"""Budgets that follow the question (issue #14 section 2, seed 003's tiers)."""

import numpy as np
import pytest

from arrcoc_rt.vlm import tiers


@pytest.mark.parametrize("question, tier", [
    ("Is there a dog?", "simple"), ("What color is the car?", "simple"),
    ("What is the man doing?", "medium"), ("Where is the ball?", "medium"),
    ("What does the sign say?", "complex"), ("How many people are there?", "complex"),
    ("Why is the road wet?", "complex"),
    ("Is the red car that is parked next to the tall green tree on the left side of the road new?", "complex"),
])
def test_rules_pick_the_expected_tier(question, tier):
    assert tiers.question_tier(question).name == tier


def test_rules_on_the_labelled_question_set():
    """90 questions, 30 per tier, labelled by what each needs (written alongside the rules: a check
    that the rules do what they say, not an independent evaluation)."""
    r = tiers.rule_accuracy()
    assert r["questions"] == 90
    assert r["accuracy"] >= 0.92 and r["complex_as_simple"] < 0.02, r
    assert all(v >= 0.9 for v in r["per_tier"].values()), r


def test_tier_budgets_map_the_seeds_tokens_per_region_onto_the_total_budget():
    # Default configuration: 16 x 16 gestalt tokens at 64 + 273 saccades at 64 / 180 / 400.
    assert [tiers.tier_budget(t, {}) for t in tiers.TIERS] == [33_856, 65_524, 125_584]
    cfg = {"gestalt_x": 4, "gestalt_y": 3, "saccades": 12, "gestalt_lod": 128}
    assert tiers.tier_budget("complex", cfg, "fast") == 12 * 128 + 12 * 256
    for t in tiers.TIERS:
        fast, bal, acc = (tiers.tier_budget(t, cfg, p) for p in ("fast", "balanced", "accurate"))
        assert fast <= bal <= acc
    with pytest.raises(ValueError, match="not a preset"):
        tiers.tier_budget("simple", {}, "quick")
    with pytest.raises(ValueError, match="tier"):
        tiers.tier_budget("hard", {})
    with pytest.raises(ValueError, match="question: '  ' is empty"):
        tiers.question_tier("  ")
    with pytest.raises(TypeError, match="question"):
        tiers.question_tier(None)


def test_labelled_files_are_checked(tmp_path):
    p = tmp_path / "q.jsonl"
    p.write_text('{"question": "Is it red?", "tier": "easy"}\n')
    with pytest.raises(ValueError, match="q.jsonl:1"):
        tiers.load_labelled(p)


def _frame(seed=0):
    rng = np.random.default_rng(seed)
    f = (rng.random((96, 160, 3)) * 60).astype(np.uint8)
    f[20:60, 70:110] = (220, 30, 30)
    return f


def test_a_stream_gives_simple_questions_fewer_tokens(llava_dir):
    import arrcoc_rt

    stream = arrcoc_rt.Stream(device="cpu", vlm=f"llava:{llava_dir}", gestalt_x=4, gestalt_y=3, saccades=12)
    for i in range(2):
        stream.process(_frame(i))
    answers = {q: stream.ask(q, budget="balanced", max_new_tokens=2)
               for q in ("Is there a square?", "What is on the left?", "What does the sign say?")}
    simple, medium, hard = answers.values()
    assert (simple.tier, medium.tier, hard.tier) == ("simple", "medium", "complex")
    assert simple.total_budget == 12 * 64 + 12 * 64 and hard.total_budget == 12 * 64 + 12 * 400
    assert simple.visual_tokens < hard.visual_tokens, [a.visual_tokens for a in answers.values()]
    assert simple.frame_index == hard.frame_index == 1
    # The budget the answer saw is the allocation of a pipeline at that total budget.
    p = arrcoc_rt.Pipeline(160, 96, device="cpu", gestalt_x=4, gestalt_y=3, saccades=12,
                           total_budget=simple.total_budget)
    r = p.process(_frame(1))
    assert int(r.budgets.sum()) <= simple.total_budget and r.num_saccades < 12
    # An int is a total budget; the plain ask keeps the stream's own allocation.
    given = stream.ask("Is there a square?", budget=12 * 64 + 12 * 400, max_new_tokens=2)
    assert given.tier is None and given.total_budget == 12 * 64 + 12 * 400
    assert given.visual_tokens == hard.visual_tokens
    plain = stream.ask("Is there a square?", max_new_tokens=2)
    assert plain.tier is None and plain.total_budget is None
    # Asynchronous, and with multi-pass.
    fut = stream.ask("Is there a square?", budget="balanced", max_new_tokens=2, asynchronous=True)
    assert fut.result(timeout=120).visual_tokens == simple.visual_tokens
    both = stream.ask("Is there a square?", budget="balanced", passes=2, max_new_tokens=2)
    assert both.passes[0].visual_tokens == simple.visual_tokens and both.tier == "simple"
    for bad, err in (("quick", ValueError), (True, TypeError), (1.5, TypeError)):
        with pytest.raises(err, match="budget"):
            stream.ask("Is there a square?", budget=bad)
    stream.close()


def test_cli_ask_with_a_budget_preset(llava_dir, tmp_path):
    import subprocess
    import sys

    from PIL import Image

    Image.fromarray(_frame(0)).save(tmp_path / "f.png")
    cli = [sys.executable, "-m", "arrcoc_rt.cli", "ask", "f.png"]
    r = subprocess.run(cli + ["What does the sign say?", "--vlm", f"llava:{llava_dir}", "--device", "cpu", "--budget",
                              "fast", "--max-new-tokens", "2"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "budget: 86272 (a complex question)" in r.stderr  # 16*16*64 + 273*256
    r = subprocess.run(cli + ["Is it red?", "--vlm", f"llava:{llava_dir}", "--budget", "quick"], capture_output=True,
                       text=True, cwd=tmp_path)
    assert r.returncode != 0 and "--budget quick" in r.stderr and "Traceback" not in r.stderr


def test_the_learned_classifier_meets_its_targets_on_held_out_folds(tmp_path):
    pairs = tiers.load_labelled()
    cv = tiers.cross_validate(pairs)
    assert cv["accuracy"] >= 0.92 and cv["complex_as_simple"] < 0.02, cv
    clf = tiers.TierClassifier().fit(pairs)
    clf.save(tmp_path / "c.json")
    again = tiers.TierClassifier.load(tmp_path / "c.json")
    for q, _ in pairs[:20]:
        assert again.predict(q) == clf.predict(q)
    # It learns what the rules miss: a made-up keyword that marks hard questions.
    extra = [(f"zorp the blue thing {i} ?", "complex") for i in range(12)] + pairs
    assert tiers.question_tier("zorp the blue thing 99 ?").name != "complex"
    assert tiers.TierClassifier().fit(extra).predict("zorp the blue thing 99 ?").name == "complex"
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="tier classifier"):
        tiers.TierClassifier.load(tmp_path / "bad.json")


def test_cli_trains_the_tier_classifier_alone(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "arrcoc_rt.cli", "train", "--tiers", "builtin", "--out", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "right on held-out folds" in r.stdout and (tmp_path / "tier_classifier.json").exists()
    r = subprocess.run([sys.executable, "-m", "arrcoc_rt.cli", "train", "--out", str(tmp_path)], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "--vlm" in r.stderr
