"""The host float16 conversions (csrc/shared/half.h) against NumPy: every half value, every
rounding boundary, and millions of random floats. (On CUDA the same functions use the
hardware __float2half_rn / __half2float.)"""

import numpy as np

from arrcoc_rt import _arrcoc


def test_every_half_value_converts_to_float_exactly():
    bits = np.arange(65536, dtype=np.uint16)
    want = bits.view(np.float16).astype(np.float32)
    got = _arrcoc._half_bits_to_float_for_test(bits)
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))


def _check(values):
    values = np.ascontiguousarray(values, dtype=np.float32)
    with np.errstate(over="ignore"):  # values beyond 65504 become inf, as they should
        want = values.astype(np.float16).view(np.uint16)
    got = _arrcoc._float_to_half_bits_for_test(values)
    nan = np.isnan(values)
    assert np.all((got[nan] & 0x7C00) == 0x7C00) and np.all((got[nan] & 0x3FF) != 0)
    bad = np.nonzero(got[~nan] != want[~nan])[0]
    assert bad.size == 0, f"{bad.size} mismatches, e.g. {values[~nan][bad[:5]]}: {got[~nan][bad[:5]]} vs {want[~nan][bad[:5]]}"


def test_rounding_boundaries_and_specials():
    halves = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)
    halves = halves[np.isfinite(halves)]
    nxt = np.nextafter(halves, np.float32(np.inf))
    prv = np.nextafter(halves, np.float32(-np.inf))
    # midpoints between neighbouring halves (ties to even) and their float32 neighbours
    sorted_h = np.unique(halves)
    mids = ((sorted_h[:-1].astype(np.float64) + sorted_h[1:]) / 2).astype(np.float32)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504, 65519.99, 65520, 65536, 1e10, -1e10,
                         2.0 ** -24, 2.0 ** -25, 2.0 ** -25 * 1.0001, 2.0 ** -26, 2.0 ** -14, 1e-30], np.float32)
    for v in (halves, nxt, prv, mids, np.nextafter(mids, np.float32(np.inf)),
              np.nextafter(mids, np.float32(-np.inf)), specials):
        _check(v)


def test_random_floats():
    rng = np.random.default_rng(12345)
    _check(rng.standard_normal(2_000_000).astype(np.float32) * np.float32(1000))
    _check(rng.integers(0, 2**32, 4_000_000, dtype=np.uint64).astype(np.uint32).view(np.float32))
