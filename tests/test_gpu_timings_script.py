"""scripts/gpu_timings.py (issue #15's GPU figures, which scripts/gpu_check.sh runs first on a lent
GPU) runs end to end on the CUDA backend, here the emulated device: every measurement of its table
and JSON, odd sizes included, the graphs setting left as it found it, bad arguments refused. On the
emulated device its times mean nothing; only that it runs and reports is checked."""

import importlib.util
import json
from pathlib import Path

import pytest

from arrcoc_rt import cuda

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_timings.py"
pytestmark = pytest.mark.needs_cuda


def _script():
    spec = importlib.util.spec_from_file_location("gpu_timings", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_timings_table_and_json(tmp_path, capsys):
    before = cuda.graphs_enabled()
    out = tmp_path / "t.json"
    assert _script().main(["--sizes", "64x48,97x33", "--frames", "3", "--streams", "2", "--json", str(out)]) == 0
    assert cuda.graphs_enabled() == before
    rows = json.loads(out.read_text())["rows"]
    assert [r["size"] for r in rows] == ["64x48", "97x33"]
    for r in rows:
        for kind in ("graphs", "kernel_by_kernel", "host_copy"):
            assert 0 < r[kind]["p50_ms"] <= r[kind]["p99_ms"]
        assert r["queued_fps"] > 0 and r["group_fps"] > 0 and r["group_streams"] == 2
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(table) == 3 and table[1].startswith("| 64x48 |") and table[2].startswith("| 97x33 |")


@pytest.mark.parametrize("args", [["--frames", "1"], ["--streams", "0"], ["--sizes", "640by480"],
                                  ["--sizes", "640x480x3"], ["--sizes", "0x0"], ["--device", "5"],
                                  ["--sizes", "64x48", "--json", "/nonexistent-folder/t.json"]])
def test_gpu_timings_refuses_bad_arguments(args, capsys):
    assert _script().main(args) == 2
    assert "gpu_timings:" in capsys.readouterr().err


def test_gpu_timings_help_lists_its_columns(capsys):
    with pytest.raises(SystemExit):
        _script().main(["--help"])
    out = capsys.readouterr().out
    assert "throughput" in out and "StreamGroup" in out and "--json" in out
