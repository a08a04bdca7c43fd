"""`arrcoc-rt ask`: a frozen VLM's answer about one image, fed only the allocated tokens."""

from __future__ import annotations

import sys
from pathlib import Path

from .common import _budget_option, _error, _read_frames


def _cmd_ask(args) -> int:
    from ..pipeline import Pipeline
    from ..runtime import resolve_device
    from ..stream import _answer, _answer_passes
    from ..vlm import make_adapter

    if not args.question.strip():
        raise _error("question: expected a non-empty question")
    # every option before the model loads (minutes for a large one)
    if args.passes < 1:
        raise _error(f"--passes {args.passes}: expected at least 1")
    if args.tokens is not None and args.tokens < 1:
        raise _error(f"--tokens {args.tokens}: the visual tokens that reach the model; expected at least 1 "
                     "(leave it out for all kept)")
    if args.max_new_tokens < 1:
        raise _error(f"--max-new-tokens {args.max_new_tokens}: the longest answer in tokens; expected at least 1")
    budget = _budget_option(args.budget)
    frames = _read_frames(Path(args.image), 1)
    h, w = frames[0].shape[:2]
    kind, ordinal = resolve_device(args.device)
    vlm = make_adapter(args.vlm, device="cpu" if kind == "cpu" else f"cuda:{ordinal}", tokens=args.tokens)
    result = Pipeline(w, h, device=args.device).process(frames[0])
    tier = total = None
    if budget is not None:
        from ..vlm.tiers import question_tier, tier_budget

        tier = question_tier(args.question).name if isinstance(budget, str) else None
        total = tier_budget(tier, {}, budget) if tier else budget
    if args.passes == 1 and budget is None:
        a = _answer(vlm, frames[0], result, args.question, args.max_new_tokens)
    else:
        extra = {} if total is None else {"total_budget": total}
        a = _answer_passes(vlm, frames[0], None if total is not None else result, args.question, args.passes,
                           args.max_new_tokens, lambda width, height: Pipeline(width, height, device=args.device,
                                                                              **extra), tier, (0, None))
    if a.total_budget is not None:
        print(f"budget: {a.total_budget}" + (f" (a {a.tier} question)" if a.tier else ""), file=sys.stderr)
    print(a.text)
    for i, p in enumerate(a.passes):
        print(f"pass {i + 1}: {p.text!r} (uncertainty {p.uncertainty:.3f}, exploration {p.exploration:g}, "
              f"{p.visual_tokens} visual tokens)", file=sys.stderr)
    print(f"({a.visual_tokens} visual tokens; {a.latency_ms['total']:.0f} ms)", file=sys.stderr)
    return 0
