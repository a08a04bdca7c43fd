"""arrcoc-rt experiment's budget study (issue #14 section 2): each question allocated at its tier's
total budget under a preset, reported per budget bucket with the tier accuracy, the confusion counts
and the share of complex questions put in the simple tier; the JSONL's optional 'tier' field."""

import csv
import json
from collections import Counter

import numpy as np
import pytest

from arrcoc_rt.experiment import data as D
from arrcoc_rt.experiment.report import build_result, format_report, write_outputs
from arrcoc_rt.vlm.tiers import TIERS, Tier, question_tier, tier_budget

# ----------------------------------------------------------------------------- the 'tier' field (no torch)


def test_the_jsonl_tier_field_is_optional_and_checked(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    good = tmp_path / "good.jsonl"
    good.write_text('{"image": "a.png", "question": "Is it dark?", "answers": ["yes"], "tier": "simple"}\n'
                    '{"image": "a.png", "question": "What does it say?", "answers": ["no"]}\n')
    assert [q.tier for q in D.load_jsonl(good)] == ["simple", None]
    for bad in ('"hard"', '"Simple"', "2", "null"):
        path = tmp_path / "bad.jsonl"
        path.write_text('{"image": "a.png", "question": "Is it dark?", "answers": ["yes"]}\n'
                        f'{{"image": "a.png", "question": "Is it dark?", "answers": ["yes"], "tier": {bad}}}\n')
        with pytest.raises(ValueError, match=r"bad.jsonl line 2: field 'tier': expected one of simple, medium, "
                                             r"complex; got "):
            D.load_jsonl(path)


def test_the_synthetic_set_carries_tier_labels_through_its_jsonl(tmp_path):
    from arrcoc_rt.experiment.synthetic import synthetic_questions, write_jsonl

    qs = synthetic_questions(count=2, width=160, height=120)
    assert {q.kind: q.tier for q in qs if q.kind != "video"} == {"colour": "simple", "shape": "simple",
                                                                 "count": "complex", "text": "complex"}
    assert [q.tier for q in qs if q.kind == "video"] == ["simple"]              # the moving square's colour
    back = D.load_jsonl(write_jsonl(qs, tmp_path / "set"))
    assert [q.tier for q in back] == [q.tier for q in qs]


# ----------------------------------------------------------------------------- the report on constructed records


def _record(method, qid, *, accuracy, tokens, alloc, tier=None, labelled=None, total=None, study="budget"):
    r = dict(method=method, study=study, name="balanced", requested_tokens=None, saccades=8, gestalt=16,
             overlap=False, question_id=qid, dataset="jsonl", kind="", video=False, prediction="", answers=["x"],
             accuracy=accuracy, visual_tokens=tokens, allocated_budget=alloc, in_box=None, box_hit=None, box_area=None,
             select_ms=1.0, vision_ms=2.0, prefill_ms=3.0, decode_ms=4.0, e2e_ms=10.0, new_tokens=1,
             peak_memory_mb=1.0, memory_increase_mb=0.0, saccades_placed=8)
    if study == "budget":
        r.update(preset="balanced", tier=tier, labelled_tier=labelled, tier_ms=0.1, total_budget=total)
    return r


def test_the_budget_report_per_bucket_and_the_tier_scores(tmp_path):
    key, ref = "budget/balanced/S8/no-overlap", "augmentation/balanced/S8/no-overlap"
    totals = {"simple": 1536, "medium": 2464, "complex": 4224}
    # (assigned, labelled, accuracy, tokens, allocated): 4 complex questions, one of them put in simple
    rows = [("simple", "simple", 1.0, 24, 1536), ("simple", "simple", 0.0, 22, 1530),
            ("simple", "complex", 0.0, 24, 1536),
            ("medium", "simple", 1.0, 24, 2400), ("medium", "medium", 1.0, 24, 2200),
            ("complex", "complex", 1.0, 24, 4000), ("complex", "complex", 0.0, 24, 3800),
            ("complex", "complex", 1.0, 24, 4100), ("complex", None, 1.0, 24, 4200)]
    records = [_record(key, str(i), accuracy=a, tokens=t, alloc=b, tier=tier, labelled=lab, total=totals[tier])
               for i, (tier, lab, a, t, b) in enumerate(rows)]
    records += [_record(ref, str(i), accuracy=float(i % 2), tokens=24, alloc=3000, study="augmentation")
                for i in range(len(rows))]
    result = build_result(records, config={"vlm": "v", "data": "d", "questions": 9, "video_questions": 0,
                                           "grid": [24, 24], "device": "cpu", "tiers_by": "rules"},
                          notes=[], run_info={"memory_kind": "process_peak_rss"})
    e = result["budget"][key]
    b = e["buckets"]
    assert [b[t]["n"] for t in TIERS] == [3, 2, 4]
    assert b["simple"]["accuracy"] == pytest.approx(100 / 3) and b["complex"]["accuracy"] == pytest.approx(75.0)
    assert b["simple"]["visual_tokens"] == pytest.approx(70 / 3)
    assert b["simple"]["allocated_budget"] == pytest.approx(1534)
    assert [b[t]["total_budget"] for t in TIERS] == [1536, 2464, 4224]
    assert e["reference"] == ref and b["simple"]["reference_accuracy"] == pytest.approx(100 / 3)  # questions 0, 1, 2
    assert b["complex"]["reference_allocated_budget"] == 3000
    assert e["labelled"] == 8                                                  # one question has no label
    assert e["confusion"]["complex"] == {"simple": 1, "medium": 0, "complex": 3}
    assert e["confusion"]["simple"] == {"simple": 2, "medium": 1, "complex": 0}
    assert e["tier_accuracy"] == pytest.approx(100 * 6 / 8) and e["complex_as_simple"] == pytest.approx(25.0)
    assert e["per_tier"] == {"simple": pytest.approx(200 / 3), "medium": 100.0, "complex": 75.0}
    assert result["methods"][key]["tier_accuracy"] == pytest.approx(75.0)
    text = format_report(result)
    assert "BUDGET FOLLOWS THE QUESTION — preset balanced, tiers by rules" in text
    assert "tier accuracy 75.0% on 8 labelled questions (simple 67%, medium 100%, complex 75%); complex put in " \
           "simple: 25.0% (1 of 4;" in text
    paths = write_outputs(result, tmp_path / "out")
    with open(paths["budget_csv"]) as f:
        got = list(csv.DictReader(f))
    assert [(r["tier"], r["n"], r["labelled_n"], r["labelled_as_simple"]) for r in got] == \
           [("simple", "3", "3", "2"), ("medium", "2", "1", "0"), ("complex", "4", "4", "1")]
    with open(paths["summary_csv"]) as f:
        summary = {r["method"]: r for r in csv.DictReader(f)}
    assert float(summary[key]["complex_as_simple"]) == 25.0 and summary[ref]["complex_as_simple"] == ""
    # Without labels the tiers are not scored; without a budget method there is no budget section.
    unlabelled = [dict(r, labelled_tier=None) for r in records]
    e = build_result(unlabelled, config=result["config"], notes=[], run_info=result["run"])["budget"][key]
    assert e["labelled"] == 0 and e["tier_accuracy"] is None and e["complex_as_simple"] is None
    plain = build_result(records[len(rows):], config=result["config"], notes=[], run_info=result["run"])
    assert plain["budget"] is None and "BUDGET" not in format_report(plain)


def test_budget_methods_are_built_per_preset():
    from arrcoc_rt.experiment.methods import build_methods

    methods, _ = build_methods(["budget"], grid=(24, 24), budgets=("fast", "accurate"), budget_saccades=100)
    assert [m.key for m in methods] == ["budget/fast/S100/no-overlap", "budget/accurate/S100/no-overlap"]
    assert all(m.is_pack and m.name == "balanced" and m.gestalt == 16 for m in methods)
    with pytest.raises(ValueError, match="'quick' is not a preset"):
        build_methods(["budget"], grid=(24, 24), budgets=("quick",))


# ----------------------------------------------------------------------------- on the tiny LLaVA


def test_the_command_allocates_each_question_at_its_tiers_budget(llava_dir, tmp_path, capsys):
    from arrcoc_rt.cli import main
    from arrcoc_rt.experiment.synthetic import synthetic_questions

    out = tmp_path / "exp"
    # 320 x 240 frames: enough candidates that the 8 saccades are placed in every tier
    rc = main(["experiment", "--vlm", f"llava:{llava_dir}", "--device", "cpu", "--synthetic-count", "1",
               "--synthetic-size", "320x240", "--study", "budget", "--budget", "balanced", "--main-saccades", "8",
               "--max-new-tokens", "1", "--warmup", "0", "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "BUDGET FOLLOWS THE QUESTION — preset balanced, tiers by rules" in captured.out
    result = json.loads((out / "results.json").read_text())
    key = "budget/balanced/S8/no-overlap"
    assert list(result["methods"]) == [key] and result["config"]["tiers_by"] == "rules"
    e = result["budget"][key]
    qs = synthetic_questions(count=1, width=320, height=240)
    want = Counter(question_tier(q.question).name for q in qs)
    assert {t: e["buckets"][t]["n"] for t in TIERS} == {t: want[t] for t in TIERS}      # the rules' buckets
    assert all(e["buckets"][t]["n"] for t in TIERS)
    config = {"gestalt_x": 4, "gestalt_y": 4, "gestalt_lod": 64, "saccades": 8}          # the model's 4 x 4 grid
    by_id = {q.id: q for q in qs}
    for r in result["records"]:
        tier = question_tier(by_id[r["question_id"]].question).name
        assert r["tier"] == tier and r["labelled_tier"] == by_id[r["question_id"]].tier
        assert r["total_budget"] == tier_budget(tier, config, "balanced")
        assert r["allocated_budget"] <= r["total_budget"]
    alloc = [e["buckets"][t]["allocated_budget"] for t in TIERS]
    tokens = [e["buckets"][t]["visual_tokens"] for t in TIERS]
    assert alloc[0] < alloc[1] < alloc[2], alloc                  # a harder tier: more detail
    assert tokens[0] <= tokens[1] <= tokens[2], tokens            # and never fewer tokens
    # The synthetic labels: the rules put the shape question (labelled simple) in medium.
    assert e["labelled"] == 5 and e["confusion"]["simple"] == {"simple": 2, "medium": 1, "complex": 0}
    assert e["confusion"]["complex"]["complex"] == 2 and e["complex_as_simple"] == 0.0
    with open(out / "budget.csv") as f:
        assert [r["tier"] for r in csv.DictReader(f)] == list(TIERS)
    assert main(["experiment", "--vlm", f"llava:{llava_dir}", "--budget", "quick"]) == 2
    assert "--budget 'quick'" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{}")
    assert main(["experiment", "--vlm", f"llava:{llava_dir}", "--budget", "fast", "--tier-classifier",
                 str(tmp_path / "bad.json")]) == 2
    assert "tier classifier" in capsys.readouterr().err


def test_a_tier_classifier_picks_the_bucket_instead_of_the_rules(llava_dir):
    from arrcoc_rt.experiment.methods import Method
    from arrcoc_rt.experiment.runner import Clock, FrameStore, MemoryMeter, MethodRunner, Settings
    from arrcoc_rt.experiment.synthetic import synthetic_questions
    from arrcoc_rt.vlm import make_adapter

    class AlwaysComplex:
        def predict(self, question):
            return Tier("complex", ("test",))

    adapter = make_adapter(f"llava:{llava_dir}", device="cpu")
    q = synthetic_questions(count=1, width=320, height=240)[0]                   # a colour question: simple
    assert question_tier(q.question).name == "simple" and q.tier == "simple"
    method = Method("budget", "balanced", saccades=8, gestalt=4, overlap=False, preset="fast")
    meter = MemoryMeter(False)
    try:
        runner = MethodRunner(method, adapter, Settings(max_new_tokens=1, device="cpu", warmup=0,
                                                        tier_classifier=AlwaysComplex()),
                              FrameStore([q], 1, None, 64.0), Clock(False), meter)
        r = runner.step(q)
    finally:
        meter.close()
    config = {"gestalt_x": 4, "gestalt_y": 4, "gestalt_lod": 64, "saccades": 8}
    assert r["tier"] == "complex" and r["labelled_tier"] == "simple"
    assert r["total_budget"] == tier_budget("complex", config, "fast") == 16 * 64 + 8 * 256
