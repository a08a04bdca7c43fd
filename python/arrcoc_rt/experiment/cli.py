"""``arrcoc-rt experiment``: does arrcoc_rt's choice of visual tokens help a frozen VLM answer?

    arrcoc-rt experiment --vlm llava:/models/llava-1.5-7b-hf                  built-in synthetic set
    arrcoc-rt experiment --vlm llava:PATH --data vqav2:/data/vqa --sample 1000 --seed 0 --encoder clip:/models/clip
    arrcoc-rt experiment --vlm llava:PATH --data textvqa:/data/textvqa --study augmentation
    arrcoc-rt experiment --vlm llava:PATH --data questions.jsonl --study equal --tokens 64,144,256
    arrcoc-rt experiment --vlm llava:PATH --data questions.jsonl --study budget --budget fast,balanced
"""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """Two studies on a frozen VLM (docs/VLM.md, "The experiment command"). The augmentation study (the
seeds' running-back experiment): the 256 gestalt tokens alone against gestalt + S saccades chosen at random, by
saliency, by the query and balanced, for several S and with overlap between saccades and the gestalt prevented
or allowed, with the seeds' decision rules (STOP / selection matters / query-awareness helps / GO). The
equal-token study: at N visual tokens reaching the language model, all tokens, uniform pooling of the model's
grid, arrcoc_rt's four strategies, an attention-free VisionZip-style selection and, on video, EVS-style
temporal pruning. The budget study (--budget): each question allocated at its tier's total budget under a
preset, as ask(budget=...) does, reported per budget bucket with the tier accuracy where questions are
labelled. Reports VQA accuracy, visual tokens, latency per stage (median, p95) and peak memory as a
table (printed and report.txt), results.json, summary.csv, records.csv (and budget.csv) in --out."""


def _ints(text: str, name: str) -> list:
    try:
        values = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise ValueError(f"{name} {text!r}: expected integers separated by commas, e.g. 100,200") from None
    if not values or any(v < 1 for v in values):
        raise ValueError(f"{name} {text!r}: expected positive integers separated by commas")
    return list(dict.fromkeys(values))


