"""VQA accuracy with the standard answer normalization of the VQA evaluation (VQAv2, TextVQA).

Normalization (both the prediction and the reference answers): newlines and tabs become spaces;
punctuation ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !`` is removed where it touches a space or
when the text holds a digit-comma-digit group, else replaced by a space; a period not followed by a
digit is removed; lowercase; number words zero..ten (and "none") become digits; the articles a, an,
the are dropped; apostrophe-less contractions get their apostrophe back ("dont" -> "don't").

Accuracy of one answer against the reference answers:

* three or more references (VQAv2 and TextVQA have ten): the VQA metric, min(#matching / 3, 1)
  averaged over the leave-one-out subsets of the references (each subset leaves one reference out;
  with ten references this is the official evaluation's number; 3 matching of 10 gives 0.9, 4 or
  more give 1);
* one or two references: normalized exact match with any of them (1 or 0).
"""

from __future__ import annotations

import re

PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?",
               "!")
NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
           "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = {"a", "an", "the"}
# The VQA evaluation's period rule: a period is removed unless a digit follows it ("2.5" keeps its
# period; its lookbehind is written so that it never applies, and it is kept as written).
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_NUMBER = re.compile(r"(\d)(,)(\d)")

# Contractions the evaluation restores; each is also matched with any of its apostrophes missing.
# Plain words that look like a contraction without its apostrophe ("well", "were", "hell", "shell",
# "lets", "its") are left alone; the evaluation's capitalised keys ("Im", "Ive", "Id") never match
# its lowercased words, so "I'm" etc. are not restored either.
_CONTRACTIONS = (
    "ain't", "aren't", "can't", "could've", "couldn't", "couldn't've", "didn't", "doesn't", "don't", "hadn't",
    "hadn't've", "hasn't", "haven't", "he'd", "he'd've", "he's", "how'd", "how'll", "how's", "isn't", "it'd",
    "it'd've", "it'll", "ma'am", "mightn't", "mightn't've", "might've", "mustn't", "must've", "needn't", "not've",
    "o'clock", "oughtn't", "shan't", "she'd", "she'd've", "should've", "shouldn't", "shouldn't've",
    "somebody'd", "somebody'd've", "somebody'll", "somebody's", "someone'd", "someone'd've", "someone'll",
    "someone's", "something'd", "something'd've", "something'll", "that's", "there'd", "there'd've", "there're",
    "there's", "they'd", "they'd've", "they'll", "they're", "they've", "wasn't", "we'd've", "we're", "we've",
    "weren't", "what'll", "what're", "what's", "what've", "when's", "where'd", "where's", "where've", "who'd",
    "who'd've", "who'll", "who're", "who's", "who've", "why'll", "why're", "why's", "won't", "would've",
    "wouldn't", "wouldn't've", "y'all", "y'all'll", "y'all'd've", "you'd", "you'd've", "you'll", "you're",
    "you've",
)
_PLAIN_WORDS = {"well", "were", "wed", "hell", "shell", "lets", "its", "ill", "id", "im", "ive"}


def _contraction_table() -> dict:
    table = {}
    for c in _CONTRACTIONS:
        cuts = [i for i, ch in enumerate(c) if ch == "'"]
        for mask in range(1, 1 << len(cuts)):  # every non-empty set of missing apostrophes
            key = "".join(ch for i, ch in enumerate(c) if not (i in cuts and mask >> cuts.index(i) & 1))
            if key not in _PLAIN_WORDS:
                table.setdefault(key, c)
    return table


CONTRACTIONS = _contraction_table()


def _punctuation(text: str) -> str:
    out = text
    has_number_comma = _COMMA_NUMBER.search(text) is not None
    for p in PUNCTUATION:
        if (p + " " in text or " " + p in text) or has_number_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out)


def _digits_and_articles(text: str) -> str:
    words = []
    for w in text.lower().split():
        w = NUMBERS.get(w, w)
        if w not in ARTICLES:
            words.append(CONTRACTIONS.get(w, w))
    return " ".join(words)


def normalize_answer(text: str) -> str:
    """The VQA evaluation's normal form of an answer (see the module docstring)."""
    if not isinstance(text, str):
        raise TypeError(f"answer: expected a str; got {type(text).__name__}")
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _digits_and_articles(_punctuation(text))


def vqa_accuracy(prediction: str, answers) -> float:
    """Accuracy in [0, 1] of ``prediction`` against the reference ``answers`` (a list of str; see
    the module docstring: the VQA metric with three or more, exact match with one or two)."""
    if isinstance(answers, str) or not answers:
        raise ValueError(f"answers: expected a non-empty list of reference answers; got {answers!r}")
    pred = normalize_answer(prediction)
    refs = [normalize_answer(a) for a in answers]
    if len(refs) < 3:
        return float(pred in refs)
    total = 0.0
    for k in range(len(refs)):
        matching = sum(1 for j, a in enumerate(refs) if j != k and a == pred)
        total += min(1.0, matching / 3.0)
    return total / len(refs)


def clean_generation(text: str) -> str:
    """The answer part of a generated text: the first non-empty line, stripped (models often go
    on after a short answer)."""
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return ""
