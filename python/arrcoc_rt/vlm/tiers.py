"""Budgets that follow the question (seed 003's tiers): a simple question gets few tokens, a hard one
many.

    tier = question_tier("What does the sign say?")      # Tier('complex', reasons=('reads text',))
    stream.ask("What does the sign say?", budget="balanced")   # re-allocated at that tier's budget

Seed 003 gives about 64, 180 and 400 tokens per patch region to simple, medium and complex
questions. Here a patch region's tokens are a saccade's level of detail (64..400), so a tier sets the
pipeline's ``total_budget`` to what the gestalt grid takes plus the saccades at the tier's tokens
each: ``gestalt_x * gestalt_y * gestalt_lod + saccades * tokens[tier]`` (default configuration:
16,384 + 273 x 64 / 180 / 400 = 33,856 / 65,524 / 125,584). The allocator keeps its highest-ranked
saccades within that budget, so a simple question sees fewer of them; a complex one sees them all.
Presets shift the tiers: ``fast`` (64 / 128 / 256), ``balanced`` (the seed's 64 / 180 / 400) and
``accurate`` (180 / 400 / 400: nothing is simple).

The tier comes from rules (keywords, question length, whether text must be read), checked on a
labelled question set shipped with the package (``tier_questions.jsonl``, scored by
``rule_accuracy``). A learned classifier comes second (``TierClassifier``: logistic regression over
hashed words and the rules' answer, trained by ``arrcoc-rt train --tiers FILE``; ``cross_validate``
scores it on held-out folds).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TIERS = ("simple", "medium", "complex")
PRESETS = {
    "fast": {"simple": 64, "medium": 128, "complex": 256},
    "balanced": {"simple": 64, "medium": 180, "complex": 400},  # seed 003
    "accurate": {"simple": 180, "medium": 400, "complex": 400},
}
LABELLED_QUESTIONS = Path(__file__).with_name("tier_questions.jsonl")

# Reading text needs full detail wherever the text is (seed 003: OCR-like questions are complex).
_READS_TEXT = re.compile(r"\b(read|reads|written|writing|say|says|said|text|word|words|letter|letters|digit|digits|"
                         r"number|numbers|numeral|sign|label|labels|title|caption|brand|logo|transcribe|spell|spelled|"
                         r"license plate|number plate|price|menu|headline|printed|handwritten|jersey|page|document|receipt|code|"
                         r"name|names|clock|what time)\b")
# Counting, comparing and explaining need several regions at once.
_REASONS = re.compile(r"\b(how many|count|compare|comparison|difference|differences|different|why|explain|"
                      r"relationship|more than|fewer than|less than|same as|order|sequence|each|every|all of)\b")
# Where things are relative to each other, or a description: more than one glimpse.
_RELATES = re.compile(r"\b(left|right|behind|in front|above|below|under|over|next to|between|near|beside|"
                      r"describe|doing|happening|where|which)\b")
# Short questions about one salient property.
_SIMPLE_START = re.compile(r"^(is|are|does|do|can|was|were|has|have|what colou?r|what is this|what animal|"
                           r"what kind|what type|what sport|what room|what fruit|is there|are there)\b")


@dataclass(frozen=True)
class Tier:
    """A question's tier (one of TIERS) and the rules that chose it."""

    name: str
    reasons: tuple = ()

    @property
    def index(self) -> int:
        return TIERS.index(self.name)


def question_tier(question: str) -> Tier:
    """The tier of ``question`` by rules, first match wins: text to read -> complex; counting,
    comparing or explaining -> complex; more than 15 words -> complex; relations, descriptions or
    more than 8 words -> medium; a short yes/no or single-property question -> simple; else medium."""
    if not isinstance(question, str):
        raise TypeError(f"question: expected a non-empty str; got {type(question).__name__}")
    if not question.strip():
        raise ValueError(f"question: {question!r} is empty; expected a question")
    q = " ".join(question.lower().replace("?", " ").replace(",", " ").split())
    words = len(q.split())
    if _READS_TEXT.search(q):
        return Tier("complex", ("reads text",))
    if _REASONS.search(q):
        return Tier("complex", ("counts, compares or explains",))
    if words > 15:
        return Tier("complex", (f"{words} words",))
    if _RELATES.search(q):
        return Tier("medium", ("relations or description",))
    if words > 8:
        return Tier("medium", (f"{words} words",))
    if _SIMPLE_START.search(q):
        return Tier("simple", ("short question about one thing",))
    return Tier("medium", ("no rule matched",))


def tier_budget(tier: Tier | str, config: dict, preset: str = "balanced") -> int:
    """``total_budget`` for ``tier`` under ``preset`` with a pipeline ``config`` (gestalt_x,
    gestalt_y, gestalt_lod, saccades; the pipeline's defaults where missing)."""
    from ..pipeline import ALLOCATOR_DEFAULTS

    name = tier.name if isinstance(tier, Tier) else tier
    if name not in TIERS:
        raise ValueError(f"tier: {name!r} is not one of {TIERS}")
    if preset not in PRESETS:
        raise ValueError(f"budget: {preset!r} is not a preset; expected one of {tuple(PRESETS)} or an int total budget")
    get = lambda k: config.get(k, ALLOCATOR_DEFAULTS[k][0]) if k in ALLOCATOR_DEFAULTS else config.get(k, 64)  # noqa: E731
    gestalt = get("gestalt_x") * get("gestalt_y") * get("gestalt_lod")
    return int(gestalt + get("saccades") * PRESETS[preset][name])


