"""scripts/floors.py (issue #15's table of bytes, floors, times and peers) runs and counts what the
Pipeline's texture writes: fewer bytes than a texture with every plane."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "floors.py"


def test_floors_table(capsys):
    pytest.importorskip("cv2")
    spec = importlib.util.spec_from_file_location("floors", SCRIPT)
    floors = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(floors)
    # 'auto' without a GPU is the CPU: every stage timed (it was taken for CUDA: stages shown as '-')
    import arrcoc_rt

    device = "cpu" if arrcoc_rt.cuda_available() else "auto"
    assert floors.main(["--sizes", "64x48", "--frames", "2", "--device", device]) == 0
    rows = {}
    for line in capsys.readouterr().out.splitlines()[2:]:
        rest = line.split(None, 1)[1].strip()  # after the size column
        name = next(n for n in ("texture, all planes", "texture", "cascade", "allocate_and_gather", "whole pipeline")
                    if rest.startswith(n))
        rows[name] = rest[len(name):].split()
    assert set(rows) == {"texture", "texture, all planes", "cascade", "allocate_and_gather", "whole pipeline"}
    lean_mb, full_mb = float(rows["texture"][0]), float(rows["texture, all planes"][0])
    # 64x48: level 0 holds 15 planes, the Pipeline writes 4 of them: 11 * 64 * 48 * 2 bytes fewer
    assert full_mb - lean_mb == pytest.approx(11 * 64 * 48 * 2 / 1e6, abs=0.011)
    assert rows["texture, all planes"][-1].endswith("x")  # the peer's ratio is on the all-planes row
    # operations (after MB, the floors here, on an H100 and an H200; the whole pipeline's row has no
    # GPU floors): the texture's 147 per level-0 pixel at least, the whole pipeline's the sum
    mop = {name: float(cols[2] if name == "whole pipeline" else cols[4]) for name, cols in rows.items()}
    assert mop["texture"] >= 147 * 64 * 48 / 1e6
    assert min(mop.values()) > 0
    assert mop["whole pipeline"] == pytest.approx(mop["texture"] + mop["cascade"] + mop["allocate_and_gather"], abs=0.2)


def _floors():
    spec = importlib.util.spec_from_file_location("floors", SCRIPT)
    floors = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(floors)
    return floors


@pytest.mark.parametrize("args, message", [(["--sizes", "abc"], "--sizes"), (["--sizes", "640x480x3"], "--sizes"),
                                           (["--sizes", "0x480"], "--sizes"), (["--frames", "0"], "--frames"),
                                           (["--device", "tpu"], "--device: 'tpu'")])
def test_bad_options_are_named_before_any_measurement(args, message, capsys):
    with pytest.raises(SystemExit, match=message):
        _floors().main(args)
    assert capsys.readouterr().out == ""  # refused before the bandwidth and arithmetic probes print


def test_the_peers_do_the_work_arrcoc_does():
    """The texture peer gets the previous frame (motion and block matching computed, as arrcoc's
    texture does); the cascade peer is SLIC with the cascade's settings (3 iterations, no Lab)."""
    pytest.importorskip("cv2")
    pytest.importorskip("skimage")
    import sys

    from arrcoc_rt.samples import sample_frames

    floors = _floors()
    previous, frame = sample_frames(64, 48, 2)
    assert set(floors.peer_times(previous, frame)) == {"cascade"}  # the texture's is timed alongside the builder
    sys.path.insert(0, str(SCRIPT.parents[1] / "benchmarks"))
    import opencv_texture

    calls = []
    real = opencv_texture.texture_opencv
    opencv_texture.texture_opencv = lambda f, lum, small: calls.append(lum is not None and small is not None) or real(f, lum, small)
    try:
        peer = floors.opencv_texture_peer()
        for f in (previous, frame, previous):
            peer(f)
    finally:
        opencv_texture.texture_opencv = real
    assert calls == [False, True, True]  # no previous frame once, then every call with the one before it
