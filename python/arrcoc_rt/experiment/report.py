"""Summaries, the seeds' decision rules, the terminal table and the JSON / CSV files.

The seeds' rules (the augmentation study; accuracies in points, a "beat" is a difference above
``margin``, 0 by default):

* STOP if random saccades do not beat the base (more tokens do not help: abandon);
* "selection matters" if saliency beats random (else: investigate selection methods);
* "query-awareness helps" if query beats saliency;
* GO if the query-aware arm beats the base by more than 2 points (strong: more than 5) on VQAv2
  (and other VQA sets); on TextVQA 3 and 7. NO-GO otherwise. The decision is STOP when the first
  rule fires, else GO / GO (strong) / NO-GO; "undecided" without a query arm.

The same thresholds are applied to ``balanced`` (ours) against the base, for information.

The budget study (``--budget PRESET``; issue #14: "report accuracy per budget bucket and the share of
misclassified hard questions, not only the average"): per tier the question was assigned (its
budget bucket) the number of questions, accuracy, mean visual tokens, mean allocated budget (the sum
of those tokens' levels of detail) and the tier's total budget, beside the fixed-budget balanced
arm's on the same questions when the augmentation study ran it at the same setting; where questions
carry a labelled tier, the tier accuracy, the accuracy per labelled tier, the confusion counts and
the share of complex questions put in the simple tier.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

STAGES = ("select_ms", "vision_ms", "prefill_ms", "decode_ms", "e2e_ms")


def _finite(values) -> np.ndarray:
    v = np.asarray([x for x in values if x is not None], np.float64)
    return v[np.isfinite(v)]


def _pct(values, q) -> float | None:
    v = _finite(values)
    return float(np.percentile(v, q)) if len(v) else None


def summarize(records: list) -> dict:
    """{method key: summary}: n, accuracy (points) with a normal-approximation 95% half-width,
    visual tokens (mean, min, max), in-box share, latency per stage (median, p95), peak memory."""
    groups = {}
    for r in records:
        groups.setdefault(r["method"], []).append(r)
    out = {}
    for key, rs in groups.items():
        acc = np.array([r["accuracy"] for r in rs], np.float64) * 100.0
        tokens = np.array([r["visual_tokens"] for r in rs], np.float64)
        inbox = _finite(r.get("in_box") for r in rs)
        hits = _finite(None if r.get("box_hit") is None else float(r["box_hit"]) for r in rs)
        area = _finite(r.get("box_area") for r in rs)
        first = rs[0]
        s = {k: first.get(k) for k in ("study", "name", "requested_tokens", "saccades", "gestalt", "overlap")}
        s.update(
            n=len(rs), accuracy=float(acc.mean()),
            accuracy_ci95=float(1.96 * acc.std(ddof=1) / math.sqrt(len(acc))) if len(acc) > 1 else None,
            visual_tokens=float(tokens.mean()), visual_tokens_min=int(tokens.min()), visual_tokens_max=int(tokens.max()),
            in_box=float(inbox.mean()) if len(inbox) else None, box_hit=float(hits.mean()) if len(hits) else None,
            box_area=float(area.mean()) if len(area) else None,
            latency_ms={st[:-3]: {"median": _pct([r[st] for r in rs], 50), "p95": _pct([r[st] for r in rs], 95)}
                        for st in STAGES},
            new_tokens=_pct([r["new_tokens"] for r in rs], 50),
            peak_memory_mb=float(max(r["peak_memory_mb"] for r in rs)),
            memory_increase_mb=_pct([r["memory_increase_mb"] for r in rs], 50))
        placed = [r["saccades_placed"] for r in rs if r.get("saccades_placed") is not None]
        if placed:
            s["saccades_placed"] = float(np.mean(placed))
        out[key] = s
    return out


def paired_difference(records: list, a: str, b: str, *, n_boot: int = 2000, seed: int = 0) -> dict | None:
    """Accuracy of method ``a`` minus method ``b`` in points on the questions both answered, with
    a paired bootstrap 95% interval; None when they share no question."""
    acc_a = {r["question_id"]: r["accuracy"] for r in records if r["method"] == a}
    acc_b = {r["question_id"]: r["accuracy"] for r in records if r["method"] == b}
    common = sorted(set(acc_a) & set(acc_b))
    if not common:
        return None
    d = np.array([acc_a[q] - acc_b[q] for q in common]) * 100.0
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    return {"difference": float(d.mean()), "ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))],
            "n": len(d)}


# ----------------------------------------------------------------------------- the seeds' rules


def verdicts(acc: dict, *, promising: float = 2.0, strong: float = 5.0, margin: float = 0.0) -> dict:
    """The seeds' rules on accuracies in points: ``acc`` maps base, random, saliency and (optionally;
    None or missing = not run) query and balanced to an accuracy. Returns {"rules": [{"rule",
    "status": "fired" | "not fired" | "n/a", "text"}...], "decision": str, "balanced": str | None}."""
    base, rnd, sal = acc["base"], acc["random"], acc["saliency"]
    query, ours = acc.get("query"), acc.get("balanced")
    rules = []
    d = rnd - base
    stop = d <= margin
    rules.append({"rule": "STOP", "status": "fired" if stop else "not fired",
                  "text": (f"STOP: random does not beat base ({d:+.2f} points): more tokens do not help"
                           if stop else f"random beats base by {d:+.2f} points: augmentation helps, continue")})
    d = sal - rnd
    fired = d > margin
    rules.append({"rule": "selection matters", "status": "fired" if fired else "not fired",
                  "text": (f"selection matters: saliency beats random by {d:+.2f} points" if fired
                           else f"selection does not matter (saliency - random = {d:+.2f} points): investigate "
                                "selection methods")})
    if query is None:
        rules.append({"rule": "query-awareness helps", "status": "n/a",
                      "text": "query-awareness: not measured (no query arm: give a text encoder)"})
        rules.append({"rule": "GO", "status": "n/a", "text": "GO / NO-GO: not measured (no query arm)"})
        go = None
    else:
        d = query - sal
        fired = d > margin
        rules.append({"rule": "query-awareness helps", "status": "fired" if fired else "not fired",
                      "text": (f"query-awareness helps: query beats saliency by {d:+.2f} points" if fired
                               else f"query-awareness does not help (query - saliency = {d:+.2f} points)")})
        gain = query - base
        go = "GO (strong)" if gain > strong else "GO" if gain > promising else "NO-GO"
        rules.append({"rule": "GO", "status": "fired" if go != "NO-GO" else "not fired",
                      "text": f"{go}: query-aware beats base by {gain:+.2f} points (GO above {promising:g}, "
                              f"strong above {strong:g})"})
    decision = "STOP" if stop else (go if go is not None else "undecided (no query arm)")
    balanced = None
    if ours is not None:
        gain = ours - base
        label = "strong" if gain > strong else "promising" if gain > promising else "below the GO threshold"
        balanced = f"balanced (ours) vs base: {gain:+.2f} points ({label})"
    return {"rules": rules, "decision": decision, "balanced": balanced}


def augmentation_settings(summary: dict) -> list:
    """[(saccades, overlap)] present in the augmentation study, in order."""
    seen = []
    for s in summary.values():
        if s["study"] == "augmentation" and s["name"] != "base":
            k = (s["saccades"], s["overlap"])
            if k not in seen:
                seen.append(k)
    return seen


def _aug_key(name, saccades, overlap) -> str:
    return f"augmentation/{name}/S{saccades}/{'overlap' if overlap else 'no-overlap'}"


def augmentation_study(summary: dict, records: list, *, thresholds=(2.0, 5.0), margin: float = 0.0,
                       main_saccades: int = 273) -> dict | None:
    """Per (saccades, overlap) setting: each arm's gain over the base with its paired 95% interval,
    the cost ratios (visual tokens, median end-to-end latency) and the rules; ``main`` names the
    setting the decision is read from (``main_saccades`` or the nearest, overlap prevented first)."""
    base = summary.get("augmentation/base")
    settings = augmentation_settings(summary)
    if base is None or not settings:
        return None
    base_lat = base["latency_ms"]["e2e"]["median"]
    out = {"base": "augmentation/base", "settings": []}
    for sac, ov in settings:
        arms = {}
        for name in ("random", "saliency", "query", "balanced"):
            s = summary.get(_aug_key(name, sac, ov))
            if s is None:
                continue
            lat = s["latency_ms"]["e2e"]["median"]
            arms[name] = {"accuracy": s["accuracy"], "gain": s["accuracy"] - base["accuracy"],
                          "paired": paired_difference(records, _aug_key(name, sac, ov), "augmentation/base"),
                          "tokens_ratio": s["visual_tokens"] / base["visual_tokens"],
                          "latency_ratio": (lat / base_lat) if lat and base_lat else None}
        acc = {"base": base["accuracy"], **{k: v["accuracy"] for k, v in arms.items()}}
        v = verdicts(acc, promising=thresholds[0], strong=thresholds[1], margin=margin) \
            if "random" in acc and "saliency" in acc else None
        out["settings"].append({"saccades": sac, "overlap": ov, "arms": arms, "verdicts": v})
    ranked = sorted(out["settings"], key=lambda e: (abs(e["saccades"] - main_saccades), e["overlap"]))
    out["main"] = {"saccades": ranked[0]["saccades"], "overlap": ranked[0]["overlap"]}
    return out


# ----------------------------------------------------------------------------- the budget study


def budget_study(records: list, summary: dict, tiers_by: str = "rules") -> dict | None:
    """{budget method key: its buckets and tier scores} (see the module docstring); percentages
    (accuracy, tier accuracy, complex put in simple) are in points; None without a budget method."""
    from ..vlm.tiers import TIERS, tier_scores

    out = {}
    for key, s in summary.items():
        if s["study"] != "budget":
            continue
        rs = [r for r in records if r["method"] == key]
        ref_key = _aug_key("balanced", s["saccades"], s["overlap"])
        ref = {r["question_id"]: r for r in records if r["method"] == ref_key}
        buckets = {}
        for tier in TIERS:
            b = [r for r in rs if r["tier"] == tier]
            rb = [ref[r["question_id"]] for r in b if r["question_id"] in ref]
            buckets[tier] = {
                "n": len(b), "accuracy": _mean([r["accuracy"] for r in b], 100.0),
                "visual_tokens": _mean([r["visual_tokens"] for r in b]),
                "allocated_budget": _mean([r["allocated_budget"] for r in b]),
                "total_budget": b[0]["total_budget"] if b else None,
                "reference_accuracy": _mean([r["accuracy"] for r in rb], 100.0) if len(rb) == len(b) else None,
                "reference_visual_tokens": _mean([r["visual_tokens"] for r in rb]) if len(rb) == len(b) else None,
                "reference_allocated_budget": _mean([r["allocated_budget"] for r in rb]) if len(rb) == len(b) else None}
        labelled = [(r["labelled_tier"], r["tier"]) for r in rs if r.get("labelled_tier")]
        scores = tier_scores(labelled)
        pct = lambda v: None if v is None else 100.0 * v  # noqa: E731
        out[key] = {"preset": rs[0]["preset"], "tiers_by": tiers_by, "saccades": s["saccades"], "overlap": s["overlap"],
                    "reference": ref_key if ref else None, "buckets": buckets, "labelled": scores["questions"],
                    "tier_accuracy": pct(scores["accuracy"]),
                    "per_tier": {t: pct(v) for t, v in scores["per_tier"].items()},
                    "complex_as_simple": pct(scores["complex_as_simple"]),
                    "complex": sum(scores["confusion"]["complex"].values()),
                    "complex_in_simple": scores["confusion"]["complex"]["simple"], "confusion": scores["confusion"]}
    return out or None


def _mean(values, scale: float = 1.0) -> float | None:
    return float(np.mean(values)) * scale if len(values) else None


def _format_budget(budget: dict) -> list:
    from ..vlm.tiers import TIERS

    lines = []
    for key, e in budget.items():
        overlap = "allowed" if e["overlap"] else "prevented"
        lines.append("")
        lines.append(f"BUDGET FOLLOWS THE QUESTION — preset {e['preset']}, tiers by {e['tiers_by']}, balanced pack of "
                     f"{e['saccades']} saccades (overlap {overlap}); per assigned tier (budget bucket): accuracy in "
                     "points, mean visual tokens, mean allocated budget (the sum of their levels of detail) and the "
                     "tier's total budget"
                     + (f"; ref: {e['reference']} (a fixed budget) on the same questions" if e["reference"] else ""))
        ref = bool(e["reference"])
        lines.append(f"   {'tier':8s} {'n':>4s} {'acc':>6s} {'tokens':>7s} {'alloc':>8s} {'budget':>8s}"
                     + (f" {'ref acc':>7s} {'ref tok':>7s} {'ref alloc':>9s}" if ref else ""))
        for tier in TIERS:
            b = e["buckets"][tier]
            lines.append(f"   {tier:8s} {b['n']:4d} {_f(b['accuracy']):>6s} {_f(b['visual_tokens']):>7s} "
                         f"{_f(b['allocated_budget'], '{:.0f}'):>8s} {_f(b['total_budget'], '{:d}'):>8s}"
                         + (f" {_f(b['reference_accuracy']):>7s} {_f(b['reference_visual_tokens']):>7s} "
                            f"{_f(b['reference_allocated_budget'], '{:.0f}'):>9s}" if ref else ""))
        if e["labelled"]:
            per = ", ".join(f"{t} {_f(e['per_tier'][t], '{:.0f}%')}" for t in TIERS)
            lines.append(f"   tier accuracy {_f(e['tier_accuracy'], '{:.1f}%')} on {e['labelled']} labelled questions "
                         f"({per}); complex put in simple: {_f(e['complex_as_simple'], '{:.1f}%')} "
                         f"({e['complex_in_simple']} of {e['complex']}; issue #14's targets: >= 92%, < 2%)")
            lines.append("   " + "labelled \\ assigned".ljust(20) + " " + " ".join(f"{t:>8s}" for t in TIERS))
            for t in TIERS:
                lines.append(f"   {t:20s} " + " ".join(f"{e['confusion'][t][u]:8d}" for u in TIERS))
        else:
            lines.append("   no labelled tiers (the JSONL field 'tier'): tier accuracy not measured")
    return lines


# ----------------------------------------------------------------------------- the table


def _f(v, fmt="{:.1f}", none="-") -> str:
    return none if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


def _lat(s, stage) -> str:
    d = s["latency_ms"][stage]
    return f"{_f(d['median'], '{:.0f}')}/{_f(d['p95'], '{:.0f}')}"


def format_report(result: dict) -> str:
    """The terminal table of a result (see ``build_result``)."""
    summary, lines = result["methods"], []
    cfg = result["config"]
    lines.append(f"arrcoc-rt experiment: {cfg['vlm']} on {cfg['data']} ({cfg['questions']} questions, "
                 f"{cfg['video_questions']} on video); model grid {cfg['grid'][0]}x{cfg['grid'][1]}; "
                 f"device {cfg['device']}")
    for note in result["notes"]:
        lines.append(f"note: {note}")
    aug = result.get("augmentation")
    if aug:
        base = summary[aug["base"]]
        lines.append("")
        lines.append(f"AUGMENTATION STUDY — base: {base['gestalt']} gestalt tokens; accuracy in points "
                     f"(± 95% half-width), gain over base (paired bootstrap 95% interval), cost ratios")
        for e in aug["settings"]:
            main = (e["saccades"], e["overlap"]) == (aug["main"]["saccades"], aug["main"]["overlap"])
            overlap = "allowed" if e["overlap"] else "prevented"
            lines.append(f"-- {e['saccades']} saccades, overlap with the gestalt {overlap}"
                         + ("  [decision setting]" if main else ""))
            lines.append(f"   {'arm':10s} {'acc':>6s} {'±':>5s} {'gain':>7s} {'95% interval':>16s} {'tokens':>7s} "
                         f"{'tok x':>6s} {'e2e p50/p95 ms':>15s} {'lat x':>6s} {'in-box':>6s}")
            lines.append(f"   {'base':10s} {base['accuracy']:6.1f} {_f(base['accuracy_ci95']):>5s} {'':>7s} {'':>16s} "
                         f"{base['visual_tokens']:7.1f} {1.0:6.2f} {_lat(base, 'e2e'):>15s} {1.0:6.2f} "
                         f"{_f(base['in_box'], '{:.3f}'):>6s}")
            for name, a in e["arms"].items():
                s = summary[_aug_key(name, e["saccades"], e["overlap"])]
                ci = a["paired"]["ci95"] if a["paired"] else None
                lines.append(f"   {name:10s} {a['accuracy']:6.1f} {_f(s['accuracy_ci95']):>5s} {a['gain']:+7.2f} "
                             f"{('[' + _f(ci[0], '{:+.1f}') + ', ' + _f(ci[1], '{:+.1f}') + ']') if ci else '-':>16s} "
                             f"{s['visual_tokens']:7.1f} {a['tokens_ratio']:6.2f} {_lat(s, 'e2e'):>15s} "
                             f"{_f(a['latency_ratio'], '{:.2f}'):>6s} {_f(s['in_box'], '{:.3f}'):>6s}")
            if e["verdicts"] and main:
                lines.append("   rules (the seeds'):")
                lines += [f"     [{r['status']}] {r['text']}" for r in e["verdicts"]["rules"]]
                if e["verdicts"]["balanced"]:
                    lines.append(f"     {e['verdicts']['balanced']}")
                lines.append(f"   DECISION: {e['verdicts']['decision']}")
            elif e["verdicts"]:
                lines.append(f"   decision here: {e['verdicts']['decision']}")
    eq = [s for s in summary.values() if s["study"] == "equal"]
    if eq:
        ns = sorted({s["requested_tokens"] for s in eq if s["name"] != "all"})
        names = [n for n in ("uniform", "random", "saliency", "query", "balanced", "visionzip", "evs")
                 if any(s["name"] == n for s in eq)]
        lines.append("")
        lines.append("EQUAL VISUAL TOKENS — accuracy in points at N visual tokens reaching the language model"
                     + (" (evs: video questions only)" if "evs" in names else ""))
        lines.append(f"   {'method':10s} " + " ".join(f"{'N=' + str(n):>9s}" for n in ns))
        all_ = summary.get("equal/all")
        if all_:
            lines.append(f"   {'all':10s} {all_['accuracy']:9.1f}  (all {all_['visual_tokens']:.0f} grid cells)")
        for name in names:
            cells = []
            for n in ns:
                s = summary.get(f"equal/{name}/N{n}")
                cells.append(f"{s['accuracy']:9.1f}" if s else f"{'-':>9s}")
            lines.append(f"   {name:10s} " + " ".join(cells))
        video = result.get("video_subset")
        if video:
            lines.append("   on the video questions only:")
            if "equal/all" in video:
                lines.append(f"   {'all':10s} {video['equal/all']:9.1f}")
            for name in names:
                cells = [f"{video[k]:9.1f}" if (k := f"equal/{name}/N{n}") in video else f"{'-':>9s}" for n in ns]
                lines.append(f"   {name:10s} " + " ".join(cells))
    if result.get("budget"):
        lines += _format_budget(result["budget"])
    lines.append("")
    lines.append("ALL METHODS — in-box: share of the visual tokens on the answer box (grown by half a model "
                 "grid cell), hit: share of questions with any; latency ms median/p95 per stage; peak memory MiB "
                 f"({result['run']['memory_kind']}) and its median increase over the step's start")
    lines.append(f"   {'method':38s} {'n':>4s} {'acc':>6s} {'tokens':>7s} {'in-box':>6s} {'hit':>5s} {'select':>9s} "
                 f"{'vision':>9s} {'prefill':>9s} {'decode':>9s} {'e2e':>9s} {'peak':>8s} {'+MiB':>6s}")
    for key, s in summary.items():
        lines.append(f"   {key:38s} {s['n']:4d} {s['accuracy']:6.1f} {s['visual_tokens']:7.1f} "
                     f"{_f(s['in_box'], '{:.3f}'):>6s} {_f(s['box_hit'], '{:.2f}'):>5s} {_lat(s, 'select'):>9s} "
                     f"{_lat(s, 'vision'):>9s} {_lat(s, 'prefill'):>9s} {_lat(s, 'decode'):>9s} {_lat(s, 'e2e'):>9s} "
                     f"{s['peak_memory_mb']:8.0f} {_f(s['memory_increase_mb'], '{:.0f}'):>6s}")
    short = [k for k, s in summary.items()
             if (s["requested_tokens"] and s["name"] != "all" and s["visual_tokens_min"] < s["requested_tokens"])
             or (s["study"] == "augmentation" and s.get("saccades_placed", 0) < (s["saccades"] or 0))]
    if short:
        lines.append(f"note: fewer visual tokens than asked for on some questions (the pipeline placed fewer "
                     f"saccades; see visual_tokens_min, saccades_placed): {', '.join(short)}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- files


def build_result(records: list, *, config: dict, notes: list, run_info: dict, thresholds=(2.0, 5.0),
                 margin: float = 0.0, main_saccades: int = 273) -> dict:
    summary = summarize(records)
    result = {"config": dict(config, thresholds=list(thresholds), margin=margin), "notes": list(notes),
              "run": run_info, "methods": summary}
    result["augmentation"] = augmentation_study(summary, records, thresholds=thresholds, margin=margin,
                                                main_saccades=main_saccades)
    result["budget"] = budget_study(records, summary, config.get("tiers_by", "rules"))
    for key, e in (result["budget"] or {}).items():
        summary[key].update(preset=e["preset"], tier_accuracy=e["tier_accuracy"],
                            complex_as_simple=e["complex_as_simple"])
    video = [r for r in records if r["video"] and r["study"] == "equal"]
    if video and any(not r["video"] for r in records):
        result["video_subset"] = {k: float(np.mean([r["accuracy"] for r in video if r["method"] == k]) * 100.0)
                                  for k in dict.fromkeys(r["method"] for r in video)}
    result["records"] = records
    return result


def _flat(summary_row: dict) -> dict:
    row = {k: v for k, v in summary_row.items() if k != "latency_ms"}
    for stage, d in summary_row["latency_ms"].items():
        row[f"{stage}_ms_median"], row[f"{stage}_ms_p95"] = d["median"], d["p95"]
    return row


def write_outputs(result: dict, out_dir) -> dict:
    """results.json (everything), summary.csv (one row per method), records.csv (one row per method
    and question), budget.csv (with a budget study: one row per budget method and tier) and
    report.txt (the table) in ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "summary_csv": out / "summary.csv", "records_csv": out / "records.csv",
             "table": out / "report.txt"}
    paths["json"].write_text(json.dumps(result, indent=2, default=_json_default))
    rows = [dict(method=k, **_flat(s)) for k, s in result["methods"].items()]
    _write_csv(paths["summary_csv"], rows)
    _write_csv(paths["records_csv"], [dict(r, answers=" | ".join(r["answers"])) for r in result["records"]])
    if result.get("budget"):
        paths["budget_csv"] = out / "budget.csv"
        _write_csv(paths["budget_csv"], _budget_rows(result["budget"]))
    elif (out / "budget.csv").exists():  # an earlier run's, into the same folder: not this run's result
        (out / "budget.csv").unlink()
    paths["table"].write_text(format_report(result) + "\n")
    return {k: str(v) for k, v in paths.items()}


def _budget_rows(budget: dict) -> list:
    """budget.csv: one row per budget method and tier: its bucket (the questions assigned the tier)
    and the questions labelled with it (how many, the share assigned it, where they went)."""
    from ..vlm.tiers import TIERS

    rows = []
    for key, e in budget.items():
        for t in TIERS:
            b = e["buckets"][t]
            rows.append({"method": key, "preset": e["preset"], "tiers_by": e["tiers_by"], "tier": t, **b,
                         "labelled_n": sum(e["confusion"][t].values()), "labelled_right": e["per_tier"][t],
                         **{f"labelled_as_{u}": e["confusion"][t][u] for u in TIERS},
                         "tier_accuracy": e["tier_accuracy"], "complex_as_simple": e["complex_as_simple"]})
    return rows


def _write_csv(path: Path, rows: list) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
