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
