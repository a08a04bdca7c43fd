"""Shared by the fuzz targets (fuzz/fuzz_*.py): atheris setup, the error contract, and honest
arrays of any shape, dtype and strides.

The contract every target checks (docs/RELIABILITY.md): whatever the input, arrcoc_rt either
works or raises ``ValueError``/``TypeError``; any other exception, a sanitizer report, a crash or a
failed invariant (``AssertionError``) fails the run. Objects the fuzzer builds are *honest*: every
byte a shape and strides describe lies in memory that exists (a producer that lies about its own
memory cannot be detected by any consumer).

Run one target:  python fuzz/fuzz_frames.py WORK_DIR fuzz/corpus/frames -max_total_time=30
All of them as CI does: python fuzz/run.py --seconds 30
"""

from __future__ import annotations

import os
import sys
import warnings

import atheris
import numpy as np

ALLOWED = (ValueError, TypeError)

with atheris.instrument_imports(include=["arrcoc_rt"]):
    import arrcoc_rt  # noqa: F401  (Python-level coverage of the whole package)
    import arrcoc_rt.encoders  # noqa: F401
    import arrcoc_rt.frames  # noqa: F401
    import arrcoc_rt.pipeline  # noqa: F401
    import arrcoc_rt.query  # noqa: F401
    import arrcoc_rt.weights  # noqa: F401

warnings.simplefilter("ignore")  # DeprecationWarnings of legacy query=, RuntimeWarnings of NumPy casts


def main(one_input) -> None:
    """Run ``one_input(FuzzedDataProvider)`` under the contract: ValueError/TypeError pass."""

    def test_one(data: bytes) -> None:
        try:
            one_input(atheris.FuzzedDataProvider(data))
        except ALLOWED:
            pass

    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


DTYPES = [np.uint8, np.uint8, np.uint8, np.int8, np.uint16, np.float32, np.float16, np.float64, np.bool_, np.int64,
          np.complex64]
MAX_BYTES = 1 << 20  # memory behind one fuzzed array


def small_dim(fdp, hi: int) -> int:
    """Mostly 1..hi, sometimes 0 or past it."""
    r = fdp.ConsumeIntInRange(0, 15)
    if r == 0:
        return 0
    if r == 1:
        return fdp.PickValueInList([hi + 1, 2 * hi, 16385, 1 << 20])
    return fdp.ConsumeIntInRange(1, hi)


def strided(fdp, shape, dtype=np.uint8, fill=True) -> np.ndarray:
    """An array of ``shape`` with fuzzed strides (packed, row-padded, zero, negative, permuted,
    arbitrary) over memory that holds every element it addresses; numpy.ndarray refuses any
    layout that would reach outside its buffer, and then the packed array is returned."""
    dtype = np.dtype(dtype)
    packed = np.empty(shape, dtype) if np.prod(shape, dtype=np.float64) * dtype.itemsize <= MAX_BYTES else None
    kind = fdp.ConsumeIntInRange(0, 5)
    strides = list(packed.strides) if packed is not None else [dtype.itemsize] * len(shape)
    if kind == 1 and shape:  # padded rows
        strides[0] += fdp.ConsumeIntInRange(0, 64) * (dtype.itemsize if fdp.ConsumeBool() else 1)
    elif kind == 2:  # zero, negative or arbitrary per axis
        for i in range(len(shape)):
            strides[i] = fdp.PickValueInList([0, strides[i], -strides[i], fdp.ConsumeIntInRange(-256, 256)])
    elif kind == 3 and len(shape) >= 2:  # permuted (a transposed view)
        order = list(range(len(shape)))[::-1]
        t = np.empty([shape[i] for i in order], dtype) if packed is not None else None
        if t is not None:
            strides = [t.strides[order.index(i)] for i in range(len(shape))]
    elif kind == 4:  # every axis broadcast: huge shapes over one element
        strides = [0] * len(shape)
    lo = sum(min(0, (n - 1) * s) for n, s in zip(shape, strides) if n > 0)
    hi = sum(max(0, (n - 1) * s) for n, s in zip(shape, strides) if n > 0) + dtype.itemsize
    if any(n == 0 for n in shape):
        lo, hi = 0, 0
    if hi - lo > MAX_BYTES:
        if packed is None:
            raise ValueError("fuzz: no honest layout that small")  # counted as a refused input
        strides, lo, hi = list(packed.strides), 0, packed.nbytes
    offset = fdp.ConsumeIntInRange(0, 3) if dtype.itemsize == 1 else 0
    buf = np.zeros(max(hi - lo, 0) + offset + 1, np.uint8)
    if fill and buf.size:
        raw = fdp.ConsumeBytes(min(buf.size, fdp.ConsumeIntInRange(0, 4096)))
        buf[: len(raw)] = np.frombuffer(raw, np.uint8)
        if fdp.ConsumeBool():
            buf[len(raw):] = np.resize(buf[: max(len(raw), 1)], buf.size - len(raw))
    return np.ndarray(tuple(shape), dtype, buffer=buf, offset=offset - lo, strides=tuple(strides))


