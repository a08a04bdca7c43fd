"""Parameters of the opponent-processing balancer: load, save, validate, and the untrained default.

The balancer computes, per candidate with scores x = (info, salience, query) in [0, 1]:

    h1  = ReLU(LayerNorm(W1 x + b1) * ln_gamma + ln_beta)      W1 [128, 3]   (LayerNorm eps 1e-5)
    h2  = ReLU(LayerNorm(W2 h1 + b2) * ln2_gamma + ln2_beta)   W2 [64, 128]
    raw = sigmoid(W3 h2 + b3)                                  W3 [1, 64]
    lambda_i = sigmoid(lambda_logits[i])                       3 opponent dials
    balanced = mix . (T1, T2, T3), then min-max over the frame's candidates   mix [3]

and, per frame, the context network (seeds 000/001) that weights the three scores:

    w = softmax(ctx_W2 ReLU(ctx_W1 x + ctx_b1) + ctx_b2)     ctx_W1 [256, 40], ctx_W2 [3, 256]
    (info, salience, query) *= 3 w                           (strategy 'balanced', before the MLP)

x: the query's embedding (16: its projection into texture channels 17..32), 1 with a query, the
frame's mean of level-4 channels 17..32 and 0..3, and the candidates' mean three scores (see
arrcoc/allocate.h). All-zero context parameters (the default) leave the scores as they are.

File formats (both hold exactly these keys): ``.npz`` (``np.savez``) or ``.json`` (lists of numbers):
``W1, b1, ln_gamma, ln_beta, W2, b2, ln2_gamma, ln2_beta, W3, b3, lambda_logits, mix, ctx_W1, ctx_b1,
ctx_W2, ctx_b2``. LayerNorm after both hidden layers is seed 004's balancer (its dropout of 0.1 acts
in training only); files written before the second LayerNorm and the context network existed lack
those keys and are refused.

Untrained default (``default_weights()``): raw equals the **mean of the three scores** to within
1.5e-3 for means in [0.01, 0.99] (up to 5e-3 at the ends, where its target is clipped to [0.005, 0.995]):
the first layer puts m = mean(x) and -m on two units (the other 126 are zero), so the
LayerNorm's mean is exactly 0; a small first-layer scale keeps it in its linear regime (its eps
dominates); 63 ReLU hinges of the second layer then build a piecewise-linear logit(m) that the final
sigmoid undoes, and a 64th unit balances their sum so that the second LayerNorm's mean is 0 too (an
even smaller scale keeps it linear). lambda_logits = 0 (each dial at 0.5), mix = (0.4, 0.3, 0.3).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

HIDDEN1, HIDDEN2 = 128, 64
CONTEXT_INPUTS, CONTEXT_HIDDEN, QUERY_EMBEDDING_DIMS = 40, 256, 16
LN_EPS = 1e-5
SHAPES = {
    "W1": (HIDDEN1, 3), "b1": (HIDDEN1,), "ln_gamma": (HIDDEN1,), "ln_beta": (HIDDEN1,),
    "W2": (HIDDEN2, HIDDEN1), "b2": (HIDDEN2,), "ln2_gamma": (HIDDEN2,), "ln2_beta": (HIDDEN2,),
    "W3": (1, HIDDEN2), "b3": (1,),
    "lambda_logits": (3,), "mix": (3,),
    "ctx_W1": (CONTEXT_HIDDEN, CONTEXT_INPUTS), "ctx_b1": (CONTEXT_HIDDEN,), "ctx_W2": (3, CONTEXT_HIDDEN),
    "ctx_b2": (3,),
}
CONTEXT_KEYS = tuple(k for k in SHAPES if k.startswith("ctx_"))
# Largest |value| of any parameter (arrcoc::kMaxBalanceWeight): beyond it the balancer's float32
# sums can overflow to inf and the scores to NaN (a finite 3.4e38 did, found by fuzzing).
MAX_ABS = 1e6
NEWER_KEYS = {"ln2_gamma", "ln2_beta", *CONTEXT_KEYS}  # 2026-11-30: absent from older files


def default_weights() -> dict:
    """The untrained default described in the module docstring (float32 arrays). Built by the
    C++ core (arrcoc::default_balance_weights), the one place that constructs it."""
    from . import _native

    return validate(_native.default_balance_weights(), "default weights")


def validate(weights: dict, source: str = "weights") -> dict:
    """Checks keys, shapes, finiteness and |w| <= MAX_ABS; returns float32 C-contiguous copies."""
    if not isinstance(weights, dict):
        raise TypeError(f"{source}: expected a dict of arrays; got {type(weights).__name__}")
    missing = sorted(set(SHAPES) - set(weights))
    extra = sorted(set(weights) - set(SHAPES))
    if missing or extra:
        hint = (" (weights written before the balancer had a LayerNorm after its second layer and a context "
                "network: retrain them)" if missing and set(missing) <= NEWER_KEYS and not extra else "")
        raise ValueError(f"{source}: keys do not match; missing {missing}, unexpected {extra}; "
                         f"expected exactly {sorted(SHAPES)}{hint}")
    out = {}
    for k, shape in SHAPES.items():
        a = np.asarray(weights[k])
        if a.dtype.kind not in "fiu":
            raise TypeError(f"{source}: {k} has dtype {a.dtype}; expected numbers")
        a = np.ascontiguousarray(a, np.float32)
        if a.shape != shape:
            raise ValueError(f"{source}: {k} has shape {a.shape}; expected {shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{source}: {k} contains NaN or inf")
        if np.any(np.abs(a) > MAX_ABS):
            raise ValueError(f"{source}: {k} has values up to {float(np.abs(a).max()):g}; expected |w| <= {MAX_ABS:g} "
                             "(larger ones overflow the balancer's float32 sums)")
        out[k] = a
    return out


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_LITERAL = re.compile(r"\b(?:true|false|null)\b")


def load_weights(path) -> dict:
    """Balancer parameters from an .npz or .json file (see the module docstring)."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"weights: file {str(p)!r} does not exist")
    if p.suffix == ".npz":
        return validate(read_npz(p, "weights"), str(p))
    if p.suffix == ".json":
        try:
            text = p.read_text()
            data = json.loads(text)
        except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise ValueError(f"weights: {str(p)!r} is not valid JSON: {e}") from None
        # NumPy reads [0.4, true] as [0.4, 1.0]: look for JSON's literals outside strings in the text
        # (one regular-expression pass, not a Python walk of every element; valid JSON here)
        literal = _JSON_LITERAL.search(_JSON_STRING.sub("", text))
        if literal is not None:
            raise ValueError(f"weights: {str(p)!r} holds {literal.group()!r}; expected numbers only")
        if isinstance(data, dict):
            try:
                arrays = {k: np.asarray(v) for k, v in data.items()}
                # numbers only: as float64, NumPy would read "1" as 1.0
                odd = next((k for k, a in arrays.items() if a.dtype.kind not in "iuf"), None)
                if odd is not None:
                    raise TypeError(f"{odd} holds {arrays[odd].dtype} values (strings are not weights)")
                data = {k: a.astype(np.float64) for k, a in arrays.items()}
            except (ValueError, TypeError, OverflowError, RecursionError) as e:
                raise ValueError(f"weights: {str(p)!r} holds a value that is not an array of numbers: {e}") from None
        return validate(data, str(p))
    raise ValueError(f"weights: {str(p)!r} has suffix {p.suffix!r}; expected .npz or .json")


