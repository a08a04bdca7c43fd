"""The benchmark suites (benchmarks/) run as a user first runs them: with the project's default
options, where timing is disabled and each benchmark runs once as a smoke test. A benchmark that
breaks (an API it calls changed, a statistic read that is not there) fails here, not on the day
someone profiles. The timed runs are in docs/PERFORMANCE.md; no time is asserted."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmarks_run_once_with_timing_disabled(tmp_path):
    # 640x480 only, without the float64 reference (its minute is the same code as the reference tests')
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "640 and not reference",
                        str(ROOT / "benchmarks")], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "failed" not in r.stdout and "error" not in r.stdout.lower(), r.stdout[-3000:]


def test_both_suites_collect_together_in_either_order(tmp_path):
    """tests/ and benchmarks/ each have a conftest.py: `pytest tests benchmarks` (or `pytest .`) took
    one suite's helpers for the other's and failed to collect."""
    for order in (("tests", "benchmarks"), ("benchmarks", "tests")):
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "--co", "-p", "no:cacheprovider",
                            *(str(ROOT / d) for d in order)], capture_output=True, text=True, cwd=tmp_path, timeout=600)
        assert r.returncode == 0 and "ERROR" not in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]


def test_without_opencv_only_its_rows_are_skipped(tmp_path):
    """The OpenCV peer is imported where its rows run: without OpenCV the session ran nothing."""
    import os

    stub = tmp_path / "stub" / "cv2"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('no OpenCV here')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(stub.parent), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-k",
                        "640 and texture and not reference and not cuda", str(ROOT / "benchmarks")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=600, env=env)
    assert r.returncode == 0 and " passed" in r.stdout and "no OpenCV here" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]