def fuzz_array(fdp, hi_dim: int = 48, ndim=None, dtype=None) -> np.ndarray:
    nd = fdp.ConsumeIntInRange(0, 4) if ndim is None else ndim
    shape = [small_dim(fdp, hi_dim) for _ in range(nd)]
    dt = fdp.PickValueInList(DTYPES) if dtype is None else dtype
    return strided(fdp, shape, dt)


def fuzz_value(fdp):
    """Any kind of Python value an argument might receive."""
    k = fdp.ConsumeIntInRange(0, 11)
    if k == 0:
        return fdp.ConsumeIntInRange(-3, 300)
    if k == 1:
        return fdp.PickValueInList([0, -1, 1, 2**31, -(2**31) - 1, 2**32, 2**63, 2**64 + 1, 10**30])
    if k == 2:
        return fdp.ConsumeFloat()
    if k == 3:
        return fdp.PickValueInList([float("nan"), float("inf"), -float("inf"), 1e-45, -0.0, 1e38, 0.5])
    if k == 4:
        return fdp.ConsumeBool()
    if k == 5:
        return None
    if k == 6:
        return fdp.ConsumeUnicodeNoSurrogates(8)
    if k == 7:
        return np.float32(fdp.ConsumeFloat())
    if k == 8:
        return np.int64(fdp.ConsumeIntInRange(-(2**40), 2**40))
    if k == 9:
        return [fdp.ConsumeIntInRange(0, 9)] * fdp.ConsumeIntInRange(0, 3)
    if k == 10:
        return np.uint8(fdp.ConsumeIntInRange(0, 255))
    return complex(1, 1)


def frame_pixels(fdp, w: int, h: int, c: int = 3) -> np.ndarray:
    """A valid H x W x c uint8 frame whose content comes from the input (repeated)."""
    raw = fdp.ConsumeBytes(min(w * h * c, fdp.ConsumeIntInRange(1, 2048))) or b"\x80"
    return np.resize(np.frombuffer(raw, np.uint8), (h, w, c)) if c else np.resize(np.frombuffer(raw, np.uint8), (h, w))


def tmp_path(name: str) -> str:
    d = os.environ.get("ARRCOC_FUZZ_TMP") or os.path.join("/tmp", f"arrcoc-fuzz-{os.getpid()}")
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, name)


LODS = {64, 128, 256, 384, 400}


def check_result(r, pipe) -> None:
    """The invariants of every token pack (as tests/test_properties.py): exactly G + S tokens,
    the budget within the total, valid levels, distinct saccades, finite glimpses and scores."""
    c = pipe.config
    G, S = c["gestalt_x"] * c["gestalt_y"], c["saccades"]
    kinds, budgets, levels = np.asarray(r.kinds), np.asarray(r.budgets), np.asarray(r.levels)
    assert len(kinds) == G + S, (len(kinds), G, S)
    assert np.all(kinds[:G] == 0) and set(np.unique(kinds[G:]).tolist()) <= {1, -1}
    real = kinds >= 0
    assert int(budgets.sum()) <= c["total_budget"], (int(budgets.sum()), c["total_budget"])
    assert set(np.unique(budgets[real]).tolist()) <= LODS and np.all(budgets[~real] == 0)
    assert np.all((levels[real] >= 0) & (levels[real] <= 3)) and np.all(levels[~real] == -1)
    sac = np.asarray(r.patches)[kinds == 1]
    assert len(np.unique(sac)) == len(sac) == r.num_saccades
    assert np.all(np.isfinite(r.glimpses)) and np.all(np.isfinite(r.scores))
    assert np.all(np.isfinite(r.relevance)) and np.all((r.relevance >= 0) & (r.relevance <= 1))
