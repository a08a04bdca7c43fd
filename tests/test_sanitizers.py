"""Proof that a sanitizer run is one: under CI's AddressSanitizer + UBSan build (pytest -m sanitize
with the runtime preloaded, docs/RELIABILITY.md) a deliberate out-of-bounds read and a deliberate
signed overflow in the native code, both reached by bypassing the Python checks, must stop the
process with the sanitizer's report. Skipped in an ordinary run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest


def _loaded(name: str) -> bool:
    with open("/proc/self/maps") as f:
        return name in f.read()


pytestmark = pytest.mark.skipif(not _loaded("libasan"), reason="not a sanitizer run (libasan is not loaded)")

HEAP_OVERFLOW = """
    import numpy as np, arrcoc_rt
    b = arrcoc_rt.TextureBuilder(8, 8, device="cpu")
    small = np.zeros(10, np.uint8)
    # the core is told that these 10 bytes are an 8x8 rgb24 frame (192 bytes)
    b._native.build([small.__array_interface__["data"][0]], [24], 8, 8, 0, 0, 0, 0)
"""
SIGNED_OVERFLOW = """
    import numpy as np, arrcoc_rt
    b = arrcoc_rt.TextureBuilder(8, 8, device="cpu")
    b.build(np.zeros((8, 8, 3), np.uint8))
    # a view whose strides overflow int64 (the Python layer never asks for one)
    b._native.view(0, 0, [1, 2**62, 4])
"""


@pytest.mark.parametrize("code,report", [
    (HEAP_OVERFLOW, "AddressSanitizer: heap-buffer-overflow"),
    (SIGNED_OVERFLOW, "runtime error: signed integer overflow"),
])
def test_the_sanitizers_of_this_run_stop_the_process(code, report):
    assert _loaded("libubsan") and "halt_on_error=1" in os.environ.get("UBSAN_OPTIONS", ""), \
        "UBSan must be loaded and halt on error (UBSAN_OPTIONS=halt_on_error=1)"
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code) + "\nprint('not stopped')"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "not stopped" not in p.stdout, p.stdout + p.stderr[-2000:]
    assert report in p.stderr, p.stderr[-2000:]