def _choices(text: str, name: str, allowed) -> list:
    values = [t for t in text.replace(" ", "").split(",") if t]
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise ValueError(f"{name} {text!r}: expected some of {', '.join(allowed)} separated by commas")
    return list(dict.fromkeys(values))


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``experiment`` on an argparse subparsers object; ``run`` is its ``func`` default."""
    from .methods import EQUAL_METHODS

    p = subparsers.add_parser("experiment", help="the seeds' augmentation study and an equal-token comparison on a "
                                                 "frozen VLM (VQA accuracy, latency, memory)", description=DESCRIPTION)
    p.add_argument("--vlm", required=True, metavar="KIND:PATH",
                   help="the frozen model: llava:PATH, llava_next:PATH, qwen2_vl:PATH or qwen2_5_vl:PATH (a local "
                        "checkpoint folder); every method runs on each")
    p.add_argument("--data", default="builtin", metavar="SPEC",
                   help="builtin (the synthetic set; default), QUESTIONS.jsonl, vqav2:ROOT or textvqa:ROOT")
    p.add_argument("--split", help="vqav2 / textvqa split (default val2014 / val)")
    p.add_argument("--images", metavar="DIR", help="the image folder of vqav2 / textvqa (default: under ROOT)")
    p.add_argument("--sample", type=int, metavar="N", help="this many questions drawn at random (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of --sample and of the random strategy (default 0)")
    p.add_argument("--study", default="augmentation,equal", metavar="augmentation,equal,budget",
                   help="which studies to run (default: augmentation and equal; budget too when --budget is given)")
    p.add_argument("--budget", metavar="PRESET,...",
                   help="budget study: presets (fast, balanced, accurate); each question is allocated at its tier's "
                        "total budget (as ask(budget=PRESET)), a balanced pack of --main-saccades saccades with the "
                        "first --overlap; reported per tier (default with --study budget: balanced)")
    p.add_argument("--tier-classifier", metavar="PATH",
                   help="budget study: a TierClassifier (arrcoc-rt train --tiers) assigns the tiers (default: the "
                        "rules)")
    p.add_argument("--saccades", default="100,200,273,400", metavar="S,S,...",
                   help="augmentation: saccade counts (default 100,200,273,400)")
    p.add_argument("--main-saccades", type=int, default=273,
                   help="augmentation: the count the decision is read from (default 273, or the nearest run); "
                        "budget: the saccades of its pack")
    p.add_argument("--overlap", default="prevented,allowed", metavar="prevented,allowed",
                   help="augmentation: saccades on gestalt patches prevented and/or allowed (default both; the "
                        "decision reads 'prevented', the seeds' protocol)")
    p.add_argument("--tokens", default="64,144,256,529", metavar="N,N,...",
                   help="equal-token study: visual tokens reaching the language model (default 64,144,256,529)")
    p.add_argument("--methods", default=",".join(EQUAL_METHODS), metavar="M,M,...",
                   help=f"equal-token study: methods (default all of {','.join(EQUAL_METHODS)})")
    p.add_argument("--encoder", metavar="clip:PATH|siglip:PATH",
                   help="text encoder for the question as a query (the 'query' arm needs it; 'balanced' uses it)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N, model and pipeline (default auto)")
    p.add_argument("--dtype", help="model dtype (default: float16 on CUDA, float32 on the CPU)")
    p.add_argument("--prompt", default=None, metavar="TEMPLATE",
                   help="the question's prompt, with {question} (default: '{question}\\nAnswer the question "
                        "using a single word or phrase.', LLaVA-1.5's VQA prompt)")
    p.add_argument("--max-new-tokens", type=int, default=16, help="longest answer in tokens (default 16)")
    p.add_argument("--max-side", type=int, default=640,
                   help="frames are shrunk so their longer side is at most this (default 640; 0: never)")
    p.add_argument("--saliency", default="salience", choices=["salience", "sobel"],
                   help="what the 'saliency' method ranks by: salience (this project's score: centre-surround, "
                        "colour contrast, fovea, motion) or sobel (seed 000's baseline as written: the patch's mean "
                        "Sobel edge magnitude) (default salience)")
    p.add_argument("--cascade", default="wide", choices=["wide", "default"],
                   help="wide (default): every cluster's patches are saccade candidates, so hundreds of saccades "
                        "can be placed; default: the pipeline's 10 x 50 candidates")
    p.add_argument("--gestalt-lod", type=int, default=64, choices=[64, 128, 256, 384, 400],
                   help="level of detail of the gestalt tokens (default 64, the pipeline's)")
    p.add_argument("--total-budget", type=int, help="the pipeline's total_budget (default: 100000, raised to fit)")
    p.add_argument("--context-frames", type=int, default=1,
                   help="video: frames before the one asked about that go through the pipeline first, and EVS's "
                        "previous frame (default 1; 0: EVS selects as uniform pooling does)")
    p.add_argument("--warmup", type=int, default=1, help="questions run untimed per method first (default 1)")
    p.add_argument("--margin", type=float, default=0.0,
                   help="points by which an arm must exceed another to 'beat' it in the rules (default 0)")
    p.add_argument("--synthetic-count", type=int, default=6,
                   help="builtin: questions per image kind; videos are half as many (default 6)")
    p.add_argument("--synthetic-size", default="640x480", metavar="WxH", help="builtin: frame size (default 640x480)")
    p.add_argument("--out", default="arrcoc-experiment", metavar="DIR",
                   help="folder for report.txt, results.json, summary.csv, records.csv (default arrcoc-experiment)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)
    return p


def _error(message: str) -> int:
    print(f"arrcoc-rt: error: {message}", file=sys.stderr)
    return 2


def run(args) -> int:
    """Runs ``arrcoc-rt experiment``; returns the exit code (2 for bad input, reason on stderr)."""
    from ..runtime import resolve_device
    from .data import DatasetError, check_files, fit_frame, load_dataset, sample, thresholds_for
    from .methods import EQUAL_METHODS, build_methods
    from .report import build_result, format_report, write_outputs
    from .runner import DEFAULT_PROMPT, Settings, run as run_methods, terminal_progress

    try:
        from ..vlm.tiers import PRESETS

        studies = _choices(args.study, "--study", ("augmentation", "equal", "budget"))
        budgets = _choices(args.budget or "balanced", "--budget", tuple(PRESETS))
        if args.budget and "budget" not in studies:
            studies.append("budget")
        saccades = _ints(args.saccades, "--saccades")
        tokens = _ints(args.tokens, "--tokens")
        overlaps = [o == "allowed" for o in _choices(args.overlap, "--overlap", ("prevented", "allowed"))]
        equal_methods = _choices(args.methods, "--methods", EQUAL_METHODS)
        try:
            size = tuple(int(v) for v in args.synthetic_size.lower().split("x"))
            assert len(size) == 2
        except (ValueError, AssertionError):
            raise ValueError(f"--synthetic-size {args.synthetic_size!r}: expected WIDTHxHEIGHT, e.g. 640x480") from None
        prompt = args.prompt if args.prompt is not None else DEFAULT_PROMPT
        if "{question}" not in prompt:
            raise ValueError("--prompt: the template needs {question}")
        try:  # other {...} fields, or lone braces, would fail at the first question
            prompt.format(question="")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"--prompt: {{question}} is its only field; write other braces doubled ({{{{ }}}}): "
                             f"{type(e).__name__}: {e}") from None
        if args.dtype and args.dtype not in ("float16", "bfloat16", "float32"):
            raise ValueError(f"--dtype {args.dtype!r}: expected float16, bfloat16 or float32")
        for name in ("max_new_tokens", "context_frames", "warmup", "max_side"):
            if getattr(args, name) < (1 if name == "max_new_tokens" else 0):
                raise ValueError(f"--{name.replace('_', '-')}: {getattr(args, name)} is out of range")
        if not (args.margin >= 0 and args.margin < float("inf")):  # NaN fired neither rule; < 0 "beat" by losing
            raise ValueError(f"--margin: {args.margin} is out of range; expected points >= 0")
        kind, ordinal = resolve_device(args.device)
    except (TypeError, ValueError) as e:
        return _error(str(e))
    if args.encoder and not args.encoder.startswith(("clip:", "siglip:")):
        return _error(f"--encoder {args.encoder!r}: expected clip:PATH or siglip:PATH (a text encoder)")
    from ..commands.common import _output_folder

    _output_folder(args.out, "--out", create=True)  # now, not after the whole study (its results were lost)
    tier_classifier = None
    if args.tier_classifier:
        from ..vlm.tiers import TierClassifier

        try:
            tier_classifier = TierClassifier.load(args.tier_classifier)
        except ValueError as e:
            return _error(str(e))
    try:
        questions = load_dataset(args.data, split=args.split, images=args.images,
                                 synthetic_count=args.synthetic_count, synthetic_size=size)
        questions = sample(questions, args.sample, args.seed)
        check_files(questions)
    except (DatasetError, ValueError) as e:
        return _error(str(e))
    model_device = "cpu" if kind == "cpu" else f"cuda:{ordinal}"
    from ..vlm import make_adapter

    options = {"device": model_device}
    if args.dtype:
        options["dtype"] = args.dtype
    try:
        adapter = make_adapter(args.vlm, **options)
    except (TypeError, ValueError) as e:
        return _error(str(e))
    encoder = None
    if args.encoder:
        from ..encoders import make_encoder

        try:
            encoder = make_encoder(args.encoder, args.device)
        except (TypeError, ValueError) as e:
            return _error(str(e))
    try:
        first, _ = fit_frame(questions[0].load_frames(0)[-1], args.max_side or None)
        grid = tuple(int(v) for v in adapter.vision_features(first).shape[-2:])
    except DatasetError as e:
        return _error(str(e))
    methods, notes = build_methods(studies, grid=grid, saccades=saccades, overlaps=overlaps, tokens=tokens,
                                   equal_methods=equal_methods, has_query=encoder is not None,
                                   has_video=any(q.is_video for q in questions), budgets=budgets,
                                   budget_saccades=args.main_saccades, budget_overlap=overlaps[0])
    if args.context_frames == 0 and any(m.name == "evs" for m in methods):
        notes.append("equal: --context-frames 0: EVS has no previous frame, so its selection is uniform pooling's")
    from ..vlm.base import VLMAdapter

    if type(adapter).prepare_features is VLMAdapter.prepare_features and any(not m.is_pack for m in methods):
        notes.append(f"equal: {type(adapter).__name__} takes no chosen features (prepare_features): the grid "
                     "methods (all, uniform, visionzip, evs) are left out")
        methods = [m for m in methods if m.is_pack]
    if not methods:
        return _error("nothing to run: check --study, --methods and --tokens against the notes above"
                      + "".join(f"\nnote: {n}" for n in notes))
    settings = Settings(prompt=prompt, max_new_tokens=args.max_new_tokens, context_frames=args.context_frames,
                        warmup=args.warmup, max_side=args.max_side or None, device=args.device, encoder=encoder,
                        cascade=args.cascade, gestalt_lod=args.gestalt_lod, total_budget=args.total_budget,
                        seed=args.seed, grid=grid, tier_classifier=tier_classifier,
                        saliency_strategy="sobel" if args.saliency == "sobel" else "saliency")
    benchmark, thresholds = thresholds_for(questions)
    print(f"arrcoc-rt experiment: {len(questions)} questions from {args.data}, {len(methods)} methods, model grid "
          f"{grid[0]}x{grid[1]}", file=sys.stderr)
    progress = None if args.quiet or not sys.stderr.isatty() else terminal_progress
    try:
        records, info = run_methods(adapter, questions, methods, settings, progress=progress)
    except DatasetError as e:
        return _error(str(e))
    config = {"vlm": args.vlm, "data": args.data, "split": args.split, "sample": args.sample, "seed": args.seed,
              "questions": len(questions), "video_questions": sum(q.is_video for q in questions),
              "studies": studies, "saliency": args.saliency, "saccades": saccades, "overlap": ["allowed" if o else "prevented" for o in overlaps],
              "tokens": tokens, "encoder": args.encoder, "device": model_device, "pipeline_device": args.device,
              "grid": list(grid), "prompt": prompt, "max_new_tokens": args.max_new_tokens, "max_side": args.max_side,
              "cascade": args.cascade, "gestalt_lod": args.gestalt_lod, "total_budget": args.total_budget,
              "context_frames": args.context_frames, "warmup": args.warmup, "benchmark": benchmark,
              "budget": budgets if "budget" in studies else None,
              "tiers_by": f"classifier {args.tier_classifier}" if args.tier_classifier else "rules",
              "labelled_tiers": sum(q.tier is not None for q in questions)}
    result = build_result(records, config=config, notes=notes, run_info=info, thresholds=thresholds,
                          margin=args.margin, main_saccades=args.main_saccades)
    print(format_report(result))
    paths = write_outputs(result, args.out)
    print(f"wrote {', '.join(paths.values())}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    """``python -m arrcoc_rt.experiment.cli [args]``: the experiment command on its own."""
    parser = argparse.ArgumentParser(prog="arrcoc-rt")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["experiment", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
