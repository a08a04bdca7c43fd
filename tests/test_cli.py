"""The command line and the examples, run as a user would (subprocess)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args, cwd):
    r = subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=300)
    assert r.returncode == 0, f"{args} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def test_info(tmp_path):
    out = _run([sys.executable, "-m", "arrcoc_rt.cli", "info"], tmp_path)
    assert "arrcoc_rt 0." in out and "CUDA backend compiled:" in out and "devices: cpu" in out


def test_texture_demo_on_the_builtin_sample(tmp_path):
    out = _run([sys.executable, "-m", "arrcoc_rt.cli", "texture", "--out", "demo", "--device", "cpu"], tmp_path)
    assert "built-in sample" in out and "motion between the last two frames: yes" in out
    from PIL import Image

    sheet = Image.open(tmp_path / "demo" / "contact_sheet.png")
    assert sheet.width > 1000 and sheet.height > 600
    assert len(list((tmp_path / "demo" / "channels").glob("channel_*.png"))) == 40
    # the motion channel of the sample (a moving disc) is not blank
    motion = np.asarray(Image.open(tmp_path / "demo" / "channels" / "channel_10_motion.png"))
    assert motion.max() > 200


def test_texture_on_an_image_and_a_video(tmp_path):
    from PIL import Image

    from arrcoc_rt.samples import sample_frames

    frames = sample_frames(96, 64, 3)
    Image.fromarray(frames[0]).save(tmp_path / "in.png")
    out = _run([sys.executable, "-m", "arrcoc_rt.cli", "texture", "in.png", "--out", "img"], tmp_path)
    assert "96x64, 1 frame" in out and (tmp_path / "img" / "contact_sheet.png").exists()
    av = pytest.importorskip("av")
    with av.open(str(tmp_path / "in.mp4"), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    out = _run([sys.executable, "-m", "arrcoc_rt.cli", "texture", "in.mp4", "--out", "vid"], tmp_path)
    assert "2 frame(s)" in out and "motion between the last two frames: yes" in out


def test_texture_bad_input_is_a_clear_error(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    for args, msg in ((["missing.png"], "does not exist"), (["broken.png"], "cannot read image"),
                      (["--device", "cuda:7"], "device")):
        r = subprocess.run([sys.executable, "-m", "arrcoc_rt.cli", "texture", *args, "--out", "o"],
                           capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode != 0 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_example_runs(tmp_path):
    out = _run([sys.executable, str(ROOT / "examples" / "texture_channels.py")], tmp_path)
    assert "frame 2:" in out and "moving 16x16 patches" in out  # frames count from 0