def read_npz(path, what: str) -> dict:
    """All arrays of an .npz file (np.savez) as a dict; ValueError for a file that is not one (not a
    zip, truncated, damaged, pickled objects, a plain .npy) instead of the many errors np.load raises."""
    # zipfile and NumPy's readers raise many types for a bad file (BadZipFile, EOFError,
    # NotImplementedError for an unknown zip version or compression, RuntimeError for an encrypted
    # member, zlib.error, ...): all of them mean "not a usable .npz"; running out of memory does not.
    try:  # what np.load would try next is no help to read: a pickle (refused) or a text file's bytes
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as e:
        raise ValueError(f"{what}: {str(path)!r} cannot be read: {e.strerror or e}") from None
    if not head.startswith((b"PK", b"\x93NUMPY")):
        raise ValueError(f"{what}: {str(path)!r} is not an .npz file (not a zip archive, as np.savez writes)")
    try:
        z = np.load(path, allow_pickle=False)
    except (MemoryError, RecursionError):
        raise
    except Exception as e:
        raise ValueError(f"{what}: {str(path)!r} is not an .npz file: {type(e).__name__}: {e}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"{what}: {str(path)!r} is a single .npy array, not an .npz file (np.savez)")
    try:
        with z:
            return {k: z[k] for k in z.files}
    except (MemoryError, RecursionError):
        raise
    except Exception as e:
        raise ValueError(f"{what}: {str(path)!r} is a damaged .npz file: {type(e).__name__}: {e}") from None


def save_weights(weights: dict, path) -> None:
    w = validate(weights)
    p = Path(path)
    if p.suffix == ".npz":
        np.savez(p, **w)
    elif p.suffix == ".json":
        p.write_text(json.dumps({k: v.tolist() for k, v in w.items()}))
    else:
        raise ValueError(f"weights: {str(p)!r} has suffix {p.suffix!r}; expected .npz or .json")