def load_labelled(path=LABELLED_QUESTIONS) -> list[tuple[str, str]]:
    """(question, tier) pairs of a JSONL file of {"question": ..., "tier": ...} objects."""
    pairs = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            item = json.loads(line)
            if item.get("tier") not in TIERS or not isinstance(item.get("question"), str):
                raise ValueError(f"{path}:{i}: expected {{\"question\": str, \"tier\": one of {TIERS}}}")
            pairs.append((item["question"], item["tier"]))
    return pairs


def rule_accuracy(pairs=None) -> dict:
    """How the rules do on labelled (question, tier) pairs: overall accuracy, accuracy per tier,
    the share of complex questions put in the simple tier, and the confusion counts."""
    pairs = load_labelled() if pairs is None else pairs
    return tier_scores((t, question_tier(q).name) for q, t in pairs)


def tier_scores(labelled_and_assigned) -> dict:
    """Scores of (labelled tier, assigned tier) pairs: the number of questions, overall accuracy,
    accuracy per labelled tier (None where none), the share of complex questions assigned simple
    (issue #14's target: < 2 %) and the confusion counts (confusion[labelled][assigned])."""
    confusion = {t: {u: 0 for u in TIERS} for t in TIERS}
    for t, u in labelled_and_assigned:
        confusion[t][u] += 1
    n = sum(sum(row.values()) for row in confusion.values())
    per_tier = {t: (confusion[t][t] / sum(confusion[t].values()) if sum(confusion[t].values()) else None) for t in TIERS}
    hard = sum(confusion["complex"].values())
    return {"questions": n, "accuracy": sum(confusion[t][t] for t in TIERS) / n if n else None,
            "per_tier": per_tier, "complex_as_simple": confusion["complex"]["simple"] / hard if hard else None,
            "confusion": confusion}


# ----------------------------------------------------------------------------- the learned classifier

_DIM = 512  # hashed word and word-pair features


def _features(question: str) -> np.ndarray:
    """Hashed unigrams and bigrams of the lower-cased words, the words' count in 5 buckets, and the
    rules' tier (one-hot): the classifier starts from the rules and learns where they are wrong."""
    import zlib

    words = " ".join(question.lower().replace("?", " ").replace(",", " ").split()).split()
    f = np.zeros(_DIM + 5 + len(TIERS))
    for t in words + [a + " " + b for a, b in zip(words, words[1:])]:
        f[zlib.crc32(t.encode()) % _DIM] += 1.0
    f[_DIM + min(4, len(words) // 4)] = 1.0
    f[_DIM + 5 + question_tier(question).index] = 3.0
    return f


class TierClassifier:
    """Multinomial logistic regression over ``_features``: ``predict(question)`` -> Tier."""

    def __init__(self, weights: np.ndarray | None = None):
        self.weights = np.zeros((_DIM + 5 + len(TIERS) + 1, len(TIERS))) if weights is None else np.asarray(weights)

    def _logits(self, x: np.ndarray) -> np.ndarray:
        return np.hstack([x, np.ones((len(x), 1))]) @ self.weights

    def fit(self, pairs, *, epochs: int = 300, lr: float = 0.5, l2: float = 1e-3) -> "TierClassifier":
        """Full-batch gradient descent on the cross-entropy of (question, tier) pairs (deterministic)."""
        x = np.stack([_features(q) for q, _ in pairs])
        y = np.array([TIERS.index(t) for _, t in pairs])
        onehot = np.eye(len(TIERS))[y]
        xb = np.hstack([x, np.ones((len(x), 1))])
        for _ in range(epochs):
            z = xb @ self.weights
            p = np.exp(z - z.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            self.weights -= lr * (xb.T @ (p - onehot) / len(x) + l2 * self.weights)
        return self

    def predict(self, question: str) -> Tier:
        if not isinstance(question, str) or not question.strip():
            raise TypeError(f"question: expected a non-empty str; got {question!r}")
        z = self._logits(_features(question)[None])[0]
        return Tier(TIERS[int(np.argmax(z))], ("learned classifier",))

    def save(self, path) -> None:
        Path(path).write_text(json.dumps({"tiers": list(TIERS), "features": _DIM, "weights": self.weights.tolist()}))

    @classmethod
    def load(cls, path) -> "TierClassifier":
        try:
            data = json.loads(Path(path).read_text())
            w = np.asarray(data["weights"], np.float64)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"tier classifier {str(path)!r}: not a saved TierClassifier ({e})") from None
        if tuple(data.get("tiers", ())) != TIERS or w.shape != (_DIM + 5 + len(TIERS) + 1, len(TIERS)):
            raise ValueError(f"tier classifier {str(path)!r}: made for other tiers or features")
        return cls(w)


def cross_validate(pairs, folds: int = 5, seed: int = 0) -> dict:
    """The classifier's accuracy on held-out folds (``rule_accuracy``'s keys), trained on the rest."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pairs))
    confusion = {t: {u: 0 for u in TIERS} for t in TIERS}
    for k in range(folds):
        held = set(order[k::folds].tolist())
        clf = TierClassifier().fit([p for i, p in enumerate(pairs) if i not in held])
        for i in held:
            q, t = pairs[i]
            confusion[t][clf.predict(q).name] += 1
    n = len(pairs)
    hard = sum(confusion["complex"].values())
    return {"questions": n, "accuracy": sum(confusion[t][t] for t in TIERS) / n,
            "per_tier": {t: confusion[t][t] / max(1, sum(confusion[t].values())) for t in TIERS},
            "complex_as_simple": confusion["complex"]["simple"] / hard if hard else None, "confusion": confusion}
