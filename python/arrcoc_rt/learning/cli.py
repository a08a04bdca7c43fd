"""``arrcoc-rt train``: learn the balancer against a frozen VLM (docs/TRAINING.md).

    arrcoc-rt train --vlm llava:/models/llava-1.5-7b-hf --data vqav2:/data/vqa --out runs/balancer
    arrcoc-rt train --vlm llava:PATH --data questions.jsonl --steps 2000 --resume
    arrcoc-rt train --vlm llava:PATH --data synthetic           the built-in colour task
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields


def _error(message: str) -> int:
    print(f"arrcoc-rt: error: {message}", file=sys.stderr)
    return 2


def add_parser(subparsers) -> argparse.ArgumentParser:
    from .trainer import TrainConfig

    d = TrainConfig()
    p = subparsers.add_parser("train", help="learn the balancer against a frozen VLM (its answers' loss)",
                              description="Learns the balancer's weights (MLP, opponent dials, mix) so that the frozen "
                                          "model answers better from the tokens the pipeline gives it, with few tokens. "
                                          "Writes weights.npz (Pipeline(weights=...)), log.csv, checkpoint.pt and "
                                          "config.json to --out.")
    p.add_argument("--vlm", metavar="KIND:PATH", help="the frozen model: llava:PATH or llava_next:PATH")
    p.add_argument("--tiers", metavar="FILE",
                   help="also train the question-tier classifier on this JSONL of {\"question\", \"tier\"} "
                        "(simple / medium / complex; 'builtin': the set shipped with the package); without --vlm "
                        "only the classifier. Writes tier_classifier.json and prints its held-out accuracy")
    p.add_argument("--data", default="synthetic", metavar="SPEC",
                   help="synthetic (the colour task; default), builtin (the experiment's set), QUESTIONS.jsonl, "
                        "vqav2:ROOT or textvqa:ROOT (the experiment command's formats)")
    p.add_argument("--split", help="vqav2 / textvqa split")
    p.add_argument("--images", metavar="DIR", help="the image folder of vqav2 / textvqa")
    p.add_argument("--sample", type=int, metavar="N", help="this many questions drawn at random (default: all)")
    p.add_argument("--max-side", type=int, default=640, help="frames larger than this are scaled down (default 640)")
    p.add_argument("--out", default="arrcoc-train", help="output folder (default arrcoc-train)")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    p.add_argument("--weights", help="start from these weights (.npz / .json; default: the untrained default)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N for the model and the pipeline (default cpu)")
    p.add_argument("--saccades", type=int, help="the pipeline's saccades (default: its default)")
    p.add_argument("--gestalt", type=int, metavar="K", help="a K x K gestalt grid (default: the pipeline's)")
    p.add_argument("--total-budget", type=int, help="the pipeline's total budget")
    p.add_argument("--text-floor", type=int, help="the pipeline's text guardrail (default: its default, 256); training's "
                                                  "packs do not model it: train and run with the same value, 0 to "
                                                  "rank exactly as trained (docs/TRAINING.md)")
    for f in fields(TrainConfig):
        if f.name in ("stage_fractions",):
            continue
        default = getattr(d, f.name)
        if isinstance(default, bool):  # --relative-lr / --no-relative-lr (type=bool would read "False" as True)
            p.add_argument("--" + f.name.replace("_", "-"), action=argparse.BooleanOptionalAction, default=default,
                           help=f"(default {default})")
            continue
        p.add_argument("--" + f.name.replace("_", "-"), type=type(default), default=default,
                       help=f"(default {default})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def examples_from(spec: str, *, split=None, images=None, sample=None, seed=0, max_side=640) -> list:
    """Training examples from the experiment command's formats (the question's first reference
    answer; the frame asked about; "video" for video questions), or the synthetic colour task."""
    from ..experiment.data import fit_frame, load_dataset, sample as draw
    from .examples import Example
    from .synthetic import colour_task

    if spec == "synthetic":  # a rough pointer: on the square, the default already finds it (TRAINING.md)
        return colour_task(sample or 256, seed=seed, pointer_offset=1.0)
    questions = draw(load_dataset(spec, split=split, images=images), sample, seed)
    out = []
    for q in questions:
        frame, scale = fit_frame(q.load_frames(0)[-1], max_side)
        box = [v * scale for v in q.box] if q.box else None
        out.append(Example(frame, q.question, q.answers[0], None, box, "video" if q.is_video else "image", q.id))
    return out


def train_tiers(spec: str, out) -> int:
    """Trains and saves the tier classifier; prints its 5-fold held-out accuracy."""
    from pathlib import Path

    from ..vlm.tiers import LABELLED_QUESTIONS, TierClassifier, cross_validate, load_labelled

    try:
        pairs = load_labelled(LABELLED_QUESTIONS if spec == "builtin" else spec)
    except (OSError, ValueError) as e:
        return _error(f"--tiers {spec}: {e}")
    if len(pairs) < 10:
        return _error(f"--tiers {spec}: {len(pairs)} questions; at least 10 are needed")
    cv = cross_validate(pairs)
    Path(out).mkdir(parents=True, exist_ok=True)
    TierClassifier().fit(pairs).save(Path(out) / "tier_classifier.json")
    per = ", ".join(f"{t} {v:.1%}" for t, v in cv["per_tier"].items())
    print(f"tier classifier: {cv['accuracy']:.1%} of {cv['questions']} questions right on held-out folds ({per}); "
          f"complex put in simple: {cv['complex_as_simple']:.1%}; wrote {out}/tier_classifier.json")
    return 0


def run(args) -> int:
    from ..experiment.data import DatasetError
    from ..pipeline import Pipeline
    from ..vlm import make_adapter
    from ..weights import load_weights
    from .trainer import TrainConfig, Trainer, check_config

    if args.tiers:
        rc = train_tiers(args.tiers, args.out)
        if rc or not args.vlm:
            return rc
    elif not args.vlm:
        return _error("give --vlm (the frozen model to train the balancer against), --tiers FILE, or both")
    try:
        cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name != "stage_fractions"})
        try:
            check_config(cfg)  # before the data and the model load
        except ValueError as e:  # named as the command line spells it
            name, _, rest = str(e).partition(":")
            raise ValueError(f"--{name.replace('_', '-')}:{rest}") from None
        for flag, v in (("--sample", args.sample), ("--gestalt", args.gestalt), ("--saccades", args.saccades)):
            if v is not None and v < 1:
                raise ValueError(f"{flag} {v} is out of range; expected >= 1")
        if args.max_side < 0:
            raise ValueError(f"--max-side {args.max_side} is out of range; expected >= 1 (0: no limit)")
        examples = examples_from(args.data, split=args.split, images=args.images, sample=args.sample, seed=args.seed,
                                 max_side=args.max_side)
        if not examples:
            raise ValueError(f"--data {args.data}: no questions")
        sizes = {e.frame.shape[:2] for e in examples}
        h = max(s[0] for s in sizes)
        w = max(s[1] for s in sizes)
        opts = {k: v for k, v in (("saccades", args.saccades), ("total_budget", args.total_budget),
                                  ("text_floor", args.text_floor)) if v is not None}
        if args.gestalt is not None:
            opts.update(gestalt_x=args.gestalt, gestalt_y=args.gestalt)
        pipeline = Pipeline(w, h, device=args.device, **opts)
        adapter = make_adapter(args.vlm, device=args.device)
        if not hasattr(adapter.model, "get_input_embeddings") or "qwen" in type(adapter).__name__.lower():
            raise ValueError(f"--vlm {args.vlm}: training needs a model that takes inputs_embeds alone (llava, llava_next)")
        weights = load_weights(args.weights) if args.weights else None
        trainer = Trainer(adapter, pipeline, examples, args.out, cfg, weights=weights, progress=not args.quiet)
        if args.resume:
            at = trainer.resume()
            if at == cfg.steps:
                trainer.train()  # no step left: it writes weights.npz, as a run reaching its last step does
                print(f"the run in {args.out} is already at step {at} of {cfg.steps}: nothing to train "
                      f"(wrote {args.out}/weights.npz; --steps N continues it)", file=sys.stderr)
                return 0
            print(f"resumed at step {at}", file=sys.stderr)
    except (DatasetError, ValueError, TypeError, OSError) as e:
        return _error(str(e))
    try:
        row = trainer.train()
    except FloatingPointError as e:
        return _error(str(e))
    except KeyboardInterrupt:
        print(f"interrupted at step {trainer.state.step}: {args.out}/checkpoint.pt holds the last checkpoint; the same "
              "command with --resume continues", file=sys.stderr)
        return 130
    print(f"trained {cfg.steps} steps on {len(examples)} questions: loss {row['loss']:.4f}, "
          f"answer loss {row['answer_loss']:.4f}, tokens per question "
          f"{row['tokens_per_question']:.0f}; wrote {args.out}/weights.npz, log.csv")
    return 0
