"""``arrcoc-rt train``: learn the balancer against a frozen VLM (docs/TRAINING.md).

Loss per question, weighted (defaults of seed 003): answer 1.0 (the frozen model's cross-entropy on
the reference answer, seeing exactly the tokens the pipeline would give it), efficiency 0.3
(relu(mean tokens per region / target - 1), target 200), diversity 0.1 (KL of the levels-of-detail
usage from uniform). The answer term reaches the balancer by REINFORCE with a leave-one-out
baseline over ``samples`` sampled selections per question; the other two are smooth in the keys and
take their gradient directly.

Schedule (seed 004 / 003 defaults): AdamW lr 1e-4, weight decay 0.01, linear warm-up over 1,000
steps, gradient norm clipped to 1.0, batch 128. Curriculum: still images, then video frames, then
everything with the hardest quarter (highest answer loss when the stage starts) at twice the weight.
Deterministic on CPU for a given seed; a checkpoint holds everything a resumed run needs.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import reference as R
from ..weights import save_weights
from .answer import answer_ids, answer_loss
from .examples import pack_features, prepare
from .policy import BalancerPolicy, sample_order, top_order

STAGES = ("images", "video", "hard")


def _number(x) -> float:
    """A logged number from a float or a tensor on the graph (without torch's warning)."""
    return float(x.detach()) if hasattr(x, "detach") else float(x)


@dataclass
class TrainConfig:
    steps: int = 3000
    batch_size: int = 128
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup: int = 1000
    clip: float = 1.0
    samples: int = 2                 # sampled selections per question (leave-one-out baseline)
    temperature: float = 0.1         # of the sampling softmax over keys in [0, 1]
    dropout: float = 0.1             # after each hidden layer of the balancer (seed 004), training only
    relative_lr: bool = True         # each tensor's step is lr x its entries' size (_step_scale)
    answer_weight: float = 1.0
    efficiency_weight: float = 0.3
    diversity_weight: float = 0.1
    target_tokens: float = 200.0
    stage_fractions: tuple = (0.5, 0.25, 0.25)   # images, video, hard; a stage without data is skipped
    hard_share: float = 0.25
    hard_weight: float = 2.0
    checkpoint_every: int = 100
    seed: int = 0


# What a resumed run may change: how long it runs and how often it saves (the rest would make the
# checkpoint's optimizer state and examples mean something else).
RESUMABLE_CHANGES = ("steps", "checkpoint_every")


def check_config(cfg: "TrainConfig") -> None:
    """ValueError naming the first option out of range, before any work: a negative clip reverses
    every step, a zero target or hard weight divides by zero, NaN spreads to every weight."""
    def number(name, lo, *, above=False, hi=None, below=False, whole=False):
        v = getattr(cfg, name)
        ok = (not isinstance(v, bool) and isinstance(v, (int, np.integer) if whole else (int, float, np.number))
              and math.isfinite(v) and (v > lo if above else v >= lo)
              and (hi is None or (v < hi if below else v <= hi)))
        if not ok:
            kind = "an int" if whole else "a finite number"
            rng = f"{'>' if above else '>='} {lo}" + ("" if hi is None else f" and {'<' if below else '<='} {hi}")
            raise ValueError(f"{name}: {v!r} is out of range; expected {kind} {rng}")

    for name in ("steps", "batch_size", "samples", "checkpoint_every"):
        number(name, 1, whole=True)
    number("warmup", 0, whole=True)
    number("seed", 0, whole=True)
    for name in ("lr", "temperature", "clip", "target_tokens", "hard_weight"):
        number(name, 0, above=True)
    for name in ("weight_decay", "answer_weight", "efficiency_weight", "diversity_weight"):
        number(name, 0)
    number("hard_share", 0, hi=1)
    number("dropout", 0, hi=1, below=True)


@dataclass
class Progress:
    step: int = 0
    hard: list = field(default_factory=list)   # indices of the hard examples (stage 3)


# A zero tensor's scale: its layer's weights' (a bias moves with what it is added to), else these.
_ZERO_SCALE = {"b1": "W1", "ctx_b1": "ctx_W1", "ctx_W2": 0.1, "ctx_b2": 0.1}


def _step_scale(params: dict, key: str) -> float:
    """The size of a parameter tensor's entries: the root mean square of its nonzero entries at the
    start. Adam moves every entry by about lr a step whatever its size; the untrained default builds
    its mean-of-the-scores MLP from entries of 1e-5 .. 1e4 (LayerNorms kept in their linear range),
    which one step of 0.05 would erase. Steps of lr x scale (at most lr) keep the small tensors'
    relative change like the others'."""
    a = params[key].detach().abs()
    nz = a[a > 0]
    if nz.numel():
        return min(1.0, float((nz ** 2).mean().sqrt()))
    other = _ZERO_SCALE.get(key, 1.0)
    return _step_scale(params, other) if isinstance(other, str) else float(other)


def _lr_factor(step: int, warmup: int) -> float:
    return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


class Trainer:
    """Trains ``weights`` (a weights dict; the untrained default when None) on ``examples`` against
    ``adapter``'s frozen model, with ``pipeline`` (an arrcoc_rt.Pipeline of the frames' size, whose
    configuration gives the saccades, budgets and strategy knobs). Writes to ``out``: log.csv,
    checkpoint.pt, weights.npz (the last) and config.json."""

    def __init__(self, adapter, pipeline, examples: list, out, config: TrainConfig | None = None, weights=None,
                 progress: bool = False):
        import torch

        self.torch = torch
        self.adapter, self.pipeline = adapter, pipeline
        self.cfg = config or TrainConfig()
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        if not examples:
            raise ValueError("examples: nothing to train on")
        check_config(self.cfg)
        if pipeline.config["saccades"] < 1:
            raise ValueError("saccades: the pipeline places none; training learns which saccades to place "
                             "(its loss has nothing to follow): give saccades >= 1")
        from ..weights import default_weights

        # The frozen parts give the scores as the balancer's inputs: unweighted (context network off).
        pipeline.set_weights(default_weights())
        self.examples = [prepare(e, pipeline, adapter) for e in examples]
        for p in self.examples:
            p.answer_ids = answer_ids(adapter, p.example.answer)
        pc = pipeline.config
        self.alloc = {k: pc[k] for k in ("steepness", "offset", "total_budget", "gestalt_lod", "saccades",
                                         "gestalt_x", "gestalt_y", "text_floor", "strategy")}
        # what the examples are: a resumed run must train on the same ones
        self.examples_key = hashlib.sha256(json.dumps(
            [[str(p.example.question), str(p.example.answer), list(p.example.frame.shape)] for p in self.examples]
        ).encode()).hexdigest()[:16]

        start = weights if weights is not None else default_weights()
        if not R.context_on(start):
            # A context network of zeros has no gradient past its output bias: start its first layer
            # small and random (seeded) and its output layer at zero -- still exactly uniform weights.
            # Inputs that are 0 in every example (no query embedding without an encoder) get no
            # gradient: their columns start at 0, not at random values inference would then apply.
            rng = np.random.default_rng([self.cfg.seed, 1 << 20])
            used = np.any(np.stack([p.context for p in self.examples]) != 0, axis=0)
            w1 = rng.normal(0, 0.1, np.shape(start["ctx_W1"])) * used[None, :]
            start = dict(start, ctx_W1=w1.astype(np.float32), ctx_b1=np.full(np.shape(start["ctx_b1"]), 0.1, np.float32))
        self.policy = BalancerPolicy(start)
        groups = [{"params": [self.policy.params[k]], "scale": _step_scale(self.policy.params, k) if self.cfg.relative_lr
                   else 1.0} for k in self.policy.params]
        self.opt = torch.optim.AdamW(groups, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.state = Progress()
        self.show_progress = progress
        self.stage_of = self._stage_plan()

    # ------------------------------------------------------------------ plan
    def _stage_plan(self) -> list:
        """The stage of each step: images, video, hard; a stage with no examples gives its steps to
        the next one that has (the hard stage always has)."""
        have = {"images": any(p.example.kind == "image" for p in self.examples),
                "video": any(p.example.kind == "video" for p in self.examples), "hard": True}
        counts = [int(round(f * self.cfg.steps)) for f in self.cfg.stage_fractions]
        counts[-1] = self.cfg.steps - sum(counts[:-1])
        plan, carry = [], 0
        for name, n in zip(STAGES, counts):
            if have[name]:
                plan += [name] * (n + carry)
                carry = 0
            else:
                carry += n
        return plan[: self.cfg.steps]

    def _pool(self, stage: str) -> tuple[list, np.ndarray]:
        """(example indices, their loss weights) of a stage."""
        if stage == "images":
            idx = [i for i, p in enumerate(self.examples) if p.example.kind == "image"]
        elif stage == "video":
            idx = [i for i, p in enumerate(self.examples) if p.example.kind == "video"]
        else:
            idx = list(range(len(self.examples)))
        w = np.array([self.cfg.hard_weight if (stage == "hard" and i in self.state.hard) else 1.0 for i in idx])
        return idx, w

    # ------------------------------------------------------------------ one question
    def _scores(self, p):
        t = self.torch
        return tuple(t.from_numpy(s) for s in p.scores)

    def _soft_budget(self, key):
        a = self.alloc
        return 64.0 + 336.0 * (key.clamp(0, 1) ** R.budget_kappa(a["steepness"]) + a["offset"]).clamp(0, 1)

    def _smooth_terms(self, p, key, order):
        """Efficiency and diversity of a selection, differentiable in the keys."""
        t = self.torch
        G = len(p.gestalt_positions)
        b = self._soft_budget(key[t.from_numpy(order)]) if len(order) else key.new_zeros(0)
        mean_tokens = (G * self.alloc["gestalt_lod"] + b.sum()) / max(1, G + len(order))
        efficiency = t.relu(mean_tokens / self.cfg.target_tokens - 1.0)
        if len(order):
            lods = t.tensor(R.LODS, dtype=key.dtype)
            usage = t.softmax(-(b[:, None] - lods[None, :]).abs() / 32.0, dim=1).mean(0)
            diversity = (usage * (usage * len(R.LODS)).clamp_min(1e-12).log()).sum()
        else:
            diversity = key.new_zeros(())
        return efficiency, diversity, mean_tokens

    def _inputs(self, p, key_np, order):
        feats, lod, _, positions = pack_features(p, key_np, order, self.alloc)
        import torch

        # Positions in cells of the model's grid: LLaVA-NeXT lays its tokens out in the grid's rows
        # (each closed by a newline token); LLaVA-1.5 ignores them.
        gh, gw = (int(v) for v in p.grid.shape[-2:])
        width, height = p.size
        cells = positions * np.array([gw / width, gh / height])
        return self.adapter.prepare_features(torch.from_numpy(feats).float(), p.example.question, positions=cells,
                                             grid=(gh, gw)), lod

    def question_loss(self, p, rng: np.random.Generator):
        """(loss with gradient, logged numbers) of one question with ``samples`` sampled selections."""
        cfg = self.cfg
        info, sal, query = self._scores(p)
        key = self.policy.key(info, sal, query, p.px, p.py, cfg.dropout, rng, p.context)
        key_np = key.detach().numpy()
        S = min(self.alloc["saccades"], len(p.candidates))
        costs, logps, effs, divs, toks, hits = [], [], [], [], [], []
        for _ in range(cfg.samples):
            order, logp = sample_order(key, S, cfg.temperature, rng)
            inputs, _ = self._inputs(p, key_np, order)
            ce, right = answer_loss(self.adapter, inputs, p.answer_ids)
            eff, div, mean_tokens = self._smooth_terms(p, key, order)
            costs.append(ce)
            logps.append(logp)
            effs.append(eff)
            divs.append(div)
            toks.append(_number(mean_tokens))
            hits.append(right)
        costs_np = np.array(costs)
        k = len(costs)
        baseline = (costs_np.sum() - costs_np) / (k - 1) if k > 1 else np.zeros(k)
        pg = sum((cfg.answer_weight * (c - b)) * lp for c, b, lp in zip(costs_np, baseline, logps)) / k
        smooth = (cfg.efficiency_weight * sum(effs) + cfg.diversity_weight * sum(divs)) / k
        loss = pg + smooth
        return loss, {"answer_loss": float(costs_np.mean()), "efficiency": _number(sum(effs) / k),
                      "diversity": _number(sum(divs) / k), "accuracy": float(np.mean(hits)),
                      "tokens_per_question": float(np.mean(toks))}

    # ------------------------------------------------------------------ the loop
    def train(self, until: int | None = None) -> dict:
        """Runs (or resumes) to ``cfg.steps``, or stops after step ``until`` with a checkpoint (as an
        interrupted run would have left one); returns the last logged row."""
        from tqdm import tqdm

        t = self.torch
        cfg = self.cfg
        log_path = self.out / "log.csv"
        fields = ["step", "stage", "lr", "loss", "answer_loss", "efficiency", "diversity", "accuracy",
                  "tokens_per_question", "seconds"]
        if self.state.step == 0:
            with open(log_path, "w", newline="") as f:
                csv.writer(f).writerow(fields)
        # (written again on a resume: a longer run's steps)
        (self.out / "config.json").write_text(json.dumps(asdict(cfg) | {"allocation": self.alloc,
                                                                         "examples": len(self.examples),
                                                                         "examples_key": self.examples_key}, indent=2))
        row = {}
        bar = tqdm(total=cfg.steps, initial=self.state.step, unit="step", disable=not self.show_progress)
        stop = cfg.steps if until is None else min(until, cfg.steps)
        while self.state.step < stop:
            step = self.state.step
            stage = self.stage_of[step]
            if stage == "hard" and (step == 0 or self.stage_of[step - 1] != "hard") and not self.state.hard:
                self.state.hard = self._hardest()
            idx, w = self._pool(stage)
            rng = np.random.default_rng([cfg.seed, step])
            pick = rng.choice(len(idx), size=min(cfg.batch_size, len(idx)), replace=len(idx) < cfg.batch_size)
            t0 = time.perf_counter()
            for g in self.opt.param_groups:
                g["lr"] = cfg.lr * g["scale"] * _lr_factor(step, cfg.warmup)
            self.opt.zero_grad()
            total, logs = 0.0, []
            weights = w[pick] / w[pick].sum()
            for j, wj in zip(pick, weights):
                loss, numbers = self.question_loss(self.examples[idx[j]], rng)
                (loss * float(wj)).backward()
                total += _number(loss) * float(wj)
                logs.append(numbers)
            if not math.isfinite(total):  # stop here: every later step (and checkpoint) would be NaN
                bar.close()
                raise FloatingPointError(f"step {step + 1}: the loss is {total}; training stopped before this step "
                                         f"changed the weights (checkpoint.pt holds step {self._saved_step()})")
            t.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.clip)
            self.opt.step()
            self.state.step += 1
            row = {"step": self.state.step, "stage": stage, "lr": cfg.lr * _lr_factor(step, cfg.warmup), "loss": total,
                   **{k: float(np.average([n[k] for n in logs], weights=weights)) for k in logs[0]},
                   "seconds": time.perf_counter() - t0}
            with open(log_path, "a", newline="") as f:
                csv.writer(f).writerow([row[k] for k in fields])
            bar.set_postfix_str(f"{stage} loss {total:.3f} acc {row['accuracy']:.2f} tokens {row['tokens_per_question']:.0f}",
                                refresh=False)
            bar.update(1)
            if self.state.step % cfg.checkpoint_every == 0 or self.state.step in (cfg.steps, stop):
                self.save_checkpoint()
        bar.close()
        if self.state.step == cfg.steps:
            save_weights(self.policy.weights(), self.out / "weights.npz")
        return row

    def _hardest(self) -> list:
        """The hard stage's examples: the ``hard_share`` with the highest answer loss under the
        current weights (the pipeline's top-S selection)."""
        losses = [self.evaluate_example(p)["answer_loss"] for p in self.examples]
        n = max(1, int(round(self.cfg.hard_share * len(losses))))
        return sorted(np.argsort(-np.asarray(losses), kind="stable")[:n].tolist())

    def evaluate_example(self, p) -> dict:
        """Answer loss and whether it is right with the current weights' top-S selection."""
        t = self.torch
        with t.no_grad():
            key = self.policy.key(*self._scores(p), p.px, p.py, context=p.context).numpy()
        order = top_order(key, min(self.alloc["saccades"], len(p.candidates)))
        inputs, _ = self._inputs(p, key, order)
        ce, right = answer_loss(self.adapter, inputs, p.answer_ids)
        return {"answer_loss": ce, "right": right}

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        path = self.out / "checkpoint.pt"
        tmp = path.with_suffix(".tmp")
        self.torch.save({"params": {k: v.detach().clone() for k, v in self.policy.params.items()},
                         "optimizer": self.opt.state_dict(), "step": self.state.step, "hard": self.state.hard,
                         "config": asdict(self.cfg), "allocation": self.alloc, "examples_key": self.examples_key},
                        tmp)
        tmp.replace(path)
        return path

    def _saved_step(self):
        path = self.out / "checkpoint.pt"
        return int(self.torch.load(path, weights_only=False)["step"]) if path.exists() else "none"

    def resume(self, path=None) -> int:
        """Loads a checkpoint (default: ``out/checkpoint.pt``); returns the step it was at. The run's
        options must be the checkpoint's (``steps`` and ``checkpoint_every`` may change), and so
        must its examples and allocation; log.csv is cut back to the checkpoint's step."""
        ck = self.torch.load(Path(path) if path else self.out / "checkpoint.pt", weights_only=False)
        now = asdict(self.cfg) | {"allocation": self.alloc, "examples_key": self.examples_key}
        then = ck["config"] | {k: ck[k] for k in ("allocation", "examples_key") if k in ck}
        changed = sorted(k for k in then if k not in RESUMABLE_CHANGES and k in now and then[k] != now[k])
        if changed:
            said = "; ".join(f"{k} {then[k]!r} then, {now[k]!r} now" for k in changed)
            raise ValueError(f"resume: the checkpoint was made with other options or data ({said}); give the same "
                             "ones, or another --out for a new run")
        if int(ck["step"]) > self.cfg.steps:
            raise ValueError(f"resume: the checkpoint is at step {ck['step']}, beyond steps {self.cfg.steps}")
        with self.torch.no_grad():
            for k, v in ck["params"].items():
                self.policy.params[k].copy_(v)
        self.opt.load_state_dict(ck["optimizer"])
        self.state = Progress(step=int(ck["step"]), hard=list(ck["hard"]))
        log_path = self.out / "log.csv"
        if log_path.exists():  # rows an interrupted run logged after its last checkpoint are done again
            with open(log_path, newline="") as f:
                rows = list(csv.reader(f))
            kept = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= self.state.step]
            with open(log_path, "w", newline="") as f:
                csv.writer(f).writerows(kept)
        return self.state.step
